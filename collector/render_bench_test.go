package collector

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/monitor"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// The render benchmarks scrape a mirror of n OAuth credentials spread over
// four providers, each with its own usage report of four limits carrying
// every amount, each rotated once: 32 series per credential, ~320k at 10k. They
// split the cost into our Collect (building const metrics), the registry's
// Gather and the text encoding, and report series/op so the per-series
// cost can be compared across sizes.

var benchProviders = []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}

var benchSizes = []int{1000, 10000, 50000}

type benchSource struct {
	view    store.View
	reports []broker.UsageReport
	// claimants are the credentials the store matched reports against:
	// the ones the source was built with.
	claimants []*store.Entry
	mu        sync.Mutex
	usage     *store.Usage
	// fresh hands out a new report slice on every call, as the store does
	// once per usage fetch (every 15 s): no per-report-set cache survives.
	fresh bool
}

func (s *benchSource) Snapshot() store.View { return s.view }
func (s *benchSource) Status() store.SyncStatus {
	return store.SyncStatus{Mode: store.ModeStream, StreamConnected: true, Live: true, LastSync: t0}
}
func (s *benchSource) Counters() store.Counters { return store.Counters{} }

// Usage answers one store.Usage per report set, as the store does per
// fetch (a new one on every call when fresh).
func (s *benchSource) Usage() *store.Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fresh {
		return store.NewUsage(slices.Clone(s.reports), t0, s.claimants)
	}
	if s.usage == nil || len(s.usage.Reports) != len(s.reports) || len(s.reports) > 0 && &s.usage.Reports[0] != &s.reports[0] {
		s.usage = store.NewUsage(s.reports, t0, s.claimants)
	}
	return s.usage
}

type benchBroker struct{}

func (benchBroker) Probe() monitor.Probe {
	return monitor.Probe{Checked: true, Up: true, Version: "18.2.3"}
}
func (benchBroker) Tombstones() ([]broker.Tombstone, bool) { return nil, true }

func bf(v float64) *float64 { return &v }

// newBenchSource builds n credentials and, when usage is set, one report
// per credential. Reports are listed in reverse credential order so that a
// linear scan for a match is on average half the provider's reports.
func newBenchSource(n int, usage bool) *benchSource {
	s := &benchSource{view: store.View{Ready: true, Generation: 42, GeneratedAt: t0, ServerNow: t0, ReceivedAt: t0,
		Refresher: broker.Refresher{Enabled: true, Interval: time.Minute, Skew: 5 * time.Minute, NextSweep: t0.Add(time.Minute)}}}
	entries := make([]store.Entry, n)
	for i := range entries {
		p := benchProviders[i%len(benchProviders)]
		email := fmt.Sprintf("user%d@example.com", i)
		entries[i] = store.Entry{Entry: &broker.Entry{ID: int64(i + 1), Provider: p, IdentityKey: "email:" + email, Credential: broker.Credential{Type: broker.TypeOAuth, Expires: t0.Add(time.Hour), HasExpires: true,
			Email: email, AccountID: fmt.Sprintf("acct-%d", i)}, RotatesIn: 55 * time.Minute, HasRotatesIn: true, ReceivedAt: t0}, LastRotation: t0.Add(-time.Hour), Rotations: 3}
		s.view.Entries = append(s.view.Entries, &entries[i])
	}
	if !usage {
		return s
	}
	s.claimants = slices.Clone(s.view.Entries)
	for i := n - 1; i >= 0; i-- {
		e := &entries[i]
		r := broker.UsageReport{Provider: e.Provider, FetchedAt: t0.Add(-time.Minute),
			Metadata: broker.UsageMetadata{Email: e.Credential.Email, AccountID: e.Credential.AccountID}}
		for j, w := range []string{"5h", "7d", "7d-opus", "30d"} {
			used := float64((i + j) % 100)
			r.Limits = append(r.Limits, broker.UsageLimit{
				ID: e.Provider + ":" + w, Label: w,
				Window: &broker.UsageWindow{ID: w, Label: w, Duration: 5 * time.Hour, ResetsAt: t0.Add(3 * time.Hour)},
				Amount: broker.UsageAmount{Used: bf(used), Limit: bf(100), Remaining: bf(100 - used),
					UsedFraction: bf(used / 100), Unit: "percent"},
				Status: "ok",
			})
		}
		s.reports = append(s.reports, r)
	}
	return s
}

func benchOptions(b *testing.B, src *benchSource, mode identity.Mode) Options {
	ids, err := identity.New(mode, []byte("bench-key"))
	if err != nil {
		b.Fatal(err)
	}
	o := Options{Source: src, Broker: benchBroker{}, Identity: ids, Now: func() time.Time { return t0 }}
	if src.reports != nil {
		o.Usage = true
	}
	return o
}

