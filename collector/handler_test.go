package collector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/monitor"
	"github.com/authbroker/authbroker_exporter/internal/testwait"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

func get(t *testing.T, h http.Handler, acceptEncoding string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func gunzip(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	slices.Sort(lines)
	return lines
}

// TestHandlerMatchesRegistry: what /metrics writes straight as text is
// what client_golang makes of the same collectors, series for series and
// byte for byte per line, and it parses as one run per family. The
// fixtures cover escaping, invalid UTF-8, duplicate limits, special
// values and tombstones.
func TestHandlerMatchesRegistry(t *testing.T) {
	raw, _ := identity.New(identity.Raw, nil)
	hashed, _ := identity.New(identity.Hashed, []byte("k"))
	nasty := nastySource{}
	bench := newBenchSource(40, true)
	fixtures := map[string]func(t *testing.T) Options{
		"scenario": func(t *testing.T) Options { return newScenario(t).options(t, identity.Raw) },
		"nasty": func(*testing.T) Options {
			var tombs []broker.Tombstone
			for i, s := range nastyLabels {
				tombs = append(tombs, broker.Tombstone{ID: int64(100 + i), Provider: s, Cause: s})
			}
			return Options{Source: nasty, Identity: raw, Usage: true, Now: func() time.Time { return t0 },
				Broker: &fakeBroker{probe: monitor.Probe{Checked: true, Up: true, Version: "18.2.3"}, tombstones: tombs, ok: true}}
		},
		"bench": func(*testing.T) Options {
			return Options{Source: bench, Broker: benchBroker{}, Identity: hashed, Usage: true,
				Now: func() time.Time { return t0 }}
		},
		"no usage": func(*testing.T) Options {
			return Options{Source: bench, Broker: benchBroker{}, Identity: hashed, Now: func() time.Time { return t0 }}
		},
	}
	for name, opts := range fixtures {
		t.Run(name, func(t *testing.T) {
			o := opts(t)
			want := scrape(t, New(o).All()...)

			cs := New(o)
			reg := prometheus.NewPedanticRegistry()
			if err := cs.Register(reg); err != nil {
				t.Fatal(err)
			}
			h := cs.Handler(reg, HandlerOpts{})
			plain := get(t, h, "")
			if ct := plain.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
			if ce := plain.Header().Get("Content-Encoding"); ce != "" {
				t.Fatalf("plain scrape encoded %q", ce)
			}
			got := plain.Body.String()
			if !slices.Equal(sortedLines(got), sortedLines(want)) {
				t.Fatalf("/metrics differs from the registry's text:\n--- handler\n%s\n--- registry\n%s", got, want)
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			mfs, err := p.TextToMetricFamilies(strings.NewReader(got))
			if err != nil {
				t.Fatalf("/metrics does not parse: %v", err)
			}
			if len(mfs) != strings.Count(want, "# TYPE ") {
				t.Fatalf("%d families parsed, registry has %d", len(mfs), strings.Count(want, "# TYPE "))
			}
			for i := range 2 { // the second reuses the compressor
				zipped := get(t, h, "gzip, deflate, br")
				if ce, v := zipped.Header().Get("Content-Encoding"), zipped.Header().Get("Vary"); ce != "gzip" || v != "Accept-Encoding" {
					t.Fatalf("Content-Encoding %q, Vary %q", ce, v)
				}
				if body := gunzip(t, zipped.Body.Bytes()); body != got {
					t.Fatalf("gzip scrape %d and the plain one differ", i+1)
				}
			}
		})
	}
}

// blockingGatherer counts gathers; the first one is held until released.
type blockingGatherer struct {
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
	err     error
	then    prometheus.Gatherer // when set, its families follow x's
}

func (b *blockingGatherer) Gather() ([]*dto.MetricFamily, error) {
	if b.calls.Add(1) == 1 {
		close(b.entered)
	}
	<-b.release
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x", Help: "x"})
	m := &dto.Metric{}
	g.Write(m)
	mfs := []*dto.MetricFamily{{Name: ptr("x"), Help: ptr("x"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{m}}}
	if b.then != nil {
		more, err := b.then.Gather()
		if err != nil {
			return nil, err
		}
		mfs = append(mfs, more...)
	}
	return mfs, b.err
}

func ptr(s string) *string { return &s }

func smallCollectors() *Collectors {
	src := newBenchSource(5, true)
	ids, _ := identity.New(identity.Hashed, []byte("k"))
	return New(Options{Source: src, Broker: benchBroker{}, Identity: ids, Usage: true,
		Now: func() time.Time { return t0 }})
}

// TestHandlerSharesGzipRender: gzip scrapes that arrive during a render
// wait for it and get its body.
func TestHandlerSharesGzipRender(t *testing.T) {
	const scrapes = 20
	b := &blockingGatherer{entered: make(chan struct{}), release: make(chan struct{})}
	h := smallCollectors().Handler(b, HandlerOpts{})
	var wg sync.WaitGroup
	var started atomic.Int32
	bodies := make([]string, scrapes)
	scrape := func(i int) {
		defer wg.Done()
		started.Add(1)
		rec := get(t, h, "gzip")
		if rec.Code != http.StatusOK {
			t.Errorf("scrape %d: %d", i, rec.Code)
			return
		}
		bodies[i] = gunzip(t, rec.Body.Bytes())
	}
	wg.Add(1)
	go scrape(0)
	<-b.entered
	for i := 1; i < scrapes; i++ {
		wg.Add(1)
		go scrape(i)
	}
	testwait.Eventually(t, "every scrape started", func() bool { return started.Load() == scrapes })
	for range 1000 { // let the late scrapes reach the shared render
		runtime.Gosched()
	}
	close(b.release)
	wg.Wait()
	for i, body := range bodies {
		if !strings.Contains(body, "\nx 0\n") || !strings.Contains(body, "authbroker_usage_match{") {
			t.Fatalf("scrape %d got an incomplete body:\n%s", i, body)
		}
	}
	if c := b.calls.Load(); c >= scrapes {
		t.Fatalf("%d renders for %d concurrent scrapes; they should share", c, scrapes)
	}
}

// heldWriter is a ResponseWriter whose Write waits for release before it
// reads the body, as a slow connection does.
type heldWriter struct {
	httptest.ResponseRecorder
	entered, release chan struct{}
}

func (w *heldWriter) Write(p []byte) (int, error) {
	close(w.entered)
	<-w.release
	return w.ResponseRecorder.Write(p)
}

// TestHandlerReusesBodyAfterItsLastWriter: a gzip body is written into
// again only once every scrape that shared it has written it out. A
// render that starts while a slow scrape still writes the previous body
// gets a buffer of its own; the next one reuses the freed body.
func TestHandlerReusesBodyAfterItsLastWriter(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "renders_total", Help: "x"})
	reg.MustRegister(c)
	h := smallCollectors().Handler(reg, HandlerOpts{}).(*metricsHandler)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")

	slow := &heldWriter{ResponseRecorder: *httptest.NewRecorder(), entered: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() { h.ServeHTTP(slow, req); close(done) }()
	<-slow.entered // its render is complete; its body is not yet written out

	c.Inc()
	if body := gunzip(t, get(t, h, "gzip").Body.Bytes()); !strings.Contains(body, "\nrenders_total 1\n") {
		t.Fatalf("second scrape: no renders_total 1 in\n%s", body)
	}
	close(slow.release)
	<-done
	if body := gunzip(t, slow.Body.Bytes()); !strings.Contains(body, "\nrenders_total 0\n") {
		t.Fatalf("the slow scrape's body was overwritten by the render after it:\n%s", body)
	}

	h.mu.Lock()
	freed := h.spare
	h.mu.Unlock()
	if freed == nil {
		t.Fatal("no body kept for reuse after every scrape finished")
	}
	c.Inc()
	g := h.shareGzip()
	defer h.release(g)
	if g.body != freed {
		t.Fatal("the next render allocated a new body instead of reusing the freed one")
	}
	if body := gunzip(t, g.body.Bytes()); !strings.Contains(body, "\nrenders_total 2\n") {
		t.Fatalf("reused body: no renders_total 2 in\n%s", body)
	}
}

// TestHandlerInFlightLimit: beyond the cap a scrape is refused at once,
// not queued.
func TestHandlerInFlightLimit(t *testing.T) {
	b := &blockingGatherer{entered: make(chan struct{}), release: make(chan struct{})}
	h := smallCollectors().Handler(b, HandlerOpts{MaxRequestsInFlight: 1})
	done := make(chan int)
	go func() { done <- get(t, h, "").Code }()
	<-b.entered
	if rec := get(t, h, "gzip"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("second scrape: %d, want 503", rec.Code)
	}
	close(b.release)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("first scrape: %d", code)
	}
	if rec := get(t, h, ""); rec.Code != http.StatusOK {
		t.Fatalf("scrape after the first finished: %d", rec.Code)
	}
}

// TestHandlerSelfMetrics: with Instrument set, the handler counts its
// scrapes by status code, the ones the in-flight cap refuses included, and
// the counts are served on /metrics.
func TestHandlerSelfMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := &blockingGatherer{entered: make(chan struct{}), release: make(chan struct{}), then: reg}
	h := smallCollectors().Handler(b, HandlerOpts{MaxRequestsInFlight: 1, Instrument: reg})
	value := func(text, series string) string {
		t.Helper()
		for line := range strings.SplitSeq(text, "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				return v
			}
		}
		t.Fatalf("no %s in:\n%s", series, text)
		return ""
	}
	gathered := func() string { return gatherText(t, reg) }
	const refused = `promhttp_metric_handler_requests_total{code="503"}`
	if v := value(gathered(), refused); v != "0" {
		t.Fatalf("%s = %s before any scrape", refused, v)
	}

	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- get(t, h, "") }()
	<-b.entered // the only slot is taken
	for i := 1; i <= 3; i++ {
		if rec := get(t, h, "gzip"); rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("scrape beyond the cap: %d, want 503", rec.Code)
		}
		if v := value(gathered(), refused); v != strconv.Itoa(i) {
			t.Fatalf("after %d refused scrapes %s = %s", i, refused, v)
		}
	}
	close(b.release)
	rec := <-first
	if rec.Code != http.StatusOK {
		t.Fatalf("first scrape: %d", rec.Code)
	}
	// The first scrape gathered while it was the one scrape in flight and
	// after the three refusals; it is counted itself once it has answered.
	body := rec.Body.String()
	for series, want := range map[string]string{
		refused: "3",
		`promhttp_metric_handler_requests_total{code="200"}`: "0",
		`promhttp_metric_handler_requests_in_flight`:         "1",
	} {
		if v := value(body, series); v != want {
			t.Errorf("first scrape's /metrics: %s = %s, want %s", series, v, want)
		}
	}
	body = gunzip(t, get(t, h, "gzip").Body.Bytes())
	if v := value(body, `promhttp_metric_handler_requests_total{code="200"}`); v != "1" {
		t.Errorf("second scrape's /metrics: code 200 counted %s times, want 1", v)
	}
	for _, help := range []string{
		"# TYPE promhttp_metric_handler_requests_total counter",
		"# TYPE promhttp_metric_handler_requests_in_flight gauge",
	} {
		if !strings.Contains(body, help) {
			t.Errorf("/metrics lacks %q", help)
		}
	}
}

