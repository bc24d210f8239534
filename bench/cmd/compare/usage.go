package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
)

// promAccept is what a Prometheus 3 scrape sends (default scrape
// protocols).
const promAccept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.7,application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.3"

// usageSide is one exporter with the usage collector on (every default).
type usageSide struct {
	*side
	f          *fixture
	e          *harness.Exporter
	usageCalls int // /v1/usage requests before the load
	scrapes    atomic.Int64
	failures   atomic.Int64
	firstFail  atomic.Value // string
	rss        []int64      // samples in the second half of the load
	logMark    int          // length of the exporter's output at the half
}

// gcLive is the heap marked live by one collection in a gctrace line.
var gcLive = regexp.MustCompile(`(?m)^gc \d+ @.* \d+->\d+->(\d+) MB`)

// liveHeap is the median heap live after the collections of the load's
// second half, in MB.
func (s *usageSide) liveHeap() float64 { return liveHeapMB(s.e.Logs()[s.logMark:]) }

// liveHeapMB is the median heap marked live by the collections of
// GODEBUG=gctrace=1 output, in MB.
func liveHeapMB(logs string) float64 {
	var live []float64
	for _, m := range gcLive.FindAllStringSubmatch(logs, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		live = append(live, v)
	}
	return harness.Median(live)
}

func usagePhase(ctx context.Context, o options, sides [2]*side, t *table) error {
	var us [2]*usageSide
	var stop cleanup
	defer stop.run()
	for i, sd := range sides {
		harness.Logf("usage: %s, fake broker with %d credentials and %d usage reports", sd.name, o.n, o.n)
		us[i] = &usageSide{side: sd, f: newFixture(o.n, true)}
		stop.add(us[i].f.broker.Close)
	}
	for _, s := range us {
		e, err := s.start(ctx, s.f, []string{"GODEBUG=gctrace=1"})
		if err != nil {
			return err
		}
		s.e = e
		stop.add(e.Stop)
	}
	// Both start before either fetches usage, so neither is ahead of the
	// other in its refresh cycles.
	for _, s := range us {
		if err := s.waitUsage(ctx); err != nil {
			return err
		}
	}

	// Interleaved rounds: a gzip scrape, the status page, the health API.
	var scrape, scrapeCPU [2][]time.Duration
	var pageRatio, apiRatio [2][]float64
	var size [2]int
	for r := range o.scrapeRounds {
		for _, i := range order(r) {
			e := us[i].e
			c0, err := e.CPU()
			if err != nil {
				return err
			}
			m, err := get(ctx, e, "/metrics", promAccept)
			if err != nil {
				return err
			}
			c1, err := e.CPU()
			if err != nil {
				return err
			}
			p, err := get(ctx, e, "/", "text/html")
			if err != nil {
				return err
			}
			a, err := get(ctx, e, "/api/v1/health", "application/json")
			if err != nil {
				return err
			}
			scrape[i], scrapeCPU[i] = append(scrape[i], m.Took), append(scrapeCPU[i], c1-c0)
			pageRatio[i] = append(pageRatio[i], float64(p.Took)/float64(m.Took))
			apiRatio[i] = append(apiRatio[i], float64(a.Took)/float64(m.Took))
			size[i] = len(m.Body)
			harness.Logf("usage: %s round %d: /metrics %s, / %s, /api/v1/health %s", us[i].name, r+1,
				m.Took.Round(time.Millisecond), p.Took.Round(time.Millisecond), a.Took.Round(time.Millisecond))
		}
		time.Sleep(200 * time.Millisecond)
	}
	med := func(d [2][]time.Duration) (float64, float64) {
		return ms(harness.Median(d[0])), ms(harness.Median(d[1]))
	}
	of := fmt.Sprintf("%s credentials with usage, median of %d interleaved", count(o.n), o.scrapeRounds)
	b, h := med(scrape)
	t.add(row{id: "d", what: "gzip /metrics (Prometheus 3 Accept), time to the last byte, " + of, bound: "(report)", base: b, head: h, unit: "ms"})
	// The bound is on the CPU: on a shared machine the wall time is
	// mostly waiting for a core, and moves with the load between requests.
	b, h = med(scrapeCPU)
	t.add(row{id: "d", what: "exporter CPU per gzip /metrics, same scrapes", bound: "≤ 1.1×", base: b, head: h, unit: "ms", limit: 1.1})
	t.add(row{id: "d", what: "gzip /metrics body", bound: "(report)", base: float64(size[0]) / 1e6, head: float64(size[1]) / 1e6, unit: "MB"})
	t.add(row{id: "", what: "status page `/` / gzip scrape, same rounds (median of the ratios)", bound: "≤ 0.5",
		base: harness.Median(pageRatio[0]), head: harness.Median(pageRatio[1]), unit: "x", limit: 0.5})
	t.add(row{id: "", what: "`/api/v1/health` / gzip scrape, same rounds", bound: "≤ 0.5",
		base: harness.Median(apiRatio[0]), head: harness.Median(apiRatio[1]), unit: "x", limit: 0.5})

	if err := load(ctx, o, us); err != nil {
		return err
	}
	var rss, hwm, live [2]float64
	var notes [2]string
	for i, s := range us {
		m, err := s.e.Mem()
		if err != nil {
			return err
		}
		rss[i], hwm[i], live[i] = float64(harness.Median(s.rss))/1e6, float64(m.HWM)/1e6, s.liveHeap()
		notes[i] = fmt.Sprintf("%s: %d scrapes, %d failed, %d /v1/usage calls", s.name, s.scrapes.Load(), s.failures.Load(),
			s.f.broker.Requests("/v1/usage")-s.usageCalls)
		if s.failures.Load() > 0 {
			notes[i] += fmt.Sprintf(" (first: %s)", s.firstFail.Load())
		}
	}
	what := fmt.Sprintf("RSS, %s credentials with usage, %s of load", count(o.n), o.load)
	t.add(row{id: "e", what: "steady " + what + " (median of the second half)", bound: "≤ 1.0×", base: rss[0], head: rss[1], unit: "MB", limit: 1.0})
	t.add(row{id: "e", what: "peak " + what + " (VmHWM)", bound: "(report)", base: hwm[0], head: hwm[1], unit: "MB",
		note: notes[0] + "; " + notes[1]})
	t.add(row{id: "e", what: "heap live after GC, same second half (gctrace, median)", bound: "(report)", base: live[0], head: live[1], unit: "MB"})
	return nil
}

