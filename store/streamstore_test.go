package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// TestStoreBadFramesKeepState: malformed, unknown and oversized frames drop
// the connection (counted as protocol errors) and never touch the mirror;
// the reconnect's snapshot brings it back.
func TestStoreBadFramesKeepState(t *testing.T) {
	cases := []struct {
		name string
		raw  string
	}{
		{"malformed JSON", "event: entry\ndata: {\"kind\":\"entry\",\"generation\":99,\"entry\":{\"credential\":{\"access\":\"" + canaryAccess + "\"\n\n"},
		{"missing fields", "event: entry\ndata: {\"kind\":\"entry\",\"generation\":99}\n\n"},
		{"unknown kind", "event: surprise\ndata: {\"kind\":\"surprise\",\"generation\":99}\n\n"},
		{"oversized", "event: entry\ndata: {\"kind\":\"entry\",\"pad\":\"" + strings.Repeat("x", 70000) + "\"}\n\n"},
		{"non-UTF-8 garbage", "event: entry\ndata: \xff\xfe\x00garbage\n\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, setup{client: broker.ClientOptions{MaxFrameBytes: 64 << 10}})
			id := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
			s := h.start(Options{Stream: true})
			before := h.waitView("ready", func(v View) bool { return v.Ready })
			if err := h.b.WaitForStreams(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			h.b.SendRaw([]byte(tc.raw))
			st := h.waitStatus("protocol error", func(st SyncStatus) bool { return st.LastErrorReason == broker.SyncReasonProtocol })
			after := s.Snapshot()
			if after.Generation != before.Generation || len(after.Entries) != 1 || after.Entries[0] != before.Entries[0] {
				t.Fatal("mirror changed by a bad frame")
			}
			assertNoCanary(t, "status", fmt.Sprintf("%+v", st))
			h.sleepAndAdvance(500 * time.Millisecond)
			h.waitStatus("reconnected", func(st SyncStatus) bool { return st.StreamConnected })
			if c := s.Counters(); c.SyncErrors[SyncFailure{"stream", broker.SyncReasonProtocol}] != 1 || c.SyncRequests[SyncOutcome{"stream", "ok"}] != 2 {
				t.Fatalf("%+v", c)
			}
			if s.entry(id) == nil {
				t.Fatal("entry lost")
			}
			assertNoCanary(t, "log", h.log.String())
		})
	}
}

// TestStoreIdleReconnect: a stream that goes silent for the idle timeout is
// dropped (reason idle) and reconnected.
func TestStoreIdleReconnect(t *testing.T) {
	h := newHarness(t, setup{client: broker.ClientOptions{StreamIdleTimeout: 45 * time.Second}})
	h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: true})
	h.waitStatus("connected", func(st SyncStatus) bool { return st.StreamConnected })
	if d := h.clk.WaitSleep(t, 45*time.Second); d != 45*time.Second {
		t.Fatalf("watchdog sleeps %v", d)
	}
	h.clk.Advance(45 * time.Second)
	st := h.waitStatus("idle", func(st SyncStatus) bool { return st.LastErrorReason == broker.SyncReasonIdle })
	if st.StreamConnected || st.Live {
		t.Fatalf("%+v", st)
	}
	h.sleepAndAdvance(500 * time.Millisecond)
	h.waitStatus("reconnected", func(st SyncStatus) bool { return st.StreamConnected })
	if c := s.Counters(); c.SyncErrors[SyncFailure{"stream", broker.SyncReasonIdle}] != 1 {
		t.Fatalf("%+v", c)
	}
}

// TestStoreStreamTokenRotation: the broker's token is rotated and the
// token file rewritten; the reconnect's 401 re-reads the file.
func TestStoreStreamTokenRotation(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: true})
	h.waitStatus("connected", func(st SyncStatus) bool { return st.StreamConnected })
	if err := h.b.WaitForStreams(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	h.b.SetToken(canaryToken2)
	writeFile(t, h.tokenPath, canaryToken2+"\n")
	h.b.CutStreams()
	h.sleepAndAdvance(500 * time.Millisecond)
	h.waitStatus("reconnected", func(st SyncStatus) bool { return st.StreamConnected })
	if c := s.Counters(); c.SyncErrors[SyncFailure{"stream", broker.SyncReasonUnauthorized}] != 0 {
		t.Fatalf("rotation surfaced as an error: %+v", c.SyncErrors)
	}
	// Without a new file the 401 is an error, with its own reason. (The
	// idle watchdog forces the reconnect: cutting streams could race with
	// the fake broker registering the new one.)
	h.b.SetToken("yet-another")
	if d := h.clk.WaitSleep(t, time.Minute); d != time.Minute {
		t.Fatalf("watchdog sleeps %v", d)
	}
	h.clk.Advance(time.Minute)
	h.sleepAndAdvance(500 * time.Millisecond) // backoff after the idle drop
	st := h.waitStatus("unauthorized", func(st SyncStatus) bool { return st.LastErrorReason == broker.SyncReasonUnauthorized })
	assertNoCanary(t, "status", fmt.Sprintf("%#v", st))
	assertNoCanary(t, "log", h.log.String())
}

func TestStoreBlocks(t *testing.T) {
	h := newHarness(t, setup{})
	id := h.b.AddOAuth("openai-codex", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
	s := h.start(Options{Stream: true})
	h.waitView("ready", func(v View) bool { return v.Ready })
	now := h.clk.Now()
	h.b.SetBlocks(id, []brokertest.Block{
		{ProviderKey: "openai-codex:oauth", Scope: "chat", BlockedUntil: now.Add(time.Minute)},
		{ProviderKey: "openai-codex:oauth", Scope: "spark", BlockedUntil: now.Add(2 * time.Minute)},
	})
	v := h.waitView("blocks", func(View) bool { return len(s.entry(id).Blocks) == 2 })
	_ = v
	// The capability header keeps the raw meter scopes.
	got := s.List("openai-codex")[0].Blocks
	if got[0].Scope != "chat" || got[1].Scope != "spark" {
		t.Fatalf("%+v", got)
	}
	// Expiry sends no frame: the store drops the block at read time.
	h.clk.Advance(time.Minute)
	if got := s.List("openai-codex")[0].Blocks; len(got) != 1 || got[0].Scope != "spark" {
		t.Fatalf("%+v", got)
	}
}
