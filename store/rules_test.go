package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
)

func ruleStore(t *testing.T, clk broker.Clock) *Store {
	t.Helper()
	c := newTestClient(t, "http://127.0.0.1:1", broker.ClientOptions{Clock: clk})
	s := newStore(Options{Broker: c, Clock: clk, Stream: true})
	t.Cleanup(s.Close)
	return s
}

// decodedEntry is the entry of an entry frame carrying entryJSON, decoded
// as the stream decodes it (token fingerprints included), received at recv.
func decodedEntry(entryJSON string, recv time.Time) *broker.Entry {
	f, err := new(broker.FrameDecoder).Decode([]byte(`{"kind":"entry","generation":1,"serverNowMs":1,`+
		`"refresher":{"enabled":false,"intervalMs":0,"skewMs":0,"nextSweepInMs":9007199254740991},"entry":`+entryJSON+`}`), recv)
	if err != nil {
		panic(err)
	}
	return f.Entry
}

func oauthE(id int64, access string, expires time.Time, recv time.Time) *broker.Entry {
	return decodedEntry(fmt.Sprintf(`{"id":%d,"provider":"anthropic","credential":{"type":"oauth","access":%q,"refresh":"__remote__","expires":%d,"email":"u%d@example.com"},"identityKey":null,"rotatesInMs":null}`,
		id, access, expires.UnixMilli(), id), recv)
}

func apiKeyE(id int64, key string, recv time.Time) *broker.Entry {
	return decodedEntry(fmt.Sprintf(`{"id":%d,"provider":"openai","credential":{"type":"api_key","key":%q},"identityKey":null,"rotatesInMs":null}`, id, key), recv)
}

func snapFrame(gen int64, recv time.Time, es ...*broker.Entry) *broker.StreamFrame {
	return &broker.StreamFrame{Kind: broker.FrameSnapshot, Generation: gen, ReceivedAt: recv, ServerNow: recv,
		Snapshot: &broker.Snapshot{Generation: gen, ReceivedAt: recv, ServerNow: recv, GeneratedAt: recv, Entries: es}}
}

func entryFrame(gen int64, e *broker.Entry) *broker.StreamFrame {
	return &broker.StreamFrame{Kind: broker.FrameEntry, Generation: gen, ReceivedAt: e.ReceivedAt, ServerNow: e.ReceivedAt, Entry: e}
}

func removedFrame(gen, id int64, recv time.Time) *broker.StreamFrame {
	return &broker.StreamFrame{Kind: broker.FrameRemoved, Generation: gen, RemovedID: id, ReceivedAt: recv, ServerNow: recv}
}

func ids(v View) map[int64]*Entry {
	m := map[int64]*Entry{}
	for _, e := range v.Entries {
		m[e.ID] = e
	}
	return m
}

