package store

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/internal/testkit"
)

// passEntry is one credential as a broker pass re-sends it.
type passEntry struct {
	id       int
	access   string
	expires  int64
	identity string // "" sends null
	blocks   string // "" sends no blocks key
	rotates  int64
}

func (p passEntry) frame(gen int64) []byte {
	identity := "null"
	if p.identity != "" {
		identity = fmt.Sprintf("%q", p.identity)
	}
	blocks := ""
	if p.blocks != "" {
		blocks = `,"blocks":` + p.blocks
	}
	return fmt.Appendf(nil, `{"kind":"entry","generation":%d,"serverNowMs":%d,"refresher":%s,"entry":`+
		`{"id":%d,"provider":"anthropic","credential":{"type":"oauth","access":%q,"refresh":"__remote__","expires":%d,"email":"u%d@example.com"},`+
		`"identityKey":%s,"rotatesInMs":%d%s}}`,
		gen, 1795751777704+gen*1000, testkit.BenchRefresher, p.id, p.access, p.expires, p.id, identity, p.rotates, blocks)
}

// TestUnchangedEntryPass follows broker passes with a connection's decoder
// (which recognises entries re-sent unchanged but for rotatesInMs) and,
// side by side, with a fresh decoder per frame (every entry decoded in
// full): the two mirrors must agree field by field, rotation tracking
// included. A pass of unchanged entries moves only RotatesIn, ReceivedAt
// and the generation; an entry whose token, expiry, blocks or identity
// changed is decoded in full, and a token or expiry change is a rotation.
func TestUnchangedEntryPass(t *testing.T) {
	clk := newFakeClock(nil)
	conn, full := ruleStore(t, clk), ruleStore(t, clk)
	dec := &broker.FrameDecoder{} // one stream connection's
	entries := []passEntry{
		{id: 1, access: canaryAccess + "-1", expires: 1795755013000, rotates: 3300000},
		{id: 2, access: canaryAccess + "-2", expires: 1795755013000, rotates: 3300000},
		{id: 3, access: canaryAccess + "-3", expires: 1795755013000, identity: "email:u3@example.com", rotates: 3300000},
		{id: 4, access: canaryAccess + "-4", expires: 1795755013000, identity: "email:u4@example.com", rotates: 3300000},
	}
	recv := epoch
	gen := int64(1)
	pass := func() {
		t.Helper()
		gen++
		recv = recv.Add(time.Minute)
		for _, e := range entries {
			data := e.frame(gen)
			f, err := dec.Decode(data, recv)
			if err != nil {
				t.Fatal(err)
			}
			g, err := new(broker.FrameDecoder).Decode(data, recv)
			if err != nil {
				t.Fatal(err)
			}
			conn.applyFrame(f)
			full.applyFrame(g)
		}
		for _, e := range entries {
			a, b := conn.entry(int64(e.id)), full.entry(int64(e.id))
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("generation %d, id %d: the mirrors disagree\nconnection: %+v\nfull:       %+v", gen, e.id, a, b)
			}
		}
		if conn.Snapshot().Generation != gen || full.Snapshot().Generation != gen {
			t.Fatalf("generation %d not applied", gen)
		}
	}
	mirrored := func() map[int64]Entry {
		out := map[int64]Entry{}
		for _, e := range conn.List("") {
			out[e.ID] = *e
		}
		return out
	}

	pass() // first sight: every entry decoded in full
	for range 3 {
		before := mirrored()
		for i := range entries {
			entries[i].rotates -= 60000
		}
		pass() // unchanged but for rotatesInMs
		for id, was := range before {
			now := *conn.entry(id)
			if now.ReceivedAt != recv || !now.HasRotatesIn || now.RotatesIn != time.Duration(entries[id-1].rotates)*time.Millisecond {
				t.Fatalf("id %d: RotatesIn/ReceivedAt not moved: %+v", id, now)
			}
			now.RotatesIn, now.ReceivedAt = was.RotatesIn, was.ReceivedAt
			if !reflect.DeepEqual(now, was) {
				t.Fatalf("id %d changed beyond RotatesIn/ReceivedAt:\nbefore: %+v\nafter:  %+v", id, was, now)
			}
		}
	}

	entries[0].access += "-rotated" // token
	entries[1].expires += 3600000   // expiry
	entries[2].blocks = `[{"providerKey":"anthropic:oauth","blockScope":"chat","blockedUntilMs":1895751777704,"updatedAtMs":1795751777000}]`
	entries[3].identity = "email:other@example.com" // identity
	changedAt := recv.Add(time.Minute)
	pass()
	for _, id := range []int64{1, 2} {
		if e := conn.entry(id); e.Rotations != 1 || !e.LastRotation.Equal(changedAt) {
			t.Fatalf("id %d: rotation not counted: %d at %v", id, e.Rotations, e.LastRotation)
		}
	}
	for _, id := range []int64{3, 4} {
		if e := conn.entry(id); e.Rotations != 0 {
			t.Fatalf("id %d: counted %d rotations without a token change", id, e.Rotations)
		}
	}
	if e := conn.entry(3); len(e.Blocks) != 1 || e.Blocks[0].Scope != "chat" {
		t.Fatalf("blocks not applied: %+v", e.Blocks)
	}
	if e := conn.entry(4); e.IdentityKey != "email:other@example.com" {
		t.Fatalf("identity not applied: %q", e.IdentityKey)
	}

	// The changed entries are the ones seen now: an unchanged pass keeps
	// them, and the rotation history, as they are.
	before := mirrored()
	for i := range entries {
		entries[i].rotates -= 60000
	}
	pass()
	for id, was := range before {
		now := *conn.entry(id)
		now.RotatesIn, now.ReceivedAt = was.RotatesIn, was.ReceivedAt
		if !reflect.DeepEqual(now, was) {
			t.Fatalf("id %d changed beyond RotatesIn/ReceivedAt:\nbefore: %+v\nafter:  %+v", id, was, now)
		}
	}
	if conn.entry(3).Blocks == nil || conn.entry(1).Rotations != 1 {
		t.Fatal("blocks or rotation history lost on an unchanged pass")
	}

	// A token that goes back to an earlier value is a rotation again,
	// though the decoder saw those bytes before.
	entries[0].access = canaryAccess + "-1"
	pass()
	if e := conn.entry(1); e.Rotations != 2 {
		t.Fatalf("a token changed back: %d rotations, want 2", e.Rotations)
	}
}
