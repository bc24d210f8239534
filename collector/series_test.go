package collector

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store"
)

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

// mutableSource lets a test swap the view between scrapes.
type mutableSource struct {
	benchSource
	mu sync.Mutex
}

func (s *mutableSource) Snapshot() store.View {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.view
	v.Entries = slices.Clone(v.Entries)
	return v
}

func (s *mutableSource) setEntries(es []*store.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view.Entries = es
}

// TestSeriesCacheFollowsEntries: the label pairs cached per entry version
// must follow a replaced entry, drop a removed one, and give the same text
// on a cache hit as on a miss.
func TestSeriesCacheFollowsEntries(t *testing.T) {
	src := &mutableSource{benchSource: *newBenchSource(6, true)}
	src.fresh = true
	ids, _ := identity.New(identity.Raw, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(Options{Source: src, Broker: benchBroker{}, Identity: ids, Usage: true,
		Now: func() time.Time { return t0 }}).All()...)
	first := gatherText(t, reg)
	if again := gatherText(t, reg); again != first {
		t.Fatalf("a scrape served from the cache differs:\n%s\n---\n%s", first, again)
	}
	src.fresh = false
	if again := gatherText(t, reg); again != first {
		t.Fatal("a scrape with an unchanged report set differs")
	}
	// A new report set with new numbers replaces the cached usage rows.
	reports := slices.Clone(src.reports)
	for i := range reports {
		reports[i].Limits = slices.Clone(reports[i].Limits)
		reports[i].Limits[0].Amount.UsedFraction = bf(0.875)
	}
	src.reports = reports
	if out := gatherText(t, reg); strings.Count(out, "} 0.875\n") != 6 {
		t.Fatalf("new usage numbers not shown:\n%s", out)
	}
	// A limit whose unit changes gets new unit labels; its other series
	// keep theirs.
	reports = slices.Clone(reports)
	for i := range reports {
		reports[i].Limits = slices.Clone(reports[i].Limits)
		reports[i].Limits[1].Amount.Unit = "tokens"
	}
	src.reports = reports
	out := gatherText(t, reg)
	if n := strings.Count(out, `unit="tokens"`); n != 3*6 {
		t.Fatalf("%d series with the new unit, want 18:\n%s", n, out)
	}
	if n := strings.Count(out, `unit="percent"`); n != 3*3*6 {
		t.Fatalf("%d series with the old unit, want 54", n)
	}

	es := slices.Clone(src.Snapshot().Entries)
	var gone *store.Entry
	for i, e := range es {
		switch e.ID {
		case 1:
			cp := *e
			cp.Credential.Email = "rotated@example.com"
			cp.Rotations = 4
			es[i] = &cp
		case 2:
			gone = e
		}
	}
	es = slices.DeleteFunc(es, func(e *store.Entry) bool { return e == gone })
	src.setEntries(es)
	out = gatherText(t, reg)
	for _, want := range []string{`email="rotated@example.com"`, `authbroker_credential_rotations_total{id="1",provider="anthropic"} 4`} {
		if !strings.Contains(out, want) {
			t.Errorf("replaced entry: %s missing", want)
		}
	}
	for _, stale := range []string{`email="user0@example.com"`, `id="2"`} {
		if strings.Contains(out, stale) {
			t.Errorf("stale series %s survived", stale)
		}
	}
}

// TestConcurrentScrapes shares the per-entry caches between overlapping
// scrapes while the mirror changes (run with -race).
func TestConcurrentScrapes(t *testing.T) {
	src := &mutableSource{benchSource: *newBenchSource(50, true)}
	ids, _ := identity.New(identity.Hashed, []byte("k"))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(Options{Source: src, Broker: benchBroker{}, Identity: ids, Usage: true,
		Now: func() time.Time { return t0 }}).All()...)
	all := src.Snapshot().Entries
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if g == 0 {
					src.setEntries(all[:len(all)-i])
				}
				if _, err := reg.Gather(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
