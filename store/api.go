// Package store is the oh-my-pi auth-broker client and a Go port of the
// broker client's RemoteAuthCredentialStore: a live, secret-free mirror of
// the broker's credential snapshot (SSE stream, long-poll fallback) with
// the sync status, outcome counters and usage data the exporter publishes.
// It never imports Prometheus and never keeps token material: access
// tokens and API keys are reduced to a keyed fingerprint on decode.
package store

// This file holds the agreed public surface (types, constants, Options);
// the implementations live in the files named below.

import (
	"context"
	"errors"
	"time"
)

// ErrReadOnly is returned by the mutators the broker does not allow from a
// client (the seed's replace/upsert/delete*ForProvider): logins and logouts
// happen on the broker host.
var ErrReadOnly = errors.New("auth-broker store is read-only on the client; use `omp auth-broker login/logout` to mutate credentials")

// ErrStreamUnsupported is returned by Client.Stream when the broker answers
// 404 on /v1/snapshot/stream (a broker that predates the stream).
var ErrStreamUnsupported = errors.New("auth-broker snapshot stream unsupported (404)")

// Credential types on the wire.
const (
	TypeOAuth  = "oauth"
	TypeAPIKey = "api_key"
)

// Mode is the active sync mode.
type Mode int

const (
	ModeStream Mode = iota
	ModePoll
)

func (m Mode) String() string {
	if m == ModePoll {
		return "poll"
	}
	return "stream"
}

// Credential is the redacted, secret-free view of a SnapshotCredential.
// The access token, API key and unknown extra fields are never kept; only a
// keyed fingerprint of the token material survives, so rotations can be
// detected without the token being recoverable.
type Credential struct {
	Type          string // TypeOAuth or TypeAPIKey
	Expires       time.Time
	HasExpires    bool // false for api_key and for a non-finite expires
	Email         string
	AccountID     string
	ProjectID     string
	OrgID         string
	OrgName       string
	EnterpriseURL string
	APIEndpoint   string
	AuthorizedAt  time.Time
	Source        string // api_key only ("login")

	fingerprint uint64 // keyed hash of access/key; never exported
}

// Block is an active rate-limit block on a credential.
type Block struct {
	ProviderKey  string
	Scope        string
	BlockedUntil time.Time
	UpdatedAt    time.Time
}

// Entry is one mirrored credential. Entries are immutable once published:
// the store replaces the pointer, never the fields, so readers may keep them.
type Entry struct {
	ID          int64
	Provider    string
	IdentityKey string // "" when the broker sent null
	Credential  Credential
	// RotatesIn is the broker's rotatesInMs; valid only when HasRotatesIn.
	RotatesIn    time.Duration
	HasRotatesIn bool
	Blocks       []Block
	// ReceivedAt is the local time the frame carrying this entry arrived;
	// RotationDeadline is relative to it, not to the broker clock.
	ReceivedAt time.Time
	// LastRotation is when a change of token material was last observed
	// (zero until one is). Rotations counts them over the store's lifetime.
	LastRotation time.Time
	Rotations    uint64
}

// RotationDeadline is the local instant at which the broker will next
// attempt to refresh this credential.
func (e *Entry) RotationDeadline() (time.Time, bool) {
	if !e.HasRotatesIn {
		return time.Time{}, false
	}
	return e.ReceivedAt.Add(e.RotatesIn), true
}

// Refresher is the broker's refresher schedule as of the last frame.
type Refresher struct {
	Enabled  bool
	Interval time.Duration
	Skew     time.Duration
	// NextSweep is the local instant of the next sweep (receipt time +
	// nextSweepInMs); zero while the refresher is disabled.
	NextSweep time.Time
}

// View is an immutable picture of the mirror at one instant.
type View struct {
	Ready       bool // a snapshot from the broker has been applied
	Generation  int64
	GeneratedAt time.Time // generatedAt of the last full snapshot
	ServerNow   time.Time // serverNowMs of the last applied frame
	ReceivedAt  time.Time // local receipt time of the last applied frame
	Refresher   Refresher
	Entries     []*Entry // in no particular order; do not modify
}

// SyncStatus is what observers (collectors, health pages) need to know
// about the background sync. All values are plain Go; no Prometheus types.
type SyncStatus struct {
	Mode              Mode
	StreamConnected   bool // stream open and past its first frame
	StreamUnsupported bool // the broker answered 404 on the stream; latched
	Live              bool // stream connected, or last long-poll answered within its window
	LastSync          time.Time
	LastError         string // redacted, "" when the last attempt succeeded
	LastErrorReason   string // one of the SyncReason* values
	GenerationResets  uint64
	ClockSkew         time.Duration // local receipt time - serverNowMs of the last frame
	HasClockSkew      bool
}

