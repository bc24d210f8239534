package store

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

func usageReports(t *testing.T) []json.RawMessage {
	t.Helper()
	return []json.RawMessage{
		json.RawMessage(`{"provider":"anthropic","fetchedAt":1795751800000,"metadata":{"accountId":"acct-A","email":"a@example.com"},
		 "limits":[{"id":"anthropic:5h","label":"Claude 5 Hour","scope":{"provider":"anthropic","windowId":"5h","shared":true},
		 "window":{"id":"5h","label":"5 Hour","durationMs":18000000,"resetsAt":1795760000000},
		 "amount":{"used":42,"limit":100,"unit":"percent"},"status":"ok"}]}`),
		json.RawMessage(`{"provider":"anthropic","fetchedAt":1795751800000,"metadata":{"email":"b@example.com"},"limits":[]}`),
	}
}

// startUsage starts a store behind a recording proxy.
func startUsage(t *testing.T) *harness {
	h := newHarness(t, setup{proxy: true})
	h.b.SetUsage(usageReports(t))
	h.start(Options{Stream: true})
	h.waitView("ready", func(v View) bool { return v.Ready })
	return h
}

// waitUsageCall waits until the store's /v1/usage request reached the
// broker's front door.
func (h *harness) waitUsageCall() {
	h.t.Helper()
	h.sig.waitFor(h.t, "upstream usage call", func() bool { return len(h.proxy.requests("/v1/usage")) == 1 })
}

// TestUsageSingleFlight: 50 concurrent callers, one upstream call, one
// shared answer.
func TestUsageSingleFlight(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	var wg sync.WaitGroup
	results := make([][]UsageReport, 50)
	errs := make([]error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = h.s.UsageReports(context.Background())
		}()
	}
	h.waitUsageCall()
	h.b.ClearFaults()
	wg.Wait()
	for i := range 50 {
		if errs[i] != nil || len(results[i]) != 2 || &results[i][0] != &results[0][0] {
			t.Fatalf("caller %d: %v (%d reports)", i, errs[i], len(results[i]))
		}
	}
	if n := h.b.Requests("/v1/usage"); n != 1 {
		t.Fatalf("%d upstream calls", n)
	}
	if c := h.s.Counters(); c.UsageFetches != 1 || len(c.UsageFetchErrors) != 0 {
		t.Fatalf("%+v", c)
	}
}

func TestUsageTTL(t *testing.T) {
	h := startUsage(t)
	ctx := context.Background()
	if r, err := h.s.UsageReports(ctx); err != nil || len(r) != 2 {
		t.Fatal(r, err)
	}
	h.clk.Advance(15*time.Second - time.Millisecond)
	if _, err := h.s.UsageReports(ctx); err != nil || h.b.Requests("/v1/usage") != 1 {
		t.Fatalf("refetched within the TTL: %v", err)
	}
	h.clk.Advance(time.Millisecond)
	if _, err := h.s.UsageReports(ctx); err != nil || h.b.Requests("/v1/usage") != 2 {
		t.Fatalf("not refetched after the TTL: %v", err)
	}
}

// TestUsageFailureCachedAsNoData: a failed fetch answers "no data" (nil,
// nil) to everyone for the TTL, is counted by reason and logged once.
func TestUsageFailureCachedAsNoData(t *testing.T) {
	h := startUsage(t)
	ctx := context.Background()
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "usage aggregate failed", Times: 2})
	for range 3 {
		r, err := h.s.UsageReports(ctx)
		if r != nil || err != nil {
			t.Fatalf("want no data, got %v %v", r, err)
		}
	}
	if n := h.b.Requests("/v1/usage"); n != 1 {
		t.Fatalf("failure not cached: %d calls", n)
	}
	h.clk.Advance(15 * time.Second)
	if r, _ := h.s.UsageReports(ctx); r != nil {
		t.Fatal("second failure returned data")
	}
	h.clk.Advance(15 * time.Second)
	if r, err := h.s.UsageReports(ctx); err != nil || len(r) != 2 {
		t.Fatalf("no recovery: %v %v", r, err)
	}
	c := h.s.Counters()
	if c.UsageFetches != 3 || c.UsageFetchErrors[ReasonUpstream] != 2 {
		t.Fatalf("%+v", c)
	}
	if countMsg(h.log, "usage fetch failed") != 1 || countMsg(h.log, "usage fetch recovered") != 1 {
		t.Fatalf("log: %v", h.log.messages())
	}
}

