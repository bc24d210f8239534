// Package health turns the mirrored broker state into one verdict
// (ok, degraded, critical) with reasons, shared by the status page, the JSON
// API and the `check` subcommand so that all three always agree.
//
// Evaluate is a pure function of its Input: no I/O, no clock of its own.
// That keeps the rules table-testable and lets the page and the check
// command call it with state gathered in different ways.
package health

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store"
)

// maxCauseLen bounds a broker-supplied cause on pages: it is an upstream
// error message of unbounded length.
const maxCauseLen = 200

// Evaluate applies the rules (documented in docs/health.md) to in. ids may
// be nil, which renders every identity field empty. Its cost is linear in
// credentials plus usage reports plus tombstones.
func Evaluate(in Input, th Thresholds, ids *identity.Redactor) Report {
	ev := newEvaluation(in, th, ids)
	ev.broker()
	ev.mirror()
	ev.refresher()
	ev.credentials()
	ev.disabled()
	ev.verdict()
	return ev.r
}

// evaluation is one Evaluate call: its input, the effective thresholds and
// the report under construction, one method per section.
type evaluation struct {
	in  Input
	th  Thresholds
	now time.Time
	ids *identity.Redactor
	r   Report
}

func newEvaluation(in Input, th Thresholds, ids *identity.Redactor) *evaluation {
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	th = th.withDefaults(in.View.Refresher.Interval)
	return &evaluation{in: in, th: th, now: now, ids: ids, r: Report{
		Status:      OK,
		CheckedAt:   now.UTC(),
		Reasons:     []Reason{},
		Credentials: []CredentialHealth{},
		Disabled:    []DisabledCredential{},
		Thresholds: ThresholdsUsed{
			ExpiringWithinSeconds: th.ExpiringWithin.Seconds(),
			RotationGraceSeconds:  th.RotationGrace.Seconds(),
			StaleAfterSeconds:     th.StaleAfter.Seconds(),
			UsageWarning:          th.UsageWarning,
			MaxClockSkewSeconds:   th.MaxClockSkew.Seconds(),
			DisabledRecentSeconds: th.DisabledRecent.Seconds(),
		},
	}}
}

func (ev *evaluation) add(code string, sev Verdict, id *int64, format string, args ...any) {
	ev.r.Reasons = append(ev.r.Reasons, Reason{Code: code, Severity: sev, Message: fmt.Sprintf(format, args...), CredentialID: id})
}

// render applies the identity mode to one identity value.
func (ev *evaluation) render(v string) string {
	if ev.ids == nil {
		return ""
	}
	return ev.ids.Render(v)
}

// broker is the section of the healthz probe.
func (ev *evaluation) broker() {
	p := ev.in.Broker
	ev.r.Broker = BrokerHealth{URL: ev.in.BrokerURL, Up: p.Up, Version: p.Version, Error: p.Err}
	if !p.Checked.IsZero() {
		ev.r.Broker.CheckedAt = timePtr(p.Checked)
		ev.r.Broker.LatencySeconds = secs(p.Latency)
	}
	switch {
	case p.Up:
	case p.Checked.IsZero():
		ev.add(ReasonBrokerUnknown, Degraded, nil, "broker health not probed yet")
	default:
		msg := "broker health check failed"
		if p.Err != "" {
			msg += ": " + p.Err
		}
		ev.add(ReasonBrokerUnreachable, Critical, nil, "%s", msg)
	}
}

