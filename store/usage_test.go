package store

import (
	"encoding/json"
	"maps"
	"slices"
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

// usageTTL is the usage tests' refresh interval (the default).
const usageTTL = 15 * time.Second

// startUsage starts a store with its usage refresher behind a recording
// proxy, and waits for the refresher's first answer.
func startUsage(t *testing.T) *harness {
	h := newHarness(t, setup{proxy: true})
	h.b.SetUsage(usageReports(t))
	h.start(Options{Stream: true, UsageTTL: usageTTL})
	h.waitView("ready", func(v View) bool { return v.Ready })
	h.waitUsage("first usage answer", nil)
	return h
}

// waitUsageCalls waits until n /v1/usage requests reached the broker's
// front door.
func (h *harness) waitUsageCalls(n int) {
	h.t.Helper()
	h.sig.WaitFor(h.t, "upstream usage call", func() bool { return len(h.proxy.requests("/v1/usage")) >= n })
}

// waitUsage waits until the store has published an answer newer than old.
func (h *harness) waitUsage(what string, old *Usage) *Usage {
	h.t.Helper()
	var u *Usage
	h.sig.WaitFor(h.t, what, func() bool { u = h.s.Usage(); return u != old })
	return u
}

// refresherSleeps waits until the usage refresher is asleep on the clock
// and returns how long it sleeps: the time to its next fetch.
func (h *harness) refresherSleeps() time.Duration {
	h.t.Helper()
	return h.clk.WaitSleep(h.t, usageTTL)
}

// TestUsageRefreshedOnTTL: the refresher fetches once the first snapshot
// is in, and again every TTL, with nobody reading; until the TTL has
// passed the answer stays as it is.
func TestUsageRefreshedOnTTL(t *testing.T) {
	h := startUsage(t)
	first := h.s.Usage()
	if !first.HasData() || first.Failing || len(first.Reports) != 2 || !first.FetchedAt.Equal(h.clk.Now()) {
		t.Fatalf("%+v", first)
	}
	if d := h.refresherSleeps(); d != usageTTL {
		t.Fatalf("next fetch in %v, want %v", d, usageTTL)
	}
	h.clk.Advance(usageTTL - time.Millisecond)
	if d := h.refresherSleeps(); d != usageTTL || h.b.Requests("/v1/usage") != 1 || h.s.Usage() != first {
		t.Fatalf("refetched before the TTL (sleep %v, %d calls)", d, h.b.Requests("/v1/usage"))
	}
	h.clk.Advance(time.Millisecond)
	next := h.waitUsage("refresh after the TTL", first)
	if next.Failing || !next.FetchedAt.Equal(h.clk.Now()) || h.b.Requests("/v1/usage") != 2 {
		t.Fatalf("%+v, %d calls", next, h.b.Requests("/v1/usage"))
	}
	if d := h.refresherSleeps(); d != usageTTL {
		t.Fatalf("next fetch in %v, want %v", d, usageTTL)
	}
}

// TestUsageRetriedWithBackoff: a failed fetch keeps the last good reports
// (marked failing), is counted by reason and logged once, and is retried
// after 500 ms, 1 s, 2 s, ... until one succeeds; then the TTL applies
// again.
func TestUsageRetriedWithBackoff(t *testing.T) {
	h := startUsage(t)
	good := h.s.Usage()
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "usage aggregate failed", Times: 3})
	h.refresherSleeps()
	h.clk.Advance(usageTTL)
	u := h.waitUsage("failed fetch", good)
	if !u.Failing || u.Reason != broker.ReasonUpstream || len(u.Reports) != 2 || !u.FetchedAt.Equal(good.FetchedAt) ||
		u.UnmatchedByProvider["anthropic"] != good.UnmatchedByProvider["anthropic"] {
		t.Fatalf("last good reports not kept: %+v", u)
	}
	assertNoCanary(t, "usage error", u.Error)
	for i, want := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second} {
		if d := h.refresherSleeps(); d != want {
			t.Fatalf("retry %d after %v, want %v", i+1, d, want)
		}
		h.clk.Advance(want)
		u = h.waitUsage("retry", u)
	}
	if u.Failing || !u.FetchedAt.Equal(h.clk.Now()) {
		t.Fatalf("not recovered: %+v", u)
	}
	if d := h.refresherSleeps(); d != usageTTL {
		t.Fatalf("after recovery the next fetch is in %v, want the TTL", d)
	}
	c := h.s.Counters()
	if c.UsageFetches != 5 || c.UsageFetchErrors[broker.ReasonUpstream] != 3 {
		t.Fatalf("%+v", c)
	}
	if countMsg(h.log, "usage fetch failed") != 1 || countMsg(h.log, "usage fetch recovered") != 1 {
		t.Fatalf("log: %v", h.log.Messages())
	}
}

