package collector

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/monitor"
	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// logSink records go-kit log lines.
type logSink struct {
	mu    sync.Mutex
	lines []map[string]string
}

func (l *logSink) Log(kv ...any) error {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[fmt.Sprint(kv[i])] = fmt.Sprint(kv[i+1])
	}
	l.mu.Lock()
	l.lines = append(l.lines, m)
	l.mu.Unlock()
	return nil
}

func (l *logSink) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.lines {
		if strings.Contains(m["msg"], substr) {
			n++
		}
	}
	return n
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, m := range l.lines {
		fmt.Fprintln(&b, m)
	}
	return b.String()
}

// usageFront serves the broker, except /v1/usage while body is set.
type usageFront struct {
	*httptest.Server
	mu   sync.Mutex
	body []byte
}

func (f *usageFront) set(body []byte) {
	f.mu.Lock()
	f.body = body
	f.mu.Unlock()
}

type usageEnv struct {
	clock  *testClock
	broker *brokertest.Broker
	front  *usageFront
	store  *store.Store
	logs   *logSink
	opts   Options
}

const goodUsage = `{"provider":"anthropic","fetchedAt":1795751800000,"metadata":{"email":"a@example.com"},"limits":[` +
	`{"id":"anthropic:5h","label":"5h","scope":{"provider":"anthropic"},"window":{"id":"5h","label":"5 Hour","resetsAt":1795760000000},` +
	`"amount":{"used":42,"limit":100,"unit":"percent"},"status":"ok"}]}`

// newUsageEnv starts a store whose broker has the faults given from the
// start, and without faults waits for its first usage answer.
func newUsageEnv(t *testing.T, faults ...brokertest.Fault) *usageEnv {
	t.Helper()
	e := &usageEnv{clock: &testClock{now: t0}, logs: &logSink{}}
	e.broker = brokertest.New(brokertest.Options{Token: "CANARY-bearer-usage-4a1f", Now: e.clock.Now})
	t.Cleanup(e.broker.Close)
	for _, f := range faults {
		e.broker.AddFault(f)
	}
	e.broker.AddOAuth("anthropic", brokertest.OAuth{Access: canaryAccess, Refresh: canaryRefresh, Expires: t0.Add(time.Hour), Email: "a@example.com"})
	e.broker.SetUsage([]json.RawMessage{json.RawMessage(goodUsage)})
	e.front = &usageFront{}
	next := e.broker.Handler()
	e.front.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.front.mu.Lock()
		body := e.front.body
		e.front.mu.Unlock()
		if body != nil && r.URL.Path == "/v1/usage" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(e.front.Close)
	// The clock steps of a test add up past the default stream idle
	// timeout; a stream reconnect then would call for one usage fetch more
	// (the mirror recovering while usage fails), which is not what these
	// tests count.
	cl, err := broker.NewClient(broker.ClientOptions{URL: e.front.URL, Token: broker.StaticToken(e.broker.Token()), Clock: e.clock,
		StreamIdleTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.CloseIdleConnections)
	e.store = store.New(store.Options{Broker: cl, Stream: true, Clock: e.clock, Logger: e.logs})
	t.Cleanup(e.store.Close)
	testwait.Eventually(t, "first snapshot", e.store.Ready)
	if len(faults) == 0 {
		testwait.Eventually(t, "first usage answer", func() bool { return e.store.Usage().HasData() })
	}
	ids, _ := identity.New(identity.Raw, nil)
	e.opts = Options{Source: e.store, Broker: &fakeBroker{probe: monitor.Probe{Checked: true, Up: true, Version: "18.2.3"}, ok: true},
		Identity: ids, Usage: true, Now: func() time.Time { return t0 }}
	return e
}

func (e *usageEnv) scrapeUsage(t *testing.T) string {
	t.Helper()
	return scrape(t, &usageCollector{o: e.opts})
}

func (e *usageEnv) fetchErrors(t *testing.T) map[string]uint64 {
	t.Helper()
	out := scrape(t, &operationsCollector{o: e.opts})
	got := map[string]uint64{}
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(line, `authbroker_usage_fetch_errors_total{reason="`)
		if !ok {
			continue
		}
		reason, value, _ := strings.Cut(rest, `"} `)
		n, _ := strconv.ParseUint(value, 10, 64)
		if n > 0 {
			got[reason] = n
		}
	}
	return got
}

