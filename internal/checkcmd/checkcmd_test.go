package checkcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

func mustRedactor(t *testing.T, m identity.Mode) *identity.Redactor {
	t.Helper()
	r, err := identity.New(m, []byte("test-key"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Canary secrets: none of them may appear in any output.
const (
	canaryToken  = "canary-bearer-7f3a9c"
	canaryAccess = "canary-access-51e0d2"
	canaryKey    = "canary-apikey-c4b8e1"
	canaryExtra  = "canary-client-secret-9a7d"
)

var canaries = []string{canaryToken, canaryAccess, canaryKey, canaryExtra}

func assertNoCanary(t *testing.T, what, s string) {
	t.Helper()
	for _, c := range canaries {
		if strings.Contains(s, c) {
			t.Errorf("%s contains the secret %q", what, c)
		}
	}
}

func newBroker(t *testing.T) *brokertest.Broker {
	t.Helper()
	b := brokertest.New(brokertest.Options{Token: canaryToken})
	t.Cleanup(b.Close)
	return b
}

func addOAuth(b *brokertest.Broker, provider, email string, expiresIn time.Duration) int64 {
	return b.AddOAuth(provider, brokertest.OAuth{
		Access: canaryAccess, Refresh: "refresh-" + email, Expires: time.Now().Add(expiresIn), Email: email,
		Extra: map[string]any{"clientSecret": canaryExtra},
	})
}

func usageReport(provider, email string, usedFraction float64) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"provider":%q,"fetchedAt":%d,"metadata":{"email":%q},
		"limits":[{"id":"%s:5h","label":"5 Hour","scope":{"provider":%q,"windowId":"5h","shared":true},
		"window":{"id":"5h","label":"5 Hour","durationMs":18000000,"resetsAt":%d},
		"amount":{"usedFraction":%g,"unit":"percent"}}]}`,
		provider, time.Now().UnixMilli(), email, provider, provider, time.Now().Add(3*time.Hour).UnixMilli(), usedFraction))
}

func clientFor(t *testing.T, url, token string) *broker.Client {
	t.Helper()
	c, err := broker.NewClient(broker.ClientOptions{URL: url, Token: broker.StaticToken(token)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func runCheck(t *testing.T, b *brokertest.Broker, token, format string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := Check(context.Background(), Options{
		Client: clientFor(t, b.URL, token), BrokerURL: b.URL, Format: format,
		Redactor: mustRedactor(t, identity.Raw), Version: "test",
	}, &out)
	assertNoCanary(t, "check output", out.String())
	return code, out.String()
}

func TestCheckExitCodes(t *testing.T) {
	cases := []struct {
		name  string
		setup func(b *brokertest.Broker)
		token string
		code  int
		first string // prefix of the first line
		has   []string
	}{
		{name: "ok", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			b.AddAPIKey("openai", canaryKey)
			b.SetUsage([]json.RawMessage{usageReport("anthropic", "a@example.com", 0.3)})
		}, code: ExitOK, first: "OK: ", has: []string{"2 credentials healthy", "anthropic", "a@example.com", "api_key"}},
		{name: "usage warning", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			b.SetUsage([]json.RawMessage{usageReport("anthropic", "a@example.com", 0.95)})
		}, code: ExitWarning, first: "WARNING: ", has: []string{"usage_warning", "95%"}},
		{name: "expiring", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			addOAuth(b, "openai-codex", "b@example.com", 3*time.Minute)
		}, code: ExitWarning, first: "WARNING: ", has: []string{"credential_expiring", "expiring"}},
		{name: "expired", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", -time.Hour)
		}, code: ExitCritical, first: "CRITICAL: ", has: []string{"credential_expired", "expired"}},
		{name: "usage exhausted", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			b.SetUsage([]json.RawMessage{usageReport("anthropic", "a@example.com", 1)})
		}, code: ExitCritical, first: "CRITICAL: ", has: []string{"usage_exhausted"}},
		{name: "snapshot failing", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			b.AddFault(brokertest.Fault{Path: "/v1/snapshot", Status: 500, Message: "internal error"})
		}, code: ExitCritical, first: "CRITICAL: ", has: []string{"mirror_not_ready", "500"}},
		{name: "usage failing", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "upstream down"})
		}, code: ExitWarning, first: "WARNING: ", has: []string{"usage_unavailable"}},
		{name: "wrong token", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
		}, token: "not-the-token", code: ExitUnknown, first: "UNKNOWN: ", has: []string{"rejected the token", "401"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBroker(t)
			tc.setup(b)
			token := tc.token
			if token == "" {
				token = canaryToken
			}
			code, out := runCheck(t, b, token, "text")
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			if !strings.HasPrefix(out, tc.first) || !strings.Contains(strings.SplitN(out, "\n", 2)[0], b.URL) {
				t.Errorf("first line %q, want prefix %q and the broker URL", strings.SplitN(out, "\n", 2)[0], tc.first)
			}
			for _, h := range tc.has {
				if !strings.Contains(out, h) {
					t.Errorf("output lacks %q:\n%s", h, out)
				}
			}
		})
	}
}

func TestCheckBrokerDown(t *testing.T) {
	b := brokertest.New(brokertest.Options{Token: canaryToken})
	url := b.URL
	b.Close()
	var out bytes.Buffer
	code := Check(context.Background(), Options{Client: clientFor(t, url, canaryToken), BrokerURL: url}, &out)
	if code != ExitCritical {
		t.Errorf("exit %d, want %d\n%s", code, ExitCritical, out.String())
	}
	if !strings.HasPrefix(out.String(), "CRITICAL: ") || !strings.Contains(out.String(), health.ReasonBrokerUnreachable) {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestCheckJSON(t *testing.T) {
	b := newBroker(t)
	ok := addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
	bad := addOAuth(b, "anthropic", "z@example.com", -time.Minute)
	gone := addOAuth(b, "openai-codex", "c@example.com", 2*time.Hour)
	b.Disable(gone, "oauth refresh failed: invalid_grant")
	b.SetUsage([]json.RawMessage{usageReport("anthropic", "a@example.com", 0.5)})
	code, out := runCheck(t, b, canaryToken, "json")
	if code != ExitCritical {
		t.Errorf("exit %d", code)
	}
	var rep health.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Status != health.Critical || !rep.Broker.Up || rep.Broker.Version != "18.2.3" || !rep.Sync.Ready || rep.ExporterVersion != "test" {
		t.Errorf("report: status %s broker %+v sync %+v", rep.Status, rep.Broker, rep.Sync)
	}
	states := map[int64]string{}
	for _, c := range rep.Credentials {
		states[c.ID] = c.State
	}
	if states[ok] != health.StateOK || states[bad] != health.StateExpired || len(states) != 2 {
		t.Errorf("states %v", states)
	}
	if len(rep.Disabled) != 1 || rep.Disabled[0].ID != gone || rep.Disabled[0].CauseClass != broker.CauseRefreshFailed {
		t.Errorf("disabled %+v", rep.Disabled)
	}
	if !rep.Usage.Available || rep.Usage.Reports != 1 {
		t.Errorf("usage %+v", rep.Usage)
	}
}

func TestCheckUnknownWithoutBroker(t *testing.T) {
	var out bytes.Buffer
	if code := Check(context.Background(), Options{Format: "yaml"}, &out); code != ExitUnknown || !strings.HasPrefix(out.String(), "UNKNOWN: ") {
		t.Errorf("bad format: %d %q", code, out.String())
	}
	out.Reset()
	if code := Check(context.Background(), Options{Format: "json"}, &out); code != ExitUnknown {
		t.Errorf("no client: %d", code)
	}
	var rep health.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Status != health.Unknown || rep.Reasons[0].Code != health.ReasonCheckFailed {
		t.Errorf("no client JSON: %v %+v", err, rep)
	}
}

func TestExitCode(t *testing.T) {
	for v, want := range map[health.Verdict]int{health.OK: 0, health.Degraded: 1, health.Critical: 2, health.Unknown: 3, "": 3} {
		if got := ExitCode(v); got != want {
			t.Errorf("ExitCode(%q) = %d, want %d", v, got, want)
		}
	}
}
