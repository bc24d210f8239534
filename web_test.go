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

// readCounter is a mirror that counts the reads in progress.
type readCounter struct{ reads, started atomic.Int64 }

func (r *readCounter) Reading() func() {
	r.reads.Add(1)
	r.started.Add(1)
	return func() { r.reads.Add(-1) }
}

// TestRoutesMarkReads: /metrics and the status page are reads of the
// store while they are served (a usage refresh due meanwhile waits for
// them); the probes are not.
func TestRoutesMarkReads(t *testing.T) {
	rc := &readCounter{}
	inMetrics := int64(-1)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { inMetrics = rc.reads.Load() })
	var inPage atomic.Int64
	inPage.Store(-1)
	source := func(context.Context) health.Input {
		inPage.Store(rc.reads.Load())
		return health.Input{Now: time.Now(), BrokerURL: "http://127.0.0.1:1"}
	}
	cfg := &config{metricsPath: "/metrics"}
	h := cfg.routes(metrics, rc, source, nil)
	get := func(path string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
	get("/metrics")
	if inMetrics != 1 || rc.reads.Load() != 0 {
		t.Fatalf("/metrics served with %d reads in progress (want 1), %d left after", inMetrics, rc.reads.Load())
	}
	get("/")
	if inPage.Load() != 1 || rc.reads.Load() != 0 {
		t.Fatalf("/ served with %d reads in progress (want 1), %d left after", inPage.Load(), rc.reads.Load())
	}
	get("/-/healthy")
	get("/-/ready")
	if n := rc.started.Load(); n != 2 {
		t.Fatalf("%d reads marked, want 2 (the probes are not reads)", n)
	}
}
