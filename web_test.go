package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// TestRoutes: the telemetry path is the metrics handler, / the status
// page, and both probes always answer: /-/ready says the exporter serves,
// not what the broker's state is (TestReadyWhileBrokerDown).
func TestRoutes(t *testing.T) {
	var metricsServed, pageServed atomic.Bool
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { metricsServed.Store(true) })
	source := func(context.Context) health.Input {
		pageServed.Store(true)
		return health.Input{Now: time.Now(), BrokerURL: "http://127.0.0.1:1"}
	}
	cfg := &config{metricsPath: "/metrics"}
	h := cfg.routes(metrics, source, nil)
	get := func(path string, want int) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Fatalf("%s: %d %s, want %d", path, rec.Code, rec.Body, want)
		}
	}
	get("/metrics", http.StatusOK)
	if !metricsServed.Load() || pageServed.Load() {
		t.Fatal("/metrics not served by the metrics handler")
	}
	get("/", http.StatusOK)
	if !pageServed.Load() {
		t.Fatal("/ is not the status page")
	}
	get("/-/healthy", http.StatusOK)
	get("/-/ready", http.StatusOK)
}

// TestStalledUsageHoldsNoRequest: with the usage fetch held at the broker,
// /metrics, the status page and the health API all answer: they read the
// store's last answer (none yet) and never wait for the fetch. Nothing is
// timed: a handler that waited would not return while the fetch is held.
func TestStalledUsageHoldsNoRequest(t *testing.T) {
	b := seededBroker(t)
	b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	cfg := parseConfig(t, "--broker.url="+b.URL, "--broker.token-file="+tokenFile(t, canaryBearer, 0o600))
	e, addr := startExporter(t, cfg, &syncBuffer{})
	testwait.Eventually(t, "the usage fetch held at the broker", func() bool { return b.Requests("/v1/usage") == 1 })
	for _, path := range []string{"/metrics", "/", health.APIPath} {
		var code atomic.Int64
		go func() {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				code.Store(-1)
				return
			}
			resp.Body.Close()
			code.Store(int64(resp.StatusCode))
		}()
		testwait.Eventually(t, path+" answered during the stall", func() bool { return code.Load() != 0 })
		if c := code.Load(); c != http.StatusOK && c != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d", path, c)
		}
	}
	if n := b.Requests("/v1/usage"); n != 1 || e.store.Usage() != nil {
		t.Fatalf("%d /v1/usage requests during the stall, want the refresher's one", n)
	}
	b.ClearFaults()
	testwait.Eventually(t, "usage after the stall", func() bool { return e.store.Usage().HasData() })
}
