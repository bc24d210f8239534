package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// Canaries for TestNoSecretAnywhere: every kind of secret the exporter
// handles. Each is distinct, so a failure names the one that leaked.
const (
	leakBearer  = "CANARY-leak-bearer-5e1d0b"
	leakAccess  = "CANARY-leak-access-a17c44"
	leakAccess2 = "CANARY-leak-access-rotated-0d9e"
	leakKey     = "CANARY-leak-apikey-90fb12"
	leakClient  = "CANARY-leak-clientsecret-3c2e"
	leakCookie  = "CANARY-leak-extra-cookie-61aa"
	leakRefresh = "CANARY-leak-refresh-77f0c1"
	leakMeta    = "CANARY-leak-usage-session-e8b2"
)

var leakCanaries = []string{leakBearer, leakAccess, leakAccess2, leakKey, leakClient, leakCookie, leakRefresh, leakMeta}

// evidence collects every text the exporter produced.
type evidence struct {
	mu    sync.Mutex
	texts map[string]string
}

func (ev *evidence) add(where, text string) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.texts[where] += text + "\n"
}

func (ev *evidence) values(where string, vs ...any) {
	for _, v := range vs {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			ev.add(where, fmt.Sprintf(verb, v))
		}
		if b, err := json.Marshal(v); err == nil {
			ev.add(where, string(b))
		}
	}
}

