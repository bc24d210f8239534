package store

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
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

// waitUsageCalls waits until n /v1/usage requests reached the broker's
// front door.
func (h *harness) waitUsageCalls(n int) {
	h.t.Helper()
	h.sig.WaitFor(h.t, "upstream usage call", func() bool { return len(h.proxy.requests("/v1/usage")) >= n })
}

// usage reads the store's usage answer without a deadline.
func (h *harness) usage() *Usage {
	h.t.Helper()
	u, err := h.s.Usage(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return u
}

// waitUsage waits until the store has published an answer newer than old.
func (h *harness) waitUsage(what string, old *Usage) *Usage {
	h.t.Helper()
	var u *Usage
	h.sig.WaitFor(h.t, what, func() bool { u = h.s.usage.Load(); return u != old })
	return u
}

// TestUsageSingleFlight: 50 concurrent callers without an answer wait for
// one upstream call and share its answer.
func TestUsageSingleFlight(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	var wg sync.WaitGroup
	results := make([]*Usage, 50)
	errs := make([]error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = h.s.Usage(context.Background())
		}()
	}
	h.waitUsageCalls(1)
	h.b.ClearFaults()
	wg.Wait()
	for i := range 50 {
		if errs[i] != nil || results[i] != results[0] || len(results[i].Reports) != 2 || results[i].Failing {
			t.Fatalf("caller %d: %v (%+v)", i, errs[i], results[i])
		}
	}
	if n := h.b.Requests("/v1/usage"); n != 1 {
		t.Fatalf("%d upstream calls", n)
	}
	if c := h.s.Counters(); c.UsageFetches != 1 || len(c.UsageFetchErrors) != 0 {
		t.Fatalf("%+v", c)
	}
}

// TestUsageRefreshedInBackground: a good answer is served as it is for
// two thirds of the TTL; after that a reader still gets it at once, while
// one fetch replaces it in the background. No reader waits.
func TestUsageRefreshedInBackground(t *testing.T) {
	h := startUsage(t)
	first := h.usage()
	if !first.HasData() || !first.FetchedAt.Equal(h.clk.Now()) {
		t.Fatalf("%+v", first)
	}
	h.clk.Advance(10*time.Second - time.Millisecond)
	if u := h.usage(); u != first || h.b.Requests("/v1/usage") != 1 {
		t.Fatal("refetched before two thirds of the TTL")
	}
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	h.clk.Advance(time.Millisecond)
	for range 5 {
		if u := h.usage(); u != first {
			t.Fatal("a reader waited for the background fetch")
		}
	}
	h.waitUsageCalls(2)
	h.b.ClearFaults()
	next := h.waitUsage("background answer", first)
	if !next.FetchedAt.Equal(h.clk.Now()) || next.Failing || h.b.Requests("/v1/usage") != 2 {
		t.Fatalf("%+v, %d calls", next, h.b.Requests("/v1/usage"))
	}
}

// readsAtUsage is the store's broker, recording how many reads were in
// progress when each usage fetch began.
type readsAtUsage struct {
	Broker
	s     **Store
	mu    sync.Mutex
	reads []int64
}

func (b *readsAtUsage) Usage(ctx context.Context, most int) (*broker.UsageResponse, error) {
	b.mu.Lock()
	b.reads = append(b.reads, (*b.s).reads.Load())
	b.mu.Unlock()
	return b.Broker.Usage(ctx, most)
}

func (b *readsAtUsage) seen() []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.reads)
}