// TestHandlerContinuesOnGatherError: a failing registered collector is
// logged; everything else is still served.
func TestHandlerContinuesOnGatherError(t *testing.T) {
	b := &blockingGatherer{entered: make(chan struct{}), release: make(chan struct{}), err: errors.New("collector x failed")}
	close(b.release)
	var logs logBuffer
	h := smallCollectors().Handler(b, HandlerOpts{Logger: &logs})
	rec := get(t, h, "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "authbroker_credential_info{") {
		t.Fatalf("%d\n%s", rec.Code, rec.Body.String())
	}
	if !strings.Contains(logs.String(), "collector x failed") {
		t.Fatalf("gather error not logged: %s", logs.String())
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Log(kv ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range kv {
		l.b.WriteString(strings.TrimSpace(strings.ReplaceAll(toString(v), "\n", " ")) + " ")
	}
	l.b.WriteString("\n")
	return nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case error:
		return x.Error()
	}
	return ""
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"":                      false,
		"gzip":                  true,
		"GZIP":                  true,
		"deflate, gzip;q=0.5":   true,
		"gzip;q=0":              false,
		"gzip; q=0.0, identity": false,
		"*":                     true,
		"br, identity":          false,
		"x-gzip":                false,
	} {
		if got := acceptsGzip(h); got != want {
			t.Errorf("acceptsGzip(%q) = %v", h, got)
		}
	}
}

// TestTextSinkValues: sample values are written as client_golang writes
// them, special values included.
func TestTextSinkValues(t *testing.T) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e21, 1.7e308, 5e-324, -2.5e-7, 1795781400, 8.64e15,
		math.NaN(), math.Inf(1), math.Inf(-1)} {
		var want bytes.Buffer
		m := &dto.Metric{Gauge: &dto.Gauge{Value: &v}}
		if _, err := expfmt.MetricFamilyToText(&want, &dto.MetricFamily{Name: ptr("x"), Help: ptr("h"),
			Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{m}}); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		bw := bufio.NewWriter(&got)
		ts := newTextSink(bw)
		f := &family{name: "x", header: "# HELP x h\n# TYPE x gauge\n"}
		ts.add(f, &labelSet{}, v)
		bw.Flush()
		if got.String() != want.String() {
			t.Errorf("%v: got %q, want %q", v, got.String(), want.String())
		}
	}
}

// TestTextSinkRejectsSplitFamily: a family written in two runs is an
// error (a scraper rejects the second # TYPE line).
func TestTextSinkRejectsSplitFamily(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	ts := newTextSink(bw)
	a, b := &family{name: "a", header: "# TYPE a gauge\n"}, &family{name: "b", header: "# TYPE b gauge\n"}
	l := newSchema("id").set("1")
	ts.add(a, &l, 1)
	ts.add(a, &l, 2)
	ts.add(b, &l, 1)
	if ts.err != nil {
		t.Fatal(ts.err)
	}
	ts.add(a, &l, 3)
	if ts.err == nil || !strings.Contains(ts.err.Error(), "metric family a") {
		t.Fatalf("split family not reported: %v", ts.err)
	}
}