// mirror is the sync section: readiness, liveness, mode and clock skew.
func (ev *evaluation) mirror() {
	st, v, now := ev.in.Status, ev.in.View, ev.now
	ev.r.Sync = SyncHealth{
		Ready:            v.Ready,
		Live:             st.Live,
		Mode:             st.Mode.String(),
		StreamConnected:  st.StreamConnected,
		StreamSupported:  !st.StreamUnsupported,
		Generation:       v.Generation,
		GeneratedAt:      timePtr(v.GeneratedAt),
		LastSync:         timePtr(st.LastSync),
		GenerationResets: st.GenerationResets,
		LastError:        st.LastError,
		LastErrorReason:  st.LastErrorReason,
	}
	if !st.LastSync.IsZero() {
		ev.r.Sync.SecondsSinceLastSync = secs(now.Sub(st.LastSync))
	}
	if st.HasClockSkew {
		ev.r.Sync.ClockSkewSeconds = secs(st.ClockSkew)
	}
	lastErr := ""
	if st.LastError != "" {
		lastErr = " (last error: " + st.LastError + ")"
	}
	switch {
	case !v.Ready:
		ev.add(ReasonMirrorNotReady, Critical, nil, "no snapshot from the broker has been applied yet%s", lastErr)
	case !st.Live && (st.LastSync.IsZero() || now.Sub(st.LastSync) > ev.th.StaleAfter):
		ev.add(ReasonMirrorNotLive, Critical, nil, "mirror not live; last sync %s%s", ago(now, st.LastSync), lastErr)
	case !st.Live:
		ev.add(ReasonMirrorReconnecting, Degraded, nil, "mirror reconnecting; last sync %s%s", ago(now, st.LastSync), lastErr)
	}
	if st.StreamUnsupported {
		ev.add(ReasonStreamUnsupported, Info, nil, "broker does not offer the snapshot stream; following it by long-poll")
	} else if st.Mode == store.ModePoll && !ev.in.ForcePoll {
		ev.add(ReasonPollFallback, Degraded, nil, "following the broker by long-poll although the stream is supported")
	}
	if st.HasClockSkew && absDur(st.ClockSkew) > ev.th.MaxClockSkew {
		ev.add(ReasonClockSkew, Degraded, nil, "exporter and broker clocks differ by %s (limit %s); expiry times are off by as much",
			roundDur(st.ClockSkew), ev.th.MaxClockSkew)
	}
}

// refresher is the section of the broker's refresher schedule.
func (ev *evaluation) refresher() {
	v := ev.in.View
	rf := v.Refresher
	ev.r.Refresher = RefresherHealth{Enabled: rf.Enabled, IntervalSeconds: rf.Interval.Seconds(), SkewSeconds: rf.Skew.Seconds()}
	if rf.Enabled && !rf.NextSweep.IsZero() {
		ev.r.Refresher.NextSweep = timePtr(rf.NextSweep)
		ev.r.Refresher.NextSweepInSeconds = secs(rf.NextSweep.Sub(ev.now))
	}
	if !v.Ready || rf.Enabled {
		return
	}
	sev := Info
	for _, e := range v.Entries {
		if e.Credential.Type == store.TypeOAuth {
			sev = Degraded
			break
		}
	}
	ev.add(ReasonRefresherDisabled, sev, nil, "the broker's refresher is disabled; nobody refreshes OAuth access tokens before they expire")
}

// usageSource is the one place health reads usage data: it matches a
// credential to its report. It indexes the reports once per evaluation,
// so matching every credential costs O(credentials + reports), not
// credentials × reports.
type usageSource struct {
	n     int // reports
	index *store.UsageIndex
}

func newUsageSource(in Input) usageSource {
	return usageSource{n: len(in.Usage), index: store.NewUsageIndex(in.Usage)}
}

func (u usageSource) match(e *store.Entry) (*store.UsageReport, bool) { return u.index.Match(e) }

// credentials is the credential section, with the usage overview (how
// many reports no credential claimed) and the summary counts.
func (ev *evaluation) credentials() {
	ev.r.Usage = UsageHealth{Available: ev.in.UsageOK, Reports: len(ev.in.Usage)}
	if !ev.in.UsageOK {
		ev.add(ReasonUsageUnavailable, Degraded, nil, "no usage data: the broker's /v1/usage could not be fetched")
	}
	var usage *usageSource
	claimed := map[*store.UsageReport]struct{}{}
	if ev.in.UsageOK {
		u := newUsageSource(ev.in)
		usage = &u
	}
	entries := append([]*store.Entry(nil), ev.in.View.Entries...)
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].Provider != entries[j].Provider {
			return entries[i].Provider < entries[j].Provider
		}
		return entries[i].ID < entries[j].ID
	})
	ev.r.Summary.ByState = map[string]int{StateOK: 0, StateExpiring: 0, StateExpired: 0, StateRotationOverdue: 0, StateBlocked: 0, StateUsageExhausted: 0}
	ev.r.Credentials = make([]CredentialHealth, 0, len(entries))
	rule := RotationRule{Refresher: ev.in.View.Refresher, Grace: ev.th.RotationGrace, MirrorLive: ev.in.Status.Live}
	for _, e := range entries {
		c := ev.credential(e, rule)
		if usage != nil && e.Credential.Type == store.TypeOAuth {
			rep, ok := usage.match(e)
			ev.usage(&c, rep, ok)
			if ok {
				claimed[rep] = struct{}{}
			}
		}
		c.finish()
		ev.credentialReasons(&c)
		ev.r.Summary.ByState[c.State]++
		ev.r.Credentials = append(ev.r.Credentials, c)
	}
	ev.r.Summary.Credentials = len(ev.r.Credentials)
	if ev.in.View.Ready && len(entries) == 0 {
		ev.add(ReasonNoCredentials, Degraded, nil, "the broker holds no active credentials")
	}
	if usage != nil {
		ev.r.Usage.Unmatched = usage.n - len(claimed)
	}
}

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

