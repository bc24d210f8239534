package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// TestRefreshOutcomes: refresh calls through the broker, counted by
// provider and reason.
func TestRefreshOutcomes(t *testing.T) {
	cases := []struct {
		name   string
		prep   func(h *harness, id, key int64) int64 // returns the id to refresh
		client broker.ClientOptions
		reason string // "" = ok
		prov   string
	}{
		{"ok", func(h *harness, id, key int64) int64 { return id }, broker.ClientOptions{}, "", "anthropic"},
		{"unknown id", func(h *harness, id, key int64) int64 { return 999 }, broker.ClientOptions{}, broker.ReasonNotFound, "unknown"},
		{"api key (broker 500)", func(h *harness, id, key int64) int64 { return key }, broker.ClientOptions{}, broker.ReasonUpstream, "openai"},
		{"upstream failure", func(h *harness, id, key int64) int64 {
			h.b.SetRefreshError(id, 500, "Unknown OAuth provider: anthropic")
			return id
		}, broker.ClientOptions{}, broker.ReasonUpstream, "anthropic"},
		{"unauthorized", func(h *harness, id, key int64) int64 {
			h.b.SetToken("another-token")
			return id
		}, broker.ClientOptions{}, broker.ReasonUnauthorized, "anthropic"},
		{"timeout", func(h *harness, id, key int64) int64 {
			h.b.AddFault(brokertest.Fault{Path: fmt.Sprintf("/v1/credential/%d/refresh", id), Stall: true})
			return id
		}, broker.ClientOptions{RequestTimeout: 30 * time.Millisecond}, broker.ReasonTimeout, "anthropic"},
		{"network", func(h *harness, id, key int64) int64 {
			h.proxy.down.Store(true)
			return id
		}, broker.ClientOptions{}, broker.ReasonNetwork, "anthropic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, setup{proxy: true, client: tc.client})
			id := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: "r", Expires: h.clk.Now().Add(time.Minute), Email: "a@x"})
			key := h.b.AddAPIKey("openai", canaryKey)
			s := h.start(Options{Stream: true})
			h.waitView("ready", func(v View) bool { return len(v.Entries) == 2 })
			target := tc.prep(h, id, key)
			err := s.RefreshOAuthCredential(context.Background(), target)
			c := s.Counters()
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.RefreshRequests[CallOutcome{tc.prov, "ok"}] != 1 || len(c.RefreshErrors) != 0 {
					t.Fatalf("%+v", c)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			if c.RefreshRequests[CallOutcome{tc.prov, "error"}] != 1 || c.RefreshErrors[CallFailure{tc.prov, tc.reason}] != 1 {
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
	c := newTestClient(t, srv.URL, broker.ClientOptions{Clock: clk})
	s := newStore(Options{Broker: c, Clock: clk})
	t.Cleanup(s.Close)
	err := s.RefreshOAuthCredential(context.Background(), 4)
	var pe *broker.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v", err)
	}
	assertNoCanary(t, "error", fmt.Sprintf("%#v", err))
	if n := s.Counters().RefreshErrors[CallFailure{"openai", broker.ReasonInvalidResponse}]; n != 1 {
		t.Fatalf("%v", s.Counters().RefreshErrors)
	}
	if s.entry(4) != nil {
		t.Fatal("a non-OAuth answer must not be mirrored")
	}
}

// TestDisableOutcomes: disable calls are counted by provider and reason,
// and the mirror follows the broker: a disabled row leaves with the
// broker's next frame or long-poll, never by a local edit that an answer
// already in flight could undo.
func TestDisableOutcomes(t *testing.T) {
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			h := newHarness(t, setup{proxy: true})
			a := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "a", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "a@x"})
			b := h.b.AddOAuth("anthropic", brokertest.OAuth{Access: "b", Refresh: "r", Expires: h.clk.Now().Add(time.Hour), Email: "b@x"})
			k := h.b.AddAPIKey("openai", "k")
			s := h.start(Options{Stream: stream})
			h.waitView("ready", func(v View) bool { return len(v.Entries) == 3 })
			if !stream {
				// A long-poll is parked at the broker while the disable is made.
				h.sig.WaitFor(t, "a pending long-poll", func() bool { return len(h.proxy.requests("/v1/snapshot")) >= 2 })
			}
			ctx := context.Background()

			ok, err := s.DisableCredentialRemote(ctx, a, "manual")
			if !ok || err != nil {
				t.Fatalf("%v %v", ok, err)
			}
			h.waitView("the broker's disable mirrored", func(v View) bool { return len(v.Entries) == 2 && s.entry(a) == nil })
			if ok, err := s.DisableCredentialRemote(ctx, 999, "x"); ok || err != nil {
				t.Fatalf("unknown id: %v %v", ok, err)
			}
			// The broker already disabled b (the mirror does not know yet).
			h.b.AddFault(brokertest.Fault{Path: fmt.Sprintf("/v1/credential/%d/disable", b), Status: 404, Message: fmt.Sprintf("No credential with id=%d", b), Times: 1})
			if ok, err := s.DisableCredentialRemote(ctx, b, "x"); ok || err == nil {
				t.Fatalf("404: %v %v", ok, err)
			}
			h.b.AddFault(brokertest.Fault{Path: fmt.Sprintf("/v1/credential/%d/disable", k), Status: 500, Message: "store failure", Times: 1})
			if ok, err := s.DisableCredentialRemote(ctx, k, "x"); ok || err == nil || s.entry(k) == nil {
				t.Fatalf("500: %v %v", ok, err)
			}
			c := s.Counters()
			if c.DisableRequests[CallOutcome{"anthropic", "ok"}] != 1 || c.DisableErrors[CallFailure{"anthropic", broker.ReasonNotFound}] != 1 ||
				c.DisableErrors[CallFailure{"openai", broker.ReasonUpstream}] != 1 || c.DisableRequests[CallOutcome{"openai", "error"}] != 1 {
				t.Fatalf("%v %v", c.DisableRequests, c.DisableErrors)
			}
			// Nothing brings a back: the mirror follows the broker's next change.
			k2 := h.b.AddAPIKey("openai", "k2")
			h.waitView("the next change mirrored", func(v View) bool { return s.entry(k2) != nil })
			if s.entry(a) != nil {
				t.Fatal("a disabled credential came back")
			}
		})
	}
}
