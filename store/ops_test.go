package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// TestRefreshOutcomes: refresh calls through the broker, counted by
// provider and reason.
func TestRefreshOutcomes(t *testing.T) {
	cases := []struct {
		name   string
		prep   func(h *harness, id, key int64) int64 // returns the id to refresh
		client ClientOptions
		reason string // "" = ok
		prov   string
	}{
		{"ok", func(h *harness, id, key int64) int64 { return id }, ClientOptions{}, "", "anthropic"},
		{"unknown id", func(h *harness, id, key int64) int64 { return 999 }, ClientOptions{}, ReasonNotFound, "unknown"},
		{"api key (broker 500)", func(h *harness, id, key int64) int64 { return key }, ClientOptions{}, ReasonUpstream, "openai"},
		{"upstream failure", func(h *harness, id, key int64) int64 {
			h.b.SetRefreshError(id, 500, "Unknown OAuth provider: anthropic")
			return id
		}, ClientOptions{}, ReasonUpstream, "anthropic"},
		{"unauthorized", func(h *harness, id, key int64) int64 {
			h.b.SetToken("another-token")
			return id
		}, ClientOptions{}, ReasonUnauthorized, "anthropic"},
		{"timeout", func(h *harness, id, key int64) int64 {
			h.b.AddFault(brokertest.Fault{Path: fmt.Sprintf("/v1/credential/%d/refresh", id), Stall: true})
			return id
		}, ClientOptions{RequestTimeout: 30 * time.Millisecond}, ReasonTimeout, "anthropic"},
		{"network", func(h *harness, id, key int64) int64 {
			h.proxy.down.Store(true)
			return id
		}, ClientOptions{}, ReasonNetwork, "anthropic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, setup{proxy: true, client: tc.client})
			id := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: h.clk.Now().Add(time.Minute), Email: "a@x"})
			key := h.b.AddAPIKey("openai", canaryKey)
			s := h.start(Options{Stream: true})
			h.waitView("ready", func(v View) bool { return len(v.Entries) == 2 })
			target := tc.prep(h, id, key)
			e, err := s.RefreshOAuthCredential(context.Background(), target)
			c := s.Counters()
			if tc.reason == "" {
				if err != nil || e == nil || e.ID != id || e.Credential.Type != TypeOAuth || e.HasRotatesIn {
					t.Fatalf("%+v %v", e, err)
				}
				if c.RefreshRequests[[2]string{tc.prov, "ok"}] != 1 || len(c.RefreshErrors) != 0 {
					t.Fatalf("%+v", c)
				}
				return
			}
			if err == nil || e != nil {
				t.Fatalf("want error, got %+v", e)
			}
			if c.RefreshRequests[[2]string{tc.prov, "error"}] != 1 || c.RefreshErrors[[2]string{tc.prov, tc.reason}] != 1 {
				t.Fatalf("refresh counters %v %v, want %s/%s", c.RefreshRequests, c.RefreshErrors, tc.prov, tc.reason)
			}
			for _, verb := range []string{"%v", "%+v", "%#v"} {
				assertNoCanary(t, "refresh error", fmt.Sprintf(verb, err))
			}
		})
	}
}

// TestRefreshNonOAuthAnswer: a broker answering a refresh with an API key
// is an invalid response.
func TestRefreshNonOAuthAnswer(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/v1/credential/4/refresh" {
			jsonReply(w, 200, `{"entry":{"id":4,"provider":"openai","credential":{"type":"api_key","key":"`+canaryKey+`"},"identityKey":null}}`)
			return
		}
		jsonReply(w, 503, `{"error":"down"}`)
	})
	clk := newFakeClock(nil)
	c := newTestClient(t, srv.URL, ClientOptions{Clock: clk})
	s := newStore(Options{Client: c, Clock: clk})
	t.Cleanup(s.Close)
	for _, call := range []func() error{
		func() error { _, err := s.RefreshOAuthCredential(context.Background(), 4); return err },
		func() error { return s.MarkCredentialSuspect(context.Background(), 4) },
	} {
		err := call()
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("got %v", err)
		}
		assertNoCanary(t, "error", fmt.Sprintf("%#v", err))
	}
	if n := s.Counters().RefreshErrors[[2]string{"openai", ReasonInvalidResponse}]; n != 2 {
		t.Fatalf("%v", s.Counters().RefreshErrors)
	}
	if s.entry(4) != nil {
		t.Fatal("a non-OAuth answer must not be mirrored")
	}
}