// credential evaluates e's own fields: expiry, rotation and blocks.
func (ev *evaluation) credential(e *store.Entry, rule RotationRule) CredentialHealth {
	cr, now := e.Credential, ev.now
	c := CredentialHealth{
		ID: e.ID, Provider: e.Provider, Type: cr.Type,
		Identity: ev.render(e.IdentityKey), Email: ev.render(cr.Email), Account: ev.render(cr.AccountID), Org: ev.render(cr.OrgID),
		Problems:  []string{},
		Rotations: e.Rotations,
		Blocks:    []BlockHealth{},
		Limits:    []LimitHealth{},
	}
	if cr.HasExpires {
		c.ExpiresAt = timePtr(cr.Expires)
		c.ExpiresInSeconds = secs(cr.Expires.Sub(now))
		switch {
		case Expired(e, now):
			c.problems |= pExpired
		case cr.Expires.Sub(now) < ev.th.ExpiringWithin:
			c.problems |= pExpiring
		}
	}
	if deadline, ok := e.RotationDeadline(); ok {
		c.RotatesAt = timePtr(deadline)
		c.RotatesInSeconds = secs(deadline.Sub(now))
	}
	// The expiry half of the rotation rule is the expired state; the
	// rotation_overdue state is its deadline half.
	if rule.DeadlineMissed(e, now) {
		c.problems |= pRotationOverdue
	}
	c.LastRotation = timePtr(e.LastRotation)
	for _, b := range e.Blocks {
		if !b.BlockedUntil.After(now) {
			continue // expiry sends no frame; stale blocks are the client's to drop
		}
		c.Blocks = append(c.Blocks, BlockHealth{ProviderKey: b.ProviderKey, Scope: b.Scope, BlockedUntil: b.BlockedUntil.UTC(), BlockedForSecs: round3(b.BlockedUntil.Sub(now).Seconds())})
	}
	sort.Slice(c.Blocks, func(i, j int) bool { return c.Blocks[i].BlockedUntil.Before(c.Blocks[j].BlockedUntil) })
	if len(c.Blocks) > 0 {
		c.problems |= pBlocked
	}
	return c
}

// usage adds an OAuth credential's matched usage report to c.
func (ev *evaluation) usage(c *CredentialHealth, rep *store.UsageReport, ok bool) {
	c.UsageMatched = &ok
	if !ok || rep == nil {
		return
	}
	c.UsageFetchedAt = timePtr(rep.FetchedAt)
	for _, l := range rep.Limits {
		lh := evalLimit(l, ev.th, ev.now)
		switch lh.State {
		case LimitExhausted:
			c.problems |= pUsageExhausted
		case LimitWarning:
			c.problems |= pUsageWarning
		}
		c.Limits = append(c.Limits, lh)
	}
}

// finish lists c's problems worst first and sets its state to the worst.
func (c *CredentialHealth) finish() {
	c.State = StateOK
	for i, s := range problemOrder {
		if c.problems&(1<<i) == 0 {
			continue
		}
		c.Problems = append(c.Problems, s)
		if c.State == StateOK && s != ProblemUsageWarning {
			c.State = s
		}
	}
}

// credentialReasons adds one reason per problem of c.
func (ev *evaluation) credentialReasons(c *CredentialHealth) {
	now := ev.now
	id := c.ID
	name := fmt.Sprintf("credential %d (%s)", c.ID, c.Provider)
	for _, p := range c.Problems {
		switch p {
		case StateExpired:
			ev.add(ReasonCredentialExpired, Critical, &id, "%s expired %s", name, ago(now, *c.ExpiresAt))
		case StateUsageExhausted:
			ev.add(ReasonUsageExhausted, Critical, &id, "%s has exhausted %s", name, limitNames(c.Limits, LimitExhausted))
		case StateExpiring:
			ev.add(ReasonCredentialExpiring, Degraded, &id, "%s expires %s and has not been refreshed", name, fromNow(now, *c.ExpiresAt))
		case StateRotationOverdue:
			ev.add(ReasonRotationOverdue, Degraded, &id, "%s was due for rotation %s; none observed", name, ago(now, *c.RotatesAt))
		case StateBlocked:
			ev.add(ReasonCredentialBlocked, Degraded, &id, "%s is rate-limit blocked until %s", name, c.Blocks[len(c.Blocks)-1].BlockedUntil.UTC().Format(time.RFC3339))
		case ProblemUsageWarning:
			ev.add(ReasonUsageWarning, Degraded, &id, "%s is close to %s", name, limitNames(c.Limits, LimitWarning))
		}
	}
}

