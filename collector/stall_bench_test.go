package collector

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store"
)

// stallSource records the wait budget of every usage read and, while
// stalled, holds it until the budget runs out, like a fetch the broker
// does not answer.
type stallSource struct {
	benchSource
	mu      sync.Mutex
	stalled bool
	failed  bool
	budgets []time.Duration
}

func (s *stallSource) UsageReports(ctx context.Context) ([]store.UsageReport, error) {
	dl, ok := ctx.Deadline()
	s.mu.Lock()
	if ok {
		s.budgets = append(s.budgets, time.Until(dl))
	}
	stalled, failed := s.stalled, s.failed
	s.mu.Unlock()
	switch {
	case stalled:
		<-ctx.Done()
		return nil, ctx.Err()
	case failed:
		return nil, nil // the store's cached "no data" after a failed fetch
	}
	return s.reports, nil
}

func (s *stallSource) set(stalled, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled, s.failed = stalled, failed
}

func (s *stallSource) lastBudget() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.budgets[len(s.budgets)-1]
}

// TestUsageReaderWaitsOncePerStall: only the first scrape of a stalled
// usage fetch waits --collector.usage.timeout; the next ones look and
// serve the last good reports until the fetch answers.
func TestUsageReaderWaitsOncePerStall(t *testing.T) {
	const timeout = 40 * time.Millisecond
	src := &stallSource{benchSource: *newBenchSource(3, true)}
	u := NewUsageReader(src, timeout, nil)
	full := func(what string) {
		t.Helper()
		if b := src.lastBudget(); b <= stalledWait {
			t.Fatalf("%s: waited only %s, want the full timeout", what, b)
		}
	}
	short := func(what string) {
		t.Helper()
		if b := src.lastBudget(); b > stalledWait {
			t.Fatalf("%s: allowed %s, want at most %s", what, b, stalledWait)
		}
	}

	good, ok := u.Reports(context.Background())
	if !ok || len(good) != 3 {
		t.Fatalf("first read: %d reports, %v", len(good), ok)
	}
	full("healthy read")

	src.set(true, false)
	for i, check := range []func(string){full, short, short} {
		r, ok := u.Reports(context.Background())
		if !ok || &r[0] != &good[0] {
			t.Fatalf("stalled read %d did not serve the last good reports", i)
		}
		check("stalled read")
	}

	src.set(false, false)
	if r, ok := u.Reports(context.Background()); !ok || len(r) != 3 {
		t.Fatal("no reports once the fetch answered")
	}
	short("first read after the stall")
	u.Reports(context.Background())
	full("second read after the stall")

	// A failed fetch ends the stall too: usage goes away, and the next
	// fetch gets the full wait again.
	src.set(true, false)
	u.Reports(context.Background())
	src.set(false, true)
	if _, ok := u.Reports(context.Background()); ok {
		t.Fatal("a failed fetch still served usage")
	}
	src.set(false, false)
	u.Reports(context.Background())
	full("read after a failed fetch")
}

// BenchmarkUsageReaderStalled is the usage part of a scrape while the
// broker does not answer /v1/usage (after the first, timed-out scrape).
func BenchmarkUsageReaderStalled(b *testing.B) {
	src := &stallSource{benchSource: *newBenchSource(3, true)}
	u := NewUsageReader(src, 50*time.Millisecond, nil)
	u.Reports(context.Background())
	src.set(true, false)
	u.Reports(context.Background())
	for b.Loop() {
		if _, ok := u.Reports(context.Background()); !ok {
			b.Fatal("no last good reports")
		}
	}
}
