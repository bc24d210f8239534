package brokertest

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/testwait"
)

func TestStreamHeadersAndSnapshotFrame(t *testing.T) {
	f := newFixture(t, Options{})
	seed(f)
	s := f.openStream()
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache",
		"Connection":        "keep-alive",
		"X-Accel-Buffering": "no",
		"Vary":              "OMP-Auth-Broker-Capabilities",
	} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if s.resp.StatusCode != 200 || len(s.resp.TransferEncoding) == 0 || s.resp.TransferEncoding[0] != "chunked" {
		t.Errorf("status %d, transfer encoding %v", s.resp.StatusCode, s.resp.TransferEncoding)
	}
	fr := s.nextFrame()
	if !strings.HasPrefix(fr.raw, "event: snapshot\ndata: {") || !strings.HasSuffix(fr.raw, "}\n\n") || strings.Count(fr.raw, "\n") != 3 {
		t.Errorf("framing = %q", fr.raw)
	}
	m := fr.json(t)
	sameKeys(t, "snapshot frame", m, "kind", "generation", "generatedAt", "serverNowMs", "refresher", "credentials")
	if m["kind"] != "snapshot" || numOf(t, m["generation"]) != f.b.Generation() {
		t.Errorf("snapshot frame = %v", m)
	}
	// The snapshot frame is the GET body plus "kind".
	body := f.do("GET", "/v1/snapshot", "", true).body
	if want := `{"kind":"snapshot",` + string(body[1:]); fr.data != want {
		t.Errorf("frame data\n%s\nwant\n%s", fr.data, want)
	}
	if err := f.b.WaitForStreams(context.Background(), 1); err != nil || f.b.StreamConnections() != 1 {
		t.Errorf("WaitForStreams: %v, %d open", err, f.b.StreamConnections())
	}
}

// TestStreamDiff drives the algorithm of docs/broker-protocol.md §6.3: every frame of a pass shares
// generation/serverNowMs/refresher; entries in snapshot order for changed
// fingerprints, then removed frames.
func TestStreamDiff(t *testing.T) {
	f := newFixture(t, Options{})
	apiKey, anth, codex, mcp := seed(f)
	s := f.openStream()
	s.nextFrame() // snapshot

	type want struct {
		kind string
		id   int64
	}
	pass := func(name string, act func(), wants ...want) {
		t.Helper()
		act()
		var got []map[string]any
		for range wants {
			got = append(got, s.nextFrame().json(t))
		}
		for i, w := range wants {
			m := got[i]
			var id int64
			switch m["kind"] {
			case "entry":
				sameKeys(t, "entry frame", m, "kind", "generation", "serverNowMs", "refresher", "entry")
				id = numOf(t, m["entry"].(map[string]any)["id"])
			case "removed":
				sameKeys(t, "removed frame", m, "kind", "generation", "serverNowMs", "refresher", "id")
				id = numOf(t, m["id"])
			}
			if m["kind"] != w.kind || id != w.id {
				t.Errorf("%s: frame %d = %s %d, want %s %d", name, i, m["kind"], id, w.kind, w.id)
			}
			if fmt.Sprint(m["generation"], m["serverNowMs"], m["refresher"]) != fmt.Sprint(got[0]["generation"], got[0]["serverNowMs"], got[0]["refresher"]) {
				t.Errorf("%s: frames of one pass differ in generation/serverNowMs/refresher", name)
			}
			if numOf(t, m["generation"]) != f.b.Generation() {
				t.Errorf("%s: frame generation %v, broker %d", name, m["generation"], f.b.Generation())
			}
		}
	}

	// Time passes, as on a real broker, so every OAuth rotatesInMs moves:
	// a disable re-sends the OAuth rows, then the removed frame.
	f.clk.Advance(time.Second)
	pass("disable", func() {
		if r := f.do("POST", fmt.Sprintf("/v1/credential/%d/disable", apiKey), `{"cause":"test"}`, true); r.status != 200 {
			t.Fatalf("disable: %d", r.status)
		}
	}, want{"entry", anth}, want{"entry", codex}, want{"entry", mcp}, want{"removed", apiKey})

	// Same instant: a content-free bump changes no fingerprint, so the
	// next frames are those of the following real change only.
	f.b.Bump()
	pass("rotation", func() {
		f.b.UpdateOAuth(anth, OAuth{Access: "rotated", Refresh: "r", Expires: f.clk.Now().Add(2 * time.Hour), Email: "alice@example.com"})
	}, want{"entry", anth})

	// Blocks ride on entries; the key is omitted when none are active.
	pass("block", func() {
		f.b.SetBlocks(codex, []Block{{ProviderKey: "openai-codex:oauth", Scope: "tier:x", BlockedUntil: f.clk.Now().Add(time.Minute)}})
	}, want{"entry", codex})
	pass("unblock", func() { f.b.SetBlocks(codex, nil) }, want{"entry", codex})

	// Keepalive comment.
	f.b.Keepalive()
	if fr := s.nextFrame(); fr.raw != ": keepalive\n\n" || fr.comment != "keepalive" {
		t.Errorf("keepalive = %q", fr.raw)
	}
	// Raw bytes go out verbatim.
	f.b.SendRaw([]byte("event: entry\ndata: {not json\n\n"))
	if fr := s.nextFrame(); fr.data != "{not json" {
		t.Errorf("raw frame = %q", fr.raw)
	}
}

