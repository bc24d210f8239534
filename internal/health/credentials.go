package health

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// Credentials are evaluated in two passes: every credential is classified
// (its problems, its usage report) without allocating, which is all the
// verdict, the counts and the reasons need; only the credentials a Query
// lists are then rendered into CredentialHealth rows (identity hashing,
// times, limits). A summary of 30k credentials renders none.

// problem bits, in problemOrder: worst first.
const (
	pExpired = 1 << iota
	pUsageExhausted
	pExpiring
	pRotationOverdue
	pBlocked
	pUsageWarning
)

var problemOrder = [...]string{StateExpired, StateUsageExhausted, StateExpiring, StateRotationOverdue, StateBlocked, ProblemUsageWarning}

// credState is one classified credential.
type credState struct {
	e        *store.Entry
	rep      *broker.UsageReport // matched usage report, nil if none
	usage    bool                // usage was judged: an OAuth credential with usage data
	matched  bool
	problems uint8
}

// state is the worst problem that is a state (usage_warning is not).
func (c *credState) state() string {
	for i, s := range problemOrder[:len(problemOrder)-1] {
		if c.problems&(1<<i) != 0 {
			return s
		}
	}
	return StateOK
}

// rank orders credentials worst first: by their worst problem, with
// usage_warning just before ok.
func (c *credState) rank() int {
	for i := range problemOrder {
		if c.problems&(1<<i) != 0 {
			return i
		}
	}
	return len(problemOrder)
}

func (c *credState) problemList() []string {
	ps := []string{}
	for i, s := range problemOrder {
		if c.problems&(1<<i) != 0 {
			ps = append(ps, s)
		}
	}
	return ps
}

// credentials is the credential section: the usage overview, the summary
// counts, the credential reasons and the listed rows.
func (ev *evaluation) credentials() {
	// The store's usage answer carries its match index: matching every
	// credential costs O(credentials + reports).
	usage := ev.in.Usage
	if !usage.HasData() {
		usage = nil
	}
	ev.r.Usage = UsageHealth{Available: usage != nil}
	switch {
	case usage == nil:
		ev.add(ReasonUsageUnavailable, Degraded, nil, "no usage data: the broker's /v1/usage could not be fetched")
	case usage.Failing:
		ev.add(ReasonUsageUnavailable, Degraded, nil, "the last /v1/usage fetch failed (%s); showing the reports fetched at %s",
			usage.Reason, usage.FetchedAt.UTC().Format(time.RFC3339))
	}
	if usage != nil {
		ev.r.Usage.Reports = len(usage.Reports)
	}
	entries := slices.Clone(ev.in.View.Entries)
	slices.SortFunc(entries, func(a, b *store.Entry) int {
		return cmp.Or(strings.Compare(a.Provider, b.Provider), cmp.Compare(a.ID, b.ID))
	})
	rule := ev.rotationRule()
	var matching []credState
	for _, e := range entries {
		c := ev.classify(e, rule, usage)
		ev.count(e.Provider, c.state())
		ev.caps.add(&c, ev.th, ev.now)
		match := ev.q.matchesCredential(&c)
		ev.credentialReasons(&c, match)
		if match {
			matching = append(matching, c)
		}
	}
	ev.r.Summary.Credentials = len(entries)
	if ev.in.View.Ready && len(entries) == 0 {
		ev.add(ReasonNoCredentials, Degraded, nil, "the broker holds no active credentials")
	}
	if usage != nil {
		ev.r.Usage.Unmatched = usage.Unmatched()
	}
	ev.r.Listing.Credentials.Matching = len(matching)
	if ev.q.summary() {
		return
	}
	ev.q.order(matching)
	matching = matching[:ev.q.capped(len(matching))]
	ev.r.Credentials = make([]CredentialHealth, 0, len(matching))
	for i := range matching {
		ev.r.Credentials = append(ev.r.Credentials, ev.row(&matching[i]))
	}
	ev.r.Listing.Credentials.Listed = len(ev.r.Credentials)
}

