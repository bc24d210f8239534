package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
)

// Sampling the exporter during the run, and the report at its end.

func sampleLoop(ctx context.Context, e *exporter, every time.Duration, res *results, changes *atomic.Int64) []sample {
	start := time.Now()
	var out []sample
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
			out = append(out, sampleOnce(e, time.Since(start).Round(time.Second), res, changes, false))
		}
	}
}

var sampled = []string{"go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "go_goroutines",
	`authbroker_stream_events_total{kind="entry",result="applied"}`}

// sampleOnce reads the exporter's own go_* and process_* metrics (full),
// or only its RSS from /proc, without a scrape: the heap, goroutine and
// frame columns are then NaN.
func sampleOnce(e *exporter, at time.Duration, res *results, changes *atomic.Int64, full bool) sample {
	s := sample{t: at, changes: changes.Load()}
	s.okScrapes, s.failScrapes = res.counts()
	if !full {
		mem, _ := harness.ReadMem(e.cmd.Process.Pid)
		nan := math.NaN()
		s.heapAlloc, s.heapInuse, s.goroutines, s.applied, s.rss = nan, nan, nan, -1, float64(mem.RSS)
		return s
	}
	var resp *http.Response
	for range 50 { // the in-flight limit may turn the sampler away too
		r, err := http.Get("http://" + e.addr + "/metrics")
		if err == nil && r.StatusCode == http.StatusOK {
			resp = r
			break
		}
		if err == nil {
			r.Body.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp == nil {
		return s
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	vals := map[string]float64{}
	for sc.Scan() {
		line := sc.Text()
		for _, name := range sampled {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				vals[name], _ = strconv.ParseFloat(rest, 64)
			}
		}
	}
	s.heapAlloc, s.heapInuse, s.rss, s.goroutines = vals[sampled[0]], vals[sampled[1]], vals[sampled[2]], vals[sampled[3]]
	s.applied = int64(vals[sampled[4]])
	return s
}

func report(c config, samples []sample, res *results, hr *healthResults, usageCalls int, changes int64, e *exporter) error {
	const mb = 1 << 20
	fmt.Printf("\n%d credentials with usage, %d scrapers (interval %v), %g changes/s asked, health poller every %v, %v; load average %s\n\n",
		c.credentials, c.scrapers, c.interval, c.deltas, c.health, c.duration, harness.LoadAvg())
	fmt.Printf("%8s %10s %10s %9s %11s %9s %7s %14s\n", "t", "heap MiB", "inuse MiB", "RSS MiB", "goroutines", "scrapes", "failed", "entry frames")
	for _, s := range samples {
		applied := "–"
		if s.applied >= 0 {
			applied = strconv.FormatInt(s.applied, 10)
		}
		fmt.Printf("%8v %10.1f %10.1f %9.1f %11.0f %9d %7d %14s\n", s.t, s.heapAlloc/mb, s.heapInuse/mb, s.rss/mb, s.goroutines, s.okScrapes, s.failScrapes, applied)
	}
	res.mu.Lock()
	lat, near := slices.Clone(res.latencies), slices.Clone(res.nearUsage)
	ok, fail, failures, total, noUp, noUsage := res.ok, res.fail, res.failures, res.bytes, res.noUp, res.noUsage
	res.mu.Unlock()
	pct := func(p float64) time.Duration { return quantile(lat, p) }
	first, last := samples[0], samples[len(samples)-1]
	var maxHeap, maxG float64
	for _, s := range samples {
		if !math.IsNaN(s.heapInuse) { // the full samples: first and last
			maxHeap, maxG = max(maxHeap, s.heapInuse), max(maxG, s.goroutines)
		}
	}
	fmt.Printf("\nscrapes: %d ok, %d failed; latency p50 %v, p90 %v, p99 %v, max %v; %.1f MiB per scrape\n",
		ok, fail, pct(0.5), pct(0.9), pct(0.99), pct(1), float64(total)/float64(max(ok, 1))/mb)
	res.mu.Lock()
	withClient := slices.Clone(res.withClient)
	res.mu.Unlock()
	fmt.Printf("  (time to the last compressed byte; with this harness then decompressing and scanning each body on the same cores: p50 %v, p99 %v, max %v)\n",
		quantile(withClient, 0.5), quantile(withClient, 0.99), quantile(withClient, 1))
	if len(near) > 0 {
		q := func(p float64) time.Duration { return quantile(near, p) }
		fmt.Printf("of them %d ran within %v after a /v1/usage request (the exporter fetching and decoding usage): p50 %v, p90 %v, max %v\n",
			len(near), usageNear, q(0.5), q(0.9), q(1))
	}
	e.logMu.Lock()
	gcs := slices.Clone(e.gcs)
	e.logMu.Unlock()
	res.mu.Lock()
	during, clear := duringGC(res.spans, gcs)
	spans := slices.Clone(res.spans)
	res.mu.Unlock()
	if c.spans != "" {
		if err := writeSpans(c.spans, spans); err != nil {
			return err
		}
	}
	if len(during) > 0 {
		var took []time.Duration
		for _, g := range gcs {
			took = append(took, g.took)
		}
		fmt.Printf("of them %d overlapped one of the exporter's %d GC cycles (wall time p50 %v, max %v): p50 %v, max %v; the other %d: p50 %v, p99 %v, max %v\n",
			len(during), len(gcs), quantile(took, 0.5), quantile(took, 1), quantile(during, 0.5), quantile(during, 1), len(clear), quantile(clear, 0.5), quantile(clear, 0.99), quantile(clear, 1))
	}
	fmt.Printf("of the good scrapes, %d saw authbroker_up 0 and %d had no usage series (usage slower than the scrape's wait)\n", noUp, noUsage)
	fmt.Printf("deltas: %d broker changes, %d entry frames applied by the exporter (%.0f/s)\n",
		changes, last.applied-first.applied, float64(last.applied-first.applied)/c.duration.Seconds())
	fmt.Printf("heap in use (before and after the run): first %.1f MiB, last %.1f MiB, max %.1f MiB; goroutines: first %.0f, last %.0f, max %.0f\n",
		first.heapInuse/mb, last.heapInuse/mb, maxHeap/mb, first.goroutines, last.goroutines, maxG)
	// Memory: peak, steady state (second half), heap live after each GC.
	mem, _ := harness.ReadMem(e.cmd.Process.Pid)
	var steady []float64
	for _, s := range samples {
		if s.t >= c.duration/2 && s.rss > 0 {
			steady = append(steady, s.rss)
		}
	}
	slices.Sort(steady)
	e.logMu.Lock()
	var lives []float64
	for _, g := range e.gcs {
		lives = append(lives, g.live)
	}
	e.logMu.Unlock()
	if len(steady) > 0 {
		fmt.Printf("RSS: peak %s (VmHWM), steady state %s (median of %d samples in the second half), last %s\n",
			harness.MB(mem.HWM), harness.MB(int64(steady[len(steady)/2])), len(steady), harness.MB(mem.RSS))
	}
	if len(lives) > 0 {
		sorted := slices.Clone(lives)
		slices.Sort(sorted)
		fmt.Printf("heap live after GC (gctrace, %d collections in the run): median %.0f MB, max %.0f MB, last %.0f MB\n",
			len(lives), sorted[len(sorted)/2], sorted[len(sorted)-1], lives[len(lives)-1])
	}
	hr.mu.Lock()
	hlat := slices.Clone(hr.latencies)
	hok, hfail, hfailures := hr.ok, hr.fail, hr.failures
	hr.mu.Unlock()
	slices.Sort(hlat)
	if len(hlat) > 0 {
		fmt.Printf("health poller: %d ok, %d failed; /api/v1/health median %v, max %v\n", hok, hfail,
			hlat[len(hlat)/2].Round(time.Millisecond), hlat[len(hlat)-1].Round(time.Millisecond))
	}
	// The store refreshes a good answer in the background once it is two
	// thirds of the TTL old, so a reader never waits for a fetch.
	refresh := c.usageTTL * 2 / 3
	bound := int(c.duration/refresh) + 1
	fmt.Printf("upstream /v1/usage calls: %d (bound: one per %v, two thirds of the %v TTL = %d)\n", usageCalls, refresh, c.usageTTL, bound)

	var errs []string
	if fail > 0 {
		var kinds []string
		for k, n := range failures {
			kinds = append(kinds, fmt.Sprintf("%d× %s", n, k))
		}
		slices.Sort(kinds)
		errs = append(errs, fmt.Sprintf("%d scrapes failed: %s", fail, strings.Join(kinds, "; ")))
	}
	if ok == 0 {
		errs = append(errs, "no scrape succeeded")
	}
	if hfail > 0 {
		errs = append(errs, fmt.Sprintf("%d health requests failed: %v", hfail, hfailures))
	}
	if usageCalls > bound {
		errs = append(errs, fmt.Sprintf("%d upstream usage calls, more than one per two thirds of the TTL (%d)", usageCalls, bound))
	}
	if strings.Contains(e.logs(), "level=error") {
		errs = append(errs, "the exporter logged errors:\n"+e.logs())
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	fmt.Println("\nOK: no scrape or health request failed, usage calls within one per TTL")
	return nil
}

// duringGC splits the scrapes' latencies by whether the scrape overlapped
// a GC cycle of the exporter (from the cycle's end, as read from its
// gctrace line, back over its wall-clock length).
func duringGC(spans []span, gcs []gcLine) (during, clear []time.Duration) {
	for _, s := range spans {
		end := s.start.Add(s.took)
		hit := slices.ContainsFunc(gcs, func(g gcLine) bool { return g.at.Add(-g.took).Before(end) && g.at.After(s.start) })
		if hit {
			during = append(during, s.took)
		} else {
			clear = append(clear, s.took)
		}
	}
	return during, clear
}

// writeSpans writes one line per scrape: its start in seconds after the
// first scrape, its latency in milliseconds, and the seconds since the
// latest /v1/usage request when it started.
func writeSpans(path string, spans []span) error {
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "%.3f %.1f %.3f\n", s.start.Sub(spans[0].start).Seconds(), float64(s.took.Microseconds())/1000, s.sinceUsage.Seconds())
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// quantile is the p-quantile of ds (sorted in place), to the millisecond.
func quantile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(time.Millisecond)
}