const usageSeries = `authbroker_usage_limit_used_fraction{id="1",limit="anthropic:5h",provider="anthropic",window="5h"} 0.42`

// TestUsageFaults: every way /v1/usage can fail, through the store's
// usage refresher to the usage collector. Each
// fault: the scrape still answers, usage series go (no numbers the broker
// no longer vouches for), the failure is counted by reason in both the
// store and authbroker_usage_fetch_errors_total, one log line however many
// scrapes and TTLs it lasts, and usage comes back once the fault clears.
func TestUsageFaults(t *testing.T) {
	cases := []struct {
		name   string
		inject func(e *usageEnv)
		reason string
	}{
		{"5xx", func(e *usageEnv) {
			e.broker.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 502, Message: "usage aggregate failed " + e.broker.Token()})
		}, broker.ReasonUpstream},
		{"401", func(e *usageEnv) {
			e.broker.AddFault(brokertest.Fault{Path: "/v1/usage", Status: 401, Message: "unauthorized"})
		}, broker.ReasonUnauthorized},
		{"malformed JSON", func(e *usageEnv) {
			e.front.set([]byte(`{"generatedAt":1,"reports":[{"provider":"anthropic","metadata":{"email":"` + canaryAccess))
		}, broker.ReasonInvalidResponse},
		{"wrong types", func(e *usageEnv) {
			e.broker.SetUsage([]json.RawMessage{json.RawMessage(`{"provider":"anthropic","limits":"many"}`)})
		}, broker.ReasonInvalidResponse},
		{"missing reports", func(e *usageEnv) { e.front.set([]byte(`{"generatedAt":1}`)) }, broker.ReasonInvalidResponse},
		{"amount 1e400", func(e *usageEnv) {
			e.broker.SetUsage([]json.RawMessage{json.RawMessage(strings.Replace(goodUsage, `"used":42`, `"used":1e400`, 1))})
		}, broker.ReasonInvalidResponse},
		{"non-UTF-8 bytes", func(e *usageEnv) { e.front.set([]byte("{\"generatedAt\":1,\xff\xfe\"reports\":[]}")) }, broker.ReasonInvalidResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newUsageEnv(t)
			if out := e.scrapeUsage(t); !strings.Contains(out, usageSeries) {
				t.Fatalf("no usage before the fault:\n%s", out)
			}
			tc.inject(e)
			for i := range 3 {
				e.clock.Advance(16 * time.Second) // past the store's usage TTL and any retry backoff
				// The last good reports stay while fetches fail.
				if out := e.scrapeUsage(t); !strings.Contains(out, usageSeries) {
					t.Fatalf("scrape %d: a failed fetch dropped the last good usage:\n%s", i, out)
				}
				testwait.Eventually(t, "failed fetch counted", func() bool { return e.store.Counters().UsageFetchErrors[tc.reason] == uint64(i+1) })
			}
			want := map[string]uint64{tc.reason: 3}
			if got := e.fetchErrors(t); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("authbroker_usage_fetch_errors_total %v, want %v", got, want)
			}
			if got := e.store.Counters().UsageFetchErrors; got[tc.reason] != 3 || len(got) != 1 {
				t.Errorf("store counters %v", got)
			}
			if n := e.logs.count("usage fetch failed"); n != 1 {
				t.Errorf("%d failure log lines for three failed fetches:\n%s", n, e.logs)
			}
			// Clear the fault.
			e.broker.ClearFaults()
			e.front.set(nil)
			e.broker.SetUsage([]json.RawMessage{json.RawMessage(goodUsage)})
			e.clock.Advance(16 * time.Second)
			testwait.Eventually(t, "recovery", func() bool { return e.logs.count("usage fetch recovered") == 1 })
			if n := e.logs.count("usage fetch recovered"); n != 1 {
				t.Errorf("%d recovery lines:\n%s", n, e.logs)
			}
			if c := e.store.Counters(); c.UsageFetches != 5 {
				t.Errorf("%d upstream fetches, want 5 (one per clock step)", c.UsageFetches)
			}
			for _, c := range []string{canaryAccess, e.broker.Token()} {
				if strings.Contains(e.logs.String(), c) {
					t.Errorf("canary %q in the logs", c)
				}
			}
		})
	}
}