// count adds a credential in state to the summary counts.
func (ev *evaluation) count(provider, state string) {
	ev.r.Summary.ByState[state]++
	ev.providerCounts(provider)[state]++
}

func (ev *evaluation) providerCounts(provider string) map[string]int {
	m := ev.r.Summary.ByProvider[provider]
	if m == nil {
		m = map[string]int{StateOK: 0, StateExpiring: 0, StateExpired: 0, StateRotationOverdue: 0, StateBlocked: 0, StateUsageExhausted: 0, StateDisabled: 0}
		ev.r.Summary.ByProvider[provider] = m
	}
	return m
}

// classify finds e's problems: expiry, the rotation rule, active blocks
// and the states of its usage limits.
func (ev *evaluation) classify(e *store.Entry, rule RotationRule, usage *store.Usage) credState {
	c := credState{e: e}
	cr, now := &e.Credential, ev.now
	switch {
	case !cr.HasExpires:
	case Expired(e, now):
		c.problems |= pExpired
	case cr.Expires.Sub(now) < ev.th.ExpiringWithin:
		c.problems |= pExpiring
	}
	// The expiry half of the rotation rule is the expired state; the
	// rotation_overdue state is its deadline half.
	if rule.DeadlineMissed(e, now) {
		c.problems |= pRotationOverdue
	}
	if _, ok := lastBlock(e, now); ok {
		c.problems |= pBlocked
	}
	if usage == nil || cr.Type != broker.TypeOAuth {
		return c
	}
	c.usage = true
	rep, ok := usage.Match(e)
	c.matched = ok
	if !ok || rep == nil {
		return c
	}
	c.rep = rep
	for i := range rep.Limits {
		switch st, _, _ := limitState(&rep.Limits[i], ev.th, now); st {
		case LimitExhausted:
			c.problems |= pUsageExhausted
		case LimitWarning:
			c.problems |= pUsageWarning
		}
	}
	return c
}

// lastBlock is when e's latest active rate-limit block ends.
func lastBlock(e *store.Entry, now time.Time) (time.Time, bool) {
	var last time.Time
	for _, b := range e.Blocks {
		// Expiry sends no frame: stale blocks are the client's to drop.
		if b.BlockedUntil.After(now) && b.BlockedUntil.After(last) {
			last = b.BlockedUntil
		}
	}
	return last, !last.IsZero()
}

// credentialReasons counts one reason per problem of c, and lists them
// when c matches the query.
func (ev *evaluation) credentialReasons(c *credState, listed bool) {
	if c.problems == 0 {
		return
	}
	e, now := c.e, ev.now
	id := e.ID
	add := func(code string, sev Verdict, format string, args ...any) {
		ev.addFor(code, sev, &id, listed, func() string {
			return fmt.Sprintf("credential %d (%s) ", e.ID, e.Provider) + fmt.Sprintf(format, args...)
		})
	}
	if c.problems&pExpired != 0 {
		add(ReasonCredentialExpired, Critical, "expired %s", ago(now, e.Credential.Expires))
	}
	if c.problems&pUsageExhausted != 0 {
		add(ReasonUsageExhausted, Critical, "has exhausted %s", limitNames(c.rep, LimitExhausted, ev.th, now))
	}
	if c.problems&pExpiring != 0 {
		add(ReasonCredentialExpiring, Degraded, "expires %s and has not been refreshed", fromNow(now, e.Credential.Expires))
	}
	if c.problems&pRotationOverdue != 0 {
		deadline, _ := e.RotationDeadline()
		add(ReasonRotationOverdue, Degraded, "was due for rotation %s; none observed", ago(now, deadline))
	}
	if c.problems&pBlocked != 0 {
		until, _ := lastBlock(e, now)
		add(ReasonCredentialBlocked, Degraded, "is rate-limit blocked until %s", until.UTC().Format(time.RFC3339))
	}
	if c.problems&pUsageWarning != 0 {
		add(ReasonUsageWarning, Degraded, "is close to %s", limitNames(c.rep, LimitWarning, ev.th, now))
	}
}