// get is one request with Accept-Encoding: gzip that must answer 200
// (the health API's 503 is a verdict, also a good answer) gzip-encoded.
func get(ctx context.Context, e *harness.Exporter, path, accept string) (harness.Response, error) {
	r, err := e.Get(ctx, path, "Accept", accept, "Accept-Encoding", "gzip")
	if err != nil {
		return r, err
	}
	if r.Status != http.StatusOK && !(path == "/api/v1/health" && r.Status == http.StatusServiceUnavailable) {
		return r, fmt.Errorf("%s %s: HTTP %d", e.Name, path, r.Status)
	}
	if r.Encoding != "gzip" {
		return r, fmt.Errorf("%s %s: answered without gzip", e.Name, path)
	}
	return r, nil
}

// waitUsage scrapes until usage series show: the first answer is fetched.
func (s *usageSide) waitUsage(ctx context.Context) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r, err := get(ctx, s.e, "/metrics", promAccept)
		if err != nil {
			return err
		}
		zr, err := gzip.NewReader(bytes.NewReader(r.Body))
		if err != nil {
			return err
		}
		text, err := io.ReadAll(zr)
		if err != nil {
			return err
		}
		if bytes.Contains(text, []byte("\nauthbroker_usage_limit_used_fraction{")) {
			s.usageCalls = s.f.broker.Requests("/v1/usage")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no usage series after 3 minutes", s.name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// load runs both exporters at once for o.load: per side a gzip scrape
// every second and a health API request every 5 s; every 10 s the same
// credential rotates on both brokers (a pass of n entry frames each).
// Each exporter refreshes usage on its own schedule. RSS is sampled every
// second.
func load(ctx context.Context, o options, us [2]*usageSide) error {
	harness.Logf("usage: both under load for %s", o.load)
	ctx, cancel := context.WithTimeout(ctx, o.load)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	every := func(d time.Duration, f func()) {
		wg.Go(func() {
			tk := time.NewTicker(d)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
					f()
				}
			}
		})
	}
	for _, s := range us {
		try := func(path, accept string) {
			_, err := get(context.WithoutCancel(ctx), s.e, path, accept)
			if path == "/metrics" {
				s.scrapes.Add(1)
			}
			if err != nil {
				s.failures.Add(1)
				s.firstFail.CompareAndSwap(nil, err.Error())
			}
		}
		every(time.Second, func() { try("/metrics", promAccept) })
		every(5*time.Second, func() { try("/api/v1/health", "application/json") })
	}
	rng, k := rand.New(rand.NewPCG(1, 2)), 0
	every(10*time.Second, func() {
		i := rng.IntN(o.n)
		k++
		for _, s := range us {
			s.f.rotate(i, k)
		}
	})
	var err error
	every(time.Second, func() {
		for _, s := range us {
			m, e := s.e.Mem()
			if e != nil && err == nil {
				err = e
			}
			if time.Since(start) >= o.load/2 {
				if s.rss == nil {
					s.logMark = len(s.e.Logs())
				}
				s.rss = append(s.rss, m.RSS)
			}
		}
	})
	wg.Wait()
	return err
}
