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
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// Verdict is the overall result, ordered ok < degraded < critical.
type Verdict string

const (
	OK       Verdict = "ok"
	Degraded Verdict = "degraded"
	Critical Verdict = "critical"
	// Info is used only as a Reason severity: worth showing, never
	// changes the verdict.
	Info Verdict = "info"
)

func (v Verdict) rank() int {
	switch v {
	case Critical:
		return 3
	case Degraded:
		return 2
	case Info:
		return 1
	}
	return 0
}

// Credential states, worst first. A credential has exactly one state: the
// worst condition that applies (all of them are listed in Problems).
const (
	StateExpired         = "expired"
	StateUsageExhausted  = "usage_exhausted"
	StateExpiring        = "expiring"
	StateRotationOverdue = "rotation_overdue"
	StateBlocked         = "blocked"
	StateOK              = "ok"
	// StateDisabled is the state of every tombstone in Report.Disabled.
	StateDisabled = "disabled"
)

// ProblemUsageWarning is listed in a credential's Problems (not a state of
// its own) when a usage limit is at or above the warning fraction.
const ProblemUsageWarning = "usage_warning"

// Usage limit states.
const (
	LimitOK        = "ok"
	LimitWarning   = "warning"
	LimitExhausted = "exhausted"
	LimitUnknown   = "unknown"
)

// Disable causes (the `cause` label of authbroker_credentials_disabled).
const (
	CauseRefreshFailed = "refresh_failed"
	CauseReplaced      = "replaced"
	CauseManual        = "manual"
	CauseOther         = "other"
)

// DisableCause classifies a tombstone's free-text cause into a closed
// vocabulary. The texts are the ones oh-my-pi 18.2.3 writes:
//
//   - refresh_failed: "oauth refresh failed: <error>" (the broker's refresher
//     or a forced refresh gave up) and "upstream reported invalidated OAuth
//     token" (the provider revoked it); both need a new login.
//   - replaced: "replaced by oauth login", "replaced by newer credential",
//     "deduplicated duplicate credential"; nothing to do.
//   - manual: a person asked for it: "disabled via auth-broker" (the broker's
//     default for POST /disable without a cause), "deleted by user",
//     "logged out by user", or the operator's own policy carried out by this
//     exporter (--monitor.disable-expired-after, cause "authbroker_exporter: …").
//   - other: everything else, including free-text causes an operator passed
//     to the disable route: they cannot be told apart from error messages,
//     and an unknown text must not be mistaken for a deliberate action.
func DisableCause(cause string) string {
	c := strings.ToLower(strings.TrimSpace(cause))
	switch {
	case strings.HasPrefix(c, "oauth refresh failed"),
		strings.Contains(c, "invalidated oauth token"):
		return CauseRefreshFailed
	case strings.HasPrefix(c, "replaced by"),
		strings.HasPrefix(c, "deduplicated"):
		return CauseReplaced
	case c == "disabled via auth-broker",
		c == "deleted by user",
		c == "logged out by user",
		strings.HasPrefix(c, "authbroker_exporter:"):
		return CauseManual
	}
	return CauseOther
}

// BrokerProbe is the latest GET /v1/healthz result.
type BrokerProbe struct {
	Up      bool
	Version string
	Checked time.Time // zero: never probed yet
	Latency time.Duration
	Err     string // redacted error text, "" when Up
}

// Input is everything Evaluate looks at. The exporter fills it from its
// store and monitor at request time; the check command from one round of
// requests.
type Input struct {
	Now       time.Time
	BrokerURL string
	Broker    BrokerProbe
	View      store.View
	Status    store.SyncStatus
	// ForcePoll says long-poll was chosen by configuration
	// (--no-broker.stream), so polling is not a fallback worth reporting.
	ForcePoll bool
	// Usage holds the cached reports; UsageOK is false when the last fetch
	// failed (no usage data), which is different from "no reports".
	Usage        []broker.UsageReport
	UsageOK      bool
	Tombstones   []broker.Tombstone
	TombstonesOK bool
}