// row renders a listed credential.
func (ev *evaluation) row(c *credState) CredentialHealth {
	e, now := c.e, ev.now
	cr := &e.Credential
	h := CredentialHealth{
		ID: e.ID, Provider: e.Provider, Type: cr.Type,
		Identity: ev.render(e.IdentityKey), Email: ev.render(cr.Email), Account: ev.render(cr.AccountID), Org: ev.render(cr.OrgID),
		State: c.state(), Problems: c.problemList(),
		LastRotation: timePtr(e.LastRotation), Rotations: e.Rotations,
		Blocks: []BlockHealth{}, Limits: []LimitHealth{},
	}
	if cr.HasExpires {
		h.ExpiresAt = timePtr(cr.Expires)
		h.ExpiresInSeconds = secs(cr.Expires.Sub(now))
	}
	if deadline, ok := e.RotationDeadline(); ok {
		h.RotatesAt = timePtr(deadline)
		h.RotatesInSeconds = secs(deadline.Sub(now))
	}
	for _, b := range e.Blocks {
		if b.BlockedUntil.After(now) {
			h.Blocks = append(h.Blocks, BlockHealth{ProviderKey: b.ProviderKey, Scope: b.Scope, BlockedUntil: b.BlockedUntil.UTC(), BlockedForSecs: round3(b.BlockedUntil.Sub(now).Seconds())})
		}
	}
	slices.SortFunc(h.Blocks, func(a, b BlockHealth) int { return a.BlockedUntil.Compare(b.BlockedUntil) })
	if c.usage {
		matched := c.matched
		h.UsageMatched = &matched
	}
	if c.rep != nil {
		h.UsageFetchedAt = timePtr(c.rep.FetchedAt)
		for i := range c.rep.Limits {
			h.Limits = append(h.Limits, evalLimit(&c.rep.Limits[i], ev.th, now))
		}
	}
	return h
}

// limitState judges one usage limit: its state and its effective used
// fraction (ok is false when the report gives none).
func limitState(l *broker.UsageLimit, th Thresholds, now time.Time) (state string, f float64, ok bool) {
	f, ok = l.Amount.EffectiveUsedFraction()
	if ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		f, ok = 0, false
	}
	switch {
	case l.Window != nil && !l.Window.ResetsAt.IsZero() && !l.Window.ResetsAt.After(now):
		// The report predates the window's reset: whatever it says is over.
		return LimitUnknown, f, ok
	case l.Status == "exhausted" || (ok && f >= 1):
		return LimitExhausted, f, ok
	case l.Status == "warning" || (ok && f >= th.UsageWarning):
		return LimitWarning, f, ok
	case ok || l.Status == "ok":
		return LimitOK, f, ok
	}
	return LimitUnknown, f, ok
}

func evalLimit(l *broker.UsageLimit, th Thresholds, now time.Time) LimitHealth {
	lh := LimitHealth{ID: l.ID, Label: limitLabel(l), BrokerStatus: l.Status}
	if w := l.Window; w != nil {
		lh.Window = cmp.Or(w.Label, w.ID)
		if !w.ResetsAt.IsZero() {
			lh.ResetsAt = timePtr(w.ResetsAt)
			lh.ResetsInSecs = secs(w.ResetsAt.Sub(now))
		}
	}
	var f float64
	var ok bool
	lh.State, f, ok = limitState(l, th, now)
	if ok {
		lh.UsedFraction = &f
	}
	return lh
}

func limitLabel(l *broker.UsageLimit) string { return cmp.Or(l.Label, l.ID) }

// limitNames names rep's limits in state, for reason messages.
func limitNames(rep *broker.UsageReport, state string, th Thresholds, now time.Time) string {
	var names []string
	for i := range rep.Limits {
		l := &rep.Limits[i]
		st, f, ok := limitState(l, th, now)
		if st != state {
			continue
		}
		n := limitLabel(l)
		if ok {
			n += fmt.Sprintf(" (%.0f%%)", f*100)
		}
		names = append(names, n)
	}
	return "usage limit " + strings.Join(names, ", ")
}
