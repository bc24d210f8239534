package checkcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// unscoped blocks every use of anthropic credential id for d.
func unscoped(b *brokertest.Broker, id int64, d time.Duration) {
	b.SetBlocks(id, []brokertest.Block{{ProviderKey: "anthropic:oauth", Scope: "", BlockedUntil: time.Now().Add(d)}})
}

func runProviderCheck(t *testing.T, b *brokertest.Broker, provider, format string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := Check(context.Background(), Options{
		Client: clientFor(t, b.URL, canaryToken), BrokerURL: b.URL, Format: format,
		Redactor: mustRedactor(t, identity.Raw), Version: "test", Provider: provider,
	}, &out)
	assertNoCanary(t, "check output", out.String())
	return code, out.String()
}

// TestCheckProvider: `check --provider` answers for the provider's
// capacity, not the broker's verdict: critical with no usable credential,
// warning when capacity is low, ok otherwise.
func TestCheckProvider(t *testing.T) {
	twoUsableOf := func(b *brokertest.Broker, n int) {
		for i := range n {
			id := addOAuth(b, "anthropic", string(rune('a'+i))+"@example.com", 2*time.Hour)
			if i >= 2 {
				unscoped(b, id, time.Hour)
			}
		}
	}
	cases := []struct {
		name     string
		provider string
		setup    func(b *brokertest.Broker)
		code     int
		first    string
	}{
		{name: "all usable", provider: "anthropic", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			addOAuth(b, "anthropic", "b@example.com", 2*time.Hour)
			addOAuth(b, "openai-codex", "c@example.com", -time.Hour) // another provider's trouble
		}, code: ExitOK, first: "OK: anthropic: 2 of 2 usable"},
		{name: "one of two blocked", provider: "anthropic", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			unscoped(b, addOAuth(b, "anthropic", "b@example.com", 2*time.Hour), time.Hour)
		}, code: ExitWarning, first: "WARNING: anthropic: 1 of 2 usable, capacity low"},
		{name: "two of nine usable", provider: "anthropic", setup: func(b *brokertest.Broker) { twoUsableOf(b, 9) },
			code: ExitWarning, first: "WARNING: anthropic: 2 of 9 usable, capacity low"},
		{name: "two of eight usable", provider: "anthropic", setup: func(b *brokertest.Broker) { twoUsableOf(b, 8) },
			code: ExitOK, first: "OK: anthropic: 2 of 8 usable"},
		{name: "scoped block leaves it usable", provider: "anthropic", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			id := addOAuth(b, "anthropic", "b@example.com", 2*time.Hour)
			b.SetBlocks(id, []brokertest.Block{{ProviderKey: "anthropic:oauth", Scope: "tier:fable", BlockedUntil: time.Now().Add(time.Hour)}})
		}, code: ExitOK, first: "OK: anthropic: 2 of 2 usable; blocked for one scope only: tier:fable on 1"},
		{name: "all blocked", provider: "anthropic", setup: func(b *brokertest.Broker) {
			unscoped(b, addOAuth(b, "anthropic", "a@example.com", 2*time.Hour), time.Hour)
			unscoped(b, addOAuth(b, "anthropic", "b@example.com", 2*time.Hour), 30*time.Minute)
		}, code: ExitCritical, first: "CRITICAL: anthropic: 0 of 2 usable, back at "},
		{name: "expired and exhausted", provider: "anthropic", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", -time.Hour)
			addOAuth(b, "anthropic", "b@example.com", 2*time.Hour)
			b.SetUsage([]json.RawMessage{usageReport("anthropic", "b@example.com", 1)})
		}, code: ExitCritical, first: "CRITICAL: anthropic: 0 of 2 usable, back at "},
		{name: "only expired", provider: "anthropic", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", -time.Hour)
		}, code: ExitCritical, first: "CRITICAL: anthropic: 0 of 1 usable, no time known: a new login is needed"},
		{name: "unknown provider", provider: "mistral", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
		}, code: ExitCritical, first: "CRITICAL: mistral: 0 of 0 usable, no active credential"},
		{name: "snapshot failing", provider: "anthropic", setup: func(b *brokertest.Broker) {
			addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
			b.AddFault(brokertest.Fault{Path: "/v1/snapshot", Status: 500, Message: "internal error"})
		}, code: ExitCritical, first: "CRITICAL: anthropic: unknown: no snapshot from the broker"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBroker(t)
			tc.setup(b)
			code, out := runProviderCheck(t, b, tc.provider, "text")
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			if first := strings.SplitN(out, "\n", 2)[0]; !strings.HasPrefix(first, tc.first) {
				t.Errorf("first line %q, want prefix %q", first, tc.first)
			}
		})
	}
}

// TestCheckProviderJSON: the JSON form is the whole report, whose
// providers carry the line the text form opens with.
func TestCheckProviderJSON(t *testing.T) {
	b := newBroker(t)
	id := addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
	until := time.Now().Add(40 * time.Minute).Truncate(time.Millisecond)
	b.SetBlocks(id, []brokertest.Block{{ProviderKey: "anthropic:oauth", BlockedUntil: until}})
	code, out := runProviderCheck(t, b, "anthropic", "json")
	if code != ExitCritical {
		t.Errorf("exit %d, want %d", code, ExitCritical)
	}
	var rep health.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	p := rep.Provider("anthropic")
	if p.Usable != 0 || p.Active != 1 || p.NextUsable == nil || !p.NextUsable.Equal(until) || p.NextUsableCause != health.BackBlockEnds {
		t.Errorf("provider %+v, want 0 of 1 usable until %v", p, until)
	}
}