// Thresholds tune the rules. Zero fields take the defaults below, which
// match the shipped alerting rules.
type Thresholds struct {
	// ExpiringWithin: an OAuth token this close to `expires` is "expiring"
	// (default 4m: the broker refreshes 5m ahead, so a token this close
	// already missed at least one sweep).
	ExpiringWithin time.Duration
	// RotationGrace: how long past its rotation deadline a credential may
	// go without an observed rotation (default: the broker's refresher
	// interval, 60s when unknown).
	RotationGrace time.Duration
	// StaleAfter: how long the mirror may be not live before that is
	// critical rather than a reconnect in progress (default 2m).
	StaleAfter time.Duration
	// UsageWarning: used fraction from which a limit warns (default 0.9).
	UsageWarning float64
	// MaxClockSkew: broker/exporter clock difference that degrades, since
	// expiry times are broker-clock instants (default 30s).
	MaxClockSkew time.Duration
	// DisabledRecent: a refresh_failed tombstone younger than this
	// degrades (default 1h, like the AuthBrokerCredentialDisabled alert);
	// older ones are listed but accepted.
	DisabledRecent time.Duration
}

// DefaultThresholds returns the values zero fields stand for
// (RotationGrace stays zero: it follows the broker's refresher interval).
func DefaultThresholds() Thresholds {
	return Thresholds{
		ExpiringWithin: 4 * time.Minute,
		StaleAfter:     2 * time.Minute,
		UsageWarning:   0.9,
		MaxClockSkew:   30 * time.Second,
		DisabledRecent: time.Hour,
	}
}

const defaultRotationGrace = time.Minute

func (t Thresholds) withDefaults(refresherInterval time.Duration) Thresholds {
	d := DefaultThresholds()
	if t.ExpiringWithin <= 0 {
		t.ExpiringWithin = d.ExpiringWithin
	}
	if t.RotationGrace <= 0 {
		t.RotationGrace = refresherInterval
		if t.RotationGrace <= 0 {
			t.RotationGrace = defaultRotationGrace
		}
	}
	if t.StaleAfter <= 0 {
		t.StaleAfter = d.StaleAfter
	}
	if t.UsageWarning <= 0 {
		t.UsageWarning = d.UsageWarning
	}
	if t.MaxClockSkew <= 0 {
		t.MaxClockSkew = d.MaxClockSkew
	}
	if t.DisabledRecent <= 0 {
		t.DisabledRecent = d.DisabledRecent
	}
	return t
}

// Reason codes (Reason.Code). Stable: scripts may match on them.
const (
	ReasonBrokerUnreachable   = "broker_unreachable"
	ReasonBrokerUnknown       = "broker_unknown"
	ReasonMirrorNotReady      = "mirror_not_ready"
	ReasonMirrorNotLive       = "mirror_not_live"
	ReasonMirrorReconnecting  = "mirror_reconnecting"
	ReasonPollFallback        = "poll_fallback"
	ReasonStreamUnsupported   = "stream_unsupported"
	ReasonClockSkew           = "clock_skew"
	ReasonNoCredentials       = "no_credentials"
	ReasonRefresherDisabled   = "refresher_disabled"
	ReasonCredentialExpired   = "credential_expired"
	ReasonUsageExhausted      = "usage_exhausted"
	ReasonCredentialExpiring  = "credential_expiring"
	ReasonRotationOverdue     = "rotation_overdue"
	ReasonCredentialBlocked   = "credential_blocked"
	ReasonUsageWarning        = "usage_warning"
	ReasonUsageUnavailable    = "usage_unavailable"
	ReasonDisabledUnavailable = "disabled_unavailable"
	ReasonRefreshFailed       = "credential_disabled_refresh_failed"
)

// Report is the evaluation result; its JSON form is the /api/v1/health
// body (schema in docs/health.md). Every key is always present: optional
// values are null, lists are [] rather than null.
type Report struct {
	Status          Verdict              `json:"status"`
	CheckedAt       time.Time            `json:"checked_at"`
	ExporterVersion string               `json:"exporter_version"`
	Reasons         []Reason             `json:"reasons"`
	Broker          BrokerHealth         `json:"broker"`
	Sync            SyncHealth           `json:"sync"`
	Refresher       RefresherHealth      `json:"refresher"`
	Usage           UsageHealth          `json:"usage"`
	Summary         Summary              `json:"summary"`
	Credentials     []CredentialHealth   `json:"credentials"`
	Disabled        []DisabledCredential `json:"disabled"`
	Thresholds      ThresholdsUsed       `json:"thresholds"`
}

// Reason explains one contribution to the verdict.
type Reason struct {
	Code     string  `json:"code"`
	Severity Verdict `json:"severity"` // info, degraded or critical
	Message  string  `json:"message"`
	// CredentialID is set for per-credential reasons.
	CredentialID *int64 `json:"credential_id"`
}