// disabled is the section of the broker's tombstones, newest first.
func (ev *evaluation) disabled() {
	if !ev.in.TombstonesOK {
		ev.add(ReasonDisabledUnavailable, Degraded, nil, "the broker's disabled-credential list could not be fetched")
	}
	tombs := append([]store.Tombstone(nil), ev.in.Tombstones...)
	sort.SliceStable(tombs, func(i, j int) bool { return tombs[i].DisabledAt.After(tombs[j].DisabledAt) })
	ev.r.Disabled = make([]DisabledCredential, 0, len(tombs))
	for _, t := range tombs {
		d := DisabledCredential{
			ID: t.ID, Provider: t.Provider, Type: t.Type,
			Email: ev.render(t.Email), Account: ev.render(t.AccountID), Org: ev.render(t.OrgID),
			State: StateDisabled, Cause: shorten(t.Cause, maxCauseLen), CauseClass: DisableCause(t.Cause),
			DisabledAt: timePtr(t.DisabledAt),
		}
		// Without a time a tombstone cannot be called recent; counting it
		// would degrade forever.
		if d.CauseClass == CauseRefreshFailed && !t.DisabledAt.IsZero() && ev.now.Sub(t.DisabledAt) <= ev.th.DisabledRecent {
			id := t.ID
			ev.add(ReasonRefreshFailed, Degraded, &id, "credential %d (%s) was disabled %s after a failed refresh; it needs a new login",
				t.ID, t.Provider, ago(ev.now, t.DisabledAt))
		}
		ev.r.Disabled = append(ev.r.Disabled, d)
	}
	ev.r.Summary.Disabled = len(ev.r.Disabled)
}

// verdict orders the reasons worst first and takes the worst as the status.
func (ev *evaluation) verdict() {
	sort.SliceStable(ev.r.Reasons, func(i, j int) bool { return ev.r.Reasons[i].Severity.rank() > ev.r.Reasons[j].Severity.rank() })
	for _, rs := range ev.r.Reasons {
		if rs.Severity != Info && rs.Severity.rank() > ev.r.Status.rank() {
			ev.r.Status = rs.Severity
		}
	}
}

func evalLimit(l store.UsageLimit, th Thresholds, now time.Time) LimitHealth {
	lh := LimitHealth{ID: l.ID, Label: l.Label, BrokerStatus: l.Status, State: LimitUnknown}
	if lh.Label == "" {
		lh.Label = l.ID
	}
	if w := l.Window; w != nil {
		lh.Window = w.Label
		if lh.Window == "" {
			lh.Window = w.ID
		}
		if !w.ResetsAt.IsZero() {
			lh.ResetsAt = timePtr(w.ResetsAt)
			lh.ResetsInSecs = secs(w.ResetsAt.Sub(now))
		}
	}
	f, ok := l.Amount.EffectiveUsedFraction()
	if ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
		lh.UsedFraction = &f
	} else {
		ok = false
	}
	switch {
	case lh.ResetsAt != nil && !lh.ResetsAt.After(now):
		// The report predates the window's reset: whatever it says is over.
		lh.State = LimitUnknown
	case l.Status == "exhausted" || (ok && f >= 1):
		lh.State = LimitExhausted
	case l.Status == "warning" || (ok && f >= th.UsageWarning):
		lh.State = LimitWarning
	case ok || l.Status == "ok":
		lh.State = LimitOK
	}
	return lh
}

func limitNames(ls []LimitHealth, state string) string {
	var names []string
	for _, l := range ls {
		if l.State == state {
			n := l.Label
			if l.UsedFraction != nil {
				n += fmt.Sprintf(" (%.0f%%)", *l.UsedFraction*100)
			}
			names = append(names, n)
		}
	}
	return "usage limit " + strings.Join(names, ", ")
}