// TestSlowUsageNeverHoldsScrapes: while /v1/usage hangs, scrapes answer
// with what the store has: many at once, before any usage was ever
// fetched and after, and no scrape starts a fetch of its own. Usage shows
// up once the refresher's fetch completes. Nothing here is timed: a
// scrape that waited for the fetch would never return while it is held.
func TestSlowUsageNeverHoldsScrapes(t *testing.T) {
	e := newUsageEnv(t, brokertest.Fault{Path: "/v1/usage", Stall: true})
	concurrent := func() []string {
		outs := make([]string, 20)
		var wg sync.WaitGroup
		for i := range outs {
			wg.Go(func() { outs[i] = scrape(t, New(e.opts).All()...) })
		}
		wg.Wait()
		return outs
	}
	testwait.Eventually(t, "the stalled fetch at the broker", func() bool { return e.broker.Requests("/v1/usage") >= 1 })
	for i, out := range concurrent() {
		if strings.Contains(out, "authbroker_usage_limit") {
			t.Fatalf("scrape %d shows usage that was never fetched", i)
		}
		if !strings.Contains(out, "authbroker_credential_info{") {
			t.Fatalf("scrape %d lost the credential series while usage hangs", i)
		}
	}
	if n := e.broker.Requests("/v1/usage"); n != 1 {
		t.Fatalf("%d upstream calls for 20 scrapes during one stall", n)
	}
	e.broker.ClearFaults()
	testwait.Eventually(t, "usage after the stall", func() bool { return strings.Contains(e.scrapeUsage(t), usageSeries) })

	// Stalled again after the TTL: the last good reports are served.
	e.broker.AddFault(brokertest.Fault{Path: "/v1/usage", Stall: true})
	defer e.broker.ClearFaults()
	e.clock.Advance(16 * time.Second)
	for i, out := range concurrent() {
		if !strings.Contains(out, usageSeries) {
			t.Fatalf("scrape %d during the second stall dropped the last good usage", i)
		}
	}
	testwait.Eventually(t, "the second stalled fetch at the broker", func() bool { return e.broker.Requests("/v1/usage") >= 2 })
	if n := e.broker.Requests("/v1/usage"); n != 2 {
		t.Fatalf("%d upstream calls, want 2", n)
	}
}

