package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/health"
)

// TestRoutes: the telemetry path is the metrics handler, / the status
// page, /-/healthy always answers and /-/ready follows the store's Ready.
func TestRoutes(t *testing.T) {
	var ready, metricsServed, pageServed atomic.Bool
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { metricsServed.Store(true) })
	source := func(context.Context) health.Input {
		pageServed.Store(true)
		return health.Input{Now: time.Now(), BrokerURL: "http://127.0.0.1:1"}
	}
	cfg := &config{metricsPath: "/metrics"}
	h := cfg.routes(metrics, ready.Load, source, nil)
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
	get("/-/ready", http.StatusServiceUnavailable)
	ready.Store(true)
	get("/-/ready", http.StatusOK)
}