// TestUsageFailureForgottenOnRecovery: a fetch that failed while the
// broker was away does not hide usage for the rest of its TTL once the
// mirror has recovered; good cached reports are not refetched by it.
func TestUsageFailureForgottenOnRecovery(t *testing.T) {
	h := startUsage(t)
	ctx := context.Background()
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "broker going away", Times: 1})
	if r, err := h.s.UsageReports(ctx); r != nil || err != nil {
		t.Fatalf("want no data, got %v %v", r, err)
	}
	h.b.CutStreams()
	h.waitStatus("disconnected", func(st SyncStatus) bool { return !st.StreamConnected && st.LastError != "" })
	if r, _ := h.s.UsageReports(ctx); r != nil || h.b.Requests("/v1/usage") != 1 {
		t.Fatal("failure not cached while the mirror is down")
	}
	h.sleepAndAdvance(500 * time.Millisecond)
	h.sig.waitFor(t, "recovered", func() bool { return countMsg(h.log, "mirror recovered") == 1 })
	if r, err := h.s.UsageReports(ctx); err != nil || len(r) != 2 {
		t.Fatalf("usage not refetched after recovery: %v %v", r, err)
	}
	if n := h.b.Requests("/v1/usage"); n != 2 {
		t.Fatalf("%d upstream calls, want 2", n)
	}

	h.b.CutStreams()
	h.waitStatus("disconnected again", func(st SyncStatus) bool { return !st.StreamConnected && st.LastError != "" })
	h.sleepAndAdvance(500 * time.Millisecond)
	h.sig.waitFor(t, "recovered again", func() bool { return countMsg(h.log, "mirror recovered") == 2 })
	if r, err := h.s.UsageReports(ctx); err != nil || len(r) != 2 || h.b.Requests("/v1/usage") != 2 {
		t.Fatalf("good reports refetched on recovery: %v %v (%d calls)", r, err, h.b.Requests("/v1/usage"))
	}
}

// TestUsageInvalidatedByBlockChange: a credential's blocks changing drops
// the cached usage answer (a new block means a limit was hit); a pass that
// re-sends the same blocks does not.
func TestUsageInvalidatedByBlockChange(t *testing.T) {
	for _, stream := range []bool{true, false} {
		t.Run(map[bool]string{true: "stream", false: "poll"}[stream], func(t *testing.T) { testUsageBlockChange(t, stream) })
	}
}

func testUsageBlockChange(t *testing.T, stream bool) {
	h := newHarness(t, setup{})
	h.b.SetUsage(usageReports(t))
	id := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@example.com"})
	h.start(Options{Stream: stream})
	h.waitView("ready", func(v View) bool { return v.Ready })
	ctx := context.Background()
	calls := func() int { return h.b.Requests("/v1/usage") }
	if _, err := h.s.UsageReports(ctx); err != nil || calls() != 1 {
		t.Fatalf("first fetch: %v, %d calls", err, calls())
	}

	until := h.clk.Now().Add(time.Hour)
	h.b.SetBlocks(id, []brokertest.Block{{ProviderKey: "anthropic:oauth", Scope: "tier:x", BlockedUntil: until}})
	h.waitView("block mirrored", func(View) bool { e := h.s.entry(id); return e != nil && len(e.Blocks) == 1 })
	if r, err := h.s.UsageReports(ctx); err != nil || len(r) != 2 || calls() != 2 {
		t.Fatalf("after a new block: %v, %d calls, want a refetch", err, calls())
	}

	before := h.s.entry(id)
	h.clk.Advance(time.Second) // rotatesInMs moves, so the pass re-sends the entry, blocks unchanged
	h.b.Bump()
	h.waitView("pass applied", func(View) bool { return h.s.entry(id) != before })
	if _, err := h.s.UsageReports(ctx); err != nil || calls() != 2 {
		t.Fatalf("a pass with unchanged blocks refetched usage: %v, %d calls", err, calls())
	}

	h.b.SetBlocks(id, nil)
	h.waitView("block lifted", func(View) bool { e := h.s.entry(id); return e != nil && len(e.Blocks) == 0 })
	if _, err := h.s.UsageReports(ctx); err != nil || calls() != 3 {
		t.Fatalf("after a lifted block: %v, %d calls, want a refetch", err, calls())
	}
}