// TestUsageBackoffCappedAtTTL: a broker that keeps failing is asked no
// more often than every TTL once the backoff has grown that far.
func TestUsageBackoffCappedAtTTL(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "down"})
	h.refresherSleeps()
	h.clk.Advance(usageTTL)
	u := h.waitUsage("failed fetch", h.s.Usage())
	var got []time.Duration
	for range 7 {
		d := h.refresherSleeps()
		got = append(got, d)
		h.clk.Advance(d)
		u = h.waitUsage("retry", u)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, usageTTL, usageTTL}
	if !slices.Equal(got, want) {
		t.Fatalf("retries after %v, want %v", got, want)
	}
}

// TestUsageReadersNeverFetch: readers get the last answer at once while a
// fetch is stalled at the broker, and reading never starts a fetch: the
// refresher alone calls the broker.
func TestUsageReadersNeverFetch(t *testing.T) {
	h := startUsage(t)
	good := h.s.Usage()
	for range 100 {
		if h.s.Usage() != good {
			t.Fatal("the answer changed without a fetch")
		}
	}
	if n := h.b.Requests("/v1/usage"); n != 1 {
		t.Fatalf("reads started fetches: %d upstream calls", n)
	}
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	h.refresherSleeps()
	h.clk.Advance(usageTTL)
	h.waitUsageCalls(2) // the refresher's fetch, held by the broker
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if u := h.s.Usage(); u != good {
				t.Errorf("a reader got %+v during the stall, want the last answer", u)
			}
		})
	}
	wg.Wait() // returns although the fetch is still held
	if n := h.b.Requests("/v1/usage"); n != 2 {
		t.Fatalf("%d upstream calls during the stall, want the refresher's one", n)
	}
	h.b.ClearFaults()
	if u := h.waitUsage("the stalled fetch's answer", good); u.Failing || len(u.Reports) != 2 {
		t.Fatalf("%+v", u)
	}
}

// TestUsageFirstFetch: the refresher's first fetch waits for the mirror's
// first snapshot (TestUsageMatchesCredentials: one fetch, every report
// claimed). A broker that fails the first sync releases it without one;
// the first snapshot then calls for a fetch at once, which counts the
// reports the mirror's credentials claim.
func TestUsageFirstFetch(t *testing.T) {
	h := newUsageHarness(t, broker.ClientOptions{})
	h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "x", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@example.com"})
	h.b.AddFault(brokertest.Fault{Path: "/v1/snapshot/stream", Status: 503, Message: "starting", Times: 1})
	h.start(Options{Stream: true, UsageTTL: usageTTL})
	cold := h.waitUsage("a fetch without a snapshot", nil)
	if h.s.Ready() || cold.Unmatched() != 2 {
		t.Fatalf("ready %v, unmatched %d", h.s.Ready(), cold.Unmatched())
	}
	if d := h.clk.WaitSleep(t, time.Second); d != 500*time.Millisecond {
		t.Fatalf("sync backoff %v", d)
	}
	h.clk.Advance(500 * time.Millisecond)
	warm := h.waitUsage("a fetch with the first snapshot", cold)
	if !h.s.Ready() || warm.Unmatched() != 1 || warm.UnmatchedByProvider["anthropic"] != 1 {
		t.Fatalf("ready %v, unmatched %v", h.s.Ready(), warm.UnmatchedByProvider)
	}
	if n := h.b.Requests("/v1/usage"); n != 2 {
		t.Fatalf("%d usage requests, want 2", n)
	}
}

// TestUsageCloseStopsRefresher: Close ends the refresher and a fetch it has
// in flight (goleak in TestMain proves nothing is left).
func TestUsageCloseStopsRefresher(t *testing.T) {
	h := startUsage(t)
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	h.refresherSleeps()
	h.clk.Advance(usageTTL)
	h.waitUsageCalls(2)
	h.s.Close()
	if c := h.s.Counters(); c.UsageFetches != 1 {
		t.Fatalf("the fetch Close ended was counted: %+v", c)
	}
}

// TestUsageFailureWithoutData: before any good answer a failure is no
// data, and matches nothing.
func TestUsageFailureWithoutData(t *testing.T) {
	h := newUsageHarness(t, broker.ClientOptions{})
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "down", Times: 1})
	h.start(Options{Stream: true, UsageTTL: usageTTL})
	u := h.waitUsage("failed first fetch", nil)
	if u.HasData() || !u.Failing || u.Reports != nil || u.Unmatched() != 0 {
		t.Fatalf("%+v", u)
	}
	e := &Entry{Entry: &broker.Entry{ID: 1, Provider: "anthropic", Credential: broker.Credential{Type: broker.TypeOAuth, Email: "a@example.com"}}}
	if m, ok := u.Match(e); ok || m != nil {
		t.Fatal("a failed answer matched")
	}
}

