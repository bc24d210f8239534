package health

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// Provider capacity (docs/health.md, "Provider capacity"): how many of a
// provider's active credentials an agent can use right now, and when one
// comes back when none can. The rule is usableNow; the metrics, the page,
// the health API and `check --provider` all read it through Capacity or
// Report.Providers.

// Capacity levels of a provider, worst first.
const (
	CapacityUnavailable = "unavailable" // no usable credential
	CapacityLow         = "low"         // see CapacityLevel
	CapacityOK          = "ok"
)

// What ends when an unusable credential becomes usable again
// (ProviderCapacity.NextUsableCause).
const (
	BackBlockEnds   = "block_ends"    // an unscoped rate-limit block ends
	BackWindowReset = "window_resets" // an exhausted usage window resets
	BackSavedReset  = "saved_reset"   // a saved usage reset can be redeemed
)

// CredentialStates are the health states of an active credential, worst
// first (StateDisabled is a tombstone's, never an active credential's).
func CredentialStates() []string {
	return []string{StateExpired, StateUsageExhausted, StateExpiring, StateRotationOverdue, StateBlocked, StateOK}
}

// numStates is len(CredentialStates()): the states are problemOrder
// without usage_warning, then ok.
const numStates = len(problemOrder)

// stateIndex is c.state()'s index in CredentialStates.
func (c *credState) stateIndex() int {
	for i := range numStates - 1 {
		if c.problems&(1<<i) != 0 {
			return i
		}
	}
	return numStates - 1
}

// CapacityLevel judges a provider with active credentials of which usable
// are usable now: unavailable without one, low with at most one or under
// a quarter of the active ones (whichever is higher), else ok.
func CapacityLevel(active, usable int) string {
	switch {
	case usable <= 0:
		return CapacityUnavailable
	case usable <= 1 || 4*usable < active:
		return CapacityLow
	}
	return CapacityOK
}

// ProviderCapacity is one provider's line of Report.Providers.
type ProviderCapacity struct {
	Provider string `json:"provider"`
	Capacity string `json:"capacity"` // unavailable, low or ok
	Active   int    `json:"active"`
	Usable   int    `json:"usable"`
	// NextUsable is set while no credential is usable and the moment one
	// becomes usable again is known (now, when a saved reset can be
	// redeemed); the cause says what ends then, and Window names the usage
	// window of a window_resets cause.
	NextUsable          *time.Time `json:"next_usable"`
	NextUsableInSeconds *float64   `json:"next_usable_in_seconds"`
	NextUsableCause     string     `json:"next_usable_cause"`
	NextUsableWindow    string     `json:"next_usable_window"`
	// LoginNeeded: none is usable, no time is known, and an expired
	// credential is among the reasons.
	LoginNeeded bool `json:"login_needed"`
	// ScopedBlocks are the blocks that leave a credential usable (scoped to
	// one tier or meter), by scope: how many usable credentials have one.
	ScopedBlocks []ScopedBlock `json:"scoped_blocks"`
	// Headline is the page's line: "anthropic: 0 of 3 usable, back at …".
	Headline string `json:"headline"`
	// States counts the active credentials by state, in the order of
	// CredentialStates (Summary.ByProvider has the same in the JSON).
	States [numStates]int `json:"-"`
}

// ScopedBlock counts usable credentials with an active block of Scope.
type ScopedBlock struct {
	Scope       string `json:"scope"`
	Credentials int    `json:"credentials"`
}

// Capacity is Report.Providers without the rest of the evaluation, for
// the metrics: one pass over the active credentials, providers with
// active credentials only, worst first.
func Capacity(in Input, th Thresholds) []ProviderCapacity {
	ev := newEvaluation(in, th, nil, Query{View: ViewSummary})
	usage := in.Usage
	if !usage.HasData() {
		usage = nil
	}
	rule := ev.rotationRule()
	for _, e := range in.View.Entries {
		c := ev.classify(e, rule, usage)
		ev.caps.add(&c, ev.th, ev.now)
	}
	return ev.caps.result(ev.now, nil)
}

// usability is the "usable now" answer for one credential.
type usability struct {
	usable bool
	// back is when an unusable credential becomes usable (zero: unknown),
	// and cause and window what ends then.
	back          time.Time
	cause, window string
	expired       bool
}