type BrokerHealth struct {
	URL            string     `json:"url"`
	Up             bool       `json:"up"`
	Version        string     `json:"version"`
	CheckedAt      *time.Time `json:"checked_at"`
	LatencySeconds *float64   `json:"latency_seconds"`
	Error          string     `json:"error"`
}

type SyncHealth struct {
	Ready                bool       `json:"ready"`
	Live                 bool       `json:"live"`
	Mode                 string     `json:"mode"` // stream or poll
	StreamConnected      bool       `json:"stream_connected"`
	StreamSupported      bool       `json:"stream_supported"`
	Generation           int64      `json:"generation"`
	GeneratedAt          *time.Time `json:"generated_at"`
	LastSync             *time.Time `json:"last_sync"`
	SecondsSinceLastSync *float64   `json:"seconds_since_last_sync"`
	ClockSkewSeconds     *float64   `json:"clock_skew_seconds"`
	GenerationResets     uint64     `json:"generation_resets"`
	LastError            string     `json:"last_error"`
	LastErrorReason      string     `json:"last_error_reason"`
}

type RefresherHealth struct {
	Enabled            bool       `json:"enabled"`
	IntervalSeconds    float64    `json:"interval_seconds"`
	SkewSeconds        float64    `json:"skew_seconds"`
	NextSweep          *time.Time `json:"next_sweep"`
	NextSweepInSeconds *float64   `json:"next_sweep_in_seconds"`
}

type UsageHealth struct {
	Available bool `json:"available"`
	Reports   int  `json:"reports"`
	// Unmatched counts reports no credential claimed.
	Unmatched int `json:"unmatched"`
}

type Summary struct {
	Credentials int            `json:"credentials"`
	Disabled    int            `json:"disabled"`
	ByState     map[string]int `json:"by_state"` // every credential state, zero included
}

type CredentialHealth struct {
	ID       int64  `json:"id"`
	Provider string `json:"provider"`
	Type     string `json:"type"`
	// Identity fields, rendered raw, hashed or empty per the exporter's
	// identity mode.
	Identity string `json:"identity"`
	Email    string `json:"email"`
	Account  string `json:"account"`
	Org      string `json:"org"`

	State    string   `json:"state"`
	Problems []string `json:"problems"`

	ExpiresAt        *time.Time `json:"expires_at"`
	ExpiresInSeconds *float64   `json:"expires_in_seconds"` // negative once expired
	RotatesAt        *time.Time `json:"rotates_at"`
	RotatesInSeconds *float64   `json:"rotates_in_seconds"` // negative = deadline passed
	LastRotation     *time.Time `json:"last_rotation"`
	Rotations        uint64     `json:"rotations"`

	Blocks []BlockHealth `json:"blocks"`
	// UsageMatched is null for API keys (never matched) and when usage
	// data is unavailable.
	UsageMatched   *bool         `json:"usage_matched"`
	UsageFetchedAt *time.Time    `json:"usage_fetched_at"`
	Limits         []LimitHealth `json:"limits"`
}

type BlockHealth struct {
	ProviderKey    string    `json:"provider_key"`
	Scope          string    `json:"scope"`
	BlockedUntil   time.Time `json:"blocked_until"`
	BlockedForSecs float64   `json:"blocked_for_seconds"`
}

type LimitHealth struct {
	ID           string     `json:"id"`
	Label        string     `json:"label"`
	Window       string     `json:"window"`
	UsedFraction *float64   `json:"used_fraction"` // > 1 = overage
	ResetsAt     *time.Time `json:"resets_at"`
	ResetsInSecs *float64   `json:"resets_in_seconds"`
	// BrokerStatus is the provider's own status text ("" when absent);
	// State is this exporter's evaluation of it.
	BrokerStatus string `json:"broker_status"`
	State        string `json:"state"`
}

type DisabledCredential struct {
	ID         int64      `json:"id"`
	Provider   string     `json:"provider"`
	Type       string     `json:"type"`
	Email      string     `json:"email"`
	Account    string     `json:"account"`
	Org        string     `json:"org"`
	State      string     `json:"state"` // always "disabled"
	Cause      string     `json:"cause"` // the broker's text, shortened
	CauseClass string     `json:"cause_class"`
	DisabledAt *time.Time `json:"disabled_at"`
}