func TestUsageFetchErrorReasons(t *testing.T) {
	cases := []struct {
		name   string
		fault  brokertest.Fault
		usage  []json.RawMessage
		reason string
	}{
		{"unauthorized", brokertest.Fault{Path: "/v1/usage", Status: 401, Message: "unauthorized"}, nil, ReasonUnauthorized},
		{"invalid response", brokertest.Fault{}, []json.RawMessage{json.RawMessage(`{"fetchedAt":1}`)}, ReasonInvalidResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startUsage(t)
			if tc.fault.Path != "" {
				h.b.AddFault(tc.fault)
			}
			if tc.usage != nil {
				h.b.SetUsage(tc.usage)
			}
			if r, err := h.s.UsageReports(context.Background()); r != nil || err != nil {
				t.Fatal(r, err)
			}
			if c := h.s.Counters(); c.UsageFetchErrors[tc.reason] != 1 {
				t.Fatalf("%+v", c.UsageFetchErrors)
			}
		})
	}
}

// TestUsageCallerCancel: one caller giving up neither cancels the shared
// fetch nor disturbs the other callers.
func TestUsageCallerCancel(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA, doneB := make(chan error, 1), make(chan []UsageReport, 1)
	go func() {
		_, err := h.s.UsageReports(ctxA)
		doneA <- err
	}()
	h.waitUsageCall()
	go func() {
		r, _ := h.s.UsageReports(context.Background())
		doneB <- r
	}()
	cancelA()
	if err := <-doneA; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller A: %v", err)
	}
	select {
	case r := <-doneB:
		t.Fatalf("caller B returned before the fetch finished: %v", r)
	default:
	}
	h.b.ClearFaults()
	if r := <-doneB; len(r) != 2 {
		t.Fatalf("caller B: %v", r)
	}
	if n := h.b.Requests("/v1/usage"); n != 1 {
		t.Fatalf("%d upstream calls", n)
	}
	// A caller whose context is already done does not start a fetch.
	h.clk.Advance(time.Minute)
	if _, err := h.s.UsageReports(ctxA); !errors.Is(err, context.Canceled) || h.b.Requests("/v1/usage") != 1 {
		t.Fatal(err)
	}
}

// TestUsageCloseCancelsSharedFetch: the store owns the fetch; Close ends it
// and the waiting callers get ErrClosed (goleak proves nothing is left).
func TestUsageCloseCancelsSharedFetch(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	done := make(chan error, 1)
	go func() {
		_, err := h.s.UsageReports(context.Background())
		done <- err
	}()
	h.waitUsageCall()
	h.s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if _, err := h.s.UsageReports(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestUsageReportForCredential(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.SetUsage(usageReports(t))
	a := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "x", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "A@Example.com"})
	b := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "y", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "b@example.com"})
	c := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "z", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "c@example.com"})
	k := h.b.AddAPIKey("anthropic", "key")
	h.start(Options{Stream: true})
	h.waitView("ready", func(v View) bool { return len(v.Entries) == 4 })
	ctx := context.Background()
	ra, err := h.s.UsageReport(ctx, a)
	if err != nil || ra == nil || ra.Metadata.AccountID != "acct-A" {
		t.Fatalf("a: %+v %v", ra, err)
	}
	if f, ok := ra.Limits[0].Amount.EffectiveUsedFraction(); !ok || f != 0.42 {
		t.Fatalf("fraction %v", f)
	}
	if rb, _ := h.s.UsageReport(ctx, b); rb == nil || rb.Metadata.Email != "b@example.com" {
		t.Fatalf("b: %+v", rb)
	}
	for _, id := range []int64{c, k, 999} {
		if r, err := h.s.UsageReport(ctx, id); r != nil || err != nil {
			t.Fatalf("id %d matched %+v %v", id, r, err)
		}
	}
	if n := h.b.Requests("/v1/usage"); n != 1 {
		t.Fatalf("%d upstream calls", n)
	}
}
