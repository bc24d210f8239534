package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

var providers = []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}

// promAccept is what a Prometheus 3 scrape sends (default scrape
// protocols); the exporter answers text 0.0.4 whatever it asks for.
const promAccept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.7,application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.3"

// fixture is a fake broker holding n OAuth credentials spread over four
// providers, each with its own usage report of four limits (the shape the
// collector benchmarks use).
type fixture struct {
	broker *brokertest.Broker
	ids    []int64
	oauth  []brokertest.OAuth
}

func newFixture(n int, usage bool) *fixture {
	b := brokertest.New(brokertest.Options{Token: "perf-harness-token"})
	f := &fixture{broker: b}
	now := time.Now()
	reports := make([]json.RawMessage, 0, n)
	for i := range n {
		p := providers[i%len(providers)]
		c := brokertest.OAuth{Access: fmt.Sprintf("access-%d", i), Refresh: fmt.Sprintf("refresh-%d", i),
			Expires: now.Add(time.Hour).Truncate(time.Second), Email: fmt.Sprintf("user%d@example.com", i), AccountID: fmt.Sprintf("acct-%d", i)}
		f.ids = append(f.ids, b.AddOAuth(p, c))
		f.oauth = append(f.oauth, c)
		if !usage {
			continue
		}
		var limits []map[string]any
		for j, w := range []string{"5h", "7d", "7d-opus", "30d"} {
			used := (i + j) % 100
			limits = append(limits, map[string]any{
				"id": p + ":" + w, "label": w, "scope": map[string]any{"provider": p, "windowId": w},
				"window": map[string]any{"id": w, "label": w, "durationMs": 18000000, "resetsAt": now.Add(3 * time.Hour).UnixMilli()},
				"amount": map[string]any{"used": used, "limit": 100, "remaining": 100 - used, "usedFraction": float64(used) / 100, "unit": "percent"},
				"status": "ok",
			})
		}
		raw, _ := json.Marshal(map[string]any{"provider": p, "fetchedAt": now.UnixMilli(),
			"metadata": map[string]any{"email": c.Email, "accountId": c.AccountID}, "limits": limits})
		reports = append(reports, raw)
	}
	if usage {
		b.SetUsage(reports)
	}
	return f
}

// exporter is the real binary running against a fixture.
type exporter struct {
	cmd    *exec.Cmd
	url    string
	client *http.Client
	logs   *bytes.Buffer
	done   chan struct{}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

func startExporter(bin, dir string, f *fixture, extra ...string) (*exporter, error) {
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(f.broker.Token()+"\n"), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"--broker.url=" + f.broker.URL, "--broker.token-file=" + tok,
		"--web.listen-address=127.0.0.1:" + port, "--log.level=warn"}, extra...)
	cmd := exec.Command(bin, args...)
	env := []string{"HOME=" + dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OMP_") && !strings.HasPrefix(kv, "AUTHBROKER_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	e := &exporter{cmd: cmd, url: "http://127.0.0.1:" + port, logs: &bytes.Buffer{}, done: make(chan struct{}),
		client: &http.Client{Transport: &http.Transport{DisableCompression: true}}}
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	// PERF_EXPORTER_LOG keeps the exporters' output, e.g. with
	// GODEBUG=gctrace=1 to see where the heap goes.
	if path := os.Getenv("PERF_EXPORTER_LOG"); path != "" {
		lf, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		w := io.MultiWriter(e.logs, lf)
		cmd.Stdout, cmd.Stderr = w, w
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(e.done) }()
	if err := harness.WaitReady(context.Background(), e.client, e.url, e.done, 2*time.Minute); err != nil {
		if !errors.Is(err, harness.ErrExited) {
			e.stop()
		}
		return nil, fmt.Errorf("%w: %s", err, e.logs.String())
	}
	return e, nil
}

func (e *exporter) stop() {
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-e.done
	}
}

// scrape is one /metrics request as Prometheus 3 makes it (gzip); it
// returns the time until the last byte arrived, the compressed size, and
// the decoded text when want is set.
func (e *exporter) scrape(want bool) (time.Duration, int, []byte, error) {
	return e.get(want, true)
}