// ThresholdsUsed echoes the effective thresholds, so a reader of the JSON
// knows what "expiring" meant.
type ThresholdsUsed struct {
	ExpiringWithinSeconds float64 `json:"expiring_within_seconds"`
	RotationGraceSeconds  float64 `json:"rotation_grace_seconds"`
	StaleAfterSeconds     float64 `json:"stale_after_seconds"`
	UsageWarning          float64 `json:"usage_warning"`
	MaxClockSkewSeconds   float64 `json:"max_clock_skew_seconds"`
	DisabledRecentSeconds float64 `json:"disabled_recent_seconds"`
}

// maxCauseLen bounds a broker-supplied cause on pages: it is an upstream
// error message of unbounded length.
const maxCauseLen = 200

// Evaluate applies the rules (documented in docs/health.md) to in. ids may
// be nil, which renders every identity field empty.
func Evaluate(in Input, th Thresholds, ids *identity.Redactor) Report {
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	th = th.withDefaults(in.View.Refresher.Interval)
	render := func(v string) string {
		if ids == nil {
			return ""
		}
		return ids.Render(v)
	}
	r := Report{
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
	}
	add := func(code string, sev Verdict, id *int64, format string, args ...any) {
		r.Reasons = append(r.Reasons, Reason{Code: code, Severity: sev, Message: fmt.Sprintf(format, args...), CredentialID: id})
	}

	// Broker probe.
	r.Broker = BrokerHealth{URL: in.BrokerURL, Up: in.Broker.Up, Version: in.Broker.Version, Error: in.Broker.Err}
	if !in.Broker.Checked.IsZero() {
		r.Broker.CheckedAt = timePtr(in.Broker.Checked)
		r.Broker.LatencySeconds = secs(in.Broker.Latency)
	}
	switch {
	case in.Broker.Up:
	case in.Broker.Checked.IsZero():
		add(ReasonBrokerUnknown, Degraded, nil, "broker health not probed yet")
	default:
		msg := "broker health check failed"
		if in.Broker.Err != "" {
			msg += ": " + in.Broker.Err
		}
		add(ReasonBrokerUnreachable, Critical, nil, "%s", msg)
	}

	// Mirror.
	st, v := in.Status, in.View
	r.Sync = SyncHealth{
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
		r.Sync.SecondsSinceLastSync = secs(now.Sub(st.LastSync))
	}
	if st.HasClockSkew {
		r.Sync.ClockSkewSeconds = secs(st.ClockSkew)
	}
	lastErr := ""
	if st.LastError != "" {
		lastErr = " (last error: " + st.LastError + ")"
	}
	switch {
	case !v.Ready:
		add(ReasonMirrorNotReady, Critical, nil, "no snapshot from the broker has been applied yet%s", lastErr)
	case !st.Live && (st.LastSync.IsZero() || now.Sub(st.LastSync) > th.StaleAfter):
		add(ReasonMirrorNotLive, Critical, nil, "mirror not live; last sync %s%s", ago(now, st.LastSync), lastErr)
	case !st.Live:
		add(ReasonMirrorReconnecting, Degraded, nil, "mirror reconnecting; last sync %s%s", ago(now, st.LastSync), lastErr)
	}
	if st.StreamUnsupported {
		add(ReasonStreamUnsupported, Info, nil, "broker does not offer the snapshot stream; following it by long-poll")
	} else if st.Mode == store.ModePoll && !in.ForcePoll {
		add(ReasonPollFallback, Degraded, nil, "following the broker by long-poll although the stream is supported")
	}
	if st.HasClockSkew && absDur(st.ClockSkew) > th.MaxClockSkew {
		add(ReasonClockSkew, Degraded, nil, "exporter and broker clocks differ by %s (limit %s); expiry times are off by as much",
			roundDur(st.ClockSkew), th.MaxClockSkew)
	}

	// Refresher.
	rf := v.Refresher
	r.Refresher = RefresherHealth{Enabled: rf.Enabled, IntervalSeconds: rf.Interval.Seconds(), SkewSeconds: rf.Skew.Seconds()}
	if rf.Enabled && !rf.NextSweep.IsZero() {
		r.Refresher.NextSweep = timePtr(rf.NextSweep)
		r.Refresher.NextSweepInSeconds = secs(rf.NextSweep.Sub(now))
	}
	if v.Ready && !rf.Enabled {
		sev := Info
		for _, e := range v.Entries {
			if e.Credential.Type == broker.TypeOAuth {
				sev = Degraded
				break
			}
		}
		add(ReasonRefresherDisabled, sev, nil, "the broker's refresher is disabled; nobody refreshes OAuth access tokens before they expire")
	}

	// Usage overview.
	r.Usage = UsageHealth{Available: in.UsageOK, Reports: len(in.Usage)}
	if !in.UsageOK {
		add(ReasonUsageUnavailable, Degraded, nil, "no usage data: the broker's /v1/usage could not be fetched")
	}
	claimed := make([]bool, len(in.Usage))
	usage := store.NewUsage(in.Usage, now)

	// Credentials.
	entries := append([]*store.Entry(nil), v.Entries...)
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].Provider != entries[j].Provider {
			return entries[i].Provider < entries[j].Provider
		}
		return entries[i].ID < entries[j].ID
	})
	r.Summary.ByState = map[string]int{StateOK: 0, StateExpiring: 0, StateExpired: 0, StateRotationOverdue: 0, StateBlocked: 0, StateUsageExhausted: 0}
	for _, e := range entries {
		c := evalCredential(e, in, usage, th, now, render, claimed)
		id := e.ID
		name := fmt.Sprintf("credential %d (%s)", e.ID, e.Provider)
		for _, p := range c.Problems {
			switch p {
			case StateExpired:
				add(ReasonCredentialExpired, Critical, &id, "%s expired %s", name, ago(now, *c.ExpiresAt))
			case StateUsageExhausted:
				add(ReasonUsageExhausted, Critical, &id, "%s has exhausted %s", name, limitNames(c.Limits, LimitExhausted))
			case StateExpiring:
				add(ReasonCredentialExpiring, Degraded, &id, "%s expires %s and has not been refreshed", name, fromNow(now, *c.ExpiresAt))
			case StateRotationOverdue:
				add(ReasonRotationOverdue, Degraded, &id, "%s was due for rotation %s; none observed", name, ago(now, *c.RotatesAt))
			case StateBlocked:
				add(ReasonCredentialBlocked, Degraded, &id, "%s is rate-limit blocked until %s", name, c.Blocks[len(c.Blocks)-1].BlockedUntil.UTC().Format(time.RFC3339))
			case ProblemUsageWarning:
				add(ReasonUsageWarning, Degraded, &id, "%s is close to %s", name, limitNames(c.Limits, LimitWarning))
			}
		}
		r.Summary.ByState[c.State]++
		r.Credentials = append(r.Credentials, c)
	}
	r.Summary.Credentials = len(r.Credentials)
	if v.Ready && len(entries) == 0 {
		add(ReasonNoCredentials, Degraded, nil, "the broker holds no active credentials")
	}
	for _, c := range claimed {
		if !c {
			r.Usage.Unmatched++
		}
	}

	// Tombstones.
	if !in.TombstonesOK {
		add(ReasonDisabledUnavailable, Degraded, nil, "the broker's disabled-credential list could not be fetched")
	}
	tombs := append([]broker.Tombstone(nil), in.Tombstones...)
	sort.SliceStable(tombs, func(i, j int) bool { return tombs[i].DisabledAt.After(tombs[j].DisabledAt) })
	for _, t := range tombs {
		d := DisabledCredential{
			ID: t.ID, Provider: t.Provider, Type: t.Type,
			Email: render(t.Email), Account: render(t.AccountID), Org: render(t.OrgID),
			State: StateDisabled, Cause: shorten(t.Cause, maxCauseLen), CauseClass: DisableCause(t.Cause),
			DisabledAt: timePtr(t.DisabledAt),
		}
		// Without a time a tombstone cannot be called recent; counting it
		// would degrade forever.
		if d.CauseClass == CauseRefreshFailed && !t.DisabledAt.IsZero() && now.Sub(t.DisabledAt) <= th.DisabledRecent {
			id := t.ID
			add(ReasonRefreshFailed, Degraded, &id, "credential %d (%s) was disabled %s after a failed refresh; it needs a new login",
				t.ID, t.Provider, ago(now, t.DisabledAt))
		}
		r.Disabled = append(r.Disabled, d)
	}
	r.Summary.Disabled = len(r.Disabled)

	sort.SliceStable(r.Reasons, func(i, j int) bool { return r.Reasons[i].Severity.rank() > r.Reasons[j].Severity.rank() })
	for _, rs := range r.Reasons {
		if rs.Severity != Info && rs.Severity.rank() > r.Status.rank() {
			r.Status = rs.Severity
		}
	}
	return r
}