func TestStreamNewKeyFirst(t *testing.T) {
	// Upload of a new API key: its entry comes first (snapshot order:
	// openai group first), then every OAuth row.
	f := newFixture(t, Options{})
	_, anth, codex, mcp := seed(f)
	s := f.openStream()
	s.nextFrame()
	f.clk.Advance(time.Second)
	l := upload(t, f, `{"provider":"openai","credential":{"type":"api_key","key":"sk-second"}}`)
	newKey := l.Entries[len(l.Entries)-1].ID
	var ids []int64
	for range 4 {
		m := s.nextFrame().json(t)
		ids = append(ids, numOf(t, m["entry"].(map[string]any)["id"]))
	}
	if fmt.Sprint(ids) != fmt.Sprint([]int64{newKey, anth, codex, mcp}) {
		t.Errorf("entry order = %v, want %v", ids, []int64{newKey, anth, codex, mcp})
	}
}

func TestStreamCoalescesToLatest(t *testing.T) {
	f := newFixture(t, Options{})
	id := f.b.AddAPIKey("openai", "k1")
	s := f.openStream()
	s.nextFrame()
	for range 5 {
		f.b.Bump()
	}
	f.b.Disable(id, "")
	// However the bumps were grouped into passes, the only frame that can
	// result is the removal, carrying the latest generation.
	m := s.nextFrame().json(t)
	if m["kind"] != "removed" || numOf(t, m["id"]) != id || numOf(t, m["generation"]) != f.b.Generation() {
		t.Errorf("frame = %v (generation %d)", m, f.b.Generation())
	}
	f.b.Keepalive()
	if fr := s.nextFrame(); fr.comment != "keepalive" {
		t.Errorf("unexpected extra frame %q", fr.raw)
	}
}

func TestStreamKeepaliveTimer(t *testing.T) {
	f := newFixture(t, Options{KeepaliveInterval: time.Millisecond})
	s := f.openStream()
	s.nextFrame()
	if fr := s.nextFrame(); fr.raw != ": keepalive\n\n" {
		t.Errorf("timer keepalive = %q", fr.raw)
	}
}

