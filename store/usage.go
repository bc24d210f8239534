package store

import (
	"context"
	"time"

	"github.com/go-kit/log/level"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// Usage is the store's one answer to "what are the usage reports": the
// last good reports of GET /v1/usage with their match index, and the state
// of the latest fetch. Values are immutable; the store publishes a new one
// after every fetch. Metrics, the status page, the health API and the
// check command all read this value.
type Usage struct {
	// Reports are the last good reports (nil until a fetch succeeded; a
	// failed fetch keeps the ones before it). Do not modify.
	Reports []broker.UsageReport
	// FetchedAt is when Reports were fetched; zero until a fetch succeeded.
	FetchedAt time.Time
	// AttemptedAt is when the latest fetch finished, successful or not.
	AttemptedAt time.Time
	// Failing: the latest fetch failed, for Reason (a Reason* value).
	Failing bool
	Reason  string
	Error   string // redacted
	index   *usageIndex
}

// HasData reports whether Reports hold a broker answer (perhaps empty).
func (u *Usage) HasData() bool { return u != nil && !u.FetchedAt.IsZero() }

// Match returns e's usage report by the matching rules of
// docs/broker-protocol.md (API keys never match).
func (u *Usage) Match(e *Entry) (*broker.UsageReport, bool) {
	if !u.HasData() {
		return nil, false
	}
	return u.index.match(e)
}

// usageKey is the single-flight key of the one usage fetch.
const usageKey = "usage"

// Usage returns the current usage answer. With a good answer at hand it
// never waits: an answer older than two thirds of UsageTTL (or one made
// stale by a change of blocks) is refreshed in the background, one fetch
// at a time, once the reads in progress are done (see Reading). Without
// one, it waits for the fetch, bounded by ctx only for this caller. A
// failure is retried once UsageTTL has passed, or as soon as the mirror
// recovers from a broker outage.
func (s *Store) Usage(ctx context.Context) (*Usage, error) {
	u := s.usage.Load()
	if !s.usageDue(u) {
		return u, nil
	}
	if u.HasData() && s.reads.Load() > 0 && s.clock.Now().Sub(u.AttemptedAt) < s.opts.UsageTTL {
		s.usageWanted.Store(true)
		// The last read may have ended before the flag was up; then
		// nobody else will start the fetch.
		if s.reads.Load() > 0 || !s.usageWanted.Swap(false) {
			return u, nil
		}
	}
	ch := s.usageFlight.DoChan(usageKey, s.fetchUsage)
	if u.HasData() || s.usageOutwaited.Load() {
		// The fetch goes on without this caller: it has a good answer, or
		// the fetch already outlasted an earlier caller's wait (so a stalled
		// broker costs one scrape its timeout, not every scrape).
		return u, nil
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			return u, r.Err
		}
		return r.Val.(*Usage), nil
	case <-ctx.Done():
		if !s.usageOutwaited.Swap(true) {
			level.Warn(s.log).Log("msg", "usage fetch slower than a scrape may wait; no usage until it answers")
		}
		return u, ctx.Err()
	}
}

// Reading marks a read of the store in progress (a scrape, a status
// page) until done is called, once. A usage refresh that falls due during
// reads starts when the last of them is done: the fetch, its decode and
// the collection after it then run between scrapes rather than beside
// one, which on a small machine is what a scrape's tail is made of
// (bench/load). An answer older than UsageTTL is refreshed at once, so
// reads that never pause delay a refresh by a third of the TTL at most.
func (s *Store) Reading() (done func()) {
	s.reads.Add(1)
	return s.readDone
}

func (s *Store) readDone() {
	if s.reads.Add(-1) == 0 && s.usageWanted.Swap(false) && s.usageDue(s.usage.Load()) {
		s.usageFlight.DoChan(usageKey, s.fetchUsage)
	}
}

// usageDue: u should be replaced by a new fetch.
func (s *Store) usageDue(u *Usage) bool {
	if u == nil || s.usageStale.Load() {
		return true
	}
	age := s.clock.Now().Sub(u.AttemptedAt)
	if u.Failing {
		return age >= s.opts.UsageTTL
	}
	return age >= s.opts.UsageTTL*2/3
}