func evalCredential(e *store.Entry, in Input, usage *store.Usage, th Thresholds, now time.Time, render func(string) string, claimed []bool) CredentialHealth {
	cr := e.Credential
	c := CredentialHealth{
		ID: e.ID, Provider: e.Provider, Type: cr.Type,
		Identity: render(e.IdentityKey), Email: render(cr.Email), Account: render(cr.AccountID), Org: render(cr.OrgID),
		Problems:  []string{},
		Rotations: e.Rotations,
		Blocks:    []BlockHealth{},
		Limits:    []LimitHealth{},
	}
	has := map[string]bool{}
	if cr.HasExpires {
		c.ExpiresAt = timePtr(cr.Expires)
		left := cr.Expires.Sub(now)
		c.ExpiresInSeconds = secs(left)
		switch {
		case left < 0:
			has[StateExpired] = true
		case left < th.ExpiringWithin:
			has[StateExpiring] = true
		}
	}
	if deadline, ok := e.RotationDeadline(); ok {
		c.RotatesAt = timePtr(deadline)
		c.RotatesInSeconds = secs(deadline.Sub(now))
		rotatedSince := !e.LastRotation.IsZero() && !e.LastRotation.Before(deadline)
		// A frozen mirror's deadlines only look overdue; the mirror itself
		// is already reported then.
		if in.Status.Live && now.Sub(deadline) > th.RotationGrace && !rotatedSince {
			has[StateRotationOverdue] = true
		}
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
		has[StateBlocked] = true
	}
	if cr.Type == broker.TypeOAuth && in.UsageOK {
		rep, ok := usage.Match(e)
		c.UsageMatched = &ok
		if ok && rep != nil {
			if i := reportIndex(in.Usage, rep); i >= 0 {
				claimed[i] = true
			}
			c.UsageFetchedAt = timePtr(rep.FetchedAt)
			for _, l := range rep.Limits {
				lh := evalLimit(l, th, now)
				switch lh.State {
				case LimitExhausted:
					has[StateUsageExhausted] = true
				case LimitWarning:
					has[ProblemUsageWarning] = true
				}
				c.Limits = append(c.Limits, lh)
			}
		}
	}
	c.State = StateOK
	for _, s := range []string{StateExpired, StateUsageExhausted, StateExpiring, StateRotationOverdue, StateBlocked, ProblemUsageWarning} {
		if has[s] {
			c.Problems = append(c.Problems, s)
			if c.State == StateOK && s != ProblemUsageWarning {
				c.State = s
			}
		}
	}
	return c
}

