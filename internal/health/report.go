package health

import (
	"time"

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
	// Usage is the store's usage answer: its reports, their match index and
	// the state of the last fetch; nil when usage is off or was never
	// fetched.
	Usage        *store.Usage
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

func (t Thresholds) withDefaults(refresherInterval time.Duration) Thresholds {
	d := DefaultThresholds()
	if t.ExpiringWithin <= 0 {
		t.ExpiringWithin = d.ExpiringWithin
	}
	if t.RotationGrace <= 0 {
		t.RotationGrace = refresherInterval
		if t.RotationGrace <= 0 {
			t.RotationGrace = DefaultRotationGrace
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
	// Listing says which credentials, tombstones and reasons the lists
	// above hold (the Query), and how many matched it.
	Listing Listing `json:"listing"`

	// Providers is each provider's capacity, worst first: every provider
	// with active credentials or tombstones, whatever the Query lists.
	Providers []ProviderCapacity `json:"providers"`
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

// Summary counts the whole broker, whatever a Query lists.
type Summary struct {
	Credentials int            `json:"credentials"`
	Disabled    int            `json:"disabled"`
	ByState     map[string]int `json:"by_state"` // every credential state, zero included
	// ByProvider counts credentials by provider, then state (every state,
	// zero included), plus the provider's tombstones under "disabled".
	ByProvider map[string]map[string]int `json:"by_provider"`
	// ByReason counts reasons by code, listed or not.
	ByReason map[string]int `json:"by_reason"`
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

// Listing describes the lists of a Report: the query that chose them and,
// per list, how many entries matched it and how many are listed.
type Listing struct {
	View        string    `json:"view"` // full or summary
	State       string    `json:"state"`
	Provider    string    `json:"provider"`
	ID          *int64    `json:"id"`
	Limit       int       `json:"limit"` // 0: no limit
	Credentials ListCount `json:"credentials"`
	Disabled    ListCount `json:"disabled"`
	// Reasons: broker and mirror reasons are always listed; credential
	// reasons are listed when their credential matches the filters, in a
	// summary up to the limit.
	Reasons ListCount `json:"reasons"`
}

type ListCount struct {
	Matching int `json:"matching"`
	Listed   int `json:"listed"`
}