// TestUsageRefreshWaitsForReads: a refresh that falls due while reads are
// in progress starts when the last of them is done, never beside one; an
// answer past the TTL is refreshed at once, reads or not.
func TestUsageRefreshWaitsForReads(t *testing.T) {
	h := newHarness(t, setup{proxy: true})
	h.b.SetUsage(usageReports(t))
	rec := &readsAtUsage{Broker: h.c, s: &h.s}
	h.start(Options{Stream: true, Broker: rec})
	h.waitView("ready", func(v View) bool { return v.Ready })
	first := h.usage()

	// Due (two thirds of the TTL) during two overlapping reads.
	h.clk.Advance(10 * time.Second)
	doneA, doneB := h.s.Reading(), h.s.Reading()
	for range 3 {
		if u := h.usage(); u != first {
			t.Fatal("a reader waited for the refresh")
		}
	}
	if !h.s.usageWanted.Load() {
		t.Fatal("the refresh began during the reads instead of waiting for them")
	}
	doneA()
	doneB()
	h.waitUsageCalls(2)
	second := h.waitUsage("refresh after the reads", first)
	if got := rec.seen(); !slices.Equal(got, []int64{0, 0}) {
		t.Fatalf("reads in progress when each fetch began: %v, want none", got)
	}

	// Past the TTL, reads in progress do not hold the refresh back.
	h.clk.Advance(15 * time.Second)
	done := h.s.Reading()
	if u := h.usage(); u != second {
		t.Fatal("a reader waited for the refresh")
	}
	h.waitUsageCalls(3)
	h.waitUsage("refresh past the TTL", second)
	done()
	if got := rec.seen(); !slices.Equal(got, []int64{0, 0, 1}) {
		t.Fatalf("reads in progress when each fetch began: %v, want 0, 0, 1", got)
	}
	if n := h.b.Requests("/v1/usage"); n != 3 {
		t.Fatalf("%d upstream calls, want 3", n)
	}
}

// TestUsageCollectsAfterLargeAnswer: a usage answer of collectAfter bytes
// or more is followed by one garbage collection on the fetching
// goroutine, after the answer is published; a smaller one is not.
func TestUsageCollectsAfterLargeAnswer(t *testing.T) {
	h := startUsage(t)
	var collected []*Usage
	h.s.collect = func() { collected = append(collected, h.s.usage.Load()) }
	h.s.collectAfter = 1 // every answer is "large"
	first := h.usage()
	if len(collected) != 1 || collected[0] != first {
		t.Fatalf("%d collections after a large answer (want 1, after it is published)", len(collected))
	}
	h.s.collectAfter = 1 << 30
	if _, err := h.s.fetchUsage(); err != nil { // the fetch, run here to its end
		t.Fatal(err)
	}
	if len(collected) != 1 {
		t.Fatalf("%d collections after a small answer", len(collected))
	}
}

// TestUsageFailureKeepsLastGood: a failed fetch keeps the last good
// reports (marked failing), is counted by reason, logged once, and retried
// once the TTL has passed.
func TestUsageFailureKeepsLastGood(t *testing.T) {
	h := startUsage(t)
	good := h.usage()
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "usage aggregate failed", Times: 2})
	h.clk.Advance(10 * time.Second)
	h.usage()
	failed := h.waitUsage("failed fetch", good)
	if !failed.Failing || failed.Reason != broker.ReasonUpstream || len(failed.Reports) != 2 || !failed.FetchedAt.Equal(good.FetchedAt) {
		t.Fatalf("%+v", failed)
	}
	assertNoCanary(t, "usage error", failed.Error)
	h.clk.Advance(15*time.Second - time.Millisecond)
	if u := h.usage(); u != failed || h.b.Requests("/v1/usage") != 2 {
		t.Fatal("a failure was retried within the TTL")
	}
	h.clk.Advance(time.Millisecond)
	h.usage()
	again := h.waitUsage("second failure", failed)
	h.clk.Advance(15 * time.Second)
	h.usage()
	ok := h.waitUsage("recovery", again)
	if ok.Failing || !ok.FetchedAt.Equal(h.clk.Now()) {
		t.Fatalf("%+v", ok)
	}
	c := h.s.Counters()
	if c.UsageFetches != 4 || c.UsageFetchErrors[broker.ReasonUpstream] != 2 {
		t.Fatalf("%+v", c)
	}
	if countMsg(h.log, "usage fetch failed") != 1 || countMsg(h.log, "usage fetch recovered") != 1 {
		t.Fatalf("log: %v", h.log.Messages())
	}
}

// holdingLogger holds the first line with msg until release is closed.
type holdingLogger struct {
	*logRecorder
	msg     string
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (l *holdingLogger) Log(kv ...any) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if m, ok := kv[i+1].(string); ok && kv[i] == "msg" && strings.Contains(m, l.msg) {
			l.once.Do(func() { close(l.held); <-l.release })
		}
	}
	return l.logRecorder.Log(kv...)
}

