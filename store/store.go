package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/go-kit/log"
	"golang.org/x/sync/singleflight"
)

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = errors.New("auth-broker store closed")

// Store mirrors the broker's snapshot and is the port of the broker
// client's RemoteAuthCredentialStore.
type Store struct {
	broker Broker
	clock  broker.Clock
	opts   Options
	log    Logger

	ctx    context.Context // owned goroutines stop when Close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the mirror. Entries are immutable: writers replace map
	// values, readers copy pointers and let go.
	mu      sync.RWMutex
	entries mirror
	head    View // the mirror's View but for its entries (head.Entries stays nil)

	streamConnected atomic.Bool
	// frameSeen wakes an idle reconciler after an applied frame.
	frameSeen chan struct{}

	sm     sync.Mutex // sync status and counters
	status syncState
	count  Counters

	// usage is the latest usage answer; the refresher (refreshUsage) is
	// its one writer, and every fetch goes through usageFlight.
	usage       atomic.Pointer[Usage]
	usageFlight singleflight.Group
	// usageKicked: a fetch is wanted now (kickUsage); usageBlocksMoved:
	// soon (blocksMovedUsage). usageWake ends the refresher's current wait.
	usageKicked      atomic.Bool
	usageBlocksMoved atomic.Bool
	usageWake        atomic.Pointer[context.CancelFunc]
	// usageUnready: the sync loop failed before a first snapshot, which
	// releases the refresher without one (once).
	usageUnready sync.Once

	// changed, when set (tests), is called after every state change the
	// sync loop or an owned goroutine makes.
	changed func()
}

func (s *Store) notify() {
	if s.changed != nil {
		s.changed()
	}
}

// syncState is the sync status as the sync loop keeps it. Of its
// SyncStatus, Mode, StreamConnected and Live are left zero: Status works
// them out when asked.
type syncState struct {
	SyncStatus
	pollOK           bool
	lastPollAnswer   time.Time
	connected        bool // a sync attempt has succeeded
	failures         int  // failed attempts since the last success
	reconcileFailing bool
}

// setDefaults fills in the defaults Options documents: for a zero UsageTTL
// or ReconcileEvery (a negative one turns it off), and for a non-positive
// PollWait or backoff bound.
func (o *Options) setDefaults() {
	o.UsageTTL = cmp.Or(o.UsageTTL, 15*time.Second)
	o.PollWait = cmp.Or(max(o.PollWait, 0), 30*time.Second)
	o.BackoffInitial = cmp.Or(max(o.BackoffInitial, 0), 500*time.Millisecond)
	o.BackoffMax = max(cmp.Or(max(o.BackoffMax, 0), 30*time.Second), o.BackoffInitial)
	o.ReconcileEvery = cmp.Or(o.ReconcileEvery, 5*time.Second)
}

// New starts the background sync (stream first, long-poll after a 404)
// and the usage refresher, and returns at once; the store is not Ready until the first snapshot.
// Close stops every goroutine the store started. opts.Broker is required.
func New(opts Options) *Store {
	if opts.Broker == nil {
		panic("store.New: Options.Broker is nil")
	}
	s := newStore(opts)
	s.start()
	return s
}

func (s *Store) start() {
	s.wg.Go(s.run)
	if s.opts.UsageTTL > 0 {
		s.wg.Go(s.refreshUsage)
	}
}

// newStore builds a Store without starting its sync loop.
func newStore(opts Options) *Store {
	opts.setDefaults()
	s := &Store{
		broker:    opts.Broker,
		clock:     opts.Clock,
		opts:      opts,
		log:       opts.Logger,
		entries:   newMirror(0),
		frameSeen: make(chan struct{}, 1),
	}
	if s.clock == nil {
		s.clock = broker.WallClock{}
	}
	if s.log == nil {
		s.log = log.NewNopLogger()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// String and Format (which fmt prefers for every verb, %#v included)
// print a summary instead of the store's fields.
func (s *Store) String() string {
	v := s.Snapshot()
	return fmt.Sprintf("store.Store(generation %d, %d credentials)", v.Generation, len(v.Entries))
}
func (s *Store) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// Close stops the background sync and every goroutine the store owns,
// including a shared usage fetch in flight. A second Close waits too.
func (s *Store) Close() {
	s.cancel()
	s.wg.Wait()
}

// Snapshot returns the current immutable view. It never blocks on I/O and
// holds the store's lock only long enough to copy entry pointers. Blocks
// that have expired are left out (the broker sends no frame when they do).
func (s *Store) Snapshot() View {
	now := s.clock.Now()
	s.mu.RLock()
	v := s.head
	v.Entries = slices.Clone(s.entries.list)
	s.mu.RUnlock()
	for i, e := range v.Entries {
		v.Entries[i] = withoutExpiredBlocks(e, now)
	}
	return v
}

func withoutExpiredBlocks(e *Entry, now time.Time) *Entry {
	expired := func(b broker.Block) bool { return !b.BlockedUntil.After(now) }
	if !slices.ContainsFunc(e.Blocks, expired) {
		return e
	}
	be := *e.Entry
	be.Blocks = slices.DeleteFunc(slices.Clone(e.Blocks), expired)
	if len(be.Blocks) == 0 {
		be.Blocks = nil
	}
	cp := *e
	cp.Entry = &be
	return &cp
}

// Ready reports whether a broker snapshot has been applied.
func (s *Store) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.head.Ready
}

func (s *Store) entry(id int64) *Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entries.get(id)
}