// poll is a plain-text /metrics request (no compression on either side),
// for watching a value change.
func (e *exporter) poll() (time.Duration, []byte, error) {
	d, _, text, err := e.get(true, false)
	return d, text, err
}

func (e *exporter) get(want, gz bool) (time.Duration, int, []byte, error) {
	d, n, body, enc, err := e.request("/metrics", promAccept, gz)
	if err != nil || !want {
		return d, n, nil, err
	}
	var text []byte = body
	if enc == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return 0, 0, nil, err
		}
		if text, err = io.ReadAll(zr); err != nil {
			return 0, 0, nil, err
		}
	}
	return d, len(body), text, nil
}

// request is one GET of path: the time until the last byte arrived, the
// body as it came over the wire and its Content-Encoding.
func (e *exporter) request(path, accept string, gz bool) (time.Duration, int, []byte, string, error) {
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	req.Header.Set("Accept", accept)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	start := time.Now()
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, 0, nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, 0, nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, nil, "", fmt.Errorf("%s: %s", path, resp.Status)
	}
	return d, len(body), body, resp.Header.Get("Content-Encoding"), nil
}

// sampleValue finds the value of the first series line starting with
// prefix (metric name plus the start of its label set).
var sampleValue = harness.SampleValue

// procStat is the CPU time (user+system) and memory of a process from
// /proc.
type procStat struct {
	cpu      time.Duration
	rss, hwm int64 // bytes
}

func readProc(pid int) (procStat, error) {
	c, err := harness.ReadCPU(pid)
	if err != nil {
		return procStat{}, err
	}
	m, err := harness.ReadMem(pid)
	return procStat{cpu: c.Stat, rss: m.RSS, hwm: m.HWM}, err
}

// waitUsage scrapes until usage series show (the first scrape starts the
// shared usage fetch and waits at most --collector.usage.timeout).
func (e *exporter) waitUsage(ctx context.Context) error {
	for ctx.Err() == nil {
		_, _, text, err := e.scrape(true)
		if err != nil {
			return err
		}
		if bytes.Contains(text, []byte("authbroker_usage_limit_used_fraction{")) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ctx.Err()
}

// brokerDelivery is the fake broker alone: the time from a change to the
// changed credential's entry frame on the wire, read by a bare SSE client
// that drains the stream continuously. The fake, like the real broker,
// rebuilds and fingerprints every entry per change and re-sends every
// OAuth entry (rotatesInMs moved).
func brokerDelivery(f *fixture, samples int) ([]time.Duration, error) {
	req, _ := http.NewRequest(http.MethodGet, f.broker.URL+"/v1/snapshot/stream", nil)
	req.Header.Set("Authorization", "Bearer "+f.broker.Token())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var target atomic.Value // []byte: the data prefix of the awaited frame
	target.Store([]byte(nil))
	seen := make(chan time.Time, 1)
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(resp.Body, 1<<20)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				readErr <- err
				return
			}
			if want := target.Load().([]byte); want != nil && bytes.HasPrefix(line, []byte("data: ")) && bytes.Contains(line, want) {
				target.Store([]byte(nil))
				seen <- time.Now()
			}
		}
	}()
	time.Sleep(time.Second) // let the snapshot frame go by
	var out []time.Duration
	for k := range samples {
		i := k * 7919 % len(f.ids)
		c := f.oauth[i]
		c.Access = fmt.Sprintf("calibrate-%d-%d", i, k)
		f.oauth[i] = c
		target.Store([]byte(fmt.Sprintf(`"entry":{"id":%d,`, f.ids[i])))
		t0 := time.Now()
		f.broker.UpdateOAuth(f.ids[i], c)
		select {
		case at := <-seen:
			out = append(out, at.Sub(t0))
		case err := <-readErr:
			return nil, err
		case <-time.After(30 * time.Second):
			return nil, errors.New("calibration: frame never came")
		}
		time.Sleep(200 * time.Millisecond) // let the pass finish
	}
	return out, nil
}

// loadavg is the 1-minute load average: the machine may be shared.
func loadavg() string { return strings.Fields(harness.LoadAvg())[0] }
