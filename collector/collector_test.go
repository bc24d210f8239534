package collector

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/goleak"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/monitor"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Canary secrets: they go into the fake broker as token material and must
// never come out of a collector.
const (
	canaryAccess  = "CANARY-access-7d1e0c"
	canaryKey     = "CANARY-apikey-55ab91"
	canaryExtra   = "CANARY-clientsecret-e4f2"
	canaryRefresh = "CANARY-refresh-0b9d"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// testClock pins Now so receipt-relative values are reproducible and
// moves only when a test advances it; Sleep waits for real (briefly) so
// retries still progress.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *testClock) Sleep(ctx context.Context, d time.Duration) error {
	if d > 5*time.Millisecond {
		d = 5 * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// fakeBroker stands in for the monitor: a fixed probe and tombstones.
type fakeBroker struct {
	mu         sync.Mutex
	probe      monitor.Probe
	tombstones []broker.Tombstone
	ok         bool
}

func (f *fakeBroker) Probe() monitor.Probe {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probe
}

func (f *fakeBroker) Tombstones() ([]broker.Tombstone, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tombstones, f.ok
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type scenario struct {
	clock  *testClock
	broker *brokertest.Broker
	store  *store.Store
	mon    *fakeBroker
	ids    map[string]int64
}

func usageReport(provider string, meta map[string]any, limits ...map[string]any) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"provider": provider, "fetchedAt": t0.Add(-time.Minute).UnixMilli(), "metadata": meta, "limits": limits})
	return b
}

// withResets adds a resetCredits object to a report; limits, when not nil,
// replaces the report's limits (e.g. []any{} for an 18.2.9 resets-only
// report, docs/broker-protocol.md §13.1).
func withResets(report json.RawMessage, limits []any, resets map[string]any) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(report, &m); err != nil {
		panic(err)
	}
	if limits != nil {
		m["limits"] = limits
	}
	m["resetCredits"] = resets
	b, _ := json.Marshal(m)
	return b
}

func limit(id, window string, amount map[string]any, status string) map[string]any {
	l := map[string]any{"id": id, "label": id, "scope": map[string]any{"provider": strings.Split(id, ":")[0]}, "amount": amount}
	if window != "" {
		l["window"] = map[string]any{"id": window, "label": window, "durationMs": 18000000, "resetsAt": t0.Add(3 * time.Hour).UnixMilli()}
	}
	if status != "" {
		l["status"] = status
	}
	return l
}

