package health

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

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

// TestHandlerWithStoreHasNoSecrets drives the whole path the exporter uses:
// fake broker with canary secrets → store mirror → Input → page and JSON.
func TestHandlerWithStoreHasNoSecrets(t *testing.T) {
	b := newBroker(t)
	addOAuth(b, "anthropic", "a@example.com", 2*time.Hour)
	expired := addOAuth(b, "openai-codex", "<b>@example.com", -time.Hour)
	b.AddAPIKey("openai", canaryKey)
	gone := b.AddAPIKey("openai", canaryKey+"-old")
	b.Disable(gone, "replaced by newer credential")
	b.SetUsage([]json.RawMessage{usageReport("anthropic", "a@example.com", 0.5)})

	snap := make(chan store.View, 16)
	s := store.New(store.Options{
		Broker: clientFor(t, b.URL, canaryToken), Stream: true,
		OnSnapshot: func(v store.View) {
			select {
			case snap <- v:
			default:
			}
		},
	})
	defer s.Close()
	<-snap // the first full snapshot has been applied

	ctx := context.Background()
	testwait.Eventually(t, "the first usage answer", func() bool { return s.Usage().HasData() })
	usage := s.Usage()
	tombs, terr := clientFor(t, b.URL, canaryToken).Disabled(ctx, "")
	src := func(context.Context) Input {
		return Input{
			Now: time.Now(), BrokerURL: b.URL,
			Broker: BrokerProbe{Up: true, Version: "18.2.3", Checked: time.Now()},
			View:   s.Snapshot(), Status: s.Status(),
			Usage: usage, Tombstones: tombs, TombstonesOK: terr == nil,
		}
	}
	h := NewHandler(HandlerOptions{Source: src, Redactor: mustRedactor(t, identity.Raw), Version: "test"})
	_, page := serve(t, h, "GET", "/")
	res, api := serve(t, h, "GET", APIPath)
	assertNoCanary(t, "page", page)
	assertNoCanary(t, "JSON", api)
	if res.StatusCode != 503 {
		t.Errorf("expired credential should make the API critical, got %d", res.StatusCode)
	}
	if !strings.Contains(page, fmt.Sprintf(`id="cred-%d" data-state="expired"`, expired)) {
		t.Error("page lacks the expired credential")
	}
	if !strings.Contains(page, "&lt;b&gt;@example.com") {
		t.Error("identity not escaped")
	}
	if !strings.Contains(page, fmt.Sprintf(`id="tomb-%d" data-cause="replaced"`, gone)) {
		t.Error("page lacks the tombstone")
	}
}
