package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by calls on a closed Store.
var ErrClosed = errors.New("auth-broker store closed")

// Store mirrors the broker's snapshot and is the port of the broker
// client's RemoteAuthCredentialStore.
type Store struct {
	client *Client
	clock  Clock
	opts   Options
	log    Logger

	ctx    context.Context // owned goroutines stop when Close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	lifeMu sync.Mutex
	closed bool

	// mu guards the mirror. Entries are immutable: writers replace map
	// values, readers copy pointers and let go.
	mu          sync.RWMutex
	entries     mirror
	ready       bool
	gen         int64
	generatedAt time.Time
	serverNow   time.Time
	receivedAt  time.Time
	refresher   Refresher

	streamConnected atomic.Bool

	sm     sync.Mutex // sync status and counters
	status syncState
	count  Counters

	cacheMu sync.Mutex
	cache   map[string]cacheItem

	usage usageCache

	// changed, when set (tests), is called after every state change the
	// sync loop or an owned goroutine makes.
	changed func()
	// streamBytes, when set (tests), sees every read from the stream body.
	streamBytes func()
}

func (s *Store) notify() {
	if s.changed != nil {
		s.changed()
	}
}

type syncState struct {
	streamUnsupported bool
	pollOK            bool
	lastPollAnswer    time.Time
	lastSync          time.Time
	lastError         string
	lastErrorReason   string
	resets            uint64
	skew              time.Duration
	hasSkew           bool
	health            health
	failures          int
}

type health int

const (
	healthUnknown health = iota
	healthUp
	healthDown
)

type cacheItem struct {
	value     string
	expiresAt time.Time
}

func (o *Options) setDefaults() {
	if o.UsageTTL <= 0 {
		o.UsageTTL = 15 * time.Second
	}
	if o.PollWait <= 0 {
		o.PollWait = 30 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultStreamIdleTimeout
	}
	if o.BackoffInitial <= 0 {
		o.BackoffInitial = 500 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.BackoffMax < o.BackoffInitial {
		o.BackoffMax = o.BackoffInitial
	}
}

// New starts the background sync (stream first, long-poll after a 404)
// and returns at once; the store is not Ready until the first snapshot.
// Close stops every goroutine the store started. opts.Client is required.
func New(opts Options) *Store {
	if opts.Client == nil {
		panic("store.New: Options.Client is nil")
	}
	s := newStore(opts)
	s.start()
	return s
}

func (s *Store) start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run()
	}()
}

// newStore builds a Store without starting its sync loop.
func newStore(opts Options) *Store {
	opts.setDefaults()
	s := &Store{
		client:  opts.Client,
		clock:   opts.Clock,
		opts:    opts,
		log:     opts.Logger,
		entries: newMirror(0),
		cache:   map[string]cacheItem{},
		count:   newCounters(),
	}
	if s.clock == nil {
		s.clock = opts.Client.clock
	}
	if s.log == nil {
		s.log = nopLogger{}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// String, GoString and Format print a summary instead of the store's fields.
func (s *Store) String() string {
	v := s.Snapshot()
	return fmt.Sprintf("store.Store(%s, generation %d, %d credentials)", s.client, v.Generation, len(v.Entries))
}
func (s *Store) GoString() string           { return s.String() }
func (s *Store) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

type nopLogger struct{}

func (nopLogger) Log(...any) error { return nil }

// goOwned runs fn on a goroutine Close waits for; false once closed.
func (s *Store) goOwned(fn func()) bool {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.notify()
		fn()
	}()
	return true
}

// Close stops the background sync and every goroutine the store owns,
// including a shared usage fetch in flight.
func (s *Store) Close() {
	s.lifeMu.Lock()
	if s.closed {
		s.lifeMu.Unlock()
		return
	}
	s.closed = true
	s.lifeMu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.cacheMu.Lock()
	clear(s.cache)
	s.cacheMu.Unlock()
	s.client.CloseIdleConnections()
}

// Snapshot returns the current immutable view. It never blocks on I/O and
// holds the store's lock only long enough to copy entry pointers. Blocks
// that have expired are left out (the broker sends no frame when they do).
func (s *Store) Snapshot() View {
	now := s.clock.Now()
	s.mu.RLock()
	v := View{
		Ready:       s.ready,
		Generation:  s.gen,
		GeneratedAt: s.generatedAt,
		ServerNow:   s.serverNow,
		ReceivedAt:  s.receivedAt,
		Refresher:   s.refresher,
		Entries:     make([]*Entry, len(s.entries.list)),
	}
	copy(v.Entries, s.entries.list)
	s.mu.RUnlock()
	for i, e := range v.Entries {
		v.Entries[i] = withoutExpiredBlocks(e, now)
	}
	return v
}

func withoutExpiredBlocks(e *Entry, now time.Time) *Entry {
	expired := 0
	for i := range e.Blocks {
		if !e.Blocks[i].BlockedUntil.After(now) {
			expired++
		}
	}
	if expired == 0 {
		return e
	}
	cp := *e
	cp.Blocks = nil
	if expired < len(e.Blocks) {
		cp.Blocks = make([]Block, 0, len(e.Blocks)-expired)
		for _, b := range e.Blocks {
			if b.BlockedUntil.After(now) {
				cp.Blocks = append(cp.Blocks, b)
			}
		}
	}
	return &cp
}

// Ready reports whether a broker snapshot has been applied.
func (s *Store) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ready
}