// TestGenerationRules is the client rules of docs/broker-protocol.md §6.4: snapshots
// always adopted (a lower generation counts a reset), deltas ignored when
// older, applied when equal or newer.
func TestGenerationRules(t *testing.T) {
	t0 := epoch
	exp := t0.Add(time.Hour)
	type step struct {
		frame   *broker.StreamFrame
		result  string
		gen     int64
		present []int64
		absent  []int64
	}
	cases := []struct {
		name   string
		steps  []step
		resets uint64
	}{
		{"entry older than local is stale", []step{
			{snapFrame(10, t0, oauthE(1, "a", exp, t0)), FrameApplied, 10, []int64{1}, nil},
			{entryFrame(9, oauthE(2, "b", exp, t0)), FrameStale, 10, []int64{1}, []int64{2}},
		}, 0},
		{"entry with equal generation is applied", []step{
			{snapFrame(10, t0, oauthE(1, "a", exp, t0)), FrameApplied, 10, nil, nil},
			{entryFrame(10, oauthE(2, "b", exp, t0)), FrameApplied, 10, []int64{1, 2}, nil},
			{entryFrame(10, oauthE(3, "c", exp, t0)), FrameApplied, 10, []int64{1, 2, 3}, nil},
		}, 0},
		{"generations may skip", []step{
			{snapFrame(10, t0, oauthE(1, "a", exp, t0)), FrameApplied, 10, nil, nil},
			{entryFrame(14, oauthE(2, "b", exp, t0)), FrameApplied, 14, []int64{1, 2}, nil},
			{entryFrame(12, oauthE(3, "c", exp, t0)), FrameStale, 14, []int64{1, 2}, []int64{3}},
		}, 0},
		{"removed applied, equal and newer", []step{
			{snapFrame(10, t0, oauthE(1, "a", exp, t0), oauthE(2, "b", exp, t0)), FrameApplied, 10, nil, nil},
			{removedFrame(10, 1, t0), FrameApplied, 10, []int64{2}, []int64{1}},
			{removedFrame(11, 2, t0), FrameApplied, 11, nil, []int64{1, 2}},
		}, 0},
		{"removed older than local is stale", []step{
			{snapFrame(10, t0, oauthE(1, "a", exp, t0)), FrameApplied, 10, nil, nil},
			{removedFrame(3, 1, t0), FrameStale, 10, []int64{1}, nil},
		}, 0},
		{"removed of an unknown id still moves the generation", []step{
			{snapFrame(10, t0, oauthE(1, "a", exp, t0)), FrameApplied, 10, nil, nil},
			{removedFrame(12, 99, t0), FrameApplied, 12, []int64{1}, nil},
		}, 0},
		{"lower snapshot adopted and counted as a reset", []step{
			{snapFrame(57, t0, oauthE(1, "a", exp, t0), oauthE(2, "b", exp, t0)), FrameApplied, 57, nil, nil},
			{snapFrame(2, t0, oauthE(3, "c", exp, t0)), FrameApplied, 2, []int64{3}, []int64{1, 2}},
			{entryFrame(2, oauthE(4, "d", exp, t0)), FrameApplied, 2, []int64{3, 4}, nil},
		}, 1},
		{"equal or higher snapshot is not a reset", []step{
			{snapFrame(5, t0, oauthE(1, "a", exp, t0)), FrameApplied, 5, nil, nil},
			{snapFrame(5, t0, oauthE(2, "b", exp, t0)), FrameApplied, 5, []int64{2}, []int64{1}},
			{snapFrame(6, t0), FrameApplied, 6, nil, []int64{1, 2}},
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ruleStore(t, newFakeClock(nil))
			want := map[FrameOutcome]uint64{}
			for i, st := range tc.steps {
				s.applyFrame(st.frame)
				want[FrameOutcome{st.frame.Kind, st.result}]++
				v := s.Snapshot()
				if v.Generation != st.gen || !v.Ready {
					t.Fatalf("step %d: generation %d (ready %v), want %d", i, v.Generation, v.Ready, st.gen)
				}
				m := ids(v)
				for _, id := range st.present {
					if m[id] == nil {
						t.Fatalf("step %d: id %d missing", i, id)
					}
				}
				for _, id := range st.absent {
					if m[id] != nil {
						t.Fatalf("step %d: id %d present", i, id)
					}
				}
			}
			got := s.Counters().StreamEvents
			for k, n := range want {
				if got[k] != n {
					t.Fatalf("events %v = %d, want %d (all: %v)", k, got[k], n, got)
				}
			}
			if r := s.Status().GenerationResets; r != tc.resets {
				t.Fatalf("resets %d, want %d", r, tc.resets)
			}
		})
	}
}

// TestRotationTracking: a changed token or expiry of an OAuth entry is a
// rotation stamped with the receipt time, carried by id across deltas and
// snapshots; identity changes and API keys are not rotations.
func TestRotationTracking(t *testing.T) {
	t0 := epoch
	exp := t0.Add(time.Hour)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := ruleStore(t, newFakeClock(nil))
	get := func(id int64) *Entry { return s.entry(id) }

	s.applyFrame(snapFrame(1, t0, oauthE(1, "a1", exp, t0), oauthE(2, "b1", exp, t0),
		apiKeyE(3, "k7", t0)))
	if e := get(1); e.Rotations != 0 || !e.LastRotation.IsZero() {
		t.Fatalf("fresh entry has rotations: %+v", e)
	}
	// Same token and expiry re-sent (a rotatesInMs change): no rotation.
	s.applyFrame(entryFrame(2, oauthE(1, "a1", exp, at(time.Second))))
	if e := get(1); e.Rotations != 0 {
		t.Fatal("re-sent entry counted as rotation")
	}
	// New access token.
	s.applyFrame(entryFrame(3, oauthE(1, "a2", exp, at(2*time.Second))))
	if e := get(1); e.Rotations != 1 || !e.LastRotation.Equal(at(2*time.Second)) || !e.ReceivedAt.Equal(at(2*time.Second)) {
		t.Fatalf("token change: %+v", e)
	}
	// Expiry change alone.
	s.applyFrame(entryFrame(4, oauthE(1, "a2", exp.Add(time.Hour), at(3*time.Second))))
	if e := get(1); e.Rotations != 2 || !e.LastRotation.Equal(at(3*time.Second)) {
		t.Fatalf("expiry change: %+v", e)
	}
	// Identity-only change keeps the history but is no rotation.
	ident := oauthE(1, "a2", exp.Add(time.Hour), at(4*time.Second))
	ident.Credential.Email = "other@example.com"
	s.applyFrame(entryFrame(5, ident))
	if e := get(1); e.Rotations != 2 || !e.LastRotation.Equal(at(3*time.Second)) {
		t.Fatalf("identity change: %+v", e)
	}
	// A later full snapshot (reconnect, restart) carries the history by id
	// and detects a rotation that happened while disconnected.
	s.applyFrame(snapFrame(1, at(10*time.Second), oauthE(1, "a2", exp.Add(time.Hour), at(10*time.Second)),
		oauthE(2, "b2", exp, at(10*time.Second)),
		apiKeyE(3, "k8", at(10*time.Second))))
	if e := get(1); e.Rotations != 2 || !e.LastRotation.Equal(at(3*time.Second)) {
		t.Fatalf("history lost across snapshot: %+v", e)
	}
	if e := get(2); e.Rotations != 1 || !e.LastRotation.Equal(at(10*time.Second)) {
		t.Fatalf("rotation across snapshot: %+v", e)
	}
	if e := get(3); e.Rotations != 0 {
		t.Fatalf("api key change counted: %+v", e)
	}
	// A removed and re-added id starts over.
	s.applyFrame(removedFrame(2, 1, at(11*time.Second)))
	s.applyFrame(entryFrame(2, oauthE(1, "a3", exp, at(12*time.Second))))
	if e := get(1); e.Rotations != 0 {
		t.Fatalf("re-added entry inherited history: %+v", e)
	}
}