func sizeName(n int) string {
	if n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// writeDirect writes the per-credential families as /metrics does, to w,
// and counts the series.
func writeDirect(cs *Collectors, w io.Writer) int {
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := &countingSink{sink: newTextSink(bw)}
	for _, d := range cs.direct {
		d.write(cw)
	}
	bw.Flush()
	return cw.n
}

type countingSink struct {
	sink
	n int
}

func (c *countingSink) add(f *family, l *labelSet, v float64) { c.n++; c.sink.add(f, l, v) }

// BenchmarkCollect is our share of a scrape: the per-credential families
// written as text (label material per entry version, values, formatting),
// without compression, with the default (hashed) identity labels.
// "fresh" gets a new usage report set on every scrape (what a scrape
// interval longer than the store's 15 s usage TTL sees), "same" the same
// one (scrapes within the TTL).
func BenchmarkCollect(b *testing.B) {
	for _, n := range benchSizes {
		for _, fresh := range []bool{true, false} {
			name := "creds=" + sizeName(n) + "/usage=same"
			if fresh {
				name = "creds=" + sizeName(n) + "/usage=fresh"
			}
			b.Run(name, func(b *testing.B) { benchCollect(b, n, fresh) })
		}
	}
}

func benchCollect(b *testing.B, n int, fresh bool) {
	src := newBenchSource(n, true)
	src.fresh = fresh
	cs := New(benchOptions(b, src, identity.Hashed))
	series := writeDirect(cs, io.Discard)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		writeDirect(cs, io.Discard)
	}
	b.ReportMetric(float64(series), "series/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(series), "ns/series")
}

// benchCollectors is main's wiring: a registry with the Go and process
// collectors and our registered ones, and the per-credential collectors
// behind the handler. Usage reports change on every scrape (the
// usage=fresh case of BenchmarkCollect).
func benchCollectors(b *testing.B, n int) (*prometheus.Registry, *Collectors) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	src := newBenchSource(n, true)
	src.fresh = true
	cs := New(benchOptions(b, src, identity.Hashed))
	if err := cs.Register(reg); err != nil {
		b.Fatal(err)
	}
	return reg, cs
}

// discardResponse is a ResponseWriter that keeps only the byte count, so
// the benchmark does not measure buffering a 30 MB body.
type discardResponse struct {
	h http.Header
	n int64
}

func (d *discardResponse) Header() http.Header         { return d.h }
func (d *discardResponse) WriteHeader(int)             {}
func (d *discardResponse) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }

// promAccept is the Accept header of a Prometheus 3 scrape with the default
// scrape protocols.
const promAccept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.7,application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.3"

// BenchmarkScrape is a whole /metrics request through Handler, the way
// main wires it (Go and process collectors included), with the headers of
// a Prometheus 3 scrape (gzip) or of curl (plain).
func BenchmarkScrape(b *testing.B) {
	for _, n := range benchSizes {
		for _, gz := range []bool{true, false} {
			name := "creds=" + sizeName(n) + "/gzip"
			if !gz {
				name = "creds=" + sizeName(n) + "/plain"
			}
			b.Run(name, func(b *testing.B) {
				reg, cs := benchCollectors(b, n)
				benchHandler(b, cs.Handler(reg, HandlerOpts{}), gz)
			})
		}
	}
}

// BenchmarkScrapeRegistry is the same scrape with every collector in the
// registry behind promhttp: the path /metrics took before Handler, kept
// for comparison.
func BenchmarkScrapeRegistry(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("creds="+sizeName(n)+"/gzip", func(b *testing.B) {
			_, cs := benchCollectors(b, n)
			all := prometheus.NewRegistry()
			all.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			for _, d := range cs.direct {
				all.MustRegister(d)
			}
			for _, r := range cs.registered {
				all.MustRegister(r)
			}
			benchHandler(b, promhttp.HandlerFor(all, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}), true)
		})
	}
}

func benchHandler(b *testing.B, h http.Handler, gz bool) {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gz {
		req.Header.Set("Accept", promAccept)
		req.Header.Set("Accept-Encoding", "gzip")
	}
	b.ReportAllocs()
	var size int64
	for b.Loop() {
		w := &discardResponse{h: http.Header{}}
		h.ServeHTTP(w, req)
		size = w.n
	}
	b.ReportMetric(float64(size), "bytes/op")
}

// TestBenchFixtureRenders keeps the benchmark fixture honest: every
// credential matches its own report and the scrape is what the
// benchmarks claim to measure.
func TestBenchFixtureRenders(t *testing.T) {
	const n = 40
	src := newBenchSource(n, true)
	ids, _ := identity.New(identity.Raw, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(Options{Source: src, Broker: benchBroker{}, Identity: ids, Usage: true,
		Now: func() time.Time { return t0 }}).All()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	series := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "id" {
					series++ // a per-credential series
				}
			}
		}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	out := buf.String()
	for i := 1; i <= n; i++ {
		want := fmt.Sprintf(`authbroker_usage_match{id="%d",provider="%s",state="matched"} 1`, i, benchProviders[(i-1)%len(benchProviders)])
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Fatalf("credential %d did not match its report:\n%s", i, out)
		}
		acct := fmt.Sprintf(`account="acct-%d"`, i-1)
		if !bytes.Contains(buf.Bytes(), []byte(acct)) {
			t.Fatalf("credential %d: info without %s", i, acct)
		}
	}
	// 32 per credential: info, expiry, rotates-in, rotations, two match
	// states, fetched-at and six series for each of four limits make 31;
	// every fixture credential has rotated, which adds the last-rotation
	// series.
	if series != 32*n {
		t.Fatalf("%d per-credential series for %d credentials, want %d", series, n, 32*n)
	}
}

func gatherText(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

// BenchmarkRuntimeCollectors is the Go and process collectors main
// registers, gathered alone: their cost per scrape at any size.
func BenchmarkRuntimeCollectors(b *testing.B) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
