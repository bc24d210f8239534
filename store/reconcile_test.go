package store

import (
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// TestReconcileAfterSilentBump: a bump that sends no frame (a failed
// refresh attempt, docs/broker-protocol.md §13.4) leaves the stream a
// generation behind; once the next sweep the mirror knows of has passed,
// one conditional GET brings the mirror level with the broker. A later
// sweep with nothing new is answered 304 and moves the next-sweep time on.
func TestReconcileAfterSilentBump(t *testing.T) {
	h := newHarness(t, setup{client: broker.ClientOptions{StreamIdleTimeout: time.Hour}})
	// An API key only: its frame never changes with the clock, so the
	// bump's pass is silent whenever the fake broker makes it.
	id := h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: true, ReconcileEvery: 5 * time.Second})
	h.waitStatus("connected", func(st SyncStatus) bool { return st.StreamConnected })
	if err := h.b.WaitForStreams(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	before := s.Snapshot()
	h.b.Bump() // nothing the stream compares changed: no frame
	if s.Snapshot().Generation != before.Generation || h.b.Generation() != before.Generation+1 {
		t.Fatalf("mirror %d, broker %d", s.Snapshot().Generation, h.b.Generation())
	}
	reconciles := func(result string) uint64 { return s.Counters().SyncRequests[SyncOutcome{ModeReconcile, result}] }

	// Up to the sweep and its grace: no question yet.
	sweep := before.Refresher.NextSweep
	h.clk.Advance(sweep.Add(reconcileGrace).Sub(h.clk.Now()) - time.Millisecond)
	if n := reconciles(SyncResultOK) + reconciles(SyncResultUnchanged); n != 0 {
		t.Fatalf("%d reconciling GETs before the sweep's grace ran out", n)
	}
	h.clk.Advance(time.Millisecond)
	h.waitCounters("a reconciling GET", func(c Counters) bool { return c.SyncRequests[SyncOutcome{ModeReconcile, SyncResultOK}] == 1 })
	if v := s.Snapshot(); v.Generation != h.b.Generation() || s.entry(id) == nil {
		t.Fatalf("mirror at %d, broker at %d", v.Generation, h.b.Generation())
	}
	next := s.Snapshot().Refresher.NextSweep
	if !next.After(sweep) {
		t.Fatalf("next sweep %v not after %v", next, sweep)
	}

	// The following sweep changes nothing: 304, and the next-sweep time
	// moves on by the interval instead of staying in the past.
	h.clk.Advance(next.Add(reconcileGrace).Sub(h.clk.Now()))
	h.waitCounters("a 304", func(c Counters) bool { return c.SyncRequests[SyncOutcome{ModeReconcile, SyncResultUnchanged}] == 1 })
	if got := s.Snapshot().Refresher.NextSweep; !got.After(h.clk.Now()) || got.Sub(next) != time.Minute {
		t.Fatalf("next sweep %v after a 304 at %v (was %v)", got, h.clk.Now(), next)
	}
	if st := s.Status(); !st.StreamConnected || st.LastError != "" {
		t.Fatalf("%+v", st)
	}
}

// TestReconcileOffInPollMode: long-poll already reads whole snapshots, so
// no reconciling GET is ever made there.
func TestReconcileOffInPollMode(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
	s := h.start(Options{Stream: false, ReconcileEvery: 5 * time.Second})
	h.waitStatus("live", func(st SyncStatus) bool { return st.Live })
	h.clk.Advance(3 * time.Minute)
	h.b.Bump()
	h.waitView("long-poll follows", func(v View) bool { return v.Generation == h.b.Generation() })
	for k := range s.Counters().SyncRequests {
		if k.Mode == ModeReconcile {
			t.Fatalf("reconcile in poll mode: %v", s.Counters().SyncRequests)
		}
	}
}