// observe wraps a decoded entry for the mirror, carrying rotation
// tracking over from its previous version (nil for a new credential) and
// recording a rotation when an OAuth token's material or expiry changed.
// at is when the change was observed. blocksMoved: the rate-limit blocks
// of a mirrored credential differ in its new version. The mirror takes e
// as it is: the client hands over each decoded entry once and never
// touches it again.
func observe(prev *Entry, e *broker.Entry, at time.Time) (next *Entry, blocksMoved bool) {
	next = &Entry{Entry: e}
	if prev == nil {
		return next, false
	}
	next.LastRotation, next.Rotations = prev.LastRotation, prev.Rotations
	if prev.Credential.Type == broker.TypeOAuth && next.Credential.Type == broker.TypeOAuth &&
		!prev.Credential.SameToken(&next.Credential) {
		next.LastRotation = at
		next.Rotations++
	}
	return next, !slices.EqualFunc(prev.Blocks, next.Blocks, func(a, b broker.Block) bool {
		return a.ProviderKey == b.ProviderKey && a.Scope == b.Scope && a.BlockedUntil.Equal(b.BlockedUntil) && a.UpdatedAt.Equal(b.UpdatedAt)
	})
}

// adoptSnapshot replaces the mirror with a full snapshot. force is set for
// a stream's snapshot frame, which is adopted even when its generation is
// lower (the broker restarted). Without force, a lower generation is
// dropped while a live stream keeps the mirror current: it is a response
// that lost a race against newer frames.
func (s *Store) adoptSnapshot(snap *broker.Snapshot, force bool) bool {
	s.mu.Lock()
	if !force && s.head.Ready && snap.Generation < s.head.Generation && s.streamConnected.Load() {
		s.mu.Unlock()
		return false
	}
	first := !s.head.Ready
	reset := s.head.Ready && snap.Generation < s.head.Generation
	next := newMirror(len(snap.Entries))
	blocksMoved := false
	for _, e := range snap.Entries {
		cur, moved := observe(s.entries.get(e.ID), e, snap.ReceivedAt)
		blocksMoved = blocksMoved || moved
		next.set(cur)
	}
	s.entries = next
	s.head.Ready = true
	s.head.GeneratedAt = snap.GeneratedAt
	s.applied(snap.Generation, snap.ServerNow, snap.ReceivedAt, snap.Refresher, blocksMoved, reset)
	if first {
		s.kickUsage() // the refresher waits for the first snapshot
	}
	if s.opts.OnSnapshot != nil {
		s.opts.OnSnapshot(s.Snapshot())
	}
	return true
}

// applyDelta applies an entry or removed frame unless it is older than
// the mirror; an equal generation is applied (one broker pass sends many
// frames with the same generation).
func (s *Store) applyDelta(f *broker.StreamFrame) bool {
	s.mu.Lock()
	if f.Generation < s.head.Generation {
		s.mu.Unlock()
		return false
	}
	blocksMoved := false
	switch f.Kind {
	case broker.FrameEntry:
		var cur *Entry
		cur, blocksMoved = observe(s.entries.get(f.Entry.ID), f.Entry, f.ReceivedAt)
		s.entries.set(cur)
	case broker.FrameRemoved:
		s.entries.del(f.RemovedID)
	}
	s.applied(f.Generation, f.ServerNow, f.ReceivedAt, f.Refresher, blocksMoved, false)
	return true
}

// applied finishes applying a frame or snapshot, called with s.mu held
// (it releases it): the frame's header becomes the mirror's, and the sync
// status notes the frame. A change of blocks calls for a usage fetch (a
// new block usually means a limit was hit; the 18.2.3 client drops its
// cached usage then too).
func (s *Store) applied(gen int64, serverNow, recv time.Time, r broker.Refresher, blocksMoved, reset bool) {
	s.head.Generation, s.head.ServerNow, s.head.ReceivedAt, s.head.Refresher = gen, serverNow, recv, r
	s.mu.Unlock()
	if blocksMoved {
		s.blocksMovedUsage()
	}
	s.sm.Lock()
	if reset {
		s.status.GenerationResets++
	}
	s.status.LastSync = recv
	s.status.ClockSkew = recv.Sub(serverNow)
	s.status.HasClockSkew = true
	s.sm.Unlock()
}

// NewView is the View of one snapshot fetched by someone else (the
// one-shot check command), without rotation history.
func NewView(snap *broker.Snapshot) View {
	v := View{Ready: true, Generation: snap.Generation, GeneratedAt: snap.GeneratedAt, ServerNow: snap.ServerNow,
		ReceivedAt: snap.ReceivedAt, Refresher: snap.Refresher, Entries: make([]*Entry, len(snap.Entries))}
	for i, e := range snap.Entries {
		v.Entries[i] = &Entry{Entry: e}
	}
	return v
}
