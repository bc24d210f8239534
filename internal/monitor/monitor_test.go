package monitor

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"go.uber.org/goleak"

	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type fakeBroker struct {
	health     broker.Health
	healthErr  error
	tombstones []broker.Tombstone
	disErr     error
}

func (f *fakeBroker) Healthz(context.Context) (broker.Health, error) { return f.health, f.healthErr }
func (f *fakeBroker) Disabled(context.Context, string) ([]broker.Tombstone, error) {
	return f.tombstones, f.disErr
}

type fakeMirror struct {
	mu        sync.Mutex
	view      store.View
	refreshed []int64
	disabled  []int64
	err       error
	frozen    bool // the mirror is not live
}

func (f *fakeMirror) Snapshot() store.View { return f.view }
func (f *fakeMirror) Status() store.SyncStatus {
	return store.SyncStatus{Live: !f.frozen}
}
func (f *fakeMirror) RefreshOAuthCredential(_ context.Context, id int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshed = append(f.refreshed, id)
	return f.err
}
func (f *fakeMirror) DisableCredentialRemote(_ context.Context, id int64, _ string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disabled = append(f.disabled, id)
	return true, f.err
}

func oauth(id int64, expires time.Time, rotatesIn time.Duration, received time.Time) *store.Entry {
	return &store.Entry{Entry: &broker.Entry{ID: id, Provider: "anthropic", ReceivedAt: received, RotatesIn: rotatesIn, HasRotatesIn: true, Credential: broker.Credential{Type: broker.TypeOAuth, Expires: expires, HasExpires: true}}}
}

func TestProbe(t *testing.T) {
	var logs bytes.Buffer
	b := &fakeBroker{health: broker.Health{OK: true, Version: "18.2.3"}}
	m := New(Options{Broker: b, Mirror: &fakeMirror{}, Logger: log.NewLogfmtLogger(&logs), Now: func() time.Time { return t0 }})
	if m.Probe().Checked {
		t.Fatal("checked before any probe")
	}
	ctx := context.Background()
	m.probeOnce(ctx)
	if p := m.Probe(); !p.Checked || !p.Up || p.Version != "18.2.3" || !p.At.Equal(t0) {
		t.Fatalf("probe after success: %+v", p)
	}
	b.healthErr = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	m.probeOnce(ctx)
	m.probeOnce(ctx)
	p := m.Probe()
	if p.Up || p.Err == "" || p.Version != "18.2.3" {
		t.Fatalf("probe after failure keeps the last version and reports down: %+v", p)
	}
	if n := strings.Count(logs.String(), "healthz failing"); n != 1 {
		t.Fatalf("want one log line per transition, got %d:\n%s", n, logs.String())
	}
	b.healthErr = nil
	m.probeOnce(ctx)
	if !m.Probe().Up || strings.Count(logs.String(), "healthz ok") != 2 {
		t.Fatalf("recovery not seen or not logged once:\n%s", logs.String())
	}
}

func TestPollDisabled(t *testing.T) {
	b := &fakeBroker{tombstones: []broker.Tombstone{{ID: 4, Provider: "anthropic", Cause: "oauth refresh failed: x"}}}
	m := New(Options{Broker: b, Mirror: &fakeMirror{}})
	if _, ok := m.Tombstones(); ok {
		t.Fatal("ok before any poll")
	}
	m.pollDisabled(context.Background())
	if ts, ok := m.Tombstones(); !ok || len(ts) != 1 || ts[0].ID != 4 {
		t.Fatalf("after poll: %v %v", ts, ok)
	}
	b.disErr = errors.New("HTTP 500")
	m.pollDisabled(context.Background())
	if ts, ok := m.Tombstones(); ok || ts != nil {
		t.Fatal("a failed poll must not keep showing stale tombstones")
	}
}