// newUsageHarness is a harness for a store with usage, not started: its
// stream never goes idle, so the only sleeps on the clock up to usageTTL
// are the refresher's and the sync loop's backoff.
func newUsageHarness(t *testing.T, co broker.ClientOptions) *harness {
	co.StreamIdleTimeout = 24 * time.Hour
	h := newHarness(t, setup{proxy: true, client: co})
	h.b.SetUsage(usageReports(t))
	return h
}

// TestUsageTooLarge: an answer over the usage limit is counted as
// too_large and the last good reports stay.
func TestUsageTooLarge(t *testing.T) {
	h := newUsageHarness(t, broker.ClientOptions{MaxUsageBytes: 4096})
	h.b.AddAPIKey("openai", "k")
	h.start(Options{Stream: true, UsageTTL: usageTTL})
	good := h.waitUsage("first answer", nil)
	big := usageReports(t)
	for range 20 {
		big = append(big, usageReports(t)[0])
	}
	h.b.SetUsage(big)
	h.refresherSleeps()
	h.clk.Advance(usageTTL)
	u := h.waitUsage("too large", good)
	if !u.Failing || u.Reason != broker.ReasonTooLarge || len(u.Reports) != 2 {
		t.Fatalf("%+v", u)
	}
	if c := h.s.Counters(); c.UsageFetchErrors[broker.ReasonTooLarge] != 1 {
		t.Fatalf("%+v", c.UsageFetchErrors)
	}
}

// TestUsageFailureForgottenOnRecovery: a fetch that failed while the
// broker was away is retried as soon as the mirror recovers, not when its
// backoff ends; a good answer is not refetched by a recovery.
func TestUsageFailureForgottenOnRecovery(t *testing.T) {
	h := newUsageHarness(t, broker.ClientOptions{})
	h.b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "broker going away", Times: 4})
	h.start(Options{Stream: true, UsageTTL: usageTTL})
	u := h.waitUsage("failed fetch", nil)
	for _, d := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second} {
		if got := h.refresherSleeps(); got != d {
			t.Fatalf("retry after %v, want %v", got, d)
		}
		h.clk.Advance(d)
		u = h.waitUsage("failed retry", u)
	}
	if !u.Failing || h.refresherSleeps() != 4*time.Second {
		t.Fatalf("%+v", u)
	}
	h.cutStreams()
	h.waitStatus("disconnected", func(st SyncStatus) bool { return !st.StreamConnected && st.LastError != "" })
	h.sig.WaitFor(t, "the sync loop's backoff", func() bool { _, ok := h.clk.Sleeping(time.Second); return ok })
	h.clk.Advance(500 * time.Millisecond) // the sync loop's backoff; the refresher has 3.5 s to go
	h.sig.WaitFor(t, "recovered", func() bool { return countMsg(h.log, "mirror recovered") == 1 })
	if u = h.waitUsage("refetch on recovery", u); u.Failing || len(u.Reports) != 2 || h.b.Requests("/v1/usage") != 5 {
		t.Fatalf("usage not refetched after recovery: %+v (%d calls)", u, h.b.Requests("/v1/usage"))
	}

	h.cutStreams()
	h.waitStatus("disconnected again", func(st SyncStatus) bool { return !st.StreamConnected && st.LastError != "" })
	h.sig.WaitFor(t, "the sync loop's backoff", func() bool { _, ok := h.clk.Sleeping(time.Second); return ok })
	h.clk.Advance(500 * time.Millisecond)
	h.sig.WaitFor(t, "recovered again", func() bool { return countMsg(h.log, "mirror recovered") == 2 })
	h.b.AddAPIKey("openai", "k") // a frame after the recovery: whatever it did to usage is done
	h.waitView("the frame after the recovery", func(v View) bool { return len(v.Entries) == 1 })
	if h.s.usageKicked.Load() {
		t.Fatal("a recovery called for a fetch although the last one was good")
	}
	h.refresherSleeps()
	if at, _ := h.clk.NextWake(usageTTL); !at.Equal(u.AttemptedAt.Add(usageTTL)) || h.s.Usage() != u || h.b.Requests("/v1/usage") != 5 {
		t.Fatalf("good reports refetched on recovery (%d calls, next at %v)", h.b.Requests("/v1/usage"), at)
	}
}

