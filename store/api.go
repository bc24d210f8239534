// Package store keeps a live, secret-free mirror of the oh-my-pi
// auth-broker's credential snapshot: the read side of the broker client's
// RemoteAuthCredentialStore, ported to Go. One goroutine follows the
// broker (SSE stream, long-poll after a 404, reconciling GETs) and writes
// the mirror; readers get immutable Views. The store also tracks observed
// rotations, owns the usage reports (a background refresher keeps the last good answer) and
// asks the broker to refresh or disable credentials, counting each outcome.
//
// It reaches the broker through the small Broker interface, implemented
// by *broker.Client, and never imports Prometheus: observers read plain Go
// values (View, SyncStatus, Counters, Usage). docs/design.md shows where it
// sits; docs/broker-protocol.md describes what it follows.
package store

import (
	"context"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

// Broker is what the store needs of the broker's HTTP client.
type Broker interface {
	Snapshot(ctx context.Context, req broker.SnapshotRequest) (*broker.SnapshotResult, error)
	Stream(ctx context.Context, handle func(*broker.StreamFrame) error) error
	Usage(ctx context.Context, maxAccountsPerProvider int) (*broker.UsageResponse, error)
	Refresh(ctx context.Context, id int64) (*broker.Entry, error)
	Disable(ctx context.Context, id int64, cause string) error
	// RequestTimeout bounds one request attempt; a long-poll may take
	// max(RequestTimeout, wait + 1 s).
	RequestTimeout() time.Duration
}

var _ Broker = (*broker.Client)(nil)

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

// Entry is one mirrored credential: the entry the client decoded (held by
// pointer, not copied) plus what the mirror observed of it. Entries, and
// the broker entries they hold, are immutable once published: the store
// replaces the pointer, never the fields, so readers may keep them.
type Entry struct {
	*broker.Entry
	// LastRotation is when a change of token material or expiry was last
	// observed (zero until one is). Rotations counts them over the store's
	// lifetime.
	LastRotation time.Time
	Rotations    uint64
}

// View is an immutable picture of the mirror at one instant.
type View struct {
	Ready       bool // a snapshot from the broker has been applied
	Generation  int64
	GeneratedAt time.Time // generatedAt of the last full snapshot
	ServerNow   time.Time // serverNowMs of the last applied frame
	ReceivedAt  time.Time // local receipt time of the last applied frame
	Refresher   broker.Refresher
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

// Sync and call results, frame results (closed vocabularies: they are
// metric label values). Failure reasons are broker.SyncReason* and
// broker.Reason*.
const (
	SyncResultOK        = "ok"
	SyncResultUnchanged = "unchanged"
	SyncResultError     = "error"

	FrameApplied = "applied"
	FrameStale   = "stale"

	// ModeReconcile counts the conditional GETs a stream-mode mirror makes
	// when a deadline passed without a frame (sync requests only).
	ModeReconcile = "reconcile"
)

// Counter keys.
type (
	// SyncOutcome keys sync requests: mode stream, poll or reconcile; result ok, unchanged or error.
	SyncOutcome struct{ Mode, Result string }
	// SyncFailure keys sync errors by mode and SyncReason*.
	SyncFailure struct{ Mode, Reason string }
	// FrameOutcome keys stream frames by kind and FrameApplied/FrameStale.
	FrameOutcome struct{ Kind, Result string }
	// CallOutcome keys refresh and disable calls by provider and result (ok, error).
	CallOutcome struct{ Provider, Result string }
	// CallFailure keys refresh and disable errors by provider and Reason*.
	CallFailure struct{ Provider, Reason string }
)

// Counters are monotonic counts since the store was created; absent keys
// are zero.
type Counters struct {
	SyncRequests map[SyncOutcome]uint64
	SyncErrors   map[SyncFailure]uint64
	StreamEvents map[FrameOutcome]uint64

	RefreshRequests map[CallOutcome]uint64
	RefreshErrors   map[CallFailure]uint64
	DisableRequests map[CallOutcome]uint64
	DisableErrors   map[CallFailure]uint64

	UsageFetches     uint64
	UsageFetchErrors map[string]uint64 // by Reason*
}

// Options configure a Store.
type Options struct {
	Broker Broker // required; usually a *broker.Client
	// Stream follows /v1/snapshot/stream when true (the default in main);
	// false forces long-poll.
	Stream bool
	Clock  broker.Clock // nil = wall clock; give the client the same one
	// OnSnapshot, if set, is called (synchronously, on the sync goroutine;
	// keep it cheap) after every applied full snapshot.
	OnSnapshot func(View)
	// Logger receives one line per state change (connected, degraded,
	// recovered); never one per retry. nil = silent.
	Logger Logger
	// UsageTTL (how often the usage refresher fetches /v1/usage) defaults
	// to 15 s, and a negative one turns the refresher off; PollWait to
	// 30 s; BackoffInitial/Max to 500 ms / 30 s (a failed usage fetch is
	// retried from BackoffInitial, doubling up to UsageTTL);
	// ReconcileEvery (the least time between two reconciling GETs in
	// stream mode) to 5 s, and a negative one turns reconciling off.
	UsageTTL       time.Duration
	PollWait       time.Duration
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	ReconcileEvery time.Duration
}

// Logger is satisfied by go-kit/log.Logger, without importing it here.
type Logger interface {
	Log(keyvals ...any) error
}
