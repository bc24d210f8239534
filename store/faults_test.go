package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// The fault matrix: each way the broker or the network can misbehave, run
// through the real client and the sync loop against the fake broker
// on the injected clock. Every row is held to the same contract (docs/design.md,
// "rules of the house"):
//
//   - nothing crashes;
//   - while the fault lasts the mirror is the last good one, untouched;
//   - the failure is counted under the right {mode, reason} and nothing else;
//   - one "degraded" log line with context for the whole outage, however many
//     retries it takes, and one "recovered" line when it ends;
//   - once the fault clears the mirror recovers within the bound, measured on
//     the injected clock (the 30 s backoff cap, or 1 s for a quick restart);
//   - nothing is lost: changes the broker made during the outage are all in
//     the recovered mirror, which equals the broker's own /v1/snapshot (ids,
//     providers, types, expiries, identity, blocks, generation).

// front sits between the store and the fake broker. It passes everything
// through unless told to hang up, or to rewrite what the broker answers.
type front struct {
	*httptest.Server
	next http.Handler
	sig  *signal

	mu   sync.Mutex
	reqs map[string]int // by path, counted once the request's treatment is chosen
	down bool
	// firstFrame replaces the first write of every stream response (the
	// snapshot frame).
	firstFrame func(orig []byte) []byte
	// snapshotBody rewrites 200 answers of GET /v1/snapshot.
	snapshotBody func(orig []byte) []byte
}

func newFront(t *testing.T, next http.Handler, sig *signal) *front {
	f := &front{next: next, sig: sig, reqs: map[string]int{}}
	f.Server = httptest.NewServer(f)
	t.Cleanup(func() {
		f.CloseClientConnections()
		f.Close()
	})
	return f
}