// TestUsageFetchCountedAfterItEnds: a reader that has seen a fetch
// counted, and asks again once the answer is due, gets a new fetch rather
// than joining the one that is still finishing (a scrape that saw a failed
// fetch counted once found no new fetch at all: CI under load).
func TestUsageFetchCountedAfterItEnds(t *testing.T) {
	h := newHarness(t, setup{proxy: true})
	h.b.SetUsage(usageReports(t))
	hold := &holdingLogger{logRecorder: h.log, msg: "usage fetch failed", held: make(chan struct{}), release: make(chan struct{})}
	var release sync.Once
	free := func() { release.Do(func() { close(hold.release) }) }
	h.start(Options{Stream: true, Logger: hold})
	t.Cleanup(free) // before the store's Close, which waits for the held fetch
	h.waitView("ready", func(v View) bool { return v.Ready })
	good := h.usage()
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "down"})
	h.clk.Advance(15 * time.Second)
	h.usage() // starts the fetch that fails; its log line is held
	<-hold.held
	if c := h.s.Counters(); c.UsageFetchErrors[broker.ReasonUpstream] != 1 {
		t.Fatalf("the failed fetch is not counted before its line: %+v", c)
	}
	h.clk.Advance(15 * time.Second)
	if u := h.usage(); u != good {
		t.Fatal("a reader waited")
	}
	h.waitUsageCalls(3) // a new fetch, while the counted one is still held
	free()
	h.waitCounters("second failure", func(c Counters) bool { return c.UsageFetchErrors[broker.ReasonUpstream] == 2 })
}

// TestUsageFailureWithoutData: before any good answer a failure is no
// data, cached for the TTL like any answer.
func TestUsageFailureWithoutData(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "down", Times: 1})
	u := h.usage()
	if u.HasData() || !u.Failing || u.Reports != nil {
		t.Fatalf("%+v", u)
	}
	e := &Entry{Entry: &broker.Entry{ID: 1, Provider: "anthropic", Credential: broker.Credential{Type: broker.TypeOAuth, Email: "a@example.com"}}}
	if m, ok := u.Match(e); ok || m != nil {
		t.Fatal("a failed answer matched")
	}
	if h.usage() != u || h.b.Requests("/v1/usage") != 1 {
		t.Fatal("failure not cached")
	}
}

// TestUsageTooLarge: an answer over the usage limit is counted as
// too_large and the last good reports stay.
func TestUsageTooLarge(t *testing.T) {
	h := newHarness(t, setup{proxy: true, client: broker.ClientOptions{MaxUsageBytes: 4096}})
	h.b.SetUsage(usageReports(t))
	h.b.AddAPIKey("openai", "k")
	h.start(Options{Stream: true})
	h.waitView("ready", func(v View) bool { return v.Ready })
	good := h.usage()
	big := usageReports(t)
	for range 20 {
		big = append(big, usageReports(t)[0])
	}
	h.b.SetUsage(big)
	h.clk.Advance(15 * time.Second)
	h.usage()
	u := h.waitUsage("too large", good)
	if !u.Failing || u.Reason != broker.ReasonTooLarge || len(u.Reports) != 2 {
		t.Fatalf("%+v", u)
	}
	if c := h.s.Counters(); c.UsageFetchErrors[broker.ReasonTooLarge] != 1 {
		t.Fatalf("%+v", c.UsageFetchErrors)
	}
}

