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

	"github.com/authbroker/authbroker_exporter/identity"
	"github.com/authbroker/authbroker_exporter/monitor"
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

// fixedClock pins Now so receipt-relative values are reproducible; Sleep
// waits for real (briefly) so retries still progress.
type fixedClock struct{ now time.Time }

func (c fixedClock) Now() time.Time { return c.now }
func (c fixedClock) Sleep(ctx context.Context, d time.Duration) error {
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
	st := store.New(store.Options{Client: cl, Stream: true, Clock: fixedClock{t0}})
	t.Cleanup(st.Close)
	eventually(t, "first snapshot", st.Ready)
	ts, err := cl.Disabled(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return &scenario{broker: b, store: st, ids: ids, mon: &fakeBroker{
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
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
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
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
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
