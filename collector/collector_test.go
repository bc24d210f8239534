package collector

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
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
	tombstones []store.Tombstone
	ok         bool
}

func (f *fakeBroker) Probe() monitor.Probe {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probe
}

func (f *fakeBroker) Tombstones() ([]store.Tombstone, bool) {
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
	b.SetBlocks(ids["codex"], []brokertest.Block{
		{ProviderKey: "openai-codex:oauth", Scope: "chat", BlockedUntil: t0.Add(10 * time.Minute)},
		{ProviderKey: "openai-codex:oauth", Scope: "tier:x", BlockedUntil: t0.Add(20 * time.Minute)},
	})
	b.SetUsage([]json.RawMessage{
		usageReport("anthropic", map[string]any{"email": "a@example.com", "accountId": "acct-A"},
			limit("anthropic:5h", "5h", map[string]any{"used": 42, "limit": 100, "remaining": 58, "usedFraction": 0.42, "unit": "percent"}, "ok"),
			limit("anthropic:7d", "7d", map[string]any{"remainingFraction": 0.05, "unit": "percent"}, "warning"),
			limit("anthropic:7d", "7d", map[string]any{"usedFraction": 0.5, "unit": "percent"}, "ok")), // duplicate: dropped
		usageReport("openai-codex", map[string]any{"email": "someone@else.com"},
			limit("openai-codex:primary", "", map[string]any{"used": 3, "unit": "requests"}, "")),
	})
	cl, err := store.NewClient(store.ClientOptions{URL: b.URL, Token: store.StaticToken(b.Token())})
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{now: t0}
	st := store.New(store.Options{Client: cl, Stream: true, Clock: clock})
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
	return Options{Source: s.store, Broker: s.mon, Identity: ids, Usage: NewUsageReader(s.store, 5*time.Second, nil), Now: func() time.Time { return t0 }}
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
	t.Run("sync", func(t *testing.T) { golden(t, "sync", newSyncCollector(o)) })
	t.Run("credentials", func(t *testing.T) { golden(t, "credentials", newCredentialCollector(o)) })
	t.Run("usage", func(t *testing.T) { golden(t, "usage", newUsageCollector(o)) })
}

func TestGoldenOperations(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	s.broker.SetRefreshError(s.ids["codex"], 500, "OAuth token refresh timed out for provider: openai-codex")
	if _, err := s.store.RefreshOAuthCredential(ctx, s.ids["codex"]); err == nil {
		t.Fatal("refresh should fail")
	}
	if _, err := s.store.RefreshOAuthCredential(ctx, 999); err == nil {
		t.Fatal("refresh of an unknown id should fail")
	}
	if _, err := s.store.RefreshOAuthCredential(ctx, s.ids["anthropic"]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.UsageReports(ctx); err != nil {
		t.Fatal(err)
	}
	golden(t, "operations", newOperationsCollector(s.options(t, identity.Raw)))
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
		out := scrape(t, newCredentialCollector(s.options(t, mode)))
		for _, pii := range []string{"example.com", "acct-A", "acct-B", "org-1"} {
			if strings.Contains(out, pii) {
				t.Errorf("%s mode leaks %q", mode, pii)
			}
		}
		if !strings.Contains(out, `authbroker_credential_info{`) {
			t.Errorf("%s mode dropped credential_info", mode)
		}
	}
	ids, _ := identity.New(identity.Hashed, []byte("test-key"))
	out := scrape(t, newCredentialCollector(s.options(t, identity.Hashed)))
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

func TestUsageFailureDropsSeries(t *testing.T) {
	s := newScenario(t)
	o := s.options(t, identity.Raw)
	if out := scrape(t, newUsageCollector(o)); !strings.Contains(out, "authbroker_usage_limit_used_fraction") {
		t.Fatal("no usage series before the fault")
	}
	s.broker.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "upstream usage failed"})
	s.clock.Advance(16 * time.Second) // past the store's usage TTL
	if out := scrape(t, newUsageCollector(o)); strings.Contains(out, "authbroker_usage_") {
		t.Fatalf("usage series survived a failed fetch:\n%s", out)
	}
	ops := scrape(t, newOperationsCollector(o))
	if !strings.Contains(ops, `authbroker_usage_fetch_errors_total{reason="upstream"} 1`) {
		t.Fatalf("fetch error not counted:\n%s", ops)
	}
	s.broker.ClearFaults()
	s.clock.Advance(16 * time.Second)
	if out := scrape(t, newUsageCollector(o)); !strings.Contains(out, "authbroker_usage_limit_used_fraction") {
		t.Fatal("usage series did not come back after the fault cleared")
	}
}

func TestSlowUsageServesLastGood(t *testing.T) {
	s := newScenario(t)
	o := s.options(t, identity.Raw)
	o.Usage = NewUsageReader(s.store, 50*time.Millisecond, nil)
	first := scrape(t, newUsageCollector(o))
	if !strings.Contains(first, "authbroker_usage_limit_used_fraction") {
		t.Fatal("no usage series before the stall")
	}
	s.broker.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	defer s.broker.ClearFaults()
	s.clock.Advance(16 * time.Second)
	// The scrape returns (bounded wait) with the last good reports.
	if out := scrape(t, newUsageCollector(o)); out != first {
		t.Fatalf("a stalled fetch changed the usage series:\n%s", out)
	}
	if n := s.broker.Requests("/v1/usage"); n != 2 {
		t.Fatalf("want exactly one more upstream call while stalled, got %d in all", n)
	}
	if out := scrape(t, newUsageCollector(o)); out != first {
		t.Fatal("second scrape during the stall differs")
	}
	if n := s.broker.Requests("/v1/usage"); n != 2 {
		t.Fatalf("scrapes during a stall must share the one fetch, got %d calls", n)
	}
}
