package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"time"
)

// Broker is the fake. Create it with New; Close it when done.
type Broker struct {
	URL string // base URL, no trailing slash

	srv       *httptest.Server
	handler   http.Handler
	now       func() time.Time
	version   string
	keepalive time.Duration
	done      chan struct{}
	closeOnce sync.Once

	mu         sync.Mutex
	token      string
	generation int64
	// changed is closed (and replaced) on every generation bump and on
	// Restart: a broadcast to long-polls and streams.
	changed chan struct{}
	// epoch counts restarts; requests begun in an older epoch are aborted.
	epoch     int64
	refresher refresherState
	nextID    int64
	rows      map[int64]*row // every row, tombstones included
	providers []string       // providers with active rows, first-load order
	active    map[string][]*row
	blocks    map[int64][]blockRec
	usage     []byte // the reports array, encoded

	refreshErrs map[int64]refreshErr
	refreshes   map[int64]int

	streamOK  bool
	faults    []*faultState
	faultsGen chan struct{} // closed by ClearFaults to release stalls
	requests  map[string]int
	streams   map[*streamConn]struct{}
	// streamsChanged is closed (and replaced) when the set of open streams
	// changes, for WaitForStreams.
	streamsChanged chan struct{}
}

type refreshErr struct {
	status  int
	message string
}

type faultState struct {
	Fault
	left int // remaining applications; <0 = unlimited
}

// New starts the fake on a loopback port.
func New(opts Options) *Broker {
	b := newBroker(opts)
	b.srv = httptest.NewServer(b.handler)
	b.URL = b.srv.URL
	return b
}

func newBroker(opts Options) *Broker {
	if opts.Token == "" {
		opts.Token = "test-token"
	}
	if opts.Version == "" {
		opts.Version = "18.2.3"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RefresherInterval == 0 {
		opts.RefresherInterval = 60 * time.Second
	}
	if opts.RefresherSkew == 0 {
		opts.RefresherSkew = 300 * time.Second
	}
	if opts.KeepaliveInterval == 0 {
		opts.KeepaliveInterval = 20 * time.Second
	}
	b := &Broker{
		now:            opts.Now,
		version:        opts.Version,
		keepalive:      opts.KeepaliveInterval,
		done:           make(chan struct{}),
		token:          opts.Token,
		generation:     1,
		changed:        make(chan struct{}),
		nextID:         1,
		rows:           map[int64]*row{},
		active:         map[string][]*row{},
		blocks:         map[int64][]blockRec{},
		refreshErrs:    map[int64]refreshErr{},
		refreshes:      map[int64]int{},
		streamOK:       true,
		faultsGen:      make(chan struct{}),
		requests:       map[string]int{},
		streams:        map[*streamConn]struct{}{},
		streamsChanged: make(chan struct{}),
	}
	b.refresher = refresherState{
		enabled:  !opts.RefresherDisabled,
		interval: opts.RefresherInterval,
		skew:     opts.RefresherSkew,
		start:    b.now(),
	}
	b.handler = http.HandlerFunc(b.serveHTTP)
	return b
}

// Close stops the server and every goroutine it started; open streams and
// long-polls are cut.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		close(b.done)
		if b.srv != nil {
			b.srv.CloseClientConnections()
			b.srv.Close()
		}
	})
}

func (b *Broker) Token() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.token
}

// SetToken rotates the accepted token; the old one is rejected at once
// (open streams stay open, as on the real broker).
func (b *Broker) SetToken(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.token = token
}

func (b *Broker) Generation() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.generation
}

// bumpLocked moves the generation and wakes every waiter.
func (b *Broker) bumpLocked() {
	b.generation++
	close(b.changed)
	b.changed = make(chan struct{})
}

// insertLocked adds an active row at the end of its provider group.
func (b *Broker) insertLocked(r *row) {
	r.id = b.nextID
	b.nextID++
	b.rows[r.id] = r
	if len(b.active[r.provider]) == 0 {
		b.providers = append(b.providers, r.provider)
	}
	b.active[r.provider] = append(b.active[r.provider], r)
}

// disableLocked tombstones an active row; false when id is not active.
func (b *Broker) disableLocked(id int64, cause string) bool {
	r, ok := b.rows[id]
	if !ok || r.disabled {
		return false
	}
	r.disabled, r.cause, r.disabledAt = true, cause, b.now().Truncate(time.Second)
	rows := b.active[r.provider]
	kept := rows[:0:0]
	for _, x := range rows {
		if x.id != id {
			kept = append(kept, x)
		}
	}
	if len(kept) == 0 {
		delete(b.active, r.provider)
		for i, p := range b.providers {
			if p == r.provider {
				b.providers = append(b.providers[:i:i], b.providers[i+1:]...)
				break
			}
		}
	} else {
		b.active[r.provider] = kept
	}
	return true
}

