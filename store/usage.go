package store

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// Usage is the store's one answer to "what are the usage reports": the
// last good reports of GET /v1/usage with their match index, and the state
// of the latest fetch. Values are immutable; the store's usage refresher
// publishes a new one after every fetch. Metrics, the status page and the
// health API read the latest one; the check command builds its own with
// NewUsage.
type Usage struct {
	// Reports are the last good reports (nil until a fetch succeeded; a
	// failed fetch keeps the ones before it). Do not modify.
	Reports []broker.UsageReport
	// UnmatchedByProvider counts, for every provider with a report, the
	// reports that no credential of the mirror claimed when Reports were
	// fetched. Do not modify.
	UnmatchedByProvider map[string]int
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

// Unmatched is the number of reports no credential claimed, all providers
// together.
func (u *Usage) Unmatched() int {
	if !u.HasData() {
		return 0
	}
	n := 0
	for _, c := range u.UnmatchedByProvider {
		n += c
	}
	return n
}

// NewUsage is the usage answer of reports fetched at fetchedAt, matched by
// the store's rules against entries. The store builds its answers with it,
// and so does the one-shot check command with what it fetched.
func NewUsage(reports []broker.UsageReport, fetchedAt time.Time, entries []*Entry) *Usage {
	u := &Usage{Reports: reports, FetchedAt: fetchedAt, AttemptedAt: fetchedAt, index: newUsageIndex(reports),
		UnmatchedByProvider: make(map[string]int)}
	claimed := make(map[*broker.UsageReport]bool, len(reports))
	for _, e := range entries {
		if r, ok := u.index.match(e); ok {
			claimed[r] = true
		}
	}
	for i := range reports {
		n := u.UnmatchedByProvider[reports[i].Provider]
		if !claimed[&reports[i]] {
			n++
		}
		u.UnmatchedByProvider[reports[i].Provider] = n
	}
	return u
}

// Usage returns the latest usage answer: nil (no data) until the first
// fetch ended. It never starts a fetch and never waits for one; the
// store's usage refresher keeps the answer current.
func (s *Store) Usage() *Usage { return s.usage.Load() }

// usageKey is the single-flight key of the one usage fetch.
const usageKey = "usage"

// refreshUsage is the usage refresher, one goroutine that Close stops.
// It waits for the mirror's first snapshot (the request asks for as many
// accounts per provider as the mirror holds, and the answer counts the
// reports no credential claimed), or for the sync loop's first failure
// without one. Then it fetches every UsageTTL, keeping the last good
// reports through a failure and retrying a failure with backoff from
// BackoffInitial, doubling up to UsageTTL. The first snapshot and a
// recovery of the mirror after a failed fetch call for a fetch at once
// (kickUsage); a change of blocks for one within a third of the TTL of
// the last (blocksMovedUsage), so that a broker whose blocks keep
// changing is not asked back to back.
func (s *Store) refreshUsage() {
	retry := newRetryDelay(min(s.opts.BackoffInitial, s.opts.UsageTTL), s.opts.UsageTTL)
	var last *Usage
	var wait time.Duration
	for s.waitUsage(last, wait) {
		v, err, _ := s.usageFlight.Do(usageKey, s.fetchUsage)
		if err != nil {
			return // closed
		}
		last = v.(*Usage)
		if last.Failing {
			wait = retry.Next()
		} else {
			retry.Reset()
			wait = s.opts.UsageTTL
		}
	}
}

// waitUsage waits on the store's clock until the next fetch is due, wait
// after the last answer or sooner when called for; false once the store
// is closed. The time is read again after every sleep and every call for
// a fetch, so a clock whose sleep returns early only makes it look again.
func (s *Store) waitUsage(last *Usage, wait time.Duration) bool {
	for {
		ctx, wake := context.WithCancel(s.ctx)
		s.usageWake.Store(&wake) // installed before the flags are read: no call is missed
		at, due := s.nextUsageFetch(last, wait)
		now := s.clock.Now()
		switch {
		case s.ctx.Err() != nil:
			wake()
			return false
		case due && !now.Before(at):
			wake()
			return true
		case due:
			_ = s.clock.Sleep(ctx, at.Sub(now))
		default:
			<-ctx.Done() // nothing is due until a call for a fetch
		}
		wake()
	}
}

// nextUsageFetch is when the next fetch is due; false when none is until
// a call for one (before the first).
func (s *Store) nextUsageFetch(last *Usage, wait time.Duration) (at time.Time, due bool) {
	if s.usageKicked.Load() {
		return time.Time{}, true
	}
	if last == nil {
		return time.Time{}, false
	}
	if s.usageBlocksMoved.Load() {
		wait = min(wait, s.opts.UsageTTL/3)
	}
	return last.AttemptedAt.Add(wait), true
}

// kickUsage makes the refresher fetch now, whatever the age of the last
// answer; a call during a fetch makes another one after it.
func (s *Store) kickUsage() { s.callForUsage(&s.usageKicked) }

// blocksMovedUsage makes the refresher fetch within a third of the TTL of
// its last fetch: a new block usually means a limit was hit.
func (s *Store) blocksMovedUsage() { s.callForUsage(&s.usageBlocksMoved) }

func (s *Store) callForUsage(flag *atomic.Bool) {
	flag.Store(true)
	if wake := s.usageWake.Load(); wake != nil {
		(*wake)()
	}
}

// fetchUsage is the one fetch, on the refresher's goroutine; its context
// is the store's. It counts the call, logs a change between failing and
// good, and publishes the answer.
func (s *Store) fetchUsage() (any, error) {
	s.usageKicked.Store(false)
	s.usageBlocksMoved.Store(false)
	resp, err := s.broker.Usage(s.ctx, s.maxAccountsPerProvider())
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	prev := s.usage.Load()
	now := s.clock.Now()
	var next *Usage
	if err == nil {
		next = NewUsage(resp.Reports, now, s.Snapshot().Entries)
	} else {
		next = &Usage{AttemptedAt: now, Failing: true, Reason: broker.CallReason(err), Error: err.Error()}
		if prev != nil {
			next.Reports, next.UnmatchedByProvider, next.FetchedAt, next.index = prev.Reports, prev.UnmatchedByProvider, prev.FetchedAt, prev.index
		}
	}
	s.sm.Lock()
	s.count.UsageFetches++
	if err != nil {
		inc(&s.count.UsageFetchErrors, next.Reason)
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
	s.notify()
	return next, nil
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