// fetchUsage is the one fetch; it belongs to the store (its context ends
// with Close), never to a caller.
func (s *Store) fetchUsage() (any, error) {
	if !s.enterOwned() {
		return nil, ErrClosed
	}
	defer s.wg.Done()
	s.usageStale.Store(false)
	resp, err := s.broker.Usage(s.ctx, s.maxAccountsPerProvider())
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	prev := s.usage.Load()
	next := &Usage{AttemptedAt: s.clock.Now()}
	if err == nil {
		next.Reports, next.FetchedAt, next.index = resp.Reports, next.AttemptedAt, newUsageIndex(resp.Reports)
	} else {
		next.Failing, next.Reason, next.Error = true, broker.CallReason(err), err.Error()
		if prev != nil {
			next.Reports, next.FetchedAt, next.index = prev.Reports, prev.FetchedAt, prev.index
		}
	}
	// A reader that finds this answer stale must start a new fetch, not
	// join this one as it returns: forgotten before anything tells of
	// this fetch, so whoever sees its count, its line or its answer and
	// asks again gets a new fetch.
	s.usageFlight.Forget(usageKey)
	s.sm.Lock()
	s.count.UsageFetches++
	if err != nil {
		s.count.UsageFetchErrors[next.Reason]++
	}
	s.sm.Unlock()
	// Logged before the answer is published, so whoever sees the answer
	// sees its line too.
	switch {
	case err != nil && (prev == nil || !prev.Failing):
		level.Warn(s.log).Log("msg", "auth-broker usage fetch failed; serving the last good reports", "reason", next.Reason, "err", err)
	case err == nil && prev != nil && prev.Failing:
		level.Info(s.log).Log("msg", "auth-broker usage fetch recovered")
	}
	s.usage.Store(next)
	s.usageOutwaited.Store(false)
	if fn := s.onUsage.Load(); fn != nil {
		(*fn)(next)
	}
	if err == nil && resp.Size >= s.collectAfter {
		// The body, the answer before this one and what was derived from
		// it are garbage now, and most of what the process allocates: it
		// fetches every few seconds what scrapes allocate in minutes.
		// Collect here, off the scrape path, rather than let the heap run
		// to twice its live size and have the collection that follows
		// start inside a scrape (bench/load counts scrapes overlapping a
		// collection).
		s.collect()
	}
	s.notify()
	return next, nil
}

// collectAfterUsage is the size of a usage answer (about 3k reports)
// after which the fetch runs a garbage collection.
const collectAfterUsage = 4 << 20

// OnUsage makes the store call fn with every usage answer it publishes,
// on the fetching goroutine, so that a reader can derive what it needs
// from a new answer there instead of on its own path (the collector builds
// its usage rows before the next scrape asks for them). One function; a
// later call replaces it.
func (s *Store) OnUsage(fn func(*Usage)) { s.onUsage.Store(&fn) }

// invalidateUsage makes the next reader refresh usage, whatever its age:
// a changed block usually means a limit was hit.
func (s *Store) invalidateUsage() { s.usageStale.Store(true) }

// retryFailedUsage makes the next reader retry a failed fetch at once
// (the broker is back), keeping a good answer as it is.
func (s *Store) retryFailedUsage() {
	if u := s.usage.Load(); u != nil && u.Failing {
		s.usageStale.Store(true)
	}
}

func (s *Store) maxAccountsPerProvider() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	per := map[string]int{}
	best := 0
	for _, e := range s.entries.list {
		per[e.Provider]++
		best = max(best, per[e.Provider])
	}
	return best
}

// NewUsage is a usage answer fetched by someone else (the one-shot check
// command), matched by the same rules.
func NewUsage(reports []broker.UsageReport, fetchedAt time.Time) *Usage {
	return &Usage{Reports: reports, FetchedAt: fetchedAt, AttemptedAt: fetchedAt, index: newUsageIndex(reports)}
}