func evalLimit(l broker.UsageLimit, th Thresholds, now time.Time) LimitHealth {
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

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func secs(d time.Duration) *float64 {
	f := round3(d.Seconds())
	return &f
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func roundDur(d time.Duration) time.Duration {
	if absDur(d) >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// ago and fromNow phrase an instant relative to now for messages.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return human(now.Sub(t)) + " ago"
}

func fromNow(now, t time.Time) string { return "in " + human(t.Sub(now)) }

// human prints d coarsely, two units at most and no trailing zero unit:
// "45s", "3m12s", "5m", "2h05m", "4d3h". Negative durations keep the sign.
func human(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	s := int64(d.Round(time.Second) / time.Second)
	two := func(big, small int64, bu, su, smallFmt string) string {
		if small == 0 {
			return fmt.Sprintf("%s%d%s", sign, big, bu)
		}
		return fmt.Sprintf("%s%d%s"+smallFmt+"%s", sign, big, bu, small, su)
	}
	switch {
	case s < 60:
		return fmt.Sprintf("%s%ds", sign, s)
	case s < 3600:
		return two(s/60, s%60, "m", "s", "%02d")
	case s < 86400:
		return two(s/3600, (s%3600)/60, "h", "m", "%02d")
	}
	return two(s/86400, (s%86400)/3600, "d", "h", "%d")
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// reportIndex finds rep in reports: by address when the matcher returned a
// pointer into the slice, else by the fields that identify a report.
func reportIndex(reports []broker.UsageReport, rep *broker.UsageReport) int {
	for i := range reports {
		if &reports[i] == rep {
			return i
		}
	}
	for i := range reports {
		r := &reports[i]
		if r.Provider == rep.Provider && r.FetchedAt.Equal(rep.FetchedAt) && r.Metadata == rep.Metadata {
			return i
		}
	}
	return -1
}