func (f *front) set(fn func(f *front)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func (f *front) requests(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[path]
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs[r.URL.Path]++
	down, first, snap := f.down, f.firstFrame, f.snapshotBody
	f.mu.Unlock()
	f.sig.Fire()
	switch {
	case down:
		hangUp(w)
	case first != nil && r.URL.Path == "/v1/snapshot/stream":
		f.next.ServeHTTP(&firstWriteRewriter{ResponseWriter: w, rewrite: first}, r)
	case snap != nil && r.URL.Path == "/v1/snapshot":
		rec := httptest.NewRecorder()
		f.next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK {
			body = snap(body)
		}
		maps.Copy(w.Header(), rec.Header())
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	default:
		f.next.ServeHTTP(w, r)
	}
}

// firstWriteRewriter rewrites the first Write of a streamed response.
type firstWriteRewriter struct {
	http.ResponseWriter
	rewrite func([]byte) []byte
	done    bool
}

func (w *firstWriteRewriter) Write(p []byte) (int, error) {
	if w.done {
		return w.ResponseWriter.Write(p)
	}
	w.done = true
	if _, err := w.ResponseWriter.Write(w.rewrite(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *firstWriteRewriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// env is a harness whose client talks to the broker through a front.
type env struct {
	*harness
	f *front

	anthropic, apiKey, codex int64
	mutations                int
}

const frameLimit = 64 << 10

func newEnv(t *testing.T, client broker.ClientOptions) *env {
	t.Helper()
	h := newHarness(t, setup{})
	e := &env{harness: h, f: newFront(t, h.b.Handler(), h.sig)}
	client.URL = e.f.URL
	client.Token = broker.FileToken(h.tokenPath)
	client.Clock = h.clk
	if client.MaxFrameBytes == 0 {
		client.MaxFrameBytes = frameLimit
	}
	c, err := broker.NewClient(client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	h.c, h.url = c, e.f.URL

	now := h.clk.Now()
	e.anthropic = h.b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: now.Add(2 * time.Hour),
		Email: "a@example.com", AccountID: "acct-A", Extra: map[string]any{"clientSecret": canaryExtra}})
	e.apiKey = h.b.AddAPIKey("openai", canaryKey)
	e.codex = h.b.AddOAuth("openai-codex", brokertest.OAuth{Access: canaryAccess + "-codex", Refresh: "r", Expires: now.Add(time.Hour),
		Email: "b@example.com", OrgID: "org-X", OrgName: "Org X"})
	h.b.SetBlocks(e.codex, []brokertest.Block{
		{ProviderKey: "openai-codex:oauth", Scope: "chat", BlockedUntil: now.Add(10 * time.Minute)},
		{ProviderKey: "openai-codex:oauth", Scope: "spark", BlockedUntil: now.Add(20 * time.Minute)},
	})
	// A generation well above what a restarted broker comes back with.
	for range 20 {
		h.b.Bump()
	}
	return e
}

// mutate changes the broker the way a live one changes: a credential
// appears, one rotates, one is disabled, blocks move. A mirror that missed
// any of it differs from the broker's snapshot.
func (e *env) mutate() {
	e.mutations++
	n := e.mutations
	now := e.clk.Now()
	e.b.AddOAuth("gemini", brokertest.OAuth{Access: fmt.Sprintf("gem-%d", n), Refresh: "r", Expires: now.Add(time.Duration(n) * time.Hour),
		ProjectID: fmt.Sprintf("proj-%d", n)})
	e.b.UpdateOAuth(e.anthropic, brokertest.OAuth{Access: fmt.Sprintf("%s-%d", canaryAccess, n), Refresh: "r",
		Expires: now.Add(time.Duration(2+n) * time.Hour), Email: "a@example.com", AccountID: "acct-A",
		Extra: map[string]any{"clientSecret": canaryExtra}})
	if n == 1 {
		e.b.Disable(e.apiKey, "manual")
	}
	e.b.SetBlocks(e.codex, []brokertest.Block{{ProviderKey: "openai-codex:oauth", Scope: fmt.Sprintf("chat-%d", n), BlockedUntil: now.Add(time.Hour)}})
}

// credState is what "the mirror equals the broker" compares.
type credState struct {
	ID                                 int64
	Provider, Type, IdentityKey        string
	Email, AccountID, ProjectID, OrgID string
	Expires                            string // ms, "" when none
	HasRotatesIn                       bool
	Blocks                             string
}

type mirrorState struct {
	Generation int64
	Creds      []credState
}

func (m mirrorState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d\n", m.Generation)
	for _, c := range m.Creds {
		fmt.Fprintf(&b, "  %+v\n", c)
	}
	return b.String()
}

func stateOfView(v View) mirrorState {
	m := mirrorState{Generation: v.Generation}
	for _, e := range v.Entries {
		c := credState{ID: e.ID, Provider: e.Provider, Type: e.Credential.Type, IdentityKey: e.IdentityKey,
			Email: e.Credential.Email, AccountID: e.Credential.AccountID, ProjectID: e.Credential.ProjectID,
			OrgID: e.Credential.OrgID, HasRotatesIn: e.HasRotatesIn}
		if e.Credential.HasExpires {
			c.Expires = strconv.FormatInt(e.Credential.Expires.UnixMilli(), 10)
		}
		var bs []string
		for _, b := range e.Blocks {
			bs = append(bs, fmt.Sprintf("%s/%s/%d", b.ProviderKey, b.Scope, b.BlockedUntil.UnixMilli()))
		}
		sort.Strings(bs)
		c.Blocks = strings.Join(bs, ",")
		m.Creds = append(m.Creds, c)
	}
	slices.SortFunc(m.Creds, func(a, b credState) int { return compareInt64(a.ID, b.ID) })
	return m
}

// brokerJSON is the broker's own GET /v1/snapshot, asked directly (not
// through the front), decoded generically with numbers kept verbatim.
func (e *env) brokerJSON() map[string]any {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.b.URL+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+e.b.Token())
	req.Header.Set("OMP-Auth-Broker-Capabilities", "codex-meter-block-scopes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("broker snapshot: %d", resp.StatusCode)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func jsonInt(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("not a number: %#v", v)
	}
	if i, err := n.Int64(); err == nil {
		return i
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatalf("bad number %s", n)
	}
	return int64(math.Trunc(f))
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// brokerState is the broker's snapshot reduced to what the mirror keeps.
func (e *env) brokerState() mirrorState {
	t := e.t
	t.Helper()
	m := e.brokerJSON()
	st := mirrorState{Generation: jsonInt(t, m["generation"])}
	for _, x := range m["credentials"].([]any) {
		ent := x.(map[string]any)
		cred := ent["credential"].(map[string]any)
		c := credState{ID: jsonInt(t, ent["id"]), Provider: str(ent["provider"]), Type: str(cred["type"]),
			IdentityKey: str(ent["identityKey"]), Email: str(cred["email"]), AccountID: str(cred["accountId"]),
			ProjectID: str(cred["projectId"]), OrgID: str(cred["orgId"]), HasRotatesIn: ent["rotatesInMs"] != nil}
		if exp, ok := cred["expires"]; ok && c.Type == broker.TypeOAuth {
			c.Expires = strconv.FormatInt(jsonInt(t, exp), 10)
		}
		var bs []string
		blocks, _ := ent["blocks"].([]any)
		for _, y := range blocks {
			b := y.(map[string]any)
			bs = append(bs, fmt.Sprintf("%s/%s/%d", str(b["providerKey"]), str(b["blockScope"]), jsonInt(t, b["blockedUntilMs"])))
		}
		sort.Strings(bs)
		c.Blocks = strings.Join(bs, ",")
		st.Creds = append(st.Creds, c)
	}
	slices.SortFunc(st.Creds, func(a, b credState) int { return compareInt64(a.ID, b.ID) })
	return st
}

func (e *env) mirror() mirrorState { return stateOfView(e.s.Snapshot()) }

// nextWake is the earliest pending sleep of at most maxD.
func (e *env) nextWake(maxD time.Duration) (time.Time, bool) { return e.clk.NextWake(maxD) }

// drive lets injected time pass, one pending sleep of at most maxD at a
// time, until done holds. It never advances while the store is busy: a
// sleeper exists only when a goroutine waits for the clock.
func (e *env) drive(what string, maxD time.Duration, done func() bool) {
	e.t.Helper()
	for {
		var wake time.Time
		e.sig.WaitFor(e.t, what, func() bool {
			if done() {
				return true
			}
			var ok bool
			wake, ok = e.nextWake(maxD)
			return ok
		})
		if done() {
			return
		}
		e.clk.Advance(wake.Sub(e.clk.Now()))
	}
}

func errorTotal(c Counters) (n uint64) {
	for _, v := range c.SyncErrors {
		n += v
	}
	return n
}

// logLines returns the recorded lines whose msg contains substr, as maps.
func logLines(l *logRecorder, substr string) []map[string]string { return l.Lines(substr) }

type faultRow struct {
	name    string
	poll    bool
	client  broker.ClientOptions
	idle    time.Duration
	atStart bool // the fault is there before the store starts: no good mirror yet
	// inject starts the fault; clear (nil for one-shot faults) ends it.
	inject, clear func(e *env)
	// retries are further failed attempts to sit through before clearing.
	retries int
	// stall rows fail only once the idle watchdog's time has passed.
	stall bool
	// allowed is every {mode, reason} the outage may count; want must be
	// among them. Empty allowed: the fault must not surface as a sync error.
	allowed, want []string
	bound         time.Duration
	resets        uint64
	// applied rows expect the frame to be taken, with no error at all;
	// afterApply then looks at the mirror before anything else changes.
	applied    bool
	afterApply func(t *testing.T, e *env)
	check      func(t *testing.T, e *env)
}

// runFault holds one row to the contract.
func runFault(t *testing.T, row faultRow) {
	if row.idle > 0 {
		row.client.StreamIdleTimeout = row.idle
	}
	e := newEnv(t, row.client)
	opts := Options{Stream: !row.poll}
	var (
		good mirrorState
		c0   Counters
	)
	if row.atStart {
		row.inject(e)
		e.start(opts)
		c0 = Counters{}
	} else {
		e.start(opts)
		want := e.brokerState()
		e.sig.WaitFor(t, "first sync", func() bool { return e.s.Status().Live && e.mirror().String() == want.String() })
		if row.poll {
			// A long-poll is pending (past the front), so a fault injected
			// now meets the next request, not this one.
			e.sig.WaitFor(t, "a pending long-poll", func() bool { return e.f.requests("/v1/snapshot") >= 2 })
		} else if err := e.b.WaitForStreams(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		good = e.mirror()
		c0 = e.s.Counters()
		row.inject(e)
	}
	fails := len(row.allowed) > 0
	if fails {
		// Only the backoff's sleeps are let pass, unless the fault is a
		// stall: then the idle watchdog's must pass too.
		maxD := e.s.opts.BackoffMax
		if row.stall {
			maxD = time.Hour
		}
		n := errorTotal(c0)
		e.drive("the fault to be noticed", maxD, func() bool { return errorTotal(e.s.Counters()) > n })
		for range row.retries {
			n := errorTotal(e.s.Counters())
			e.drive("a failed retry", maxD, func() bool { return errorTotal(e.s.Counters()) > n })
		}
		// While the fault lasts: the last good mirror, untouched.
		if row.atStart {
			if e.s.Ready() {
				t.Fatal("ready without a snapshot")
			}
		} else if got := e.mirror(); got.String() != good.String() {
			t.Fatalf("mirror changed during the fault:\n%s\nwant\n%s", got, good)
		}
		if st := e.s.Status(); st.Live || st.LastError == "" {
			t.Fatalf("status during the fault: %+v", st)
		}
		e.mutate()
	} else if row.applied {
		e.sig.WaitFor(t, "the frame to be applied", func() bool {
			return e.s.Counters().StreamEvents[FrameOutcome{broker.FrameSnapshot, FrameApplied}] > c0.StreamEvents[FrameOutcome{broker.FrameSnapshot, FrameApplied}]
		})
		if row.afterApply != nil {
			row.afterApply(t, e)
		}
		e.mutate()
	} else {
		e.mutate()
	}

	clearedAt := e.clk.Now()
	if row.clear != nil {
		row.clear(e)
	}
	want := e.brokerState()
	e.drive("recovery", e.s.opts.BackoffMax, func() bool {
		st := e.s.Status()
		// The recovered line is logged after the status changes (and before
		// the store signals the change): wait for it too, not only for the
		// state.
		logged := !fails || len(logLines(e.log, "recovered")) > 0
		return st.Live && st.LastError == "" && e.mirror().String() == want.String() && logged
	})
	if took := e.clk.Now().Sub(clearedAt); took > row.bound {
		t.Errorf("recovered after %v of injected time, bound %v", took, row.bound)
	}

	c := e.s.Counters()
	got := map[string]uint64{}
	for k, v := range c.SyncErrors {
		if v > 0 {
			got[k.Mode+"/"+k.Reason] = v
		}
	}
	for k := range got {
		if !slices.Contains(row.allowed, k) {
			t.Errorf("counted sync error %s (%v), allowed %v", k, got, row.allowed)
		}
	}
	for _, k := range row.want {
		if got[k] == 0 {
			t.Errorf("no sync error %s counted: %v", k, got)
		}
	}
	if fails && row.retries > 0 {
		if n := errorTotal(c); n < uint64(row.retries)+1 {
			t.Errorf("%d errors for %d attempts", n, row.retries+1)
		}
	}
	if r := e.s.Status().GenerationResets; r != row.resets {
		t.Errorf("generation resets %d, want %d", r, row.resets)
	}

	degraded, recovered := logLines(e.log, "degraded"), logLines(e.log, "recovered")
	if fails {
		if len(degraded) != 1 || len(recovered) != 1 {
			t.Errorf("want one degraded and one recovered line, got %d and %d:\n%s", len(degraded), len(recovered), e.log)
		} else {
			d := degraded[0]
			if d["level"] != "warn" || d["err"] == "" || !slices.Contains(row.allowed, d["mode"]+"/"+d["reason"]) {
				t.Errorf("degraded line lacks context: %v", d)
			}
		}
	} else if len(degraded) != 0 || len(recovered) != 0 {
		t.Errorf("no failure, yet:\n%s", e.log)
	}
	if row.check != nil {
		row.check(t, e)
	}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		assertNoCanary(t, "status", fmt.Sprintf(verb, e.s.Status()))
		assertNoCanary(t, "view", fmt.Sprintf(verb, e.s.Snapshot()))
	}
	assertNoCanary(t, "log", e.log.String())
}

// collide brings a restarted broker, whose data changed meanwhile, back at
// the very generation the mirror holds (the restart hazard of docs/broker-protocol.md §11).
func collide(e *env) {
	gen := e.s.Snapshot().Generation
	for e.b.Generation() < gen {
		e.b.Bump()
	}
	if e.b.Generation() != gen {
		e.t.Fatalf("no collision: %d vs %d", e.b.Generation(), gen)
	}
	e.f.set(func(f *front) { f.down = false })
}

// sendRaw writes bytes to the open stream.
func sendRaw(raw string) func(e *env) {
	return func(e *env) { e.b.SendRaw([]byte(raw)) }
}

// frameFrom builds a frame from the broker's current snapshot, edited.
func (e *env) frameFrom(kind string, edit func(m map[string]any)) string {
	m := e.brokerJSON()
	m["kind"] = kind
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return "event: " + kind + "\ndata: " + string(b) + "\n\n"
}

func creds(m map[string]any) []map[string]any {
	var out []map[string]any
	for _, x := range m["credentials"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

// entryFrameJSON is a well-formed entry frame for id 999.
func entryFrameJSON(gen int64) string {
	return fmt.Sprintf(`{"kind":"entry","generation":%d,"serverNowMs":1795751638608,"refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":1000},`+
		`"entry":{"id":999,"provider":"anthropic","credential":{"type":"oauth","access":"%s","refresh":"__remote__","expires":1795755013000},"identityKey":null,"rotatesInMs":1000}}`,
		gen, canaryAccess)
}

const refresherJSON = `"refresher":{"enabled":true,"intervalMs":60000,"skewMs":300000,"nextSweepInMs":1000}`

func badFrame(data string) func(e *env) {
	return sendRaw("event: entry\ndata: " + data + "\n\n")
}

func TestFaultMatrix(t *testing.T) {
	const (
		quick = time.Second
		cap30 = 30 * time.Second
	)
	streamDrop := []string{"stream/eof", "stream/network"}
	protocol := append([]string{"stream/protocol"}, streamDrop...)
	rows := []faultRow{
		{name: "broker down at start", atStart: true, retries: 8,
			inject:  func(e *env) { e.f.set(func(f *front) { f.down = true }) },
			clear:   func(e *env) { e.f.set(func(f *front) { f.down = false }) },
			allowed: []string{"stream/network"}, want: []string{"stream/network"}, bound: cap30},
		{name: "broker down at start (poll)", poll: true, atStart: true, retries: 8,
			inject:  func(e *env) { e.f.set(func(f *front) { f.down = true }) },
			clear:   func(e *env) { e.f.set(func(f *front) { f.down = false }) },
			allowed: []string{"poll/network"}, want: []string{"poll/network"}, bound: cap30},
		{name: "broker dies mid-stream", retries: 4,
			inject: func(e *env) {
				e.f.set(func(f *front) { f.down = true })
				e.f.CloseClientConnections()
			},
			clear:   func(e *env) { e.f.set(func(f *front) { f.down = false }) },
			allowed: streamDrop, want: []string{"stream/network"}, bound: cap30},
		{name: "restart resets the generation (stream)",
			inject:  func(e *env) { e.b.Restart() },
			allowed: streamDrop, bound: quick, resets: 1},
		{name: "restart resets the generation (poll)", poll: true,
			// The cut long-poll's retry is an unconditional GET that finds
			// the restarted broker at once: no error surfaces at all.
			inject: func(e *env) { e.b.Restart() },
			bound:  quick, resets: 1},
		{name: "restart with a generation collision (stream)",
			inject: func(e *env) {
				e.f.set(func(f *front) { f.down = true })
				e.b.Restart()
			},
			clear:   collide,
			allowed: streamDrop, bound: quick},
		{name: "restart with a generation collision (poll)", poll: true,
			inject: func(e *env) {
				e.f.set(func(f *front) { f.down = true })
				e.f.CloseClientConnections()
				e.b.Restart()
			},
			clear:   collide,
			allowed: []string{"poll/network"}, want: []string{"poll/network"}, bound: quick},
		{name: "stream cut mid-frame",
			inject: func(e *env) {
				frame := "event: entry\ndata: " + entryFrameJSON(e.b.Generation()+1) + "\n\n"
				e.b.SendRaw([]byte(frame[:len(frame)/2]))
				e.b.CutStreams()
			},
			allowed: streamDrop, want: []string{"stream/eof"}, bound: quick},
		{name: "stall without keepalives (idle watchdog)", idle: 45 * time.Second,
			inject: func(e *env) {
				e.clk.WaitSleep(e.t, 45*time.Second)
				e.clk.Advance(45 * time.Second)
			},
			allowed: []string{"stream/idle"}, want: []string{"stream/idle"}, bound: quick},
		{name: "stall before the first byte", atStart: true, stall: true, retries: 2,
			inject:  func(e *env) { e.b.AddFault(brokertest.Fault{Path: "/v1/snapshot/stream", Stall: true}) },
			clear:   func(e *env) { e.b.ClearFaults() },
			allowed: []string{"stream/idle", "stream/timeout"}, want: []string{"stream/idle"}, bound: cap30},
		{name: "404 on the stream latches long-poll",
			inject: func(e *env) {
				e.b.SetStreamSupported(false)
				e.b.CutStreams()
			},
			allowed: append([]string{"stream/http_4xx"}, streamDrop...), want: []string{"stream/http_4xx"}, bound: quick,
			check: func(t *testing.T, e *env) {
				if st := e.s.Status(); st.Mode != ModePoll || !st.StreamUnsupported {
					t.Errorf("not latched: %+v", st)
				}
				if n := len(logLines(e.log, "long-poll")); n != 1 {
					t.Errorf("%d latch lines", n)
				}
			}},
		{name: "401 until the token file is rotated", retries: 3,
			inject: func(e *env) {
				e.b.SetToken(canaryToken2)
				e.b.CutStreams()
			},
			clear:   func(e *env) { writeFile(e.t, e.tokenPath, canaryToken2+"\n") },
			allowed: append([]string{"stream/unauthorized"}, streamDrop...), want: []string{"stream/unauthorized"}, bound: cap30},
		{name: "5xx storm (stream)", retries: 8,
			inject: func(e *env) {
				e.b.AddFault(brokertest.Fault{Path: "/v1/snapshot/stream", Status: 503, Message: "unavailable " + canaryToken})
				e.b.CutStreams()
			},
			clear:   func(e *env) { e.b.ClearFaults() },
			allowed: append([]string{"stream/http_5xx"}, streamDrop...), want: []string{"stream/http_5xx"}, bound: cap30,
			check: func(t *testing.T, e *env) {
				if d := e.clk.Now().Sub(epoch); d < 90*time.Second {
					t.Errorf("backoff never reached its cap: only %v passed", d)
				}
			}},
		{name: "5xx storm (poll)", poll: true, retries: 8,
			inject: func(e *env) {
				e.b.AddFault(brokertest.Fault{Path: "/v1/snapshot", Status: 500, Message: "internal error"})
				e.f.CloseClientConnections()
			},
			clear:   func(e *env) { e.b.ClearFaults() },
			allowed: []string{"poll/http_5xx"}, want: []string{"poll/http_5xx"}, bound: cap30},
		{name: "malformed JSON (poll)", poll: true, retries: 3,
			inject: func(e *env) {
				e.f.set(func(f *front) {
					f.snapshotBody = func(b []byte) []byte { return append(b[:len(b)/2:len(b)/2], canaryAccess...) }
				})
				// The pending long-poll is cut; the transport replays it
				// (same request, new connection), and a change answers it.
				e.f.CloseClientConnections()
				e.b.Bump()
			},
			clear:   func(e *env) { e.f.set(func(f *front) { f.snapshotBody = nil }) },
			allowed: []string{"poll/protocol"}, want: []string{"poll/protocol"}, bound: cap30},
		{name: "malformed JSON", inject: badFrame(`{"kind":"entry","generation":99,"entry":{"credential":{"access":"` + canaryAccess + `"`),
			allowed: protocol, want: []string{"stream/protocol"}, bound: quick},
		{name: "unknown event kind", inject: sendRaw("event: rotate\ndata: {\"kind\":\"rotate\",\"generation\":99," + refresherJSON + "}\n\n"),
			allowed: protocol, want: []string{"stream/protocol"}, bound: quick},
		{name: "missing fields", inject: badFrame(`{"kind":"entry","generation":99,"serverNowMs":1,` + refresherJSON + `,"entry":{"id":5,"provider":"anthropic"}}`),
			allowed: protocol, want: []string{"stream/protocol"}, bound: quick},
		{name: "wrong types", inject: badFrame(`{"kind":"entry","generation":99,"serverNowMs":1,` + refresherJSON + `,"entry":{"id":{"n":5},"provider":"anthropic","credential":{"type":"api_key","key":"` + canaryKey + `"}}}`),
			allowed: protocol, want: []string{"stream/protocol"}, bound: quick},
		{name: "generation 1e400", inject: badFrame(`{"kind":"removed","generation":1e400,"serverNowMs":1,` + refresherJSON + `,"id":1}`),
			allowed: protocol, want: []string{"stream/protocol"}, bound: quick},
		{name: "id 1e400", inject: badFrame(`{"kind":"removed","generation":99,"serverNowMs":1,` + refresherJSON + `,"id":1e400}`),
			allowed: protocol, want: []string{"stream/protocol"}, bound: quick},
		{name: "non-UTF-8 bytes", inject: badFrame("{\"kind\":\"entry\",\xff\xfe\x00\xc3\x28 " + canaryAccess + "}"),
			allowed: protocol, want: []string{"stream/protocol"}, bound: quick},
		{name: "oversized frame", inject: badFrame(`{"kind":"entry","pad":"` + strings.Repeat("x", frameLimit) + canaryAccess + `"}`),
			allowed: protocol, want: []string{"stream/protocol"}, bound: quick},
		{name: "first frame is not a snapshot", retries: 3,
			inject: func(e *env) {
				e.f.set(func(f *front) {
					f.firstFrame = func([]byte) []byte { return []byte("event: entry\ndata: " + entryFrameJSON(1) + "\n\n") }
				})
				e.b.CutStreams()
			},
			clear:   func(e *env) { e.f.set(func(f *front) { f.firstFrame = nil }) },
			allowed: protocol, want: []string{"stream/protocol"}, bound: cap30,
			check: func(t *testing.T, e *env) {
				if e.s.entry(999) != nil {
					t.Error("the entry of a stream that never sent a snapshot was applied")
				}
			}},
		{name: "oversized snapshot frame", atStart: true, retries: 3,
			inject: func(e *env) {
				e.f.set(func(f *front) {
					f.firstFrame = func(b []byte) []byte {
						pad := `"pad":"` + strings.Repeat("p", frameLimit) + `",`
						return bytes.Replace(b, []byte(`"generation"`), []byte(pad+`"generation"`), 1)
					}
				})
			},
			clear:   func(e *env) { e.f.set(func(f *front) { f.firstFrame = nil }) },
			allowed: []string{"stream/protocol"}, want: []string{"stream/protocol"}, bound: cap30},
		{name: "extra fields are ignored", applied: true,
			inject: func(e *env) {
				e.b.SendRaw([]byte(e.frameFrom(broker.FrameSnapshot, func(m map[string]any) {
					m["futureTopLevel"] = map[string]any{"x": []any{1, "two"}}
					m["refresher"].(map[string]any)["jitterMs"] = 5
					for _, c := range creds(m) {
						c["futureEntryField"] = "v"
						c["credential"].(map[string]any)["clientSecret"] = canaryExtra
						if bs, ok := c["blocks"].([]any); ok {
							for _, b := range bs {
								b.(map[string]any)["reason"] = "429"
							}
						}
					}
				})))
			},
			bound: quick},
		{name: "numbers as floats and exponents", applied: true,
			inject: func(e *env) {
				e.b.SendRaw([]byte(e.frameFrom(broker.FrameSnapshot, func(m map[string]any) {
					asFloat := func(v any) json.Number {
						f, _ := v.(json.Number).Float64()
						return json.Number(strconv.FormatFloat(f, 'e', -1, 64))
					}
					m["generation"] = asFloat(m["generation"])
					m["serverNowMs"] = json.Number(string(m["serverNowMs"].(json.Number)) + ".75")
					for _, c := range creds(m) {
						c["id"] = json.Number(string(c["id"].(json.Number)) + ".0")
						cr := c["credential"].(map[string]any)
						if v, ok := cr["expires"]; ok {
							cr["expires"] = asFloat(v)
						}
					}
				})))
			},
			bound: quick},
		{name: "negative, fractional, huge and out-of-range values", applied: true,
			inject: func(e *env) {
				e.b.SendRaw([]byte(e.frameFrom(broker.FrameSnapshot, func(m map[string]any) {
					for _, c := range creds(m) {
						cr := c["credential"].(map[string]any)
						switch jsonInt(e.t, c["id"]) {
						case e.anthropic:
							cr["expires"] = json.Number("-1.5")
							c["rotatesInMs"] = json.Number("-5000")
						case e.codex:
							cr["expires"] = json.Number("1e400")
							c["rotatesInMs"] = json.Number("9007199254740991")
						}
					}
				})))
			},
			afterApply: func(t *testing.T, e *env) {
				a, c := e.s.entry(e.anthropic), e.s.entry(e.codex)
				if !a.Credential.HasExpires || !a.Credential.Expires.Equal(time.UnixMilli(-2).Add(500*time.Microsecond)) ||
					a.RotatesIn != -5*time.Second {
					t.Errorf("negative values: expires %v (%v), rotates in %v", a.Credential.Expires, a.Credential.HasExpires, a.RotatesIn)
				}
				if c.Credential.HasExpires || !c.HasRotatesIn || c.RotatesIn != math.MaxInt64 {
					t.Errorf("out-of-range values: expires %v (%v), rotates in %v", c.Credential.Expires, c.Credential.HasExpires, c.RotatesIn)
				}
				if d, ok := c.RotationDeadline(); !ok || d.Before(e.clk.Now()) {
					t.Errorf("saturated rotation deadline %v", d)
				}
			},
			bound: quick},
		{name: "duplicate ids in one snapshot", applied: true,
			inject: func(e *env) {
				e.b.SendRaw([]byte(e.frameFrom(broker.FrameSnapshot, func(m map[string]any) {
					cs := m["credentials"].([]any)
					m["credentials"] = append(cs, cs...)
				})))
			},
			bound: quick,
			check: func(t *testing.T, e *env) {
				seen := map[int64]bool{}
				for _, en := range e.s.Snapshot().Entries {
					if seen[en.ID] {
						t.Errorf("id %d twice in the mirror", en.ID)
					}
					seen[en.ID] = true
				}
			}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) { runFault(t, row) })
	}
}

// TestStrictRejections: each of what JSON.stringify never writes (a
// duplicate key, a key that differs only in case from a known one, a
// quoted number, a wrong type, a missing field) is a bad frame like any
// other, held to the fault matrix's contract (the last good mirror kept,
// counted as stream/protocol, one degraded line), and the error names
// the field path (docs/broker-protocol.md §6.4).
func TestStrictRejections(t *testing.T) {
	good := entryFrameJSON(99)
	edit := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("no %s in %s", old, good)
		}
		return strings.Replace(good, old, new, 1)
	}
	const expires = `"expires":1795755013000`
	cases := []struct{ name, frame, want string }{
		{"duplicate key", edit(expires, expires+`,"expires":1`), "entry.credential.expires: duplicate key"},
		{"case variant", edit(expires, expires+`,"Email":"`+canaryExtra+`"`), `entry.credential.Email: key differs only in case from "email"`},
		{"quoted number", edit(expires, `"expires":"1795755013000"`), "entry.credential.expires: want a number, got a string"},
		{"wrong type", edit(`"provider":"anthropic"`, `"provider":7`), "entry.provider: want a string, got a number"},
		{"missing field", edit(","+expires, ""), "entry.credential.expires: missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runFault(t, faultRow{inject: badFrame(tc.frame), bound: time.Second,
				allowed: []string{"stream/protocol", "stream/eof", "stream/network"}, want: []string{"stream/protocol"},
				check: func(t *testing.T, e *env) {
					d := logLines(e.log, "degraded")
					if len(d) != 1 || !strings.Contains(d[0]["err"], "stream: invalid response: "+tc.want) {
						t.Errorf("degraded line %v does not name the field: want %q", d, tc.want)
					}
				}})
		})
	}
	t.Run("quoted number in a snapshot", func(t *testing.T) {
		runFault(t, faultRow{bound: time.Second,
			inject: func(e *env) {
				e.b.SendRaw([]byte(e.frameFrom(broker.FrameSnapshot, func(m map[string]any) {
					creds(m)[1]["credential"].(map[string]any)["expires"] = "1795755013000"
				})))
			},
			allowed: []string{"stream/protocol", "stream/eof", "stream/network"}, want: []string{"stream/protocol"},
			check: func(t *testing.T, e *env) {
				d := logLines(e.log, "degraded")
				if len(d) != 1 || !strings.Contains(d[0]["err"], "credentials[1].credential.expires: want a number, got a string") {
					t.Errorf("degraded line %v does not name the field", d)
				}
			}})
	})
}

