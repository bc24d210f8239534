package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/authbroker/authbroker_exporter/internal/testwait"
)

// TestDeprecatedUsageTimeout: --collector.usage.timeout is still accepted
// (old command lines keep working) and says once that it does nothing;
// without it nothing is said.
func TestDeprecatedUsageTimeout(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		lines int
	}{
		{[]string{"--collector.usage.timeout=5s"}, 1},
		{nil, 0},
	} {
		cfg := parseConfig(t, tc.args...)
		var logs bytes.Buffer
		logger, err := cfg.logger(&logs)
		if err != nil {
			t.Fatal(err)
		}
		cfg.warnDeprecated(logger)
		if n := strings.Count(logs.String(), "--collector.usage.timeout is deprecated"); n != tc.lines || strings.Count(logs.String(), "\n") != tc.lines {
			t.Errorf("%v: %d deprecation lines, want %d:\n%s", tc.args, n, tc.lines, logs.String())
		}
	}
}

// TestNoCollectorUsage: --no-collector.usage runs no usage refresher: the
// broker is never asked for /v1/usage, not after the first snapshot (when
// the refresher would fetch) nor by a scrape or the status page.
func TestNoCollectorUsage(t *testing.T) {
	b := seededBroker(t)
	cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600), "--no-collector.usage")
	e, addr := startExporter(t, cfg, &syncBuffer{})
	testwait.Eventually(t, "ready", e.store.Ready)
	for _, path := range []string{"/metrics", "/", "/metrics"} {
		if code, body := get(t, http.DefaultClient, "http://"+addr+path); code != http.StatusOK || strings.Contains(body, "authbroker_usage_limit") {
			t.Fatalf("%s: %d, usage series: %v", path, code, strings.Contains(body, "authbroker_usage_limit"))
		}
	}
	if n := b.Requests("/v1/usage"); n != 0 || e.store.Usage() != nil {
		t.Fatalf("%d /v1/usage requests with usage off", n)
	}
}
