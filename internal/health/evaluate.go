// Package health turns the mirrored broker state into one verdict
// (ok, degraded, critical) with reasons, shared by the status page, the JSON
// API and the `check` subcommand so that all three always agree.
//
// Evaluate is a pure function of its Input: no I/O, no clock of its own.
// That keeps the rules table-testable and lets the page and the check
// command call it with state gathered in different ways.
package health

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// maxCauseLen bounds a broker-supplied cause on pages: it is an upstream
// error message of unbounded length.
const maxCauseLen = 200

// Evaluate applies the rules (documented in docs/health.md) to in and
// lists every credential and tombstone. ids may be nil, which renders
// every identity field empty.
func Evaluate(in Input, th Thresholds, ids *identity.Redactor) Report {
	return EvaluateQuery(in, th, ids, Query{})
}

// EvaluateQuery is Evaluate listing what q chooses. Its cost is linear in
// credentials plus usage reports plus tombstones, and only the listed
// credentials are rendered in full.
func EvaluateQuery(in Input, th Thresholds, ids *identity.Redactor, q Query) Report {
	ev := newEvaluation(in, th, ids, q)
	ev.broker()
	ev.mirror()
	ev.refresher()
	ev.credentials()
	ev.disabled()
	ev.providers()
	ev.verdict()
	return ev.r
}

// evaluation is one Evaluate call: its input, the effective thresholds and
// the report under construction, one method per section.
type evaluation struct {
	in  Input
	th  Thresholds
	q   Query
	now time.Time
	ids *identity.Redactor
	r   Report
	// caps adds the credentials up by provider for Report.Providers.
	caps capacityTally
}

func newEvaluation(in Input, th Thresholds, ids *identity.Redactor, q Query) *evaluation {
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	th = th.withDefaults(in.View.Refresher.Interval)
	return &evaluation{in: in, th: th, q: q, now: now, ids: ids, r: Report{
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
		Summary: Summary{
			ByState:    map[string]int{StateOK: 0, StateExpiring: 0, StateExpired: 0, StateRotationOverdue: 0, StateBlocked: 0, StateUsageExhausted: 0},
			ByProvider: map[string]map[string]int{},
			ByReason:   map[string]int{},
		},
		Listing: q.listing(),
	}}
}

// add adds a broker or mirror reason: always listed.
func (ev *evaluation) add(code string, sev Verdict, id *int64, format string, args ...any) {
	ev.addFor(code, sev, id, true, func() string { return fmt.Sprintf(format, args...) })
}

// addFor counts a reason into the verdict and the summary, and lists it
// (formatting its message) only when listed.
func (ev *evaluation) addFor(code string, sev Verdict, id *int64, listed bool, message func() string) {
	ev.r.Summary.ByReason[code]++
	if sev != Info && sev.rank() > ev.r.Status.rank() {
		ev.r.Status = sev
	}
	if listed {
		ev.r.Reasons = append(ev.r.Reasons, Reason{Code: code, Severity: sev, Message: message(), CredentialID: id})
	}
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
		if e.Credential.Type == broker.TypeOAuth {
			sev = Degraded
			break
		}
	}
	ev.add(ReasonRefresherDisabled, sev, nil, "the broker's refresher is disabled; nobody refreshes OAuth access tokens before they expire")
}

// disabled is the section of the broker's tombstones, newest first.
func (ev *evaluation) disabled() {
	if !ev.in.TombstonesOK {
		ev.add(ReasonDisabledUnavailable, Degraded, nil, "the broker's disabled-credential list could not be fetched")
	}
	tombs := slices.Clone(ev.in.Tombstones)
	slices.SortStableFunc(tombs, func(a, b broker.Tombstone) int { return b.DisabledAt.Compare(a.DisabledAt) })
	var matching []broker.Tombstone
	for _, t := range tombs {
		ev.providerCounts(t.Provider)[StateDisabled]++
		match := ev.q.matchesTombstone(t.ID, t.Provider)
		// Without a time a tombstone cannot be called recent; counting it
		// would degrade forever.
		if t.CauseClass() == broker.CauseRefreshFailed && !t.DisabledAt.IsZero() && ev.now.Sub(t.DisabledAt) <= ev.th.DisabledRecent {
			id := t.ID
			ev.addFor(ReasonRefreshFailed, Degraded, &id, match, func() string {
				return fmt.Sprintf("credential %d (%s) was disabled %s after a failed refresh; it needs a new login",
					t.ID, t.Provider, ago(ev.now, t.DisabledAt))
			})
		}
		if match {
			matching = append(matching, t)
		}
	}
	ev.r.Summary.Disabled = len(tombs)
	ev.r.Listing.Disabled.Matching = len(matching)
	if ev.q.summary() {
		return
	}
	matching = matching[:ev.q.capped(len(matching))]
	ev.r.Disabled = make([]DisabledCredential, 0, len(matching))
	for _, t := range matching {
		ev.r.Disabled = append(ev.r.Disabled, DisabledCredential{
			ID: t.ID, Provider: t.Provider, Type: t.Type,
			Email: ev.render(t.Email), Account: ev.render(t.AccountID), Org: ev.render(t.OrgID),
			State: StateDisabled, Cause: shorten(t.Cause, maxCauseLen), CauseClass: t.CauseClass(),
			DisabledAt: timePtr(t.DisabledAt),
		})
	}
	ev.r.Listing.Disabled.Listed = len(ev.r.Disabled)
}

// verdict orders the reasons worst first (the status is already the
// worst of them); a summary lists credential reasons up to the limit.
func (ev *evaluation) verdict() {
	rs := ev.r.Reasons
	slices.SortStableFunc(rs, func(a, b Reason) int { return cmp.Compare(b.Severity.rank(), a.Severity.rank()) })
	kept, credential := rs[:0], 0
	for _, x := range rs {
		if x.CredentialID != nil {
			credential++
			if ev.q.summary() && ev.q.Limit > 0 && credential > ev.q.Limit {
				continue
			}
		}
		kept = append(kept, x)
	}
	ev.r.Reasons = kept
	ev.r.Listing.Reasons = ListCount{Matching: len(rs), Listed: len(kept)}
}