// TestStoreBadFrameOnEveryConnectionEscalates: a broker that sends a good
// snapshot, then a frame the exporter cannot read, on every connection
// does not get a full-snapshot reconnect every 500 ms: the backoff keeps
// escalating to its cap, as for any other persistent failure.
func TestStoreBadFrameOnEveryConnectionEscalates(t *testing.T) {
	e := newEnv(t, broker.ClientOptions{})
	e.f.set(func(f *front) {
		f.firstFrame = func(b []byte) []byte { return append(b, "event: entry\ndata: {not json\n\n"...) }
	})
	e.start(Options{Stream: true})
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, d := range want {
		if got := e.clk.WaitSleep(t, 30*time.Second); got != d {
			t.Fatalf("reconnect %d after %v, want %v", i, got, d)
		}
		if i == len(want)-1 {
			// The snapshots were good: the mirror is current, and one
			// clean connection resets the backoff. The fault is lifted
			// while the loop sleeps, so the next connection is clean.
			if got, want := e.mirror(), e.brokerState(); got.String() != want.String() {
				t.Fatalf("mirror\n%s\nbroker\n%s", got, want)
			}
			e.f.set(func(f *front) { f.firstFrame = nil })
		}
		e.clk.Advance(d)
	}
	e.waitStatus("connected", func(st SyncStatus) bool { return st.StreamConnected })
	if err := e.b.WaitForStreams(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	e.b.CutStreams()
	if got := e.clk.WaitSleep(t, 30*time.Second); got != 500*time.Millisecond {
		t.Fatalf("backoff after a healthy connection %v, want 500ms", got)
	}
}