// newScenario seeds a broker with one of everything the collectors show.
func newScenario(t *testing.T) *scenario {
	t.Helper()
	b := brokertest.New(brokertest.Options{Token: "CANARY-bearer-31c7", Now: func() time.Time { return t0 }})
	t.Cleanup(b.Close)
	ids := map[string]int64{}
	ids["key"] = b.AddAPIKey("openai", canaryKey)
	ids["anthropic"] = b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: canaryRefresh, Expires: t0.Add(time.Hour),
		Email: "A@Example.com", AccountID: "acct-A", Extra: map[string]any{"clientSecret": canaryExtra}})
	ids["codex"] = b.AddOAuth("openai-codex", brokertest.OAuth{Access: canaryAccess + "2", Refresh: canaryRefresh, Expires: t0.Add(2 * time.Minute),
		Email: "b@example.com", AccountID: "acct-B", OrgID: "org-1"})
	ids["gone"] = b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess + "3", Refresh: canaryRefresh, Expires: t0.Add(-time.Hour), Email: "c@example.com"})
	b.Disable(ids["gone"], "oauth refresh failed: invalid_grant")
	ids["resets"] = b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess + "4", Refresh: canaryRefresh, Expires: t0.Add(time.Hour),
		Email: "d@example.com", OrgID: "org-2"})
	b.SetBlocks(ids["codex"], []brokertest.Block{
		{ProviderKey: "openai-codex:oauth", Scope: "chat", BlockedUntil: t0.Add(10 * time.Minute)},
		{ProviderKey: "openai-codex:oauth", Scope: "tier:x", BlockedUntil: t0.Add(20 * time.Minute)},
	})
	b.SetUsage([]json.RawMessage{
		withResets(usageReport("anthropic", map[string]any{"email": "a@example.com", "accountId": "acct-A"},
			limit("anthropic:5h", "5h", map[string]any{"used": 42, "limit": 100, "remaining": 58, "usedFraction": 0.42, "unit": "percent"}, "ok"),
			limit("anthropic:7d", "7d", map[string]any{"remainingFraction": 0.05, "unit": "percent"}, "warning"),
			limit("anthropic:7d", "7d", map[string]any{"usedFraction": 0.5, "unit": "percent"}, "ok")), // duplicate: dropped
			nil, map[string]any{"availableCount": 2, "redeemableCount": 1, "cooldownUntil": t0.Add(30 * time.Minute).Format(time.RFC3339),
				"credits": []any{
					// usable: counts for both limits, and its expiry is the next one
					map[string]any{"id": "c1", "usable": true, "expiresAt": t0.Add(48 * time.Hour).UnixMilli(), "clears": []any{"anthropic:5h", "anthropic:7d"}},
					// not usable: counts nowhere, and its earlier expiry is not the next one
					map[string]any{"id": "c2", "usable": false, "expiresAt": t0.Add(24 * time.Hour).UnixMilli(), "clears": []any{"anthropic:5h"}},
				}}),
		// 18.2.9: an account with saved resets but no limits (docs/broker-protocol.md §13.1)
		withResets(usageReport("anthropic", map[string]any{"email": "d@example.com", "orgId": "org-2"}), []any{},
			map[string]any{"availableCount": 1, "cooldownUntil": t0.Add(10 * time.Minute).UnixMilli(),
				"credits": []any{map[string]any{"id": "c3", "expiresAt": t0.Add(72 * time.Hour).Format(time.RFC3339), "clears": []any{"anthropic:7d"}}}}),
		usageReport("openai-codex", map[string]any{"email": "someone@else.com"},
			limit("openai-codex:primary", "", map[string]any{"used": 3, "unit": "requests"}, "")),
	})
	clock := &testClock{now: t0}
	cl, err := broker.NewClient(broker.ClientOptions{URL: b.URL, Token: broker.StaticToken(b.Token()), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{Broker: cl, Stream: true, Clock: clock})
	t.Cleanup(st.Close)
	eventually(t, "first snapshot", st.Ready)
	ts, err := cl.Disabled(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return &scenario{clock: clock, broker: b, store: st, ids: ids, mon: &fakeBroker{
		probe: monitor.Probe{Checked: true, Up: true, Version: "18.2.3"}, tombstones: ts, ok: true,
	}}
}

func (s *scenario) options(t *testing.T, mode identity.Mode) Options {
	ids, err := identity.New(mode, []byte("test-key"))
	if err != nil {
		t.Fatal(err)
	}
	return Options{Source: s.store, Broker: s.mon, Identity: ids, Usage: true, UsageTimeout: 5 * time.Second, Now: func() time.Time { return t0 }}
}

func golden(t *testing.T, name string, c prometheus.Collector) {
	t.Helper()
	path := filepath.Join("testdata", name+".prom")
	if *update {
		if err := os.WriteFile(path, []byte(scrape(t, c)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := testutil.CollectAndCompare(c, f); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
}

func TestGolden(t *testing.T) {
	s := newScenario(t)
	o := s.options(t, identity.Raw)
	t.Run("sync", func(t *testing.T) { golden(t, "sync", &syncCollector{o: o}) })
	t.Run("credentials", func(t *testing.T) { golden(t, "credentials", &credentialCollector{o: o}) })
	t.Run("usage", func(t *testing.T) { golden(t, "usage", &usageCollector{o: o}) })
}

func TestGoldenOperations(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	s.broker.SetRefreshError(s.ids["codex"], 500, "OAuth token refresh timed out for provider: openai-codex")
	if err := s.store.RefreshOAuthCredential(ctx, s.ids["codex"]); err == nil {
		t.Fatal("refresh should fail")
	}
	if err := s.store.RefreshOAuthCredential(ctx, 999); err == nil {
		t.Fatal("refresh of an unknown id should fail")
	}
	if err := s.store.RefreshOAuthCredential(ctx, s.ids["anthropic"]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.Usage(ctx); err != nil {
		t.Fatal(err)
	}
	golden(t, "operations", &operationsCollector{o: s.options(t, identity.Raw)})
}

func scrape(t *testing.T, cs ...prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&sb, mf); err != nil {
			t.Fatal(err)
		}
	}
	return sb.String()
}

func TestIdentityModes(t *testing.T) {
	s := newScenario(t)
	for _, mode := range []identity.Mode{identity.Hashed, identity.Empty} {
		out := scrape(t, &credentialCollector{o: s.options(t, mode)})
		for _, pii := range []string{"example.com", "acct-A", "acct-B", "org-1", "org-2"} {
			if strings.Contains(out, pii) {
				t.Errorf("%s mode leaks %q", mode, pii)
			}
		}
		if !strings.Contains(out, `authbroker_credential_info{`) {
			t.Errorf("%s mode dropped credential_info", mode)
		}
	}
	ids, _ := identity.New(identity.Hashed, []byte("test-key"))
	out := scrape(t, &credentialCollector{o: s.options(t, identity.Hashed)})
	if want := `email="` + ids.Render("b@example.com") + `"`; !strings.Contains(out, want) {
		t.Errorf("hashed email label %s missing", want)
	}
}

func TestNoSecretsInAnyCollector(t *testing.T) {
	s := newScenario(t)
	out := scrape(t, New(s.options(t, identity.Raw)).All()...)
	for _, c := range []string{canaryAccess, canaryKey, canaryExtra, canaryRefresh, s.broker.Token()} {
		if strings.Contains(out, c) {
			t.Errorf("a canary secret (%d bytes) reached /metrics", len(c))
		}
	}
}

// TestUsageFailureKeepsLastGood: a failed fetch is counted and the last
// good reports stay on /metrics (their fetched timestamps age; the
// AuthBrokerUsageUnavailable alert says when they are too old).
func TestUsageFailureKeepsLastGood(t *testing.T) {
	s := newScenario(t)
	o := s.options(t, identity.Raw)
	first := scrape(t, &usageCollector{o: o})
	if !strings.Contains(first, "authbroker_usage_limit_used_fraction") {
		t.Fatal("no usage series before the fault")
	}
	s.broker.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "upstream usage failed"})
	s.clock.Advance(16 * time.Second) // past the store's usage TTL
	if out := scrape(t, &usageCollector{o: o}); out != first {
		t.Fatalf("the scrape that started the failing fetch changed usage:\n%s", out)
	}
	eventually(t, "the failed fetch counted", func() bool {
		return strings.Contains(scrape(t, &operationsCollector{o: o}), `authbroker_usage_fetch_errors_total{reason="upstream"} 1`)
	})
	if out := scrape(t, &usageCollector{o: o}); out != first {
		t.Fatalf("usage series changed after a failed fetch:\n%s", out)
	}
	s.broker.ClearFaults()
	s.clock.Advance(16 * time.Second)
	scrape(t, &usageCollector{o: o})
	eventually(t, "usage fetched again", func() bool {
		u, _ := s.store.Usage(context.Background())
		return !u.Failing && s.store.Counters().UsageFetches == 3
	})
}

func TestSlowUsageServesLastGood(t *testing.T) {
	s := newScenario(t)
	o := s.options(t, identity.Raw)
	o.Usage, o.UsageTimeout = true, 50*time.Millisecond
	first := scrape(t, &usageCollector{o: o})
	if !strings.Contains(first, "authbroker_usage_limit_used_fraction") {
		t.Fatal("no usage series before the stall")
	}
	s.broker.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	defer s.broker.ClearFaults()
	s.clock.Advance(16 * time.Second)
	// The scrape returns at once with the last good reports; the fetch
	// goes on in the background.
	if out := scrape(t, &usageCollector{o: o}); out != first {
		t.Fatalf("a stalled fetch changed the usage series:\n%s", out)
	}
	eventually(t, "one more upstream call", func() bool { return s.broker.Requests("/v1/usage") == 2 })
	if out := scrape(t, &usageCollector{o: o}); out != first {
		t.Fatal("second scrape during the stall differs")
	}
	if n := s.broker.Requests("/v1/usage"); n != 2 {
		t.Fatalf("scrapes during a stall must share the one fetch, got %d calls", n)
	}
}

// TestUsageRowsPreparedOnFetch: the usage rows of a new answer are built
// when the store publishes it, so the first scrape after a fetch finds
// them ready instead of building 10k of them itself.
func TestUsageRowsPreparedOnFetch(t *testing.T) {
	s := newScenario(t)
	cs := New(s.options(t, identity.Raw))
	uc := cs.direct[len(cs.direct)-1].(*usageCollector)
	oauth := 0
	for _, e := range s.store.Snapshot().Entries {
		if e.Credential.Type == broker.TypeOAuth {
			oauth++
		}
	}
	// readyFor: the cache holds a row against x for every OAuth entry.
	readyFor := func(x *store.Usage) bool {
		uc.cache.mu.Lock()
		defer uc.cache.mu.Unlock()
		n := 0
		for _, r := range uc.cache.m {
			if r.usage == x {
				n++
			}
		}
		return n == oauth
	}
	first, err := s.store.Usage(context.Background()) // no answer yet: waits for the fetch
	if err != nil || !first.HasData() {
		t.Fatalf("first fetch: %v", err)
	}
	if !readyFor(first) {
		t.Fatal("the first answer's rows were not built when it was published")
	}
	s.clock.Advance(16 * time.Second) // past the usage TTL: the next read refreshes in the background
	if u, _ := s.store.Usage(context.Background()); u != first {
		t.Fatal("a reader with a good answer waited for the refresh")
	}
	eventually(t, "the refreshed answer's rows", func() bool {
		second, _ := s.store.Usage(context.Background())
		return second != first && readyFor(second)
	})
}

// TestLabelSetValuesRoundTrip: the registry sink reads a set's values back
// from its text, escapes and empty values included.
func TestLabelSetValuesRoundTrip(t *testing.T) {
	s := newSchema("provider", "id", "limit", "window")
	for _, vals := range [][]string{
		{"anthropic", "12", "five_hour", "5h"},
		{"", "", "", ""},
		{`back\slash`, `"quoted"`, "new\nline", `\n literal, "both"\`},
		{"ünïcödé", "=", ",", "}"},
	} {
		if got := s.values(s.set(vals...).text); !slices.Equal(got, vals) {
			t.Errorf("values(set(%q)) = %q", vals, got)
		}
	}
	if got := newSchema().values(newSchema().set().text); got != nil {
		t.Errorf("no labels: %q", got)
	}
}