func (b *Broker) activeRowLocked(id int64) (*row, bool) {
	r, ok := b.rows[id]
	if !ok || r.disabled {
		return nil, false
	}
	return r, true
}

func copyOAuth(c OAuth) OAuth {
	if c.Extra != nil {
		extra := make(map[string]any, len(c.Extra))
		for k, v := range c.Extra {
			extra[k] = v
		}
		c.Extra = extra
	}
	return c
}

// AddOAuth inserts an OAuth row (no identity matching; use POST
// /v1/credential for upsert semantics) and bumps the generation.
func (b *Broker) AddOAuth(provider string, c OAuth) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &row{provider: provider, oauth: copyOAuth(c)}
	b.insertLocked(r)
	b.bumpLocked()
	return r.id
}

// AddAPIKey inserts an api_key row and bumps the generation.
func (b *Broker) AddAPIKey(provider, key string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &row{provider: provider, apiKey: true, key: key}
	b.insertLocked(r)
	b.bumpLocked()
	return r.id
}

// UpdateOAuth replaces an active OAuth row's credential (e.g. a rotation)
// and bumps the generation. It panics on an unknown or non-OAuth id: that
// is a bug in the test.
func (b *Broker) UpdateOAuth(id int64, c OAuth) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.activeRowLocked(id)
	if !ok || r.apiKey {
		panic(fmt.Sprintf("brokertest: UpdateOAuth: no active OAuth credential %d", id))
	}
	r.oauth = copyOAuth(c)
	b.bumpLocked()
}

// OAuth returns the fake's current copy of an OAuth row, secrets
// included (e.g. the access token a refresh produced).
func (b *Broker) OAuth(id int64) (OAuth, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.rows[id]
	if !ok || r.apiKey {
		return OAuth{}, false
	}
	return copyOAuth(r.oauth), true
}

// Disable tombstones id (cause "" = the broker's default) and bumps the
// generation, so stream clients get a removed frame. Unknown or already
// disabled ids are ignored.
func (b *Broker) Disable(id int64, cause string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cause == "" {
		cause = defaultDisableCause
	}
	if b.disableLocked(id, cause) {
		b.bumpLocked()
	}
}

// SetBlocks replaces id's blocks (updatedAtMs = now, whole seconds) and
// bumps the generation.
func (b *Broker) SetBlocks(id int64, blocks []Block) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now().Truncate(time.Second).UnixMilli()
	recs := make([]blockRec, 0, len(blocks))
	for _, x := range blocks {
		recs = append(recs, blockRec{providerKey: x.ProviderKey, scope: x.Scope, blockedUntil: ms(x.BlockedUntil), updatedAt: now})
	}
	b.blocks[id] = recs
	b.bumpLocked()
}

// SetRefresher changes the refresher schedule and restarts its sweep clock
// now. Like the real broker it does not bump the generation: clients see
// the new schedule with the next snapshot or frame.
func (b *Broker) SetRefresher(enabled bool, interval, skew time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refresher = refresherState{enabled: enabled, interval: interval, skew: skew, start: b.now()}
}

// Bump is a content-free generation bump (the real broker bumps on
// refresh attempts, block writes, commits by other processes...).
func (b *Broker) Bump() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bumpLocked()
}

// SetUsage sets the reports /v1/usage returns (marshalled as given). They
// are encoded here, once: encoding 10k reports on every request would make
// the fake broker, which shares the machine with the exporter in the
// benchmarks, far costlier than the real one, which caches each report.
func (b *Broker) SetUsage(reports []json.RawMessage) {
	data := mustJSON(append([]json.RawMessage{}, reports...))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.usage = data
}

// SetRefreshError makes POST /v1/credential/:id/refresh fail for id with
// status and message; status 0 restores success (a fresh access token).
// A message the broker classifies as a dead grant (invalid_grant,
// invalid_token, revoked, a bare 401, ...) also disables the row with cause
// "oauth refresh failed: Error: <message>", as the real broker does.
func (b *Broker) SetRefreshError(id int64, status int, message string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if status == 0 {
		delete(b.refreshErrs, id)
		return
	}
	b.refreshErrs[id] = refreshErr{status: status, message: message}
}