// TestNoSecretAnywhere drives the whole exporter (real handler, debug
// logging, monitor, usage, check) against a broker holding canary secrets
// and misbehaving in every way that makes error text: a 401, a 500 whose
// body echoes the bearer token, a refresh failure echoing it too, a usage
// failure, malformed frames carrying token material, a stream 5xx. It reads
// every page, every log line, the check output in both formats, and every
// error and value it can reach printed with every verb; no canary may
// appear in any of it.
func TestNoSecretAnywhere(t *testing.T) {
	now := time.Now()
	b := brokertest.New(brokertest.Options{Token: leakBearer})
	t.Cleanup(b.Close)
	anth := b.AddOAuth("anthropic", brokertest.OAuth{Access: leakAccess, Refresh: leakRefresh, Expires: now.Add(time.Hour),
		Email: "a@example.com", AccountID: "acct-A", Extra: map[string]any{"clientSecret": leakClient, "sessionCookie": leakCookie}})
	expired := b.AddOAuth("anthropic", brokertest.OAuth{Access: leakAccess + "-x", Refresh: leakRefresh, Expires: now.Add(-time.Hour), Email: "c@example.com"})
	b.AddAPIKey("openai", leakKey)
	b.SetUsage([]json.RawMessage{json.RawMessage(`{"provider":"anthropic","fetchedAt":` + itoa(now.UnixMilli()) +
		`,"metadata":{"email":"a@example.com","sessionToken":"` + leakMeta + `","headers":{"authorization":"Bearer ` + leakBearer + `"}},` +
		`"limits":[{"id":"anthropic:5h","label":"5h","scope":{"provider":"anthropic"},"amount":{"usedFraction":0.5,"unit":"percent"},"status":"ok"}]}`)})
	b.SetRefreshError(expired, 500, "upstream rejected Bearer "+leakBearer+" for provider: anthropic")

	ev := &evidence{texts: map[string]string{}}
	logs := &syncBuffer{}
	tok := tokenFile(t, leakBearer, 0o600)
	args := []string{"--broker.url=" + b.URL, "--broker.token-file=" + tok, "--collector.identity=raw", "--log.level=debug"}
	cfg := parseConfig(t, args...)
	ev.values("config", cfg)
	e, addr := startExporter(t, cfg, logs)
	base := "http://" + addr
	testwait.Eventually(t, "ready", e.store.Ready)
	ctx := context.Background()

	pages := func(when string) {
		for _, path := range []string{"/metrics", "/", health.APIPath, health.APIPath + "?view=full", "/-/ready", "/-/healthy", "/nope"} {
			_, body := get(t, http.DefaultClient, base+path)
			ev.add(when+" GET "+path, body)
		}
	}
	check := func(when string) {
		for _, format := range []string{"text", "json"} {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"check", "--format=" + format}, args...), &stdout, &stderr)
			ev.add(fmt.Sprintf("%s check %s (exit %d)", when, format, code), stdout.String()+stderr.String())
		}
	}
	state := func(when string) {
		ev.values(when+" store state", e.store.Snapshot(), e.store.Status(), e.store.Counters(), e.store)
		for _, en := range e.store.Snapshot().Entries {
			ev.values(when+" entry", en, *en, en.Credential)
		}
		ev.values(when+" usage", e.store.Usage())
	}
	testwait.Eventually(t, "usage and tombstones in /metrics", func() bool {
		_, body := get(t, http.DefaultClient, base+"/metrics")
		return strings.Contains(body, "authbroker_usage_limit_used_fraction{")
	})
	pages("healthy")
	check("healthy")
	state("healthy")

	// A refresh that fails with a message echoing the bearer token, an
	// unknown id, a disable the broker refuses with an echo too.
	err := e.store.RefreshOAuthCredential(ctx, expired)
	if err == nil {
		t.Fatal("refresh should fail")
	}
	ev.values("refresh error", err)
	err = e.store.RefreshOAuthCredential(ctx, 424242)
	ev.values("refresh unknown id", err)
	b.AddFault(brokertest.Fault{Path: "/v1/credential/" + itoa(anth) + "/disable", Status: 500, Message: "cannot disable: " + leakBearer, Times: 1})
	_, err = e.store.DisableCredentialRemote(ctx, anth, "cause "+leakRefresh)
	ev.values("disable error", err)

	// A rotation: the new access token must not show either.
	b.UpdateOAuth(anth, brokertest.OAuth{Access: leakAccess2, Refresh: leakRefresh, Expires: now.Add(2 * time.Hour),
		Email: "a@example.com", AccountID: "acct-A", Extra: map[string]any{"clientSecret": leakClient, "sessionCookie": leakCookie}})
	testwait.Eventually(t, "rotation", func() bool {
		for _, en := range e.store.Snapshot().Entries {
			if en.ID == anth && en.Rotations > 0 {
				return true
			}
		}
		return false
	})

	// Malformed frames carrying token material.
	if err := b.WaitForStreams(ctx, 1); err != nil {
		t.Fatal(err)
	}
	b.SendRaw([]byte(`event: entry` + "\n" + `data: {"kind":"entry","generation":1e400,"entry":{"id":1,"provider":"anthropic","credential":{"type":"oauth","access":"` + leakAccess + `","clientSecret":"` + leakClient + `"}}}` + "\n\n"))
	testwait.Eventually(t, "protocol error", func() bool {
		return e.store.Counters().SyncErrors[store.SyncFailure{Mode: "stream", Reason: broker.SyncReasonProtocol}] > 0
	})
	ev.values("after a bad frame", e.store.Status())
	testwait.Eventually(t, "reconnected", func() bool { return e.store.Status().StreamConnected })
	if err := b.WaitForStreams(ctx, 1); err != nil {
		t.Fatal(err)
	}
	b.SendRaw([]byte("event: entry\ndata: " + leakAccess + " " + leakKey + " \xff\n\n"))
	testwait.Eventually(t, "second protocol error", func() bool {
		return e.store.Counters().SyncErrors[store.SyncFailure{Mode: "stream", Reason: broker.SyncReasonProtocol}] > 1
	})

	// The stream and usage fail with 5xx bodies that echo the token.
	b.AddFault(brokertest.Fault{Path: "/v1/snapshot/stream", Status: 500, Message: "internal error near Bearer " + leakBearer})
	b.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "usage upstream failed for " + leakBearer})
	b.CutStreams()
	testwait.Eventually(t, "5xx", func() bool {
		return e.store.Counters().SyncErrors[store.SyncFailure{Mode: "stream", Reason: broker.SyncReason5xx}] > 0
	})
	ev.values("during 5xx", e.store.Status())
	pages("5xx")
	check("5xx")
	state("5xx")
	// A second exporter, started into the faults, with no usage answer yet.
	logs2 := &syncBuffer{}
	e2, addr2 := startExporter(t, parseConfig(t, args...), logs2)
	testwait.Eventually(t, "second exporter failing", func() bool {
		_, body := get(t, http.DefaultClient, "http://"+addr2+"/metrics")
		ev.add("second exporter /metrics", body)
		return strings.Contains(body, `authbroker_usage_fetch_errors_total{reason="upstream"} 1`) &&
			e2.store.Status().LastErrorReason == broker.SyncReason5xx
	})
	for _, path := range []string{"/", health.APIPath, health.APIPath + "?view=full", "/-/ready"} {
		_, body := get(t, http.DefaultClient, "http://"+addr2+path)
		ev.add("second exporter GET "+path, body)
	}
	ev.values("second exporter state", e2.store.Status(), e2.store.Snapshot())

	// The broker's token is rotated and the exporter's file is not: 401.
	b.ClearFaults()
	b.SetToken("some-other-token-entirely")
	b.CutStreams()
	testwait.Eventually(t, "401", func() bool {
		return e.store.Counters().SyncErrors[store.SyncFailure{Mode: "stream", Reason: broker.SyncReasonUnauthorized}] > 0
	})
	pages("401")
	check("401")
	state("401")

	// The raw client, misused: every error it can produce.
	cl, err := broker.NewClient(broker.ClientOptions{URL: b.URL, Token: broker.FileToken(tok)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.CloseIdleConnections()
	_, err = cl.Snapshot(ctx, broker.SnapshotRequest{})
	ev.values("client snapshot 401", err, cl)
	_, err = cl.Usage(ctx, 1)
	ev.values("client usage 401", err)
	_, err = cl.Refresh(ctx, anth)
	ev.values("client refresh 401", err)
	ev.values("token sources", broker.StaticToken(leakBearer), broker.FileToken(tok))

	ev.add("exporter logs", logs.String())
	ev.add("second exporter logs", logs2.String())
	all := logs.String() + logs2.String()
	for _, want := range []string{"reason=protocol", "reason=http_5xx", "usage fetch failed"} {
		if !strings.Contains(all, want) {
			t.Errorf("logs lack %q: the errors were not provoked", want)
		}
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for where, text := range ev.texts {
		for _, c := range leakCanaries {
			if i := strings.Index(text, c); i >= 0 {
				lo, hi := max(0, i-120), min(len(text), i+len(c)+40)
				t.Errorf("%s leaks %s: …%s…", where, c, text[lo:hi])
			}
		}
	}
}