// TestUsageFailureForgottenOnRecovery: a fetch that failed while the
// broker was away is retried as soon as the mirror recovers; a good answer
// is not refetched by a recovery.
func TestUsageFailureForgottenOnRecovery(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "broker going away", Times: 1})
	if u := h.usage(); !u.Failing {
		t.Fatalf("%+v", u)
	}
	h.cutStreams()
	h.waitStatus("disconnected", func(st SyncStatus) bool { return !st.StreamConnected && st.LastError != "" })
	if u := h.usage(); !u.Failing || h.b.Requests("/v1/usage") != 1 {
		t.Fatal("failure not cached while the mirror is down")
	}
	h.sleepAndAdvance(500 * time.Millisecond)
	h.sig.WaitFor(t, "recovered", func() bool { return countMsg(h.log, "mirror recovered") == 1 })
	if u := h.usage(); u.Failing || len(u.Reports) != 2 {
		t.Fatalf("usage not refetched after recovery: %+v", u)
	}
	if n := h.b.Requests("/v1/usage"); n != 2 {
		t.Fatalf("%d upstream calls, want 2", n)
	}

	h.cutStreams()
	h.waitStatus("disconnected again", func(st SyncStatus) bool { return !st.StreamConnected && st.LastError != "" })
	h.sleepAndAdvance(500 * time.Millisecond)
	h.sig.WaitFor(t, "recovered again", func() bool { return countMsg(h.log, "mirror recovered") == 2 })
	if u := h.usage(); u.Failing || h.b.Requests("/v1/usage") != 2 {
		t.Fatalf("good reports refetched on recovery (%d calls)", h.b.Requests("/v1/usage"))
	}
}

// TestUsageInvalidatedByBlockChange: a credential's blocks changing makes
// the next reader refresh usage (a new block means a limit was hit); a
// pass that re-sends the same blocks does not.
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
	calls := func() int { return h.b.Requests("/v1/usage") }
	u := h.usage()
	if calls() != 1 {
		t.Fatalf("first fetch: %d calls", calls())
	}

	until := h.clk.Now().Add(time.Hour)
	h.b.SetBlocks(id, []brokertest.Block{{ProviderKey: "anthropic:oauth", Scope: "tier:x", BlockedUntil: until}})
	h.waitView("block mirrored", func(View) bool { e := h.s.entry(id); return e != nil && len(e.Blocks) == 1 })
	h.usage()
	u = h.waitUsage("refetch after a new block", u)
	if calls() != 2 {
		t.Fatalf("after a new block: %d calls, want a refetch", calls())
	}

	before := h.s.entry(id)
	h.clk.Advance(time.Second) // rotatesInMs moves, so the pass re-sends the entry, blocks unchanged
	h.b.Bump()
	h.waitView("pass applied", func(View) bool { return h.s.entry(id) != before })
	if h.usage() != u || calls() != 2 {
		t.Fatalf("a pass with unchanged blocks refetched usage: %d calls", calls())
	}

	h.b.SetBlocks(id, nil)
	h.waitView("block lifted", func(View) bool { e := h.s.entry(id); return e != nil && len(e.Blocks) == 0 })
	h.usage()
	h.waitUsage("refetch after a lifted block", u)
	if calls() != 3 {
		t.Fatalf("after a lifted block: %d calls, want a refetch", calls())
	}
}

func TestUsageFetchErrorReasons(t *testing.T) {
	cases := []struct {
		name   string
		fault  brokertest.Fault
		usage  []json.RawMessage
		reason string
	}{
		{"unauthorized", brokertest.Fault{Path: "/v1/usage", Status: 401, Message: "unauthorized"}, nil, broker.ReasonUnauthorized},
		{"invalid response", brokertest.Fault{}, []json.RawMessage{json.RawMessage(`{"fetchedAt":1}`)}, broker.ReasonInvalidResponse},
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
			if u := h.usage(); u.HasData() || u.Reason != tc.reason {
				t.Fatalf("%+v", u)
			}
			if c := h.s.Counters(); c.UsageFetchErrors[tc.reason] != 1 {
				t.Fatalf("%+v", c.UsageFetchErrors)
			}
		})
	}
}

// TestUsageCallerCancel: a caller giving up does not cancel the shared
// fetch, and callers after it do not wait for a fetch that already
// outlasted a wait (a stalled broker costs one scrape its timeout).
func TestUsageCallerCancel(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() {
		_, err := h.s.Usage(ctxA)
		doneA <- err
	}()
	h.waitUsageCalls(1)
	cancelA()
	if err := <-doneA; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller A: %v", err)
	}
	if u, err := h.s.Usage(context.Background()); err != nil || u.HasData() {
		t.Fatalf("caller B waited or got data: %+v %v", u, err)
	}
	h.b.ClearFaults()
	if u := h.waitUsage("the shared fetch's answer", nil); len(u.Reports) != 2 {
		t.Fatalf("%+v", u)
	}
	if n := h.b.Requests("/v1/usage"); n != 1 || h.s.usageOutwaited.Load() {
		t.Fatalf("%d upstream calls; outwaited mark kept: %v", n, h.s.usageOutwaited.Load())
	}
}