// Sync results and reasons (closed vocabularies; see DESIGN.md).
const (
	SyncResultOK        = "ok"
	SyncResultUnchanged = "unchanged"
	SyncResultError     = "error"

	SyncReasonNetwork      = "network"
	SyncReasonTimeout      = "timeout"
	SyncReasonUnauthorized = "unauthorized"
	SyncReason4xx          = "http_4xx"
	SyncReason5xx          = "http_5xx"
	SyncReasonProtocol     = "protocol"
	SyncReasonIdle         = "idle"
	SyncReasonEOF          = "eof"

	EventSnapshot = "snapshot"
	EventEntry    = "entry"
	EventRemoved  = "removed"
	EventApplied  = "applied"
	EventStale    = "stale"
)

// Reasons for refresh/disable/usage failures (closed vocabulary).
const (
	ReasonNotFound        = "not_found"
	ReasonUpstream        = "upstream"
	ReasonTimeout         = "timeout"
	ReasonNetwork         = "network"
	ReasonUnauthorized    = "unauthorized"
	ReasonInvalidResponse = "invalid_response"
)

// Counters are monotonic counts since the store was created. Keys are
// tuples of closed-vocabulary strings; absent keys are zero.
type Counters struct {
	SyncRequests map[[2]string]uint64 // {mode, result}
	SyncErrors   map[[2]string]uint64 // {mode, reason}
	StreamEvents map[[2]string]uint64 // {kind, result}

	RefreshRequests map[[2]string]uint64 // {provider, result ok|error}
	RefreshErrors   map[[2]string]uint64 // {provider, reason}
	DisableRequests map[[2]string]uint64 // {provider, result}
	DisableErrors   map[[2]string]uint64 // {provider, reason}

	UsageFetches     uint64
	UsageFetchErrors map[string]uint64 // {reason}
}

// Tombstone is one row of /v1/credentials/disabled. It carries no secret.
type Tombstone struct {
	ID         int64
	Provider   string
	Type       string
	Email      string
	AccountID  string
	OrgID      string
	OrgName    string
	Cause      string
	DisabledAt time.Time // zero when the broker omitted it
}

// UsageReport is a decoded /v1/usage report. Metadata is reduced to the
// identity fields matching needs; it is never kept wholesale.
type UsageReport struct {
	Provider  string
	FetchedAt time.Time
	Limits    []UsageLimit
	Metadata  UsageMetadata
}

// UsageMetadata holds the string identity fields of a report's metadata,
// trimmed; "" when absent or not a non-blank string.
type UsageMetadata struct {
	Email     string
	AccountID string // accountId, else account_id
	ProjectID string // projectId, else project_id
	OrgID     string
	OrgName   string
}

// UsageLimit is one limit of a usage report.
type UsageLimit struct {
	ID     string
	Label  string
	Scope  UsageScope
	Window *UsageWindow
	Amount UsageAmount
	Status string // ok, warning, exhausted, unknown, or ""
}

type UsageScope struct {
	Provider  string
	AccountID string
	ProjectID string
	OrgID     string
	ModelID   string
	Tier      string
	WindowID  string
	Shared    bool
}

type UsageWindow struct {
	ID         string
	Label      string
	Duration   time.Duration
	ResetsAt   time.Time // zero when absent
	ResetLabel string
}

// UsageAmount: nil pointers are absent fields.
type UsageAmount struct {
	Used              *float64
	Limit             *float64
	Remaining         *float64
	UsedFraction      *float64
	RemainingFraction *float64
	Unit              string
}

// Clock is injected so tests never sleep. The zero Options use the wall clock.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// Options configure a Store.
type Options struct {
	Client *Client
	// Stream follows /v1/snapshot/stream when true (the default in main);
	// false forces long-poll.
	Stream bool
	Clock  Clock // nil = wall clock
	// Observer, if set, is called (synchronously, on the sync goroutine;
	// keep it cheap) after every applied full snapshot.
	OnSnapshot func(View)
	// Logger receives one line per state change (connected, degraded,
	// recovered); never one per retry. nil = silent.
	Logger Logger
	// UsageTTL defaults to 15 s; PollWait to 30 s; IdleTimeout to 60 s;
	// BackoffInitial/Max to 500 ms / 30 s.
	UsageTTL       time.Duration
	PollWait       time.Duration
	IdleTimeout    time.Duration
	BackoffInitial time.Duration
	BackoffMax     time.Duration
}

// Logger is satisfied by go-kit/log.Logger, without importing it here.
type Logger interface {
	Log(keyvals ...any) error
}

// The Store's methods live in store.go (state and reads), sync.go (the
// background sync, status and counters), ops.go (refresh, disable, upload)
// and usage.go (usage cache and matching); the client in client.go and
// stream.go; wire decoding in wire.go.

// The client-side mutators the broker forbids.
func (s *Store) ReplaceForProvider(provider string, cs []UploadCredential) error { return ErrReadOnly }
func (s *Store) UpsertForProvider(provider string, c UploadCredential) error     { return ErrReadOnly }
func (s *Store) DeleteForProvider(provider, cause string) error                  { return ErrReadOnly }