func TestHeal(t *testing.T) {
	now := t0
	overdue := func(id int64) *store.Entry { return oauth(id, t0.Add(time.Hour), 0, t0.Add(-2*time.Minute)) }
	fresh := oauth(10, t0.Add(time.Hour), 10*time.Minute, t0)
	longExpired := oauth(20, t0.Add(-2*time.Hour), 0, t0)
	mirror := &fakeMirror{view: store.View{Refresher: broker.Refresher{Enabled: true, Interval: time.Minute},
		Entries: []*store.Entry{overdue(1), overdue(2), overdue(3), fresh, longExpired, {Entry: &broker.Entry{ID: 30, Provider: "openai", Credential: broker.Credential{Type: broker.TypeAPIKey}}}}}}
	m := New(Options{Broker: &fakeBroker{}, Mirror: mirror, Now: func() time.Time { return now },
		RefreshOverdue: true, DisableExpiredAfter: time.Hour, MaxActionsPerPass: 3, RefreshEvery: 10 * time.Minute})
	ctx := context.Background()

	m.heal(ctx)
	if len(mirror.refreshed)+len(mirror.disabled) != 3 {
		t.Fatalf("one pass made %d calls, want the cap of 3", len(mirror.refreshed)+len(mirror.disabled))
	}
	m.heal(ctx)
	if got := append(append([]int64{}, mirror.refreshed...), mirror.disabled...); len(got) != 4 {
		t.Fatalf("second pass should only reach the one left: %v", got)
	}
	if len(mirror.disabled) != 1 || mirror.disabled[0] != 20 {
		t.Fatalf("the credential expired for 2h must be disabled (after 1h), got %v", mirror.disabled)
	}
	for _, id := range mirror.refreshed {
		if id == 10 || id == 30 {
			t.Fatalf("refreshed a credential that is not overdue: %d", id)
		}
	}
	m.heal(ctx)
	if len(mirror.refreshed)+len(mirror.disabled) != 4 {
		t.Fatal("rate limit per credential not honoured")
	}
	now = now.Add(10 * time.Minute)
	m.heal(ctx)
	if len(mirror.refreshed)+len(mirror.disabled) != 7 {
		t.Fatalf("after RefreshEvery the credentials are tried again: %d calls", len(mirror.refreshed)+len(mirror.disabled))
	}
	// Credentials that left the mirror leave the rate-limit map too.
	mirror.view.Entries = []*store.Entry{fresh}
	m.heal(ctx)
	if n := len(m.lastAttempt); n != 0 {
		t.Fatalf("rate-limit state kept for %d gone credentials", n)
	}
}

func TestHealOffByDefault(t *testing.T) {
	mirror := &fakeMirror{view: store.View{Refresher: broker.Refresher{Interval: time.Minute},
		Entries: []*store.Entry{oauth(1, t0.Add(-48*time.Hour), 0, t0.Add(-time.Hour))}}}
	m := New(Options{Broker: &fakeBroker{}, Mirror: mirror, Now: func() time.Time { return t0 }})
	m.heal(context.Background())
	if len(mirror.refreshed)+len(mirror.disabled) != 0 {
		t.Fatal("self-healing acted without being turned on")
	}
}

// TestRunStops: Run starts each of its loops (a probe, a tombstone poll, a
// self-healing pass), keeps going until its context is cancelled, and
// then returns with every goroutine it started gone.
func TestRunStops(t *testing.T) {
	b := &fakeBroker{health: broker.Health{OK: true, Version: "18.2.3"}, tombstones: []broker.Tombstone{{ID: 9, Provider: "anthropic"}}}
	expired := oauth(2, t0.Add(-time.Second), 30*time.Second, t0)
	mirror := &fakeMirror{view: store.View{Refresher: broker.Refresher{Enabled: true, Interval: time.Minute}, Entries: []*store.Entry{expired}}}
	m := New(Options{Broker: b, Mirror: mirror, RefreshOverdue: true, Now: func() time.Time { return t0 }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	returned := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	testwait.Eventually(t, "a probe, a tombstone poll and a healing pass", func() bool {
		mirror.mu.Lock()
		healed := slices.Equal(mirror.refreshed, []int64{2})
		mirror.mu.Unlock()
		_, polled := m.Tombstones()
		return m.Probe().Up && polled && healed
	})
	if returned() {
		t.Fatal("Run returned before its context was cancelled")
	}
	cancel()
	testwait.Eventually(t, "Run to return after cancel", returned)
	goleak.VerifyNone(t)
}

// TestHealUsesTheRotationRule: the monitor acts on health.RotationRule, so
// a frozen mirror's passed deadlines are not acted on (an expired
// credential still is), and the configured grace is the rule's.
func TestHealUsesTheRotationRule(t *testing.T) {
	passed := oauth(1, t0.Add(time.Hour), 0, t0.Add(-2*time.Minute)) // deadline 2 min ago
	expired := oauth(2, t0.Add(-time.Second), 30*time.Second, t0)
	view := store.View{Refresher: broker.Refresher{Enabled: true, Interval: time.Minute}, Entries: []*store.Entry{passed, expired}}
	for _, tc := range []struct {
		name   string
		frozen bool
		grace  time.Duration
		want   []int64
	}{
		{"live mirror", false, 0, []int64{1, 2}},
		{"frozen mirror", true, 0, []int64{2}},
		{"grace longer than the lateness", false, 5 * time.Minute, []int64{2}},
	} {
		mirror := &fakeMirror{view: view, frozen: tc.frozen}
		m := New(Options{Broker: &fakeBroker{}, Mirror: mirror, Now: func() time.Time { return t0 },
			RefreshOverdue: true, RotationGrace: tc.grace})
		m.heal(context.Background())
		if !slices.Equal(mirror.refreshed, tc.want) {
			t.Errorf("%s: refreshed %v, want %v", tc.name, mirror.refreshed, tc.want)
		}
	}
}