func TestStreamEndings(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(*Broker)
	}{
		{"cut", (*Broker).CutStreams},
		{"restart", (*Broker).Restart},
		{"close", (*Broker).Close},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			id := f.b.AddOAuth("anthropic", OAuth{Access: "a", Refresh: "r", Expires: f.clk.Now().Add(time.Hour), Email: "a@b"})
			s := f.openStream()
			s.nextFrame()
			if err := f.b.WaitForStreams(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			tc.act(f.b)
			fr := s.next()
			if fr.err == nil || fr.err == io.EOF {
				t.Errorf("stream must drop without a clean end, got frame %q err %v", fr.raw, fr.err)
			}
			if tc.name != "restart" {
				return
			}
			// Data kept; generation 1 + one bump for the one provider loaded.
			if g := f.b.Generation(); g != 2 {
				t.Errorf("generation after restart = %d", g)
			}
			s2 := f.openStream()
			m := s2.nextFrame().json(t)
			if m["kind"] != "snapshot" || numOf(t, m["generation"]) != 2 || len(m["credentials"].([]any)) != 1 ||
				numOf(t, m["credentials"].([]any)[0].(map[string]any)["id"]) != id {
				t.Errorf("after restart: %v", m)
			}
		})
	}
}

func TestStreamClientGone(t *testing.T) {
	f := newFixture(t, Options{})
	s := f.openStream()
	s.nextFrame()
	if err := f.b.WaitForStreams(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	s.close()
	// The handler notices on its next write or via the request context.
	testwait.Eventually(t, "the handler to notice the client is gone", func() bool {
		f.b.Keepalive()
		return f.b.StreamConnections() == 0
	})
}

func TestStreamCapabilityBlocks(t *testing.T) {
	f := newFixture(t, Options{})
	id := f.b.AddOAuth("openai-codex", OAuth{Access: "a", Refresh: "r", Expires: f.clk.Now().Add(time.Hour), Email: "c@d"})
	f.b.SetBlocks(id, []Block{
		{ProviderKey: "openai-codex:oauth", Scope: "chat", BlockedUntil: f.clk.Now().Add(time.Minute)},
		{ProviderKey: "openai-codex:oauth", Scope: "spark", BlockedUntil: f.clk.Now().Add(2 * time.Minute)},
	})
	scopes := func(m map[string]any) string {
		var out []string
		for _, b := range m["credentials"].([]any)[0].(map[string]any)["blocks"].([]any) {
			out = append(out, b.(map[string]any)["blockScope"].(string))
		}
		return strings.Join(out, ",")
	}
	if got := scopes(f.openStream("OMP-Auth-Broker-Capabilities", "codex-meter-block-scopes").nextFrame().json(t)); got != "chat,spark" {
		t.Errorf("with capability: %s", got)
	}
	if got := scopes(f.openStream().nextFrame().json(t)); got != "shared" {
		t.Errorf("without capability: %s", got)
	}
}

func TestWaitForStreamsHonoursContext(t *testing.T) {
	f := newFixture(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.b.WaitForStreams(ctx, 1); err == nil {
		t.Error("WaitForStreams with a cancelled context returned nil")
	}
}

func TestRestartReloadOrder(t *testing.T) {
	f := newFixture(t, Options{})
	a := f.b.AddAPIKey("openai", "k1")
	b := f.b.AddOAuth("anthropic", OAuth{Access: "a", Refresh: "r", Expires: f.clk.Now(), Email: "a@b"})
	f.b.Disable(a, "")
	c := f.b.AddAPIKey("openai", "k2") // the openai group is re-created last
	order := func() []int64 {
		var ids []int64
		for _, e := range f.do("GET", "/v1/snapshot", "", true).json(t)["credentials"].([]any) {
			ids = append(ids, numOf(t, e.(map[string]any)["id"]))
		}
		return ids
	}
	if got := fmt.Sprint(order()); got != fmt.Sprint([]int64{b, c}) {
		t.Errorf("before restart: %s", got)
	}
	f.b.Restart()
	if got := fmt.Sprint(order()); got != fmt.Sprint([]int64{b, c}) || f.b.Generation() != 3 {
		t.Errorf("after restart: %s, generation %d", got, f.b.Generation())
	}
	d := f.b.AddOAuth("anthropic", OAuth{Access: "d", Refresh: "r", Expires: f.clk.Now(), Email: "d@b"})
	f.b.Disable(b, "")
	f.b.Restart()
	// Groups reload in order of their lowest active id: openai (c) first.
	if got := fmt.Sprint(order()); got != fmt.Sprint([]int64{c, d}) {
		t.Errorf("after second restart: %s", got)
	}
}
