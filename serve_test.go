package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// TestReadyWhileBrokerDown: /-/ready answers 200 once the listeners serve,
// whether the broker was never reached or went away after the first
// snapshot; the broker's state is in authbroker_up and the health API.
func TestReadyWhileBrokerDown(t *testing.T) {
	t.Run("never reached", func(t *testing.T) {
		down := brokertest.New(brokertest.Options{Token: canaryBearer})
		down.Close()
		cfg := parseConfig(t, "--broker.url="+down.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600), "--no-collector.usage")
		e, addr := startExporter(t, cfg, &syncBuffer{})
		if code, body := get(t, http.DefaultClient, "http://"+addr+"/-/ready"); code != http.StatusOK {
			t.Fatalf("/-/ready = %d %q with no snapshot yet, want 200", code, body)
		}
		if e.store.Ready() {
			t.Fatal("the mirror has a snapshot from a broker that was never up")
		}
		assertBrokerDown(t, addr)
	})
	t.Run("went away", func(t *testing.T) {
		b := seededBroker(t)
		cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600), "--no-collector.usage",
			"--monitor.probe-interval=100ms")
		e, addr := startExporter(t, cfg, &syncBuffer{})
		testwait.Eventually(t, "first snapshot", e.store.Ready)
		if code, _ := get(t, http.DefaultClient, "http://"+addr+"/-/ready"); code != http.StatusOK {
			t.Fatalf("/-/ready = %d with the broker up", code)
		}
		b.Close()
		testwait.Eventually(t, "authbroker_up 0", func() bool {
			_, body := get(t, http.DefaultClient, "http://"+addr+"/metrics")
			return strings.Contains(body, "\nauthbroker_up 0\n")
		})
		if code, body := get(t, http.DefaultClient, "http://"+addr+"/-/ready"); code != http.StatusOK {
			t.Fatalf("/-/ready = %d %q with the broker down, want 200", code, body)
		}
		assertBrokerDown(t, addr)
	})
}

// assertBrokerDown: the page and the health API answer, and say the broker
// is down.
func assertBrokerDown(t *testing.T, addr string) {
	t.Helper()
	testwait.Eventually(t, "the health API says critical", func() bool {
		code, body := get(t, http.DefaultClient, "http://"+addr+"/api/v1/health")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"status": "critical"`)
	})
	if code, _ := get(t, http.DefaultClient, "http://"+addr+"/"); code != http.StatusOK {
		t.Errorf("status page = %d while the broker is down", code)
	}
	_, body := get(t, http.DefaultClient, "http://"+addr+"/metrics")
	if !strings.Contains(body, "\nauthbroker_up 0\n") {
		t.Error("/metrics lacks authbroker_up 0 while the broker is down")
	}
}

const bigCredentials = 400

// bigBroker holds enough credentials, with long identities, for a /metrics
// body far larger than what loopback sockets buffer, so a scrape whose
// client does not read stays in its handler.
func bigBroker(t *testing.T) *brokertest.Broker {
	t.Helper()
	b := brokertest.New(brokertest.Options{Token: canaryBearer})
	t.Cleanup(b.Close)
	long := strings.Repeat("x", 16000)
	for i := range bigCredentials {
		b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: time.Now().Add(time.Hour),
			Email: itoa(int64(i)) + long + "@example.com"})
	}
	return b
}

// heldScrape starts a scrape and stops reading once its headers arrived:
// its handler holds a request slot until release is called.
func heldScrape(t *testing.T, addr string) (code int, release func()) {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	tr := &http.Transport{DialContext: d.DialContext, DisableCompression: true}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return resp.StatusCode, func() {
		cancel()
		resp.Body.Close()
		tr.CloseIdleConnections()
	}
}

// TestMaxRequestsFlag: --web.max-requests (default 40, as node_exporter)
// caps the scrapes in progress; more are answered 503 at once; 0 is no cap.
func TestMaxRequestsFlag(t *testing.T) {
	if got := parseConfig(t).maxRequests; got != 40 {
		t.Fatalf("--web.max-requests defaults to %d, want 40", got)
	}
	b := bigBroker(t)
	tok := tokenFile(t, canaryBearer, 0o600)
	for _, tc := range []struct {
		max        string
		secondCode int
	}{{"1", http.StatusServiceUnavailable}, {"0", http.StatusOK}} {
		t.Run("max="+tc.max, func(t *testing.T) {
			cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tok, "--no-collector.usage",
				"--collector.identity=raw", "--broker.max-frame-bytes=134217728", "--web.max-requests="+tc.max)
			logs := &syncBuffer{}
			e, addr := startExporter(t, cfg, logs)
			defer func() {
				if t.Failed() {
					t.Logf("logs:\n%s", logs)
				}
			}()
			testwait.Eventually(t, "the mirror", func() bool { return len(e.store.Snapshot().Entries) == bigCredentials })
			code, release := heldScrape(t, addr)
			defer release()
			if code != http.StatusOK {
				t.Fatalf("first scrape: %d", code)
			}
			code2, release2 := heldScrape(t, addr)
			release2()
			if code2 != tc.secondCode {
				t.Fatalf("scrape beside a scrape in progress: %d, want %d", code2, tc.secondCode)
			}
			release()
			testwait.Eventually(t, "a scrape once the first one ended", func() bool {
				code, _ := get(t, http.DefaultClient, "http://"+addr+"/metrics")
				return code == http.StatusOK
			})
		})
	}
}

// TestDisableExporterMetrics: --web.disable-exporter-metrics drops the
// exporter's own go_*, process_* and promhttp_* families, as node_exporter's
// flag does, and keeps everything about the broker and the build.
func TestDisableExporterMetrics(t *testing.T) {
	b := seededBroker(t)
	tok := tokenFile(t, canaryBearer, 0o600)
	for _, disabled := range []bool{false, true} {
		args := []string{"--broker.url=" + b.URL, "--broker.token-file=" + tok, "--no-collector.usage"}
		if disabled {
			args = append(args, "--web.disable-exporter-metrics")
		}
		e, addr := startExporter(t, parseConfig(t, args...), &syncBuffer{})
		testwait.Eventually(t, "first snapshot", e.store.Ready)
		_, body := get(t, http.DefaultClient, "http://"+addr+"/metrics")
		for _, prefix := range []string{"go_", "process_", "promhttp_"} {
			if has := strings.Contains(body, "\n# HELP "+prefix); has == disabled {
				t.Errorf("disabled=%v: %s* families present=%v", disabled, prefix, has)
			}
		}
		for _, want := range []string{"\nauthbroker_up 1\n", "\nauthbroker_exporter_build_info{", "\nauthbroker_credentials{"} {
			if !strings.Contains(body, want) {
				t.Errorf("disabled=%v: /metrics lacks %q", disabled, strings.TrimSpace(want))
			}
		}
	}
}
