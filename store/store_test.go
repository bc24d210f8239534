package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

func countMsg(l *logRecorder, substr string) int {
	n := 0
	for _, m := range l.Messages() {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

func TestStoreStreamMirror(t *testing.T) {
	h := newHarness(t, setup{})
	now := h.clk.Now()
	a := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: now.Add(2 * time.Hour),
		Email: "a@example.com", AccountID: "acct-A", Extra: map[string]any{"clientSecret": canaryExtra}})
	k := h.b.AddAPIKey("openai", canaryKey)
	s := h.start(Options{Stream: true})

	if s.Ready() {
		// Not necessarily false (the stream may be fast), but never before
		// a snapshot: wait below proves it.
	}
	v := h.waitView("first snapshot", func(v View) bool { return v.Ready })
	if v.Generation != h.b.Generation() || len(v.Entries) != 2 {
		t.Fatalf("view gen %d (broker %d), %d entries", v.Generation, h.b.Generation(), len(v.Entries))
	}
	ea, ek := s.entry(a), s.entry(k)
	if ea.Provider != "anthropic" || ea.Credential.Email != "a@example.com" || !ea.Credential.Expires.Equal(now.Add(2*time.Hour)) ||
		!ea.HasRotatesIn || ea.IdentityKey == "" || ek.Credential.Type != broker.TypeAPIKey {
		t.Fatalf("entries %+v %+v", ea, ek)
	}
	if !v.Refresher.Enabled || v.Refresher.Interval != time.Minute {
		t.Fatalf("refresher %+v", v.Refresher)
	}
	st := h.waitStatus("connected", func(st SyncStatus) bool { return st.StreamConnected })
	if st.Mode != ModeStream || !st.Live || st.StreamUnsupported || st.LastError != "" || !st.HasClockSkew || st.ClockSkew != 0 {
		t.Fatalf("status %+v", st)
	}

	// Deltas: add, rotate, remove.
	b := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "acc-b", Refresh: "r", Expires: now.Add(time.Hour), Email: "b@example.com"})
	h.waitView("added entry", func(v View) bool { return s.entry(b) != nil })
	h.clk.Advance(time.Second)
	rotatedAt := h.clk.Now()
	h.b.UpdateOAuth(a, brokertest.OAuth{Access: canaryAccess + "-2", Refresh: "r", Expires: now.Add(3 * time.Hour),
		Email: "a@example.com", AccountID: "acct-A"})
	h.waitView("rotation", func(View) bool { return s.entry(a).Rotations == 1 })
	if e := s.entry(a); !e.LastRotation.Equal(rotatedAt) || !e.ReceivedAt.Equal(rotatedAt) {
		t.Fatalf("rotation stamped %v, received %v, want %v", e.LastRotation, e.ReceivedAt, rotatedAt)
	}
	h.b.Disable(k, "manual")
	h.waitView("removal", func(View) bool { return s.entry(k) == nil })
	if g := h.waitGeneration(h.b.Generation()).Generation; g != h.b.Generation() {
		t.Fatal(g)
	}

	c := s.Counters()
	if c.StreamEvents[FrameOutcome{broker.FrameSnapshot, FrameApplied}] != 1 || c.StreamEvents[FrameOutcome{broker.FrameEntry, FrameApplied}] < 2 ||
		c.StreamEvents[FrameOutcome{broker.FrameRemoved, FrameApplied}] != 1 || c.SyncRequests[SyncOutcome{"stream", "ok"}] != 1 {
		t.Fatalf("counters %+v", c)
	}
	if countMsg(h.log, "connected") != 1 || len(h.log.Messages()) != 1 {
		t.Fatalf("log lines: %v", h.log.Messages())
	}
	if got := s.List("anthropic"); len(got) != 2 || got[0].ID != a || got[1].ID != b {
		t.Fatalf("List: %v", got)
	}
	if got := s.List(""); len(got) != 2 {
		t.Fatalf("List all: %d", len(got))
	}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		assertNoCanary(t, "view", fmt.Sprintf(verb, s.Snapshot()))
		assertNoCanary(t, "status", fmt.Sprintf(verb, s.Status()))
		assertNoCanary(t, "counters", fmt.Sprintf(verb, s.Counters()))
		assertNoCanary(t, "store", fmt.Sprintf(verb, s))
		assertNoCanary(t, "client", fmt.Sprintf(verb, h.c))
	}
	assertNoCanary(t, "logs", h.log.String())
}

func TestStoreOnSnapshot(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.AddAPIKey("openai", canaryKey)
	views := make(chan View, 4)
	s := h.start(Options{Stream: true, OnSnapshot: func(v View) {
		select {
		case views <- v:
		default: // never block the sync goroutine
		}
	}})
	v := <-views
	if !v.Ready || len(v.Entries) != 1 {
		t.Fatalf("%+v", v)
	}
	if v.Generation != s.Snapshot().Generation {
		t.Fatalf("view of generation %d, mirror %d", v.Generation, s.Snapshot().Generation)
	}
}

