//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestReadyIsTheExporters: /-/ready answers 200 once the exporter serves,
// whatever the real broker's state: down before the exporter starts, up,
// killed. The broker's state is in authbroker_up and the health API.
func TestReadyIsTheExporters(t *testing.T) {
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-30*time.Second))
	t.Cleanup(cancel)
	root := repoRoot(t)
	work := t.TempDir()
	hc := newHTTPClient()

	tl := installDeps(ctx, t, root)
	bin := filepath.Join(work, "authbroker_exporter")
	if _, err := runScript(ctx, os.Environ(), root, filepath.Join(root, "scripts/build.sh"), bin); err != nil {
		t.Fatalf("scripts/build.sh: %v", err)
	}
	b := startBroker(ctx, t, root, filepath.Join(work, "broker"), tl.omp)
	canaries.add("broker bearer token", b.token(t))
	if err := b.kill(ctx); err != nil {
		t.Fatal(err)
	}

	home := filepath.Join(work, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	exp := startProc(t, "exporter", filepath.Join(work, "exporter.log"), cleanEnv(home),
		bin, "--broker.url="+b.url, "--broker.token-file="+b.tokenFile, "--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--monitor.probe-interval=1s", "--no-collector.usage")
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, "exporter", exp.log, 30)
		}
	})

	// brokerState waits until authbroker_up is want, with /-/ready 200 at
	// every look, and checks what the health API says.
	brokerState := func(what string, up float64, healthCode int) {
		t.Helper()
		err := poll(ctx, 90*time.Second, func() error {
			if err := exp.alive(); err != nil {
				return backoffStop{err}
			}
			if err := waitHTTP200(ctx, hc, url+"/-/ready", time.Second, nil); err != nil {
				return backoffStop{fmt.Errorf("/-/ready: %w", err)}
			}
			m, _, err := scrape(ctx, hc, url+"/metrics")
			if err != nil {
				return err
			}
			if err := oneValue(m, "authbroker_up", up); err != nil {
				return err
			}
			resp, err := hc.Get(url + "/api/v1/health")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var h struct {
				Status string `json:"status"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
				return err
			}
			if resp.StatusCode != healthCode {
				return fmt.Errorf("/api/v1/health: %d (status %q), want %d", resp.StatusCode, h.Status, healthCode)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Up before the broker ever answered.
	if err := waitHTTP200(ctx, hc, url+"/-/ready", 60*time.Second, exp.alive); err != nil {
		t.Fatalf("exporter not ready while the broker was never up: %v", err)
	}
	brokerState("broker never up", 0, http.StatusServiceUnavailable)

	if err := b.start(ctx, "restart"); err != nil {
		t.Fatal(err)
	}
	brokerState("broker up", 1, http.StatusOK)

	if err := b.kill(ctx); err != nil {
		t.Fatal(err)
	}
	brokerState("broker killed", 0, http.StatusServiceUnavailable)
}