func TestReceiptTimePerEntry(t *testing.T) {
	t0 := epoch
	s := ruleStore(t, newFakeClock(nil))
	a := oauthE(1, "a", t0.Add(time.Hour), t0)
	a.RotatesIn, a.HasRotatesIn = 10*time.Minute, true
	s.applyFrame(snapFrame(1, t0, a, oauthE(2, "b", t0.Add(time.Hour), t0)))
	b := oauthE(2, "b", t0.Add(time.Hour), t0.Add(5*time.Minute))
	b.RotatesIn, b.HasRotatesIn = time.Minute, true
	s.applyFrame(entryFrame(2, b))
	if d, _ := s.entry(1).RotationDeadline(); !d.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("entry 1 deadline moved with an unrelated delta: %v", d)
	}
	if d, _ := s.entry(2).RotationDeadline(); !d.Equal(t0.Add(6 * time.Minute)) {
		t.Fatalf("entry 2 deadline %v", d)
	}
}

func TestExpiredBlocksDroppedAtRead(t *testing.T) {
	clk := newFakeClock(nil)
	s := ruleStore(t, clk)
	now := clk.Now()
	e := oauthE(1, "a", now.Add(time.Hour), now)
	e.Blocks = []broker.Block{{ProviderKey: "anthropic:oauth", Scope: "a", BlockedUntil: now.Add(10 * time.Second)},
		{ProviderKey: "anthropic:oauth", Scope: "b", BlockedUntil: now.Add(20 * time.Second)}}
	s.applyFrame(snapFrame(1, now, e))
	stored := s.Snapshot().Entries[0]
	if got := stored.Blocks; len(got) != 2 {
		t.Fatalf("blocks %v", got)
	}
	clk.Advance(10 * time.Second)
	got := s.Snapshot().Entries[0]
	if len(got.Blocks) != 1 || got.Blocks[0].Scope != "b" || got == stored {
		t.Fatalf("blocks %v", got.Blocks)
	}
	if len(stored.Blocks) != 2 {
		t.Fatal("stored entry mutated")
	}
	clk.Advance(10 * time.Second)
	if got := s.List("anthropic")[0].Blocks; len(got) != 0 {
		t.Fatalf("blocks %v", got)
	}
}

func TestClockSkewAndLastSync(t *testing.T) {
	s := ruleStore(t, newFakeClock(nil))
	recv := epoch.Add(time.Minute)
	f := snapFrame(3, recv)
	f.Snapshot.ServerNow = recv.Add(-1500 * time.Millisecond)
	s.applyFrame(f)
	st := s.Status()
	if !st.HasClockSkew || st.ClockSkew != 1500*time.Millisecond || !st.LastSync.Equal(recv) {
		t.Fatalf("%+v", st)
	}
	d := removedFrame(4, 9, recv.Add(time.Second))
	d.ServerNow = recv.Add(3 * time.Second)
	s.applyFrame(d)
	if st := s.Status(); st.ClockSkew != -2*time.Second || !st.LastSync.Equal(recv.Add(time.Second)) {
		t.Fatalf("%+v", st)
	}
}
