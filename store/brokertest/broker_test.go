package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/testwait"
)

func TestAuth(t *testing.T) {
	f := newFixture(t, Options{})
	tok := f.b.Token()
	for _, tc := range []struct {
		name   string
		method string
		path   string
		header string // Authorization; "" = none
		status int
		body   string
	}{
		{"healthz open", "GET", "/v1/healthz", "", 200, `{"ok":true,"version":"18.2.3"}`},
		{"healthz POST needs auth", "POST", "/v1/healthz", "", 401, `{"error":"unauthorized"}`},
		{"healthz POST authed is no route", "POST", "/v1/healthz", "Bearer " + tok, 404, `{"error":"No route: POST /v1/healthz"}`},
		{"no header", "GET", "/v1/snapshot", "", 401, `{"error":"unauthorized"}`},
		{"wrong token", "GET", "/v1/snapshot", "Bearer nope", 401, `{"error":"unauthorized"}`},
		{"basic scheme", "GET", "/v1/snapshot", "Basic " + tok, 401, `{"error":"unauthorized"}`},
		{"no whitespace", "GET", "/v1/snapshot", "Bearer" + tok, 401, `{"error":"unauthorized"}`},
		{"token prefix only", "GET", "/v1/snapshot", "Bearer " + tok[:5], 401, `{"error":"unauthorized"}`},
		{"lower-case scheme, spaces", "GET", "/v1/snapshot", "bearer    " + tok + "   ", 200, ""},
		{"upper-case scheme, tab", "GET", "/v1/snapshot", "BEARER\t" + tok, 200, ""},
		{"unknown path without token is 401", "GET", "/v1/nope", "", 401, `{"error":"unauthorized"}`},
		{"unknown path with token is 404", "GET", "/v1/nope", "Bearer " + tok, 404, `{"error":"No route: GET /v1/nope"}`},
		{"trailing slash is no route", "GET", "/v1/snapshot/", "Bearer " + tok, 404, `{"error":"No route: GET /v1/snapshot/"}`},
		{"stream POST is no route", "POST", "/v1/snapshot/stream", "Bearer " + tok, 404, `{"error":"No route: POST /v1/snapshot/stream"}`},
		{"non-numeric id", "POST", "/v1/credential/abc/disable", "Bearer " + tok, 404, `{"error":"No route: POST /v1/credential/abc/disable"}`},
		{"no DELETE credential", "DELETE", "/v1/credential/1", "Bearer " + tok, 404, `{"error":"No route: DELETE /v1/credential/1"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.header != "" {
				h = []string{"Authorization", tc.header}
			}
			r := f.do(tc.method, tc.path, "", false, h...)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d (%s)", r.status, tc.status, r.body)
			}
			if tc.body != "" && string(r.body) != tc.body {
				t.Errorf("body = %s, want %s", r.body, tc.body)
			}
			if tc.status != 200 {
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				if r.header.Get("WWW-Authenticate") != "" {
					t.Error("401 must not carry WWW-Authenticate")
				}
			}
			if strings.Contains(string(r.body), tok) {
				t.Error("the bearer token leaked into a response")
			}
		})
	}
}

func TestSetTokenRotates(t *testing.T) {
	f := newFixture(t, Options{})
	old := f.b.Token()
	f.b.SetToken("rotated-token")
	if r := f.do("GET", "/v1/snapshot", "", false, "Authorization", "Bearer "+old); r.status != 401 {
		t.Errorf("old token: status %d, want 401", r.status)
	}
	if r := f.do("GET", "/v1/snapshot", "", true); r.status != 200 {
		t.Errorf("new token: status %d, want 200", r.status)
	}
	if f.b.Requests("/v1/snapshot") != 1 {
		t.Errorf("Requests counts only authorised requests: got %d", f.b.Requests("/v1/snapshot"))
	}
}

func seed(f *fixture) (apiKey, anth, codex, mcp int64) {
	apiKey = f.b.AddAPIKey("openai", canaryKey)
	anth = f.b.AddOAuth("anthropic", OAuth{Access: canaryAccess, Refresh: "r1", Expires: time.UnixMilli(1795755013000), Email: "Alice@Example.com", AccountID: "acct-A"})
	codex = f.b.AddOAuth("openai-codex", OAuth{Access: "acc-2", Refresh: "r2", Expires: time.UnixMilli(1795751533000), AccountID: "acct-B", Email: "b@example.com", OrgID: "org-X", OrgName: "Org X"})
	mcp = f.b.AddOAuth("mcp-thing", OAuth{Access: "acc-3", Refresh: "r3", Expires: time.UnixMilli(8640000000000000), Extra: map[string]any{"clientSecret": canarySecret, "clientId": "cid"}})
	return
}

func TestSnapshotShape(t *testing.T) {
	f := newFixture(t, Options{})
	apiKey, anth, codex, mcp := seed(f)
	r := f.do("GET", "/v1/snapshot", "", true)
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	for k, want := range map[string]string{
		"Content-Type":  "application/json",
		"ETag":          `"5"`,
		"Cache-Control": "no-store",
		"Vary":          "OMP-Auth-Broker-Capabilities",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	m := r.json(t)
	sameKeys(t, "snapshot", m, "generation", "generatedAt", "serverNowMs", "refresher", "credentials")
	if numOf(t, m["generation"]) != 5 {
		t.Errorf("generation = %v, want 5 (1 + four adds)", m["generation"])
	}
	ref := m["refresher"].(map[string]any)
	sameKeys(t, "refresher", ref, "enabled", "intervalMs", "skewMs", "nextSweepInMs")
	if ref["enabled"] != true || numOf(t, ref["intervalMs"]) != 60000 || numOf(t, ref["skewMs"]) != 300000 || numOf(t, ref["nextSweepInMs"]) != 60000 {
		t.Errorf("refresher = %v", ref)
	}
	creds := m["credentials"].([]any)
	if len(creds) != 4 {
		t.Fatalf("%d credentials", len(creds))
	}
	byID := map[int64]map[string]any{}
	for _, c := range creds {
		e := c.(map[string]any)
		sameKeys(t, "entry", e, "id", "provider", "credential", "identityKey", "rotatesInMs")
		byID[numOf(t, e["id"])] = e
	}
	ak := byID[apiKey]
	if ak["identityKey"] != nil || ak["rotatesInMs"] != nil {
		t.Errorf("api_key entry: %v", ak)
	}
	sameKeys(t, "api_key credential", ak["credential"].(map[string]any), "type", "key")
	a := byID[anth]
	if a["identityKey"] != "email:alice@example.com" {
		t.Errorf("anthropic identityKey = %v", a["identityKey"])
	}
	// docs/broker-protocol.md §7.4: due = expires - 300000, T = now + 60000, n = ceil(3014392/60000) = 51.
	if numOf(t, a["rotatesInMs"]) != 60000+51*60000 {
		t.Errorf("rotatesInMs = %v", a["rotatesInMs"])
	}
	ac := a["credential"].(map[string]any)
	sameKeys(t, "oauth credential", ac, "type", "access", "refresh", "expires", "email", "accountId")
	if ac["refresh"] != "__remote__" || ac["access"] != canaryAccess || numOf(t, ac["expires"]) != 1795755013000 {
		t.Errorf("oauth credential = %v", ac)
	}
	c := byID[codex]
	if c["identityKey"] != "email:b@example.com|org:org-X" {
		t.Errorf("codex identityKey = %v", c["identityKey"])
	}
	if numOf(t, c["rotatesInMs"]) != 60000 {
		t.Errorf("expired row must report the next sweep: %v", c["rotatesInMs"])
	}
	mc := byID[mcp]
	if mc["identityKey"] != nil {
		t.Errorf("mcp identityKey = %v", mc["identityKey"])
	}
	if cred := mc["credential"].(map[string]any); cred["clientSecret"] != canarySecret || cred["clientId"] != "cid" {
		t.Errorf("extra keys must round-trip: %v", cred)
	}
	if !strings.Contains(string(r.body), `"expires":8640000000000000`) {
		t.Error("expires must be an integer in ms")
	}
	// Order: providers in first-load order.
	var order []int64
	for _, c := range creds {
		order = append(order, numOf(t, c.(map[string]any)["id"]))
	}
	if fmt.Sprint(order) != fmt.Sprint([]int64{apiKey, anth, codex, mcp}) {
		t.Errorf("order = %v", order)
	}
}

func TestRefresherDisabled(t *testing.T) {
	f := newFixture(t, Options{RefresherDisabled: true})
	f.b.AddOAuth("anthropic", OAuth{Access: "a", Refresh: "r", Expires: f.clk.Now()})
	m := f.do("GET", "/v1/snapshot", "", true).json(t)
	ref := m["refresher"].(map[string]any)
	if ref["enabled"] != false || numOf(t, ref["intervalMs"]) != 0 || numOf(t, ref["skewMs"]) != 0 || numOf(t, ref["nextSweepInMs"]) != 9007199254740991 {
		t.Errorf("refresher = %v", ref)
	}
	if e := m["credentials"].([]any)[0].(map[string]any); e["rotatesInMs"] != nil {
		t.Errorf("rotatesInMs = %v, want null", e["rotatesInMs"])
	}
}

func TestRotatesIn(t *testing.T) {
	const now = 1795751638608
	rs := refresherState{enabled: true, interval: time.Minute, skew: 5 * time.Minute}
	for _, tc := range []struct {
		name    string
		expires int64
		next    int64
		want    int64
		null    bool
	}{
		{"live check", 1795755013000, now + 1380, 3121380, false},
		{"expired reports next sweep", now - 10, now + 1380, 1380, false},
		{"due and sweep overdue", now - 10, now - 5, 0, false},
		{"due exactly at next sweep", now + 1380 + 300000, now + 1380, 1380, false},
		{"one interval later", now + 1381 + 300000, now + 1380, 61380, false},
		{"sweep time infinite", now, maxSafeInteger, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &row{oauth: OAuth{Expires: time.UnixMilli(tc.expires)}}
			got, ok := rs.rotatesIn(r, tc.next, now)
			if ok == tc.null || (ok && got != tc.want) {
				t.Errorf("rotatesIn = %d, %v; want %d, null=%v", got, ok, tc.want, tc.null)
			}
		})
	}
	if _, ok := rs.rotatesIn(&row{apiKey: true}, now, now); ok {
		t.Error("api_key rotatesIn must be null")
	}
}

func TestIdentityKey(t *testing.T) {
	for _, tc := range []struct {
		provider string
		c        OAuth
		want     string
	}{
		{"anthropic", OAuth{Email: " A@B.c ", AccountID: "acct"}, "email:a@b.c"},
		{"anthropic", OAuth{AccountID: " Acct ", OrgID: "o"}, "account:Acct|org:o"},
		{"openai-codex", OAuth{ProjectID: "p", OrgID: "o"}, "project:p|org:o"},
		{"openai-codex", OAuth{OrgID: " o "}, "org:o"},
		{"spec-test", OAuth{AccountID: "Acct-Spec", Email: "x@y"}, "account:Acct-Spec"},
		{"spec-test", OAuth{Email: "X@Y", OrgID: "o"}, "email:x@y"},
		{"spec-test", OAuth{OrgID: "o"}, ""},
		{"gemini", OAuth{ProjectID: "proj"}, "project:proj"},
	} {
		got, _ := identityKey(tc.provider, &tc.c)
		if got != tc.want {
			t.Errorf("%s %+v: identityKey = %q, want %q", tc.provider, tc.c, got, tc.want)
		}
	}
}

func TestParsers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		gen  int64
		okay bool
	}{
		{`"16"`, 16, true}, {`W/"16"`, 16, true}, {`16`, 16, true}, {` W/ "16" `, 16, true},
		{`"+16"`, 16, true}, {`"016"`, 16, true}, {`"16.0"`, 16, true}, {`" 16 "`, 16, true},
		{`"0x10"`, 16, true}, {`"1.6e1"`, 16, true}, {`""`, 0, true},
		{`"5", "6"`, 0, false}, {`*`, 0, false}, {`"-1"`, 0, false}, {`"1.5"`, 0, false},
		{`"abc"`, 0, false}, {`"Infinity"`, 0, false}, {``, 0, false},
	} {
		gen, ok := parseGenerationTag(tc.in)
		if ok != tc.okay || gen != tc.gen {
			t.Errorf("parseGenerationTag(%q) = %d, %v; want %d, %v", tc.in, gen, ok, tc.gen, tc.okay)
		}
	}
	for _, tc := range []struct {
		in      string
		present bool
		want    time.Duration
	}{
		{"", false, 0}, {"3000", true, 3 * time.Second}, {"45000", true, 30 * time.Second},
		{"1500.9", true, 1500 * time.Millisecond}, {"-5", true, 0}, {"abc", true, 0},
		{"3e2", true, 300 * time.Millisecond}, {"300abc", true, 0}, {"0x100", true, 256 * time.Millisecond},
		{"", true, 0}, {"Infinity", true, 0},
	} {
		if got := parseWaitMs(tc.in, tc.present); got != tc.want {
			t.Errorf("parseWaitMs(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(jsNumber("1_000")) || jsNumber("  12  ") != 12 || jsNumber("-0x5") == -5 {
		t.Error("jsNumber edge cases")
	}
}

func TestLongPoll(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.AddAPIKey("openai", canaryKey) // generation 2
	gen := strconv.FormatInt(f.b.Generation(), 10)
	for _, tc := range []struct {
		name   string
		query  string
		tag    string
		status int
	}{
		{"no tag", "?wait=30000", "", 200},
		{"other tag", "?wait=30000", `"999"`, 200},
		{"lower tag", "?wait=30000", `"1"`, 200},
		{"matching tag without wait", "", `"` + gen + `"`, 200},
		{"matching tag wait=0", "?wait=0", `"` + gen + `"`, 200},
		{"matching tag bad wait", "?wait=abc", `"` + gen + `"`, 200},
		{"tag list is absent", "?wait=30000", `"` + gen + `", "` + gen + `"`, 200},
		{"matching tag times out", "?wait=20", `"` + gen + `"`, 304},
		{"weak matching tag times out", "?wait=20", `W/"` + gen + `"`, 304},
		{"bare matching tag times out", "?wait=20.9", gen, 304},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.tag != "" {
				h = []string{"If-None-Match", tc.tag}
			}
			r := f.do("GET", "/v1/snapshot"+tc.query, "", true, h...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if r.header.Get("ETag") != `"`+gen+`"` || r.header.Get("Cache-Control") != "no-store" || r.header.Get("Vary") != "OMP-Auth-Broker-Capabilities" {
				t.Errorf("headers = %v", r.header)
			}
			if tc.status == 304 {
				if len(r.body) != 0 || r.header.Get("Content-Type") != "" {
					t.Errorf("304 must have no body or Content-Type: %q %v", r.body, r.header)
				}
			}
		})
	}

	t.Run("bump during wait answers 200 with the new generation", func(t *testing.T) {
		done := make(chan response, 1)
		before := f.b.Requests("/v1/snapshot")
		go func() {
			done <- f.do("GET", "/v1/snapshot?wait=30000", "", true, "If-None-Match", `"`+gen+`"`)
		}()
		testwait.Eventually(t, "the request at the broker", func() bool { return f.b.Requests("/v1/snapshot") != before })
		f.b.Bump()
		r := <-done
		if r.status != 200 || numOf(t, r.json(t)["generation"]) != f.b.Generation() || r.header.Get("ETag") != fmt.Sprintf(`"%d"`, f.b.Generation()) {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})

	t.Run("client gone ends the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan response, 1)
		before := f.b.Requests("/v1/snapshot")
		cur := strconv.FormatInt(f.b.Generation(), 10)
		go func() { done <- f.doCtx(ctx, "GET", "/v1/snapshot?wait=30000", "", true, "If-None-Match", `"`+cur+`"`) }()
		testwait.Eventually(t, "the request at the broker", func() bool { return f.b.Requests("/v1/snapshot") != before })
		cancel()
		if r := <-done; r.status != -1 {
			t.Errorf("cancelled long-poll answered %d", r.status)
		}
		// goleak in TestMain proves the handler goroutine ended.
	})
}

func TestLongPollCloseAndRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(*Broker)
	}{
		{"close", (*Broker).Close},
		{"restart", (*Broker).Restart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			gen := strconv.FormatInt(f.b.Generation(), 10)
			done := make(chan response, 1)
			go func() { done <- f.do("GET", "/v1/snapshot?wait=30000", "", true, "If-None-Match", `"`+gen+`"`) }()
			testwait.Eventually(t, "the request at the broker", func() bool { return f.b.Requests("/v1/snapshot") != 0 })
			tc.act(f.b)
			if r := <-done; r.status != -1 {
				t.Errorf("a long-poll cut by %s must get no answer, got %d %s", tc.name, r.status, r.body)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	f := newFixture(t, Options{})
	r := f.do("GET", "/v1/usage", "", true)
	if r.status != 200 || string(r.body) != fmt.Sprintf(`{"generatedAt":%d,"reports":[]}`, f.clk.Now().UnixMilli()) {
		t.Errorf("empty usage: %d %s", r.status, r.body)
	}
	report := json.RawMessage(`{"provider":"anthropic","fetchedAt":1795751800000,"limits":[],"metadata":{"email":"a@example.com"}}`)
	f.b.SetUsage([]json.RawMessage{report})
	m := f.do("GET", "/v1/usage", "", true).json(t)
	sameKeys(t, "usage", m, "generatedAt", "reports")
	if got, _ := json.Marshal(m["reports"]); !strings.Contains(string(got), `"fetchedAt":1795751800000`) {
		t.Errorf("reports = %s", got)
	}
	f.b.AddFault(Fault{Path: "/v1/usage", Status: 502, Message: "upstream down", Times: 1})
	if r := f.do("GET", "/v1/usage", "", true); r.status != 502 || r.errorText(t) != "upstream down" {
		t.Errorf("fault: %d %s", r.status, r.body)
	}
	if r := f.do("GET", "/v1/usage", "", true); r.status != 200 {
		t.Errorf("fault with Times=1 applied twice: %d", r.status)
	}
	if n := f.b.Requests("/v1/usage"); n != 4 {
		t.Errorf("Requests(/v1/usage) = %d, want 4", n)
	}
}

func TestFaults(t *testing.T) {
	t.Run("status on every path until cleared", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.b.AddFault(Fault{Status: 503, Message: "busy"})
		for _, p := range []string{"/v1/snapshot", "/v1/usage", "/v1/snapshot/stream", "/v1/healthz"} {
			if r := f.do("GET", p, "", true); r.status != 503 || r.errorText(t) != "busy" {
				t.Errorf("%s: %d %s", p, r.status, r.body)
			}
		}
		if r := f.do("GET", "/v1/snapshot", "", false); r.status != 401 {
			t.Errorf("auth runs before faults: %d", r.status)
		}
		f.b.ClearFaults()
		if r := f.do("GET", "/v1/snapshot", "", true); r.status != 200 {
			t.Errorf("after ClearFaults: %d", r.status)
		}
	})
	t.Run("delay then normal answer", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.b.AddFault(Fault{Path: "/v1/snapshot", Delay: 5 * time.Millisecond, Times: 1})
		if r := f.do("GET", "/v1/snapshot", "", true); r.status != 200 {
			t.Errorf("delayed: %d", r.status)
		}
	})
	t.Run("stall released by ClearFaults", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.b.AddFault(Fault{Path: "/v1/usage", Stall: true})
		done := make(chan response, 1)
		go func() { done <- f.do("GET", "/v1/usage", "", true) }()
		testwait.Eventually(t, "the request at the broker", func() bool { return f.b.Requests("/v1/usage") != 0 })
		select {
		case r := <-done:
			t.Fatalf("stalled request answered: %d", r.status)
		default:
		}
		f.b.ClearFaults()
		if r := <-done; r.status != 200 {
			t.Errorf("released: %d", r.status)
		}
	})
	t.Run("stall ends when the client goes", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.b.AddFault(Fault{Path: "/v1/usage", Stall: true})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan response, 1)
		go func() { done <- f.doCtx(ctx, "GET", "/v1/usage", "", true) }()
		testwait.Eventually(t, "the request at the broker", func() bool { return f.b.Requests("/v1/usage") != 0 })
		cancel()
		if r := <-done; r.status != -1 {
			t.Errorf("got %d", r.status)
		}
	})
}

func TestUploadValidation(t *testing.T) {
	f := newFixture(t, Options{})
	for _, tc := range []struct {
		body string
		want string
	}{
		{``, "Request body required"},
		{`null`, "must be an object (was null)"},
		{`"x"`, "must be an object (was a string)"},
		{`5`, "must be an object (was a number)"},
		{`nope`, "Invalid JSON body: SyntaxError: JSON Parse error: "},
		{`{"provider":"x","credential":{"type":"oauth","access":"a","refresh":"__remote__","expires":1}}`, `credential.refresh must be not equal to the remote sentinel (__remote__) (was "__remote__")`},
		{`{"provider":"x","credential":{"type":"oauth","access":"","refresh":"r","expires":1}}`, "credential.access must be at least length 1 (was 0)"},
		{`{"provider":"x","credential":{"type":"oauth","access":"a","refresh":"r"}}`, "credential.expires must be a number (was missing)"},
		{`{"provider":"x","credential":{"type":"oauth","access":"a","refresh":"r","expires":"1"}}`, "credential.expires must be a number (was a string)"},
		{`{"provider":"x","credential":{"type":"oauth","access":"a","refresh":"r","expires":1,"email":5}}`, "credential.email must be a string (was a number)"},
		{`{"provider":"x","credential":{"type":"api_key","key":"k","foo":1}}`, "credential.foo must be removed"},
		{`{"provider":"x","credential":{"type":"api_key","key":"k"},"foo":1}`, "foo must be removed"},
		{`{"provider":"","credential":{"type":"api_key","key":"k"}}`, "provider must be at least length 1 (was 0)"},
		{`{"provider":"x","credential":{"type":"api_key","key":""}}`, "credential.key must be at least length 1 (was 0)"},
		{`{"provider":"x","credential":{"type":"api_key","key":"k","source":"other"}}`, `credential.source must be "login" (was "other")`},
		{`{"provider":"x","credential":{"type":"weird","key":"k"}}`, `credential.type must be "oauth" or "api_key" (was "weird")`},
		{`{"provider":5,"credential":null}`, "provider must be a string (was a number)\ncredential must be an object (was null)"},
	} {
		r := f.do("POST", "/v1/credential", tc.body, true)
		if r.status != 400 {
			t.Errorf("%s: status %d (%s)", tc.body, r.status, r.body)
			continue
		}
		if got := r.errorText(t); !strings.HasPrefix(got, tc.want) || (!strings.HasSuffix(tc.want, ": ") && got != tc.want) {
			t.Errorf("%s: error %q, want %q", tc.body, got, tc.want)
		}
	}
	if f.b.Generation() != 1 {
		t.Errorf("rejected uploads moved the generation to %d", f.b.Generation())
	}
}

type entryList struct {
	Entries []struct {
		ID          int64          `json:"id"`
		Provider    string         `json:"provider"`
		Credential  map[string]any `json:"credential"`
		IdentityKey *string        `json:"identityKey"`
	} `json:"entries"`
}

func upload(t *testing.T, f *fixture, body string) entryList {
	t.Helper()
	r := f.do("POST", "/v1/credential", body, true)
	if r.status != 200 {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	for _, e := range r.json(t)["entries"].([]any) {
		sameKeys(t, "upload entry", e.(map[string]any), "id", "provider", "credential", "identityKey")
	}
	var out entryList
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUploadSemantics(t *testing.T) {
	f := newFixture(t, Options{})
	// API key; same key again updates in place without a bump.
	l := upload(t, f, `{"provider":"anthropic","credential":{"type":"api_key","key":"`+canaryKey+`"}}`)
	if len(l.Entries) != 1 || l.Entries[0].IdentityKey != nil {
		t.Fatalf("entries = %+v", l)
	}
	keyID := l.Entries[0].ID
	gen := f.b.Generation()
	l = upload(t, f, `{"provider":"anthropic","credential":{"type":"api_key","key":"`+canaryKey+`"}}`)
	if len(l.Entries) != 1 || l.Entries[0].ID != keyID || f.b.Generation() != gen {
		t.Errorf("same key: entries %+v, generation %d -> %d", l, gen, f.b.Generation())
	}
	// OAuth disables the provider's API keys and inserts.
	l = upload(t, f, `{"provider":"anthropic","credential":{"type":"oauth","access":"a1","refresh":"r1","expires":1795760000000,"email":"Alice@Example.com","accountId":"acct-A","clientSecret":"`+canarySecret+`"}}`)
	if len(l.Entries) != 1 || l.Entries[0].Credential["refresh"] != "__remote__" || l.Entries[0].Credential["clientSecret"] != canarySecret {
		t.Fatalf("oauth upload: %+v", l)
	}
	oauthID := l.Entries[0].ID
	if f.b.Generation() != gen+1 {
		t.Errorf("one upload = one bump: %d -> %d", gen, f.b.Generation())
	}
	// Same identity replaces in place.
	l = upload(t, f, `{"provider":"anthropic","credential":{"type":"oauth","access":"a2","refresh":"r2","expires":1795761000000,"email":"alice@example.com"}}`)
	if len(l.Entries) != 1 || l.Entries[0].ID != oauthID || l.Entries[0].Credential["access"] != "a2" || l.Entries[0].Credential["accountId"] != nil {
		t.Errorf("replace: %+v", l)
	}
	// Different identity inserts; null identity always inserts.
	l = upload(t, f, `{"provider":"anthropic","credential":{"type":"oauth","access":"a3","refresh":"r3","expires":1,"email":"other@example.com"}}`)
	if len(l.Entries) != 2 {
		t.Errorf("insert: %+v", l)
	}
	upload(t, f, `{"provider":"mcp","credential":{"type":"oauth","access":"m1","refresh":"r","expires":1}}`)
	if l = upload(t, f, `{"provider":"mcp","credential":{"type":"oauth","access":"m2","refresh":"r","expires":1}}`); len(l.Entries) != 2 {
		t.Errorf("null identity must insert: %+v", l)
	}

	m := f.do("GET", "/v1/credentials/disabled", "", true).json(t)
	sameKeys(t, "disabled", m, "generatedAt", "disabled")
	dis := m["disabled"].([]any)
	if len(dis) != 1 {
		t.Fatalf("disabled = %v", dis)
	}
	d := dis[0].(map[string]any)
	sameKeys(t, "tombstone", d, "id", "provider", "type", "cause", "disabledAtMs")
	if numOf(t, d["id"]) != keyID || d["cause"] != "replaced by oauth login" || d["type"] != "api_key" || numOf(t, d["disabledAtMs"])%1000 != 0 {
		t.Errorf("tombstone = %v", d)
	}
	// A new API key supersedes the provider's API-key tombstones.
	upload(t, f, `{"provider":"anthropic","credential":{"type":"api_key","key":"k2"}}`)
	if dis := f.do("GET", "/v1/credentials/disabled", "", true).json(t)["disabled"].([]any); len(dis) != 0 {
		t.Errorf("tombstone not purged: %v", dis)
	}
}

func TestDisableAndTombstones(t *testing.T) {
	f := newFixture(t, Options{})
	apiKey, _, codex, _ := seed(f)
	for _, tc := range []struct {
		id, body string
		status   int
		want     string
	}{
		{"999", "", 404, "No credential with id=999"},
		{strconv.FormatInt(apiKey, 10), `{"cause":5}`, 400, "cause must be a string (was a number)"},
		{strconv.FormatInt(apiKey, 10), `{"cause":"x","foo":1}`, 400, "foo must be removed"},
		{strconv.FormatInt(apiKey, 10), `{"cause":"spot check"}`, 200, ""},
		{strconv.FormatInt(apiKey, 10), `{"cause":"again"}`, 404, fmt.Sprintf("No credential with id=%d", apiKey)},
		{"0000" + strconv.FormatInt(codex, 10), "", 200, ""},
	} {
		r := f.do("POST", "/v1/credential/"+tc.id+"/disable", tc.body, true)
		if r.status != tc.status {
			t.Errorf("disable %s %s: %d %s", tc.id, tc.body, r.status, r.body)
			continue
		}
		if tc.status == 200 && string(r.body) != `{"ok":true}` {
			t.Errorf("body %s", r.body)
		}
		if tc.status != 200 && r.errorText(t) != tc.want {
			t.Errorf("error %q, want %q", r.errorText(t), tc.want)
		}
	}
	m := f.do("GET", "/v1/credentials/disabled", "", true).json(t)
	dis := m["disabled"].([]any)
	if len(dis) != 2 {
		t.Fatalf("disabled = %v", dis)
	}
	k := dis[0].(map[string]any)
	if numOf(t, k["id"]) != apiKey || k["cause"] != "spot check" {
		t.Errorf("first tombstone = %v", k)
	}
	o := dis[1].(map[string]any)
	sameKeys(t, "oauth tombstone", o, "id", "provider", "type", "cause", "email", "accountId", "orgId", "orgName", "disabledAtMs")
	if o["cause"] != "disabled via auth-broker" || o["orgName"] != "Org X" {
		t.Errorf("oauth tombstone = %v", o)
	}
	if got := f.do("GET", "/v1/credentials/disabled?provider=openai", "", true).json(t)["disabled"].([]any); len(got) != 1 {
		t.Errorf("?provider filter: %v", got)
	}
	for _, raw := range [][]byte{f.do("GET", "/v1/credentials/disabled", "", true).body} {
		if strings.Contains(string(raw), canaryKey) || strings.Contains(string(raw), "acc-2") {
			t.Error("tombstones must carry no token material")
		}
	}
}

func TestRefresh(t *testing.T) {
	f := newFixture(t, Options{})
	apiKey, anth, _, mcp := seed(f)
	for _, tc := range []struct {
		name   string
		id     int64
		setup  func()
		status int
		want   string
		bump   int64
	}{
		{"unknown id", 999, nil, 404, "No credential with id=999", 2},
		{"api key", apiKey, nil, 500, fmt.Sprintf("Credential %d is not OAuth (provider=openai, type=api_key)", apiKey), 2},
		{"scripted upstream error", anth, func() { f.b.SetRefreshError(anth, 500, "OAuth token refresh timed out for provider: anthropic") }, 500, "OAuth token refresh timed out for provider: anthropic", 2},
		{"success", anth, func() { f.b.SetRefreshError(anth, 0, "") }, 200, "", 2},
		{"dead grant disables", mcp, func() { f.b.SetRefreshError(mcp, 500, "invalid_grant: refresh token revoked") }, 500, "invalid_grant: refresh token revoked", 3},
		{"disabled id", mcp, nil, 404, fmt.Sprintf("No credential with id=%d", mcp), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			gen := f.b.Generation()
			r := f.do("POST", fmt.Sprintf("/v1/credential/%d/refresh", tc.id), "", true)
			if r.status != tc.status {
				t.Fatalf("status %d (%s)", r.status, r.body)
			}
			if got := f.b.Generation() - gen; got != tc.bump {
				t.Errorf("generation moved by %d, want %d", got, tc.bump)
			}
			if tc.status != 200 {
				if r.errorText(t) != tc.want {
					t.Errorf("error %q, want %q", r.errorText(t), tc.want)
				}
				return
			}
			m := r.json(t)
			sameKeys(t, "refresh", m, "entry")
			e := m["entry"].(map[string]any)
			sameKeys(t, "refresh entry", e, "id", "provider", "credential", "identityKey")
			c := e["credential"].(map[string]any)
			if c["access"] == canaryAccess || c["refresh"] != "__remote__" || numOf(t, c["expires"]) != f.clk.Now().Add(time.Hour).UnixMilli() {
				t.Errorf("refreshed credential = %v", c)
			}
			if cur, _ := f.b.OAuth(anth); cur.Access != c["access"] {
				t.Errorf("OAuth() = %q, response %q", cur.Access, c["access"])
			}
		})
	}
	dis := f.do("GET", "/v1/credentials/disabled", "", true).json(t)["disabled"].([]any)
	if len(dis) != 1 || dis[0].(map[string]any)["cause"] != "oauth refresh failed: Error: invalid_grant: refresh token revoked" {
		t.Errorf("dead grant tombstone: %v", dis)
	}
}

func TestBlocks(t *testing.T) {
	f := newFixture(t, Options{})
	_, anth, codex, _ := seed(f)
	now := f.clk.Now().UnixMilli()
	post := func(id int64, body string) response {
		return f.do("POST", fmt.Sprintf("/v1/credential/%d/block", id), body, true)
	}
	if r := post(999, `{}`); r.status != 400 || r.errorText(t) != "providerKey must be a string (length at least 1) (was missing)\nblockScope must be a string (was missing)\nblockedUntilMs must be a number (was missing)" {
		t.Errorf("400 beats 404: %d %s", r.status, r.body)
	}
	if r := post(999, fmt.Sprintf(`{"providerKey":"k","blockScope":"","blockedUntilMs":%d}`, now+1000)); r.status != 404 || r.errorText(t) != "No credential with id=999" {
		t.Errorf("unknown id: %d %s", r.status, r.body)
	}
	gen := f.b.Generation()
	for _, body := range []string{
		fmt.Sprintf(`{"providerKey":"anthropic:oauth","blockScope":"","blockedUntilMs":%d,"updatedAtMs":1}`, now+60000),
		fmt.Sprintf(`{"providerKey":"anthropic:oauth","blockScope":"","blockedUntilMs":%d}`, now+1000), // can only extend
	} {
		if r := post(anth, body); r.status != 200 || string(r.body) != `{"ok":true}` {
			t.Fatalf("block: %d %s", r.status, r.body)
		}
	}
	for _, body := range []string{
		fmt.Sprintf(`{"providerKey":"openai-codex:oauth","blockScope":"shared","blockedUntilMs":%d}`, now+5000),
		fmt.Sprintf(`{"providerKey":"openai-codex:oauth","blockScope":"tier:x","blockedUntilMs":%d}`, now+7000),
		fmt.Sprintf(`{"providerKey":"openai-codex:oauth","blockScope":"chat","blockedUntilMs":%d}`, now+9000),
	} {
		if r := post(codex, body); r.status != 200 {
			t.Fatalf("block: %d %s", r.status, r.body)
		}
	}
	if f.b.Generation() != gen+5 {
		t.Errorf("each block write bumps: %d -> %d", gen, f.b.Generation())
	}
	blocksOf := func(caps bool, id int64) []any {
		var h []string
		if caps {
			h = []string{"OMP-Auth-Broker-Capabilities", " other , codex-meter-block-scopes"}
		}
		for _, c := range f.do("GET", "/v1/snapshot", "", true, h...).json(t)["credentials"].([]any) {
			e := c.(map[string]any)
			if numOf(t, e["id"]) == id {
				if e["blocks"] == nil {
					return nil
				}
				return e["blocks"].([]any)
			}
		}
		t.Fatalf("no entry %d", id)
		return nil
	}
	a := blocksOf(false, anth)
	if len(a) != 1 {
		t.Fatalf("anthropic blocks = %v", a)
	}
	blk := a[0].(map[string]any)
	sameKeys(t, "block", blk, "providerKey", "blockScope", "blockedUntilMs", "updatedAtMs")
	if numOf(t, blk["blockedUntilMs"]) != now+60000 || numOf(t, blk["updatedAtMs"])%1000 != 0 {
		t.Errorf("block = %v", blk)
	}
	scopes := func(bs []any) string {
		var s []string
		for _, b := range bs {
			m := b.(map[string]any)
			s = append(s, fmt.Sprintf("%s@%d", m["blockScope"], numOf(t, m["blockedUntilMs"])-now))
		}
		return strings.Join(s, ",")
	}
	if got := scopes(blocksOf(true, codex)); got != "chat@9000,spark@5000,tier:x@7000" {
		t.Errorf("with capability: %s", got)
	}
	if got := scopes(blocksOf(false, codex)); got != "shared@9000,tier:x@7000" {
		t.Errorf("without capability: %s", got)
	}
	// Expired blocks vanish without a bump; DELETE removes all.
	f.clk.Advance(8 * time.Second)
	if got := scopes(blocksOf(true, codex)); got != "chat@9000" {
		t.Errorf("after expiry: %s", got)
	}
	if r := f.do("DELETE", fmt.Sprintf("/v1/credential/%d/blocks", codex), "", true); r.status != 200 {
		t.Errorf("delete: %d", r.status)
	}
	if bs := blocksOf(true, codex); bs != nil {
		t.Errorf("blocks key must be omitted when empty: %v", bs)
	}
	if r := f.do("DELETE", "/v1/credential/999/blocks", "", true); r.status != 404 {
		t.Errorf("delete unknown: %d", r.status)
	}
}

func TestStatusCodesAreJSON(t *testing.T) {
	f := newFixture(t, Options{})
	f.b.SetStreamSupported(false)
	r := f.do("GET", "/v1/snapshot/stream", "", true)
	if r.status != http.StatusNotFound || r.errorText(t) != "No route: GET /v1/snapshot/stream" {
		t.Errorf("old broker stream: %d %s", r.status, r.body)
	}
	f.b.SetStreamSupported(true)
	if n := f.b.StreamConnections(); n != 0 {
		t.Errorf("StreamConnections = %d", n)
	}
}

// A successful refresh rebuilds the credential from standard fields, so
// extension keys (clientSecret...) leave the row, while enterpriseUrl,
// apiEndpoint and authorizedAt stay.
func TestRefreshRebuildsStandardFields(t *testing.T) {
	f := newFixture(t, Options{})
	id := f.b.AddOAuth("mcp", OAuth{Access: "a", Refresh: "r", Expires: f.clk.Now(), Extra: map[string]any{"clientSecret": canarySecret, "apiEndpoint": "https://api.example", "authorizedAt": 1795751638000}})
	if r := f.do("POST", fmt.Sprintf("/v1/credential/%d/refresh", id), "", true); r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	c := f.do("GET", "/v1/snapshot", "", true).json(t)["credentials"].([]any)[0].(map[string]any)["credential"].(map[string]any)
	sameKeys(t, "refreshed credential", c, "type", "access", "refresh", "expires", "apiEndpoint", "authorizedAt")
}