func TestMarkCredentialSuspect(t *testing.T) {
	h := newHarness(t, setup{})
	id := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Minute), Email: "a@x"})
	s := h.start(Options{Stream: false})
	h.waitView("ready", func(v View) bool { return v.Ready })
	h.clk.Advance(time.Second)
	if err := s.MarkCredentialSuspect(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	// The refreshed entry is mirrored at once (new token, expiry from the
	// broker clock + 1 h) and counted as a rotation.
	e := s.entry(id)
	if e.Rotations != 1 || !e.Credential.Expires.Equal(h.clk.Now().Add(time.Hour)) {
		t.Fatalf("%+v", e)
	}
	if err := s.MarkCredentialSuspect(context.Background(), 12345); err == nil {
		t.Fatal("unknown id accepted")
	}
}

func TestDisableOutcomes(t *testing.T) {
	h := newHarness(t, setup{proxy: true})
	a := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
	b := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "b", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "b@x"})
	k := h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: true})
	h.waitView("ready", func(v View) bool { return len(v.Entries) == 3 })
	ctx := context.Background()

	ok, err := s.DisableCredentialRemote(ctx, a, "manual")
	if !ok || err != nil || s.entry(a) != nil {
		t.Fatalf("%v %v", ok, err)
	}
	if ok, err := s.DisableCredentialRemote(ctx, 999, "x"); ok || err != nil {
		t.Fatalf("unknown id: %v %v", ok, err)
	}
	// The broker already disabled b (the mirror does not know yet).
	h.b.AddFault(brokertest.Fault{Path: fmt.Sprintf("/v1/credential/%d/disable", b), Status: 404, Message: fmt.Sprintf("No credential with id=%d", b), Times: 1})
	if ok, err := s.DisableCredentialRemote(ctx, b, "x"); ok || err == nil || s.entry(b) == nil {
		t.Fatalf("404: %v %v", ok, err)
	}
	// Fire and forget: dropped locally at once, the broker told in the
	// background; a failure is counted and logged.
	h.b.AddFault(brokertest.Fault{Path: fmt.Sprintf("/v1/credential/%d/disable", k), Status: 500, Message: "store failure", Times: 1})
	if !s.TryDisableIfMatches(k, "ignored", "cause") || s.entry(k) != nil {
		t.Fatal("TryDisableIfMatches")
	}
	if s.TryDisableIfMatches(999, "", "cause") {
		t.Fatal("unknown id")
	}
	c := h.waitCounters("background disable", func(c Counters) bool { return c.DisableRequests[[2]string{"openai", "error"}] == 1 })
	if c.DisableRequests[[2]string{"anthropic", "ok"}] != 1 || c.DisableErrors[[2]string{"anthropic", ReasonNotFound}] != 1 ||
		c.DisableErrors[[2]string{"openai", ReasonUpstream}] != 1 {
		t.Fatalf("%v %v", c.DisableRequests, c.DisableErrors)
	}
	h.sig.waitFor(t, "warning", func() bool { return countMsg(h.log, "disable propagation failed") == 1 })

	s.DisableCredential(b, "")
	h.waitCounters("background disable", func(c Counters) bool { return c.DisableRequests[[2]string{"anthropic", "ok"}] == 2 })
	if len(h.proxy.requests(fmt.Sprintf("/v1/credential/%d/disable", b))) != 2 {
		t.Fatal("disable not sent")
	}
	ts, err := s.Disabled(ctx, "anthropic")
	if err != nil || len(ts) != 2 {
		t.Fatalf("tombstones %+v %v", ts, err)
	}
}