// TestStoreStreamRestart: the broker restarts (generation back to 1); the
// reconnected stream's lower snapshot is adopted and counted as a reset,
// with one "degraded" and one "recovered" log line.
func TestStoreStreamRestart(t *testing.T) {
	h := newHarness(t, setup{})
	id := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
	for range 5 {
		h.b.Bump()
	}
	s := h.start(Options{Stream: true})
	h.waitGeneration(h.b.Generation())
	h.b.UpdateOAuth(id, brokertest.OAuth{Access: "a2", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
	h.waitView("rotation", func(View) bool { return s.entry(id).Rotations == 1 })
	before := s.Snapshot().Generation

	h.b.Restart()
	h.waitStatus("disconnected", func(st SyncStatus) bool { return !st.StreamConnected && st.LastError != "" })
	h.sleepAndAdvance(500 * time.Millisecond)
	v := h.waitView("snapshot after restart", func(v View) bool { return v.Generation < before })
	if v.Generation != h.b.Generation() || len(v.Entries) != 1 {
		t.Fatalf("gen %d broker %d", v.Generation, h.b.Generation())
	}
	h.sig.WaitFor(t, "recovered", func() bool { return countMsg(h.log, "recovered") == 1 })
	st := h.s.Status()
	if st.GenerationResets != 1 || st.LastError != "" {
		t.Fatalf("%+v", st)
	}
	if e := s.entry(id); e.Rotations != 1 {
		t.Fatalf("rotation history lost across restart: %+v", e)
	}
	c := s.Counters()
	if c.SyncRequests[SyncOutcome{"stream", "ok"}] != 2 || c.StreamEvents[FrameOutcome{broker.FrameSnapshot, FrameApplied}] != 2 {
		t.Fatalf("%+v", c)
	}
	if n := c.SyncErrors[SyncFailure{"stream", broker.SyncReasonEOF}] + c.SyncErrors[SyncFailure{"stream", broker.SyncReasonNetwork}]; n != 1 {
		t.Fatalf("errors %v", c.SyncErrors)
	}
	if countMsg(h.log, "degraded") != 1 || countMsg(h.log, "recovered") != 1 {
		t.Fatalf("log: %v", h.log.Messages())
	}
}

// TestStoreBackoff: 500 ms doubling to 30 s while the stream fails, one
// log line for all of it, reset after the first frame of a healthy
// connection.
func TestStoreBackoff(t *testing.T) {
	for _, mode := range []string{"stream", "poll"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, setup{})
			path := "/v1/snapshot"
			if mode == "stream" {
				path = "/v1/snapshot/stream"
			}
			h.b.AddFault(brokertest.Fault{Path: path, Status: 503, Message: "unavailable"})
			s := h.start(Options{Stream: mode == "stream"})
			steps := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
				16 * time.Second, 30 * time.Second, 30 * time.Second}
			for i, d := range steps {
				if got := h.clk.WaitSleep(t, 30*time.Second); got != d {
					t.Fatalf("step %d: backoff %v, want %v", i, got, d)
				}
				if i == len(steps)-1 {
					st := s.Status()
					if st.Live || st.LastErrorReason != broker.SyncReason5xx || !strings.Contains(st.LastError, "503") {
						t.Fatalf("%+v", st)
					}
					h.b.ClearFaults()
				}
				h.clk.Advance(d)
			}
			h.sig.WaitFor(t, "recovered", func() bool { return countMsg(h.log, "recovered") == 1 })
			c := s.Counters()
			if c.SyncErrors[SyncFailure{mode, broker.SyncReason5xx}] < uint64(len(steps)) || c.SyncRequests[SyncOutcome{mode, "error"}] < uint64(len(steps)) {
				t.Fatalf("%+v", c)
			}
			if countMsg(h.log, "degraded") != 1 || countMsg(h.log, "recovered") != 1 || countMsg(h.log, "connected") != 0 {
				t.Fatalf("log: %v", h.log.Messages())
			}
			// Healthy again: the next failure starts over at 500 ms.
			if mode == "stream" {
				if err := h.b.WaitForStreams(context.Background(), 1); err != nil {
					t.Fatal(err)
				}
				h.b.CutStreams()
			} else {
				h.b.AddFault(brokertest.Fault{Path: path, Status: 500, Times: 1})
				h.b.Bump()
			}
			h.sleepAndAdvance(500 * time.Millisecond)
		})
	}
}