// TestUsageInvalidatedByBlockChange: a credential's blocks changing makes
// the refresher fetch a third of the TTL after its last fetch instead of a
// whole TTL (a new block means a limit was hit), however many changes come
// meanwhile; a pass that re-sends the same blocks does not.
func TestUsageInvalidatedByBlockChange(t *testing.T) {
	for _, stream := range []bool{true, false} {
		t.Run(map[bool]string{true: "stream", false: "poll"}[stream], func(t *testing.T) { testUsageBlockChange(t, stream) })
	}
}

func testUsageBlockChange(t *testing.T, stream bool) {
	h := newHarness(t, setup{})
	h.b.SetUsage(usageReports(t))
	id := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@example.com"})
	h.start(Options{Stream: stream, UsageTTL: usageTTL})
	calls := func() int { return h.b.Requests("/v1/usage") }
	u := h.waitUsage("first answer", nil)
	if calls() != 1 {
		t.Fatalf("first fetch: %d calls", calls())
	}

	until := h.clk.Now().Add(time.Hour)
	for _, scope := range []string{"tier:x", "tier:y"} { // two changes, one fetch
		h.b.SetBlocks(id, []brokertest.Block{{ProviderKey: "anthropic:oauth", Scope: scope, BlockedUntil: until}})
		h.waitView("block mirrored", func(View) bool {
			e := h.s.entry(id)
			return e != nil && len(e.Blocks) == 1 && e.Blocks[0].Scope == scope
		})
	}
	if d := h.clk.WaitSleep(t, usageTTL/3); d != usageTTL/3 || calls() != 1 {
		t.Fatalf("after new blocks the next fetch is in %v (%d calls), want %v", d, calls(), usageTTL/3)
	}
	h.clk.Advance(usageTTL / 3)
	u = h.waitUsage("refetch after a new block", u)
	if calls() != 2 {
		t.Fatalf("after a new block: %d calls, want a refetch", calls())
	}

	// The count of applied frames or polls moves after the store has done
	// all it does about one, its call for usage included.
	applied := func(c Counters) uint64 {
		return c.StreamEvents[FrameOutcome{broker.FrameEntry, FrameApplied}] + c.SyncRequests[SyncOutcome{"poll", SyncResultOK}]
	}
	before := applied(h.s.Counters())
	h.clk.Advance(time.Second) // rotatesInMs moves, so the pass re-sends the entry, blocks unchanged
	h.b.Bump()
	h.waitCounters("pass applied", func(c Counters) bool { return applied(c) > before })
	if h.s.usageBlocksMoved.Load() || h.s.Usage() != u || calls() != 2 {
		t.Fatalf("a pass with unchanged blocks called for usage (%d calls)", calls())
	}

	h.b.SetBlocks(id, nil)
	h.waitView("block lifted", func(View) bool { e := h.s.entry(id); return e != nil && len(e.Blocks) == 0 })
	h.sig.WaitFor(t, "the refresher asleep until a third of the TTL", func() bool {
		at, ok := h.clk.NextWake(usageTTL)
		return ok && at.Equal(u.AttemptedAt.Add(usageTTL/3))
	})
	h.clk.Advance(usageTTL/3 - time.Second)
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
			h := newUsageHarness(t, broker.ClientOptions{})
			if tc.fault.Path != "" {
				h.b.AddFault(tc.fault)
			}
			if tc.usage != nil {
				h.b.SetUsage(tc.usage)
			}
			h.start(Options{Stream: true, UsageTTL: usageTTL})
			if u := h.waitUsage("failed fetch", nil); u.HasData() || u.Reason != tc.reason {
				t.Fatalf("%+v", u)
			}
			if c := h.s.Counters(); c.UsageFetchErrors[tc.reason] != 1 {
				t.Fatalf("%+v", c.UsageFetchErrors)
			}
		})
	}
}

func TestUsageMatchesCredentials(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.SetUsage(usageReports(t))
	a := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "x", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "A@Example.com"})
	b := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "y", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "b@example.com"})
	c := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "z", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "c@example.com"})
	k := h.b.AddAPIKey("anthropic", "key")
	h.start(Options{Stream: true, UsageTTL: usageTTL})
	u := h.waitUsage("first answer", nil)
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
	// a@ and b@ claim both reports, in the answer and in the rules.
	if u.Unmatched() != 0 || !maps.Equal(u.UnmatchedByProvider, map[string]int{"anthropic": 0}) {
		t.Fatalf("unmatched %v", u.UnmatchedByProvider)
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
	h.start(Options{Stream: true, UsageTTL: usageTTL})
	u := h.waitUsage("first answer", nil)
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