// Restart drops every connection and restarts the generation counter,
// keeping data. Like the real broker it counts from 1 and bumps once per
// provider while loading, so a broker holding rows of three providers comes
// back at generation 4; provider groups are reloaded in order of their
// lowest id. Requests in flight (streams, long-polls) are aborted without
// an answer, like a process that died.
func (b *Broker) Restart() {
	b.mu.Lock()
	b.epoch++
	sort.SliceStable(b.providers, func(i, j int) bool {
		return b.active[b.providers[i]][0].id < b.active[b.providers[j]][0].id
	})
	b.generation = 1 + int64(len(b.providers))
	close(b.changed)
	b.changed = make(chan struct{})
	b.refresher.start = b.now()
	conns := b.streamListLocked()
	b.mu.Unlock()
	for _, c := range conns {
		c.do(cmdCut, nil)
	}
	if b.srv != nil {
		b.srv.CloseClientConnections()
	}
}

// SetStreamSupported(false) makes the stream route answer 404 like an old broker.
func (b *Broker) SetStreamSupported(ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streamOK = ok
}

// AddFault scripts a misbehaviour. Faults apply after authentication, in
// the order added; a request takes the first matching fault only.
func (b *Broker) AddFault(f Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	left := f.Times
	if left <= 0 {
		left = -1
	}
	b.faults = append(b.faults, &faultState{Fault: f, left: left})
}

// ClearFaults removes every fault and releases stalled requests (which
// then get their normal answer).
func (b *Broker) ClearFaults() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = nil
	close(b.faultsGen)
	b.faultsGen = make(chan struct{})
}

// SendRaw writes raw bytes to every open stream connection (malformed,
// oversized or non-UTF-8 frames); CutStreams closes them mid-flight. Both
// return once every stream has written (or lost) the bytes.
func (b *Broker) SendRaw(raw []byte) {
	for _, c := range b.streamList() {
		c.do(cmdRaw, raw)
	}
}

// CutStreams aborts every open stream connection: the client sees the
// connection drop without the end of the chunked body.
func (b *Broker) CutStreams() {
	for _, c := range b.streamList() {
		c.do(cmdCut, nil)
	}
}

// Keepalive sends one ": keepalive" comment now on every stream.
func (b *Broker) Keepalive() {
	for _, c := range b.streamList() {
		c.do(cmdRaw, []byte(": keepalive\n\n"))
	}
}

// Requests counts requests seen per path (after auth), for single-flight tests.
func (b *Broker) Requests(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests[path]
}

// StreamConnections is the number of open stream connections (counted
// once their first snapshot frame has been written).
func (b *Broker) StreamConnections() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.streams)
}

// WaitForStreams blocks until at least n stream connections are open (and
// have received their snapshot frame), or ctx ends.
func (b *Broker) WaitForStreams(ctx context.Context, n int) error {
	for {
		b.mu.Lock()
		have, ch := len(b.streams), b.streamsChanged
		b.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("brokertest: %d of %d streams open: %w", have, n, ctx.Err())
		case <-b.done:
			return fmt.Errorf("brokertest: closed with %d of %d streams open", have, n)
		}
	}
}

// Handler exposes the broker's http.Handler (for wrapping in other servers).
func (b *Broker) Handler() http.Handler { return b.handler }

func (b *Broker) streamList() []*streamConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streamListLocked()
}

func (b *Broker) streamListLocked() []*streamConn {
	out := make([]*streamConn, 0, len(b.streams))
	for c := range b.streams {
		out = append(out, c)
	}
	return out
}

// buildLocked builds the SnapshotResponse the broker would serve now.
func (b *Broker) buildLocked(meterScopes bool) *snapshot {
	now := b.now()
	nowMs := ms(now)
	rw, nextSweepAt := b.refresher.wire(now)
	s := &snapshot{generation: b.generation, generatedAt: nowMs, serverNow: nowMs, refresher: rw}
	for _, p := range b.providers {
		for _, r := range b.active[p] {
			var rot any
			if v, ok := b.refresher.rotatesIn(r, nextSweepAt, nowMs); ok {
				rot = v
			}
			e := append(r.credentialEntry(), field{"rotatesInMs", rot})
			if bs := blocksFor(b.blocks[r.id], nowMs, meterScopes); len(bs) > 0 {
				e = append(e, field{"blocks", blocksJSON(bs)})
			}
			s.ids = append(s.ids, r.id)
			s.entries = append(s.entries, mustJSON(e))
		}
	}
	return s
}