func TestStoreStream404LatchesPoll(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.SetStreamSupported(false)
	h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: true})
	h.waitView("snapshot by long-poll", func(v View) bool { return v.Ready })
	st := h.waitStatus("poll mode", func(st SyncStatus) bool { return st.Live })
	if st.Mode != ModePoll || !st.StreamUnsupported || st.StreamConnected {
		t.Fatalf("%+v", st)
	}
	// The stream is back, but the latch holds for the store's lifetime.
	h.b.SetStreamSupported(true)
	for range 3 {
		h.b.Bump()
		h.waitGeneration(h.b.Generation())
	}
	if n := h.b.Requests("/v1/snapshot/stream"); n != 1 {
		t.Fatalf("stream retried %d times after 404", n)
	}
	c := s.Counters()
	if c.SyncRequests[SyncOutcome{"stream", "error"}] != 1 || c.SyncErrors[SyncFailure{"stream", broker.SyncReason4xx}] != 1 ||
		c.SyncRequests[SyncOutcome{"poll", "ok"}] < 4 {
		t.Fatalf("%+v", c)
	}
	if countMsg(h.log, "long-poll") != 1 {
		t.Fatalf("log: %v", h.log.Messages())
	}
}

// TestStorePollProtocol: the first GET is unconditional, then long-polls
// carry If-None-Match = local generation and wait=30000.
func TestStorePollProtocol(t *testing.T) {
	h := newHarness(t, setup{proxy: true})
	h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: false})
	v := h.waitView("snapshot", func(v View) bool { return v.Ready })
	h.b.Bump()
	h.waitGeneration(h.b.Generation())
	h.sig.WaitFor(t, "third request", func() bool { return len(h.proxy.requests("/v1/snapshot")) >= 3 })
	reqs := h.proxy.requests("/v1/snapshot")
	if reqs[0].Header.Get("If-None-Match") != "" || reqs[0].Query != "" {
		t.Fatalf("first request %+v", reqs[0])
	}
	if reqs[1].Header.Get("If-None-Match") != fmt.Sprintf(`"%d"`, v.Generation) || reqs[1].Query != "wait=30000" {
		t.Fatalf("second request %+v", reqs[1])
	}
	if reqs[2].Header.Get("If-None-Match") != fmt.Sprintf(`"%d"`, v.Generation+1) {
		t.Fatalf("third request %+v", reqs[2])
	}
	if h.proxy.requests("/v1/snapshot/stream") != nil || s.Status().Mode != ModePoll {
		t.Fatal("--no-broker.stream must never open the stream")
	}
}

// TestStorePollRestartCollision: after a transport error the poller does an
// unconditional GET, so a restarted broker whose generation happens to equal
// the mirror's cannot answer 304 for stale data (docs/broker-protocol.md §11).
func TestStorePollRestartCollision(t *testing.T) {
	h := newHarness(t, setup{proxy: true})
	a := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
	for range 3 {
		h.b.Bump()
	}
	s := h.start(Options{Stream: false})
	old := h.waitGeneration(h.b.Generation()).Generation
	h.sig.WaitFor(t, "long-poll pending", func() bool { return len(h.proxy.requests("/v1/snapshot")) >= 2 })

	// The broker dies: the pending long-poll is cut and the retry finds the
	// port closed.
	h.proxy.down.Store(true)
	h.proxy.CloseClientConnections()
	h.b.Restart()
	h.waitStatus("failure noticed", func(st SyncStatus) bool { return st.LastError != "" })
	// It comes back with other data and, by chance, the same generation.
	h.b.Disable(a, "manual")
	b := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "b", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "b@x"})
	for h.b.Generation() < old {
		h.b.Bump()
	}
	if h.b.Generation() != old {
		t.Fatalf("could not reproduce the collision: %d vs %d", h.b.Generation(), old)
	}
	n0 := len(h.proxy.requests("/v1/snapshot"))
	h.proxy.down.Store(false)
	h.sleepAndAdvance(500 * time.Millisecond)
	h.waitView("post-restart data", func(View) bool { return s.entry(b) != nil && s.entry(a) == nil })
	if r := h.proxy.requests("/v1/snapshot")[n0]; r.Header.Get("If-None-Match") != "" || r.Query != "" {
		t.Fatalf("first request after the failure was conditional: %+v", r)
	}
	st := h.waitStatus("live", func(st SyncStatus) bool { return st.Live })
	if st.GenerationResets != 0 {
		t.Fatalf("same generation is no reset: %+v", st)
	}
}

// TestLiveInPollMode: live while the last long-poll answered within its
// window (max(10 s, wait + 1 s)).
func TestLiveInPollMode(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: false})
	h.waitStatus("live", func(st SyncStatus) bool { return st.Live })
	// The long-poll is parked at the broker (30 s of real time); on the
	// mirror's clock 31 s pass without an answer.
	h.clk.Advance(31 * time.Second)
	if !s.Status().Live {
		t.Fatal("not live at the edge of the window")
	}
	h.clk.Advance(time.Millisecond)
	if s.Status().Live {
		t.Fatal("live after the window")
	}
	h.b.Bump()
	h.waitStatus("live again", func(st SyncStatus) bool { return st.Live })
}