// usableNow is the rule: a credential is usable when its access token
// (OAuth) has not expired, no unscoped block covers it and none of its
// usage limits is exhausted. It is active by being in the mirror. When it
// is not usable, back is the latest end among what keeps it unusable,
// or zero when one of them has no known end.
func usableNow(c *credState, th Thresholds, now time.Time) usability {
	var u usability
	if c.problems&pExpired != 0 {
		u.expired = true
		return u // no time known: the broker's refresh failed so far
	}
	blockEnd, blocked := unscopedBlockEnd(c.e, now)
	if c.problems&pUsageExhausted == 0 {
		if !blocked {
			u.usable = true
			return u
		}
		u.back, u.cause = blockEnd, BackBlockEnds
		return u
	}
	u.back, u.cause, u.window = usageBack(c.rep, th, now)
	if u.back.IsZero() {
		return u
	}
	if blocked && blockEnd.After(u.back) {
		u.back, u.cause, u.window = blockEnd, BackBlockEnds, ""
	}
	return u
}

// codexKeyPrefix marks the provider key whose meters chat and spark are
// separate block scopes (docs/broker-protocol.md §7.7).
const codexKeyPrefix = "openai-codex:"

// unscopedBlockEnd is when the active blocks that cover every use of e
// end: blocks with no scope and, for openai-codex, a shared block or
// blocks on both the chat and the spark meter (covered until the first
// of the two ends). ok is false when no such block is active.
func unscopedBlockEnd(e *store.Entry, now time.Time) (end time.Time, ok bool) {
	var chat, spark time.Time
	for _, b := range e.Blocks {
		if !b.BlockedUntil.After(now) {
			continue
		}
		codex := strings.HasPrefix(b.ProviderKey, codexKeyPrefix)
		switch {
		case b.Scope == "", codex && b.Scope == "shared":
			end = later(end, b.BlockedUntil)
		case codex && b.Scope == "chat":
			chat = later(chat, b.BlockedUntil)
		case codex && b.Scope == "spark":
			spark = later(spark, b.BlockedUntil)
		}
	}
	if !chat.IsZero() && !spark.IsZero() {
		first := chat
		if spark.Before(chat) {
			first = spark
		}
		end = later(end, first)
	}
	return end, !end.IsZero()
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// usageBack is when rep's exhausted limits stop keeping its credential
// unusable: when the last of their windows resets, or earlier when a
// usable saved reset clears them all (docs/broker-protocol.md §13.1; a
// credit naming no limit is taken to clear any), at once or when the
// cooldown ends. Zero when unknown.
func usageBack(rep *broker.UsageReport, th Thresholds, now time.Time) (back time.Time, cause, window string) {
	var exhausted []string
	known := true
	for i := range rep.Limits {
		l := &rep.Limits[i]
		if st, _, _ := limitState(l, th, now); st != LimitExhausted {
			continue
		}
		exhausted = append(exhausted, l.ID)
		if l.Window == nil || l.Window.ResetsAt.IsZero() {
			known = false
			continue
		}
		if l.Window.ResetsAt.After(back) {
			back, window = l.Window.ResetsAt, cmp.Or(l.Window.Label, l.Window.ID, limitLabel(l))
		}
	}
	cause = BackWindowReset
	if !known {
		back, cause, window = time.Time{}, "", ""
	}
	if sr := rep.Resets; sr != nil && savedResetClears(sr, exhausted, now) {
		at := later(now, sr.CooldownUntil)
		if back.IsZero() || at.Before(back) {
			back, cause, window = at, BackSavedReset, ""
		}
	}
	return back, cause, window
}

// savedResetClears reports whether a usable saved reset clears every
// limit in ids.
func savedResetClears(sr *broker.SavedResets, ids []string, now time.Time) bool {
	for i := range sr.Credits {
		c := &sr.Credits[i]
		if !c.UsableAt(now) {
			continue
		}
		if len(c.Clears) == 0 || !slices.ContainsFunc(ids, func(id string) bool { return !slices.Contains(c.Clears, id) }) {
			return true
		}
	}
	return false
}

// capacityTally adds credentials up by provider in the one pass over them.
type capacityTally struct {
	m    map[string]*providerTally
	last *providerTally // entries come grouped by provider: skip the lookup
}

type providerTally struct {
	ProviderCapacity
	back          time.Time
	cause, window string
	expired       bool
	scoped        map[string]int
}

func (t *capacityTally) add(c *credState, th Thresholds, now time.Time) {
	p := t.last
	if p == nil || p.Provider != c.e.Provider {
		if t.m == nil {
			t.m = map[string]*providerTally{}
		}
		if p = t.m[c.e.Provider]; p == nil {
			p = &providerTally{ProviderCapacity: ProviderCapacity{Provider: c.e.Provider}}
			t.m[c.e.Provider] = p
		}
		t.last = p
	}
	p.Active++
	p.States[c.stateIndex()]++
	u := usableNow(c, th, now)
	switch {
	case u.usable:
		p.Usable++
		if len(c.e.Blocks) > 0 {
			p.addScoped(c.e, now)
		}
	case u.back.IsZero():
		p.expired = p.expired || u.expired
	case p.back.IsZero() || u.back.Before(p.back):
		p.back, p.cause, p.window = u.back, u.cause, u.window
	}
}

// addScoped counts the scopes of e's active blocks (e is usable, so none
// of them covers it).
func (p *providerTally) addScoped(e *store.Entry, now time.Time) {
	active := func(b broker.Block) bool { return b.BlockedUntil.After(now) }
	for i, b := range e.Blocks {
		if !active(b) || slices.ContainsFunc(e.Blocks[:i], func(o broker.Block) bool { return o.Scope == b.Scope && active(o) }) {
			continue
		}
		if p.scoped == nil {
			p.scoped = map[string]int{}
		}
		p.scoped[b.Scope]++
	}
}

// result finishes the providers, adding those of extra that hold no
// active credential, worst first.
func (t *capacityTally) result(now time.Time, extra []string) []ProviderCapacity {
	out := make([]ProviderCapacity, 0, len(t.m)+len(extra))
	for _, p := range t.m {
		pc := p.ProviderCapacity
		pc.Capacity = CapacityLevel(pc.Active, pc.Usable)
		if pc.Usable == 0 {
			if !p.back.IsZero() {
				pc.NextUsable, pc.NextUsableInSeconds = timePtr(p.back), secs(p.back.Sub(now))
				pc.NextUsableCause, pc.NextUsableWindow = p.cause, p.window
			} else {
				pc.LoginNeeded = p.expired
			}
		}
		pc.ScopedBlocks = []ScopedBlock{}
		for _, s := range slices.Sorted(maps.Keys(p.scoped)) {
			pc.ScopedBlocks = append(pc.ScopedBlocks, ScopedBlock{Scope: s, Credentials: p.scoped[s]})
		}
		pc.Headline = headline(&pc, now)
		out = append(out, pc)
	}
	for _, name := range extra {
		if _, ok := t.m[name]; !ok {
			pc := ProviderCapacity{Provider: name, Capacity: CapacityUnavailable, LoginNeeded: true, ScopedBlocks: []ScopedBlock{}}
			pc.Headline = headline(&pc, now)
			out = append(out, pc)
		}
	}
	slices.SortFunc(out, compareCapacity)
	return out
}

// compareCapacity orders providers worst first: by level, then by the
// share of usable credentials, then by name.
func compareCapacity(a, b ProviderCapacity) int {
	return cmp.Or(
		cmp.Compare(capacityRank(a.Capacity), capacityRank(b.Capacity)),
		cmp.Compare(a.Usable*max(b.Active, 1), b.Usable*max(a.Active, 1)),
		strings.Compare(a.Provider, b.Provider))
}

func capacityRank(level string) int {
	switch level {
	case CapacityUnavailable:
		return 0
	case CapacityLow:
		return 1
	}
	return 2
}

// Verdict is the check's answer for the provider: critical without a
// usable credential, degraded when capacity is low.
func (p *ProviderCapacity) Verdict() Verdict {
	switch p.Capacity {
	case CapacityUnavailable:
		return Critical
	case CapacityLow:
		return Degraded
	}
	return OK
}

// Provider returns the capacity line of the named provider; a provider
// the broker holds nothing of has no usable credential.
func (r *Report) Provider(name string) ProviderCapacity {
	for _, p := range r.Providers {
		if p.Provider == name {
			return p
		}
	}
	p := ProviderCapacity{Provider: name, Capacity: CapacityUnavailable, ScopedBlocks: []ScopedBlock{}}
	p.Headline = headline(&p, r.CheckedAt)
	if !r.Sync.Ready {
		p.Headline = name + ": unknown: no snapshot from the broker"
	}
	return p
}

// rotationRule is the rotation rule of this evaluation.
func (ev *evaluation) rotationRule() RotationRule {
	return RotationRule{Refresher: ev.in.View.Refresher, Grace: ev.th.RotationGrace, MirrorLive: ev.in.Status.Live}
}

// providers is the capacity section: the tallied providers, and those
// with tombstones only.
func (ev *evaluation) providers() {
	ev.r.Providers = ev.caps.result(ev.now, slices.Sorted(maps.Keys(ev.r.Summary.ByProvider)))
}