// Label values the broker controls: provider names, identities, scopes,
// limit and window ids, units, the broker version.
var nastyLabels = []string{
	`quo"te`,
	`back\slash\`,
	"new\nline",
	"cr\rand\ttab",
	"ünïcødé ✓ 🔑 日本",
	"line\u2028separator",
	"bidi \u202eoverride",
	"nul\x00byte",
	"invalid \xff\xfe utf-8 \xc3",
	"{a=\"b\",c}",
	"",
	strings.Repeat("long", 300),
}

func clean(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// nastySource is a store.Source holding nastyLabels everywhere a broker
// string can reach a label.
type nastySource struct{}

func (nastySource) Snapshot() store.View {
	v := store.View{Ready: true, Generation: 7, GeneratedAt: t0, ServerNow: t0, ReceivedAt: t0,
		Refresher: broker.Refresher{Enabled: true, Interval: time.Minute, Skew: 5 * time.Minute, NextSweep: t0.Add(time.Minute)}}
	for i, s := range nastyLabels {
		v.Entries = append(v.Entries, &store.Entry{Entry: &broker.Entry{ID: int64(i + 1), Provider: s, IdentityKey: s, ReceivedAt: t0, RotatesIn: time.Minute, HasRotatesIn: true, Credential: broker.Credential{Type: broker.TypeOAuth, Email: s, AccountID: s, OrgID: s, HasExpires: true, Expires: t0.Add(time.Hour)}, Blocks: []broker.Block{{ProviderKey: s, Scope: s, BlockedUntil: t0.Add(time.Hour)}, {ProviderKey: "other", Scope: s, BlockedUntil: t0.Add(2 * time.Hour)}}}, LastRotation: t0, Rotations: 2})
	}
	v.Entries = append(v.Entries, &store.Entry{Entry: &broker.Entry{ID: 1000, Provider: nastyLabels[0], Credential: broker.Credential{Type: broker.TypeAPIKey}}})
	return v
}

func (nastySource) Status() store.SyncStatus {
	return store.SyncStatus{Mode: store.ModeStream, StreamConnected: true, Live: true, LastSync: t0}
}

func (nastySource) Counters() store.Counters {
	c := store.Counters{RefreshRequests: map[store.CallOutcome]uint64{}, RefreshErrors: map[store.CallFailure]uint64{},
		DisableRequests: map[store.CallOutcome]uint64{}, DisableErrors: map[store.CallFailure]uint64{}}
	for _, s := range nastyLabels {
		c.RefreshRequests[store.CallOutcome{Provider: s, Result: "ok"}] = 1
		c.RefreshErrors[store.CallFailure{Provider: s, Reason: broker.ReasonUpstream}] = 1
		c.DisableRequests[store.CallOutcome{Provider: s, Result: "error"}] = 1
	}
	return c
}

func (n nastySource) Usage() *store.Usage {
	return store.NewUsage(nastyReports(), t0, n.Snapshot().Entries)
}

func nastyReports() []broker.UsageReport {
	var out []broker.UsageReport
	f := func(v float64) *float64 { return &v }
	for _, s := range nastyLabels {
		out = append(out, broker.UsageReport{Provider: s, FetchedAt: t0, Metadata: broker.UsageMetadata{Email: strings.TrimSpace(s), OrgID: strings.TrimSpace(s)},
			Limits: []broker.UsageLimit{
				{ID: s, Status: s, Window: &broker.UsageWindow{ID: s, ResetsAt: t0.Add(time.Hour)},
					Amount: broker.UsageAmount{Used: f(8.64e15), Limit: f(-1), Remaining: f(0.5), UsedFraction: f(-0.25), Unit: s}},
				{ID: s, Window: &broker.UsageWindow{ID: s}, Amount: broker.UsageAmount{UsedFraction: f(1.7e308)}}, // duplicate key
			}})
	}
	out = append(out, broker.UsageReport{Provider: "nobody-" + nastyLabels[2]})
	return out
}

// TestNastyLabelValues: quotes, backslashes, newlines, control and bidi
// characters, NUL, invalid UTF-8 and very long values in every
// broker-controlled label: the pedantic registry gathers without error, the
// linter is happy, the text exposition parses back, and each value comes
// out exactly as it went in (invalid UTF-8 replaced, nothing else changed).
func TestNastyLabelValues(t *testing.T) {
	ids, _ := identity.New(identity.Raw, nil)
	src := nastySource{}
	var tombs []broker.Tombstone
	for i, s := range nastyLabels {
		tombs = append(tombs, broker.Tombstone{ID: int64(100 + i), Provider: s, Cause: s})
	}
	o := Options{Source: src, Identity: ids, Usage: true, Now: func() time.Time { return t0 },
		Broker: &fakeBroker{probe: monitor.Probe{Checked: true, Up: true, Version: nastyLabels[8]}, tombstones: tombs, ok: true}}
	cs := New(o).All()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, c := range cs {
		if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
			t.Errorf("lint: %v %v", err, problems)
		}
	}
	var text strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := parser.TextToMetricFamilies(strings.NewReader(text.String()))
	if err != nil {
		t.Fatalf("the exposition does not parse back: %v", err)
	}
	values := func(family, lbl string) map[string]bool {
		got := map[string]bool{}
		mf := parsed["authbroker_"+family]
		if mf == nil {
			t.Fatalf("family %s missing", family)
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == lbl {
					got[lp.GetValue()] = true
				}
			}
		}
		return got
	}
	for _, fl := range [][2]string{
		{"credential_info", "provider"}, {"credential_info", "email"}, {"credential_info", "identity"}, {"credential_info", "account"}, {"credential_info", "org"},
		{"credential_blocked_until_timestamp_seconds", "scope"}, {"credentials", "provider"}, {"credentials_disabled", "provider"},
		{"usage_limit_used_fraction", "limit"}, {"usage_limit_used_fraction", "window"}, {"usage_limit_used", "unit"},
		{"refresh_requests_total", "provider"},
	} {
		got := values(fl[0], fl[1])
		for _, s := range nastyLabels {
			if !got[clean(s)] {
				t.Errorf("%s{%s} lacks %q", fl[0], fl[1], clean(s))
			}
		}
	}
	if got := values("broker_info", "version"); !got[clean(nastyLabels[8])] {
		t.Errorf("broker_info version %v", got)
	}
	// Values are kept as numbers, whatever their size.
	var huge *dto.Metric
	for _, m := range parsed["authbroker_usage_limit_used"].GetMetric() {
		if m.GetGauge().GetValue() == 8.64e15 {
			huge = m
		}
	}
	if huge == nil {
		t.Error("8.64e15 did not survive as a value")
	}
}
