package health

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
)

func serve(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

func handlerFor(t *testing.T, in Input) http.Handler {
	return NewHandler(HandlerOptions{
		Source:   func(context.Context) Input { return in },
		Redactor: mustRedactor(t, identity.Raw),
		Version:  "1.2.3",
		Links:    []Link{{"Docs", "https://example.invalid/docs"}},
	})
}

func TestHandlerAPIStatusCodes(t *testing.T) {
	degraded := healthy()
	degraded.Usage = nil
	critical := healthy()
	critical.Broker.Up = false
	for name, tc := range map[string]struct {
		in   Input
		code int
	}{
		"ok":       {healthy(), 200},
		"degraded": {degraded, 200},
		"critical": {critical, 503},
	} {
		t.Run(name, func(t *testing.T) {
			res, body := serve(t, handlerFor(t, tc.in), "GET", APIPath)
			if res.StatusCode != tc.code {
				t.Errorf("status %d, want %d", res.StatusCode, tc.code)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if m["status"] != name || m["exporter_version"] != "1.2.3" {
				t.Errorf("status %v version %v", m["status"], m["exporter_version"])
			}
		})
	}
}

// TestHandlerAPISchema pins the documented JSON keys (docs/health.md): a
// rename here is a breaking change for scripts.
func TestHandlerAPISchema(t *testing.T) {
	_, body := serve(t, handlerFor(t, showcase()), "GET", APIPath+"?view=full")
	var rep struct {
		Status     string           `json:"status"`
		Reasons    []map[string]any `json:"reasons"`
		Broker     map[string]any   `json:"broker"`
		Sync       map[string]any   `json:"sync"`
		Refresher  map[string]any   `json:"refresher"`
		Usage      map[string]any   `json:"usage"`
		Summary    map[string]any   `json:"summary"`
		Thresholds map[string]any   `json:"thresholds"`
		Listing    map[string]any   `json:"listing"`
		Creds      []struct {
			Fields map[string]any
			Limits []map[string]any `json:"limits"`
			Blocks []map[string]any `json:"blocks"`
		} `json:"credentials"`
		Disabled []map[string]any `json:"disabled"`
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Credentials []map[string]any `json:"credentials"`
	}
	json.Unmarshal([]byte(body), &raw)

	keys := func(what string, m map[string]any, want ...string) {
		t.Helper()
		for _, k := range want {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: missing %q", what, k)
			}
		}
		if len(m) != len(want) {
			t.Errorf("%s: %d keys, documented %d: %v", what, len(m), len(want), m)
		}
	}
	keys("reason", rep.Reasons[0], "code", "severity", "message", "credential_id")
	keys("broker", rep.Broker, "url", "up", "version", "checked_at", "latency_seconds", "error")
	keys("sync", rep.Sync, "ready", "live", "mode", "stream_connected", "stream_supported", "generation", "generated_at",
		"last_sync", "seconds_since_last_sync", "clock_skew_seconds", "generation_resets", "last_error", "last_error_reason")
	keys("refresher", rep.Refresher, "enabled", "interval_seconds", "skew_seconds", "next_sweep", "next_sweep_in_seconds")
	keys("usage", rep.Usage, "available", "reports", "unmatched")
	keys("summary", rep.Summary, "credentials", "disabled", "by_state", "by_provider", "by_reason")
	keys("listing", rep.Listing, "view", "state", "provider", "id", "limit", "credentials", "disabled", "reasons")
	keys("thresholds", rep.Thresholds, "expiring_within_seconds", "rotation_grace_seconds", "stale_after_seconds",
		"usage_warning", "max_clock_skew_seconds", "disabled_recent_seconds")
	keys("credential", raw.Credentials[0], "id", "provider", "type", "identity", "email", "account", "org", "state", "problems",
		"expires_at", "expires_in_seconds", "rotates_at", "rotates_in_seconds", "last_rotation", "rotations", "blocks",
		"usage_matched", "usage_fetched_at", "limits")
	var sawLimit, sawBlock bool
	for _, c := range raw.Credentials {
		for _, l := range c["limits"].([]any) {
			keys("limit", l.(map[string]any), "id", "label", "window", "used_fraction", "resets_at", "resets_in_seconds", "broker_status", "state")
			sawLimit = true
		}
		for _, b := range c["blocks"].([]any) {
			keys("block", b.(map[string]any), "provider_key", "scope", "blocked_until", "blocked_for_seconds")
			sawBlock = true
		}
	}
	if !sawLimit || !sawBlock {
		t.Error("showcase lacks limits or blocks")
	}
	keys("disabled", rep.Disabled[0], "id", "provider", "type", "email", "account", "org", "state", "cause", "cause_class", "disabled_at")

	states := map[float64]string{}
	for _, c := range raw.Credentials {
		states[c["id"].(float64)] = c["state"].(string)
	}
	for id, want := range showcaseStates {
		if states[float64(id)] != want {
			t.Errorf("credential %d state %q, want %q", id, states[float64(id)], want)
		}
	}
	if rep.Status != "critical" {
		t.Errorf("showcase status %s", rep.Status)
	}
}

func TestHandlerPage(t *testing.T) {
	res, body := serve(t, handlerFor(t, showcase()), "GET", "/")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	for h, want := range map[string]string{
		"Content-Type":  "text/html; charset=utf-8",
		"Cache-Control": "no-store",
	} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="15">`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`http://127.0.0.1:8765`, `18.2.3`, `<dd>57 `, `exporter 1.2.3`,
		`href="/metrics"`, `href="/-/healthy"`, `href="/-/ready"`, `href="/api/v1/health"`, `href="https://example.invalid/docs"`,
		`id="disabled"`, `data-cause="refresh_failed"`, `data-cause="replaced"`, `data-cause="manual"`, `data-cause="other"`,
		`style="width: 100%"`, `style="width: 42%"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for id, state := range showcaseStates {
		re := regexp.MustCompile(`id="cred-` + regexp.QuoteMeta(itoa(id)) + `" data-state="([a-z_]+)"`)
		m := re.FindStringSubmatch(body)
		if m == nil || m[1] != state {
			t.Errorf("credential %d row state %v, want %s", id, m, state)
		}
	}
	// No external assets and no script at all: the only <script> text is
	// the escaped hostile provider name.
	if strings.Contains(strings.ToLower(body), "<script") {
		t.Error("unescaped <script> in page")
	}
	if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Error("hostile provider not shown escaped")
	}
	for _, ext := range []string{`<link`, `src=`, `@import`, `url(`} {
		if strings.Contains(body, ext) {
			t.Errorf("page loads an asset: %q", ext)
		}
	}
}

func TestHandlerRoutes(t *testing.T) {
	h := handlerFor(t, healthy())
	if res, _ := serve(t, h, "GET", "/nope"); res.StatusCode != 404 {
		t.Errorf("/nope: %d", res.StatusCode)
	}
	if res, _ := serve(t, h, "POST", APIPath); res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %q", res.StatusCode, res.Header.Get("Allow"))
	}
	if res, _ := serve(t, h, "HEAD", "/"); res.StatusCode != 200 {
		t.Errorf("HEAD: %d", res.StatusCode)
	}
}

func TestHandlerSourceSeesRequestContext(t *testing.T) {
	type key struct{}
	var got any
	h := NewHandler(HandlerOptions{Source: func(ctx context.Context) Input {
		got = ctx.Value(key{})
		return healthy()
	}})
	req := httptest.NewRequest("GET", APIPath, nil).WithContext(context.WithValue(context.Background(), key{}, "v"))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got != "v" {
		t.Errorf("Source got ctx value %v", got)
	}
}

func itoa(i int64) string { b, _ := json.Marshal(i); return string(b) }

func TestRelDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "now", 400 * time.Millisecond: "now", -400 * time.Millisecond: "now",
		90 * time.Second: "in 1m30s", -2 * time.Hour: "2h ago",
	} {
		if got := relDur(d); got != want {
			t.Errorf("relDur(%v) = %q, want %q", d, got, want)
		}
	}
}