func TestUploadReplaceDelete(t *testing.T) {
	h := newHarness(t, setup{})
	k1 := h.b.AddAPIKey("openai", "old-key")
	o := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
	s := h.start(Options{Stream: false})
	h.waitView("ready", func(v View) bool { return len(v.Entries) == 2 })
	ctx := context.Background()

	es, err := s.UpsertRemote(ctx, "openai", UploadCredential{Type: TypeAPIKey, Key: canaryKey})
	if err != nil || len(es) != 2 {
		t.Fatalf("upsert %v %v", es, err)
	}
	for _, e := range es {
		if e.Provider != "openai" || e.HasRotatesIn {
			t.Fatalf("%+v", e)
		}
	}
	es, err = s.ReplaceRemote(ctx, "openai", []UploadCredential{{Type: TypeAPIKey, Key: canaryKey + "-2", Source: "login"}})
	if err != nil || len(es) != 1 || es[0].ID == k1 || es[0].Credential.Source != "login" {
		t.Fatalf("replace %+v %v", es, err)
	}
	if got := s.List("openai"); len(got) != 1 || got[0].ID != es[0].ID {
		t.Fatalf("mirror after replace: %v", got)
	}
	if s.entry(o) == nil {
		t.Fatal("other provider touched")
	}
	if c := s.Counters(); c.DisableRequests[[2]string{"openai", "ok"}] != 2 {
		t.Fatalf("%v", c.DisableRequests)
	}
	if err := s.DeleteProviderRemote(ctx, "openai", "logout"); err != nil || len(s.List("openai")) != 0 {
		t.Fatal(err)
	}
	// The broker agrees (a full snapshot has no openai rows).
	v, err := s.RefreshSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range v.Entries {
		if e.Provider == "openai" {
			t.Fatalf("openai row %d still active at the broker", e.ID)
		}
	}
	// An upload the broker rejects is an error; the message does not echo the secret.
	_, err = s.UpsertRemote(ctx, "anthropic", UploadCredential{Type: TypeOAuth, Access: canaryAccess, Refresh: "__remote__", Expires: h.clk.Now()})
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 400 {
		t.Fatalf("got %v", err)
	}
	assertNoCanary(t, "upload error", err.Error())
	if _, err := s.UpsertRemote(ctx, "anthropic", UploadCredential{Type: "jwt"}); err == nil {
		t.Fatal("unknown type uploaded")
	}
}

func TestWaitForFreshSnapshotAndPrepare(t *testing.T) {
	h := newHarness(t, setup{proxy: true})
	now := h.clk.Now()
	// Refresher every 60 s, skew 300 s: expiring in 2 min ⇒ due at the
	// next sweep; expiring in 2 h ⇒ due much later.
	soon := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: now.Add(2 * time.Minute), Email: "a@x"})
	later := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "b", Refresh: "r", Expires: now.Add(2 * time.Hour), Email: "b@x"})
	key := h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: true})
	h.waitView("ready", func(v View) bool { return len(v.Entries) == 3 })
	ctx := context.Background()

	// Generation unchanged: the long-poll ends with 304 after its wait.
	moved, err := s.WaitForFreshSnapshot(ctx, 20*time.Millisecond)
	if err != nil || moved {
		t.Fatalf("%v %v", moved, err)
	}
	// A bump while waiting: 200, generation moved.
	done := make(chan bool, 1)
	n0 := len(h.proxy.requests("/v1/snapshot"))
	go func() {
		m, _ := s.WaitForFreshSnapshot(ctx, 30*time.Second)
		done <- m
	}()
	h.sig.waitFor(t, "long-poll sent", func() bool { return len(h.proxy.requests("/v1/snapshot")) > n0 })
	h.b.Bump()
	if !<-done {
		t.Fatal("generation did not move")
	}

	polls := func() int { return len(h.proxy.requests("/v1/snapshot")) }
	before := polls()
	for _, id := range []int64{later, key, 999} {
		if moved, err := s.PrepareForRequest(ctx, id); moved || err != nil {
			t.Fatalf("id %d: %v %v", id, moved, err)
		}
	}
	if polls() != before {
		t.Fatal("PrepareForRequest waited for a credential that is not due")
	}
	e := s.entry(soon)
	deadline, _ := e.RotationDeadline()
	h.clk.Advance(deadline.Sub(h.clk.Now()) - time.Second) // due in exactly 1 s
	go func() {
		m, _ := s.PrepareForRequest(ctx, soon)
		done <- m
	}()
	h.sig.waitFor(t, "pre-request long-poll", func() bool { return polls() > before })
	r := h.proxy.requests("/v1/snapshot")[before]
	if r.query != "wait=5000" {
		t.Fatalf("pre-request wait %q", r.query)
	}
	h.b.Bump()
	if !<-done {
		t.Fatal("PrepareForRequest: generation did not move")
	}
}

// TestLiveInPollMode: live while the last long-poll answered within its
// window (max(10 s, wait + 1 s)).
func TestLiveInPollMode(t *testing.T) {
	h := newHarness(t, setup{})
	h.b.AddAPIKey("openai", "k")
	s := h.start(Options{Stream: false})
	h.waitStatus("live", func(st SyncStatus) bool { return st.Live })
	// The long-poll is parked at the broker (30 s of real time); on the
	// mirror's clock 31 s pass without an answer.
	h.clk.Advance(31 * time.Second)
	if !s.Status().Live {
		t.Fatal("not live at the edge of the window")
	}
	h.clk.Advance(time.Millisecond)
	if s.Status().Live {
		t.Fatal("live after the window")
	}
	h.b.Bump()
	h.waitStatus("live again", func(st SyncStatus) bool { return st.Live })
}