// List returns the active credentials, optionally of one provider ("" = all),
// sorted by id.
func (s *Store) List(provider string) []*Entry {
	v := s.Snapshot()
	out := v.Entries[:0]
	for _, e := range v.Entries {
		if provider == "" || e.Provider == provider {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *Entry) int { return compareInt64(a.ID, b.ID) })
	return out
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Store) entry(id int64) *Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.entries.get(id)
}

func (s *Store) providerOf(id int64) string {
	if e := s.entry(id); e != nil {
		return e.Provider
	}
	return "unknown"
}

// inheritHistory carries rotation tracking from the previous version of an
// entry to its replacement and records a rotation when an OAuth token's
// material or expiry changed. at is when the change was observed.
func inheritHistory(prev, next *Entry, at time.Time) {
	if prev == nil {
		return
	}
	next.LastRotation, next.Rotations = prev.LastRotation, prev.Rotations
	if next.Credential.fingerprint == 0 {
		next.Credential.fingerprint = prev.Credential.fingerprint
	}
	if prev.Credential.Type != TypeOAuth || next.Credential.Type != TypeOAuth {
		return
	}
	pc, nc := &prev.Credential, &next.Credential
	if pc.fingerprint != nc.fingerprint || pc.HasExpires != nc.HasExpires || !pc.Expires.Equal(nc.Expires) {
		next.LastRotation = at
		next.Rotations++
	}
}

// blocksChanged: a mirrored credential's rate-limit blocks differ in its
// new version. A new block usually means a limit was hit, so the usage
// answer cached before it is stale (the 18.2.3 client drops it too).
func blocksChanged(prev, next *Entry) bool {
	return prev != nil && !slices.EqualFunc(prev.Blocks, next.Blocks, func(a, b Block) bool {
		return a.ProviderKey == b.ProviderKey && a.Scope == b.Scope && a.BlockedUntil.Equal(b.BlockedUntil) && a.UpdatedAt.Equal(b.UpdatedAt)
	})
}

// adoptSnapshot replaces the mirror with a full snapshot. force is set for
// a stream's snapshot frame, which is adopted even when its generation is
// lower (the broker restarted). Without force, a lower generation is
// dropped while a live stream keeps the mirror current: it is a response
// that lost a race against newer frames.
func (s *Store) adoptSnapshot(snap *Snapshot, force bool) bool {
	s.mu.Lock()
	if !force && s.ready && snap.Generation < s.gen && s.streamConnected.Load() {
		s.mu.Unlock()
		return false
	}
	reset := s.ready && snap.Generation < s.gen
	next := newMirror(len(snap.Entries))
	blocksMoved := false
	for _, e := range snap.Entries {
		prev := s.entries.get(e.ID)
		inheritHistory(prev, e, snap.ReceivedAt)
		blocksMoved = blocksMoved || blocksChanged(prev, e)
		next.set(e)
	}
	s.entries = next
	s.ready = true
	s.gen = snap.Generation
	s.generatedAt = snap.GeneratedAt
	s.serverNow = snap.ServerNow
	s.receivedAt = snap.ReceivedAt
	s.refresher = snap.Refresher
	s.mu.Unlock()
	if blocksMoved {
		s.usage.invalidate()
	}

	s.sm.Lock()
	if reset {
		s.status.resets++
	}
	s.noteFrameLocked(snap.ReceivedAt, snap.ServerNow)
	s.sm.Unlock()
	if s.opts.OnSnapshot != nil {
		s.opts.OnSnapshot(s.Snapshot())
	}
	return true
}