// TestUsageCloseCancelsSharedFetch: the store owns the fetch; Close ends it
// and the waiting callers get ErrClosed (goleak proves nothing is left).
func TestUsageCloseCancelsSharedFetch(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	done := make(chan error, 1)
	go func() {
		_, err := h.s.Usage(context.Background())
		done <- err
	}()
	h.waitUsageCalls(1)
	h.s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if _, err := h.s.Usage(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestUsageMatchesCredentials(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.SetUsage(usageReports(t))
	a := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "x", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "A@Example.com"})
	b := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "y", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "b@example.com"})
	c := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "z", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "c@example.com"})
	k := h.b.AddAPIKey("anthropic", "key")
	h.start(Options{Stream: true})
	h.waitView("ready", func(v View) bool { return len(v.Entries) == 4 })
	u := h.usage()
	ra, ok := u.Match(h.s.entry(a))
	if !ok || ra.Metadata.AccountID != "acct-A" {
		t.Fatalf("a: %+v", ra)
	}
	if f, ok := ra.Limits[0].Amount.EffectiveUsedFraction(); !ok || f != 0.42 {
		t.Fatalf("fraction %v", f)
	}
	if rb, _ := u.Match(h.s.entry(b)); rb == nil || rb.Metadata.Email != "b@example.com" {
		t.Fatalf("b: %+v", rb)
	}
	for _, id := range []int64{c, k} {
		if r, ok := u.Match(h.s.entry(id)); ok || r != nil {
			t.Fatalf("id %d matched %+v", id, r)
		}
	}
	if n := h.b.Requests("/v1/usage"); n != 1 {
		t.Fatalf("%d upstream calls", n)
	}
}

// TestUsageMatchesResetsOnlyReport: an 18.2.9 report with limits: [] that
// carries only saved resets (docs/broker-protocol.md §13.1) still decodes and
// still matches its credential, next to a report whose resetCredits is of the
// wrong type, which costs only the resets.
func TestUsageMatchesResetsOnlyReport(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.SetUsage([]json.RawMessage{
		json.RawMessage(`{"provider":"anthropic","fetchedAt":1795751800000,"metadata":{"email":"a@example.com","orgId":"org-1"},"limits":[],
		 "resetCredits":{"availableCount":2,"redeemableCount":1,"cooldownUntil":"2026-11-30T20:00:00Z",
		  "credits":[{"id":"c1","usable":true,"clears":["anthropic:5h"]}]}}`),
		json.RawMessage(`{"provider":"anthropic","fetchedAt":1795751800000,"metadata":{"email":"b@example.com","orgId":"org-1"},
		 "limits":[{"id":"anthropic:5h","status":"ok"}],"resetCredits":"none"}`),
	})
	a := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "x", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@example.com", OrgID: "org-1"})
	b := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "y", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "b@example.com", OrgID: "org-1"})
	h.start(Options{Stream: true})
	h.waitView("ready", func(v View) bool { return len(v.Entries) == 2 })
	u := h.usage()
	ra, ok := u.Match(h.s.entry(a))
	if !ok || ra == nil || ra.Metadata.Email != "a@example.com" || len(ra.Limits) != 0 {
		t.Fatalf("a: %+v, %v", ra, ok)
	}
	sr := ra.Resets
	if sr == nil || !sr.HasAvailable || sr.Available != 2 || !sr.HasRedeemable || sr.Redeemable != 1 ||
		!sr.CooldownUntil.Equal(time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)) ||
		len(sr.Credits) != 1 || !sr.Credits[0].Usable || len(sr.Credits[0].Clears) != 1 || sr.Credits[0].Clears[0] != "anthropic:5h" {
		t.Fatalf("a resets: %+v", sr)
	}
	rb, ok := u.Match(h.s.entry(b))
	if !ok || rb == nil || rb.Metadata.Email != "b@example.com" || len(rb.Limits) != 1 || rb.Resets != nil {
		t.Fatalf("b: %+v, %v", rb, ok)
	}
}
