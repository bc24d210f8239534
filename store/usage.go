package store

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log/level"
)

// usageCache is the single-flight, TTL-cached /v1/usage. The fetch belongs
// to the store (its context ends with Close), never to a caller.
type usageCache struct {
	mu       sync.Mutex
	reports  []UsageReport
	at       time.Time
	valid    bool
	failing  bool
	inflight *usageCall
}

type usageCall struct {
	done    chan struct{}
	reports []UsageReport
	err     error
}

// UsageReports returns the broker's usage reports: single-flight, cached for
// UsageTTL, failures cached as "no data" (nil, nil) for the same TTL. ctx
// bounds only this caller's wait, never the shared fetch. The reports are
// shared: do not modify them.
func (s *Store) UsageReports(ctx context.Context) ([]UsageReport, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u := &s.usage
	u.mu.Lock()
	if u.valid && s.clock.Now().Sub(u.at) < s.opts.UsageTTL {
		r := u.reports
		u.mu.Unlock()
		return r, nil
	}
	call := u.inflight
	if call == nil {
		call = &usageCall{done: make(chan struct{})}
		if !s.goOwned(func() { s.fetchUsage(call) }) {
			u.mu.Unlock()
			return nil, ErrClosed
		}
		u.inflight = call
	}
	u.mu.Unlock()
	select {
	case <-call.done:
		return call.reports, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Store) fetchUsage(call *usageCall) {
	defer close(call.done)
	resp, err := s.client.Usage(s.ctx, s.maxAccountsPerProvider())
	u := &s.usage
	u.mu.Lock()
	defer u.mu.Unlock()
	u.inflight = nil
	if s.ctx.Err() != nil {
		call.err = ErrClosed
		return
	}
	s.sm.Lock()
	s.count.UsageFetches++
	if err != nil {
		s.count.UsageFetchErrors[opReason(err)]++
	}
	s.sm.Unlock()
	u.at, u.valid = s.clock.Now(), true
	if err != nil {
		u.reports = nil
		if !u.failing {
			level.Warn(s.log).Log("msg", "auth-broker usage fetch failed; no usage data until it recovers", "reason", opReason(err), "err", err)
		}
		u.failing = true
		return
	}
	if u.failing {
		level.Info(s.log).Log("msg", "auth-broker usage fetch recovered")
	}
	u.failing = false
	u.reports = resp.Reports
	call.reports = resp.Reports
}

// invalidate makes the next caller fetch again, whatever is cached.
func (u *usageCache) invalidate() {
	u.mu.Lock()
	u.valid = false
	u.mu.Unlock()
}

// forgetFailure makes the next caller fetch again when the cached answer
// is a failure; cached reports stay.
func (u *usageCache) forgetFailure() {
	u.mu.Lock()
	if u.failing {
		u.valid = false
	}
	u.mu.Unlock()
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

// UsageReport matches id's usage report (nil when none, or when id is not a
// mirrored OAuth credential).
func (s *Store) UsageReport(ctx context.Context, id int64) (*UsageReport, error) {
	e := s.entry(id)
	if e == nil || e.Credential.Type != TypeOAuth {
		return nil, nil
	}
	reports, err := s.UsageReports(ctx)
	if err != nil {
		return nil, err
	}
	r, _ := MatchUsageReport(reports, e)
	return r, nil
}

// EffectiveUsedFraction follows the broker client's precedence:
// usedFraction; else used/limit when limit > 0; else used/100 for percent;
// else 1 - remainingFraction. ok is false when none applies.
func (a UsageAmount) EffectiveUsedFraction() (fraction float64, ok bool) {
	switch {
	case a.UsedFraction != nil:
		return *a.UsedFraction, true
	case a.Used != nil && a.Limit != nil && *a.Limit > 0:
		return *a.Used / *a.Limit, true
	case a.Used != nil && a.Unit == "percent":
		return *a.Used / 100, true
	case a.RemainingFraction != nil:
		return 1 - *a.RemainingFraction, true
	}
	return 0, false
}

// norm is the credential-side normalisation: trimmed, lowercased.
func norm(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

type identity struct{ accountID, email, projectID string }

func (id identity) any() bool { return id.accountID != "" || id.email != "" || id.projectID != "" }

// matches is the broker client's identityMatch. Metadata values are already
// trimmed by the decoder; scope ids are lowercased but deliberately not
// trimmed, as in 18.2.3.
func (id identity) matches(r *UsageReport) bool {
	if id.accountID != "" {
		if m := r.Metadata.AccountID; m != "" && strings.ToLower(m) == id.accountID {
			return true
		}
		for i := range r.Limits {
			if s := r.Limits[i].Scope.AccountID; s != "" && strings.ToLower(s) == id.accountID {
				return true
			}
		}
	}
	if id.email != "" {
		if m := r.Metadata.Email; m != "" && strings.ToLower(m) == id.email {
			return true
		}
	}
	if id.projectID != "" {
		if m := r.Metadata.ProjectID; m != "" && strings.ToLower(m) == id.projectID {
			return true
		}
		for i := range r.Limits {
			if s := r.Limits[i].Scope.ProjectID; s != "" && strings.ToLower(s) == id.projectID {
				return true
			}
		}
	}
	return false
}

// MatchUsageReport picks the report for one OAuth credential using the
// 18.2.3 org-aware rules (protocol §8). API-key entries never match.
func MatchUsageReport(reports []UsageReport, e *Entry) (*UsageReport, bool) {
	if e == nil || e.Credential.Type != TypeOAuth {
		return nil, false
	}
	c := &e.Credential
	id := identity{accountID: norm(c.AccountID), email: norm(c.Email), projectID: norm(c.ProjectID)}
	org := norm(c.OrgID)

	var all []*UsageReport
	for i := range reports {
		if reports[i].Provider == e.Provider {
			all = append(all, &reports[i])
		}
	}
	if len(all) == 0 {
		return nil, false
	}
	if org != "" {
		var sameOrg []*UsageReport
		for _, r := range all {
			if r.Metadata.OrgID != "" && strings.ToLower(r.Metadata.OrgID) == org {
				sameOrg = append(sameOrg, r)
			}
		}
		// Reports without an org are never given to an org-scoped credential.
		if !id.any() {
			if len(sameOrg) == 1 {
				return sameOrg[0], true
			}
			return nil, false
		}
		for _, r := range sameOrg {
			if id.matches(r) {
				return r, true
			}
		}
		return nil, false
	}
	var candidates []*UsageReport
	for _, r := range all {
		if r.Metadata.OrgID == "" {
			candidates = append(candidates, r)
		}
	}
	if len(candidates) == 0 {
		return nil, false
	}
	if len(all) == 1 {
		return all[0], true // lone-candidate fallback: one org-less report
	}
	for _, r := range candidates {
		if id.matches(r) {
			return r, true
		}
	}
	return nil, false
}