// applyDelta applies an entry or removed frame unless it is older than
// the mirror; an equal generation is applied (one broker pass sends many
// frames with the same generation).
func (s *Store) applyDelta(f *StreamFrame) bool {
	s.mu.Lock()
	if f.Generation < s.gen {
		s.mu.Unlock()
		return false
	}
	blocksMoved := false
	switch f.Kind {
	case EventEntry:
		prev := s.entries.get(f.Entry.ID)
		inheritHistory(prev, f.Entry, f.ReceivedAt)
		blocksMoved = blocksChanged(prev, f.Entry)
		s.entries.set(f.Entry)
	case EventRemoved:
		s.entries.del(f.RemovedID)
	}
	s.gen = f.Generation
	s.serverNow = f.ServerNow
	s.receivedAt = f.ReceivedAt
	s.refresher = f.Refresher
	s.mu.Unlock()
	if blocksMoved {
		s.usage.invalidate()
	}

	s.sm.Lock()
	s.noteFrameLocked(f.ReceivedAt, f.ServerNow)
	s.sm.Unlock()
	return true
}

func (s *Store) noteFrameLocked(recv, serverNow time.Time) {
	s.status.lastSync = recv
	s.status.skew = recv.Sub(serverNow)
	s.status.hasSkew = true
}

// upsertLocal mirrors entries from refresh/upload responses; they carry no
// rotatesInMs and no blocks.
func (s *Store) upsertLocal(es ...*Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		inheritHistory(s.entries.get(e.ID), e, e.ReceivedAt)
		s.entries.set(e)
	}
}

func (s *Store) removeLocal(id int64) {
	s.mu.Lock()
	s.entries.del(id)
	s.mu.Unlock()
}

func (s *Store) removeProviderLocal(provider string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.providerIDsLocked(provider) {
		s.entries.del(id)
	}
}

func (s *Store) providerIDsLocked(provider string) []int64 {
	var ids []int64
	for _, e := range s.entries.list {
		if e.Provider == provider {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// replaceProviderLocal swaps in the broker's authoritative post-upload rows
// of one provider, leaving every other provider's rows alone.
func (s *Store) replaceProviderLocal(provider string, es []*Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := map[int64]*Entry{}
	for _, id := range s.providerIDsLocked(provider) {
		prev[id] = s.entries.get(id)
		s.entries.del(id)
	}
	for _, e := range es {
		if p := prev[e.ID]; p != nil {
			inheritHistory(p, e, e.ReceivedAt)
		} else {
			inheritHistory(s.entries.get(e.ID), e, e.ReceivedAt)
		}
		s.entries.set(e)
	}
}

// UpdateCredential mirrors a credential changed elsewhere, in memory only.
// The entry keeps its receipt time (its rotation deadline is unchanged); a
// changed expiry or token counts as an observed rotation.
func (s *Store) UpdateCredential(id int64, c Credential) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.entries.get(id)
	if prev == nil {
		return
	}
	next := *prev
	next.Credential = c
	inheritHistory(prev, &next, now)
	s.entries.set(&next)
}

// GetCache returns a cached value unless it expired (then it is dropped).
func (s *Store) GetCache(key string) (string, bool) {
	now := s.clock.Now()
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	it, ok := s.cache[key]
	if !ok {
		return "", false
	}
	if !it.expiresAt.After(now) {
		delete(s.cache, key)
		return "", false
	}
	return it.value, true
}

// SetCache stores value until expiresAt.
func (s *Store) SetCache(key, value string, expiresAt time.Time) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	s.cache[key] = cacheItem{value: value, expiresAt: expiresAt}
}

// CleanExpiredCache drops every expired cache item.
func (s *Store) CleanExpiredCache() {
	now := s.clock.Now()
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	for k, it := range s.cache {
		if !it.expiresAt.After(now) {
			delete(s.cache, k)
		}
	}
}
