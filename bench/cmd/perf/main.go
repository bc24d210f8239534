// Command perf measures the exporter against its performance targets and
// prints one table (target, measured, pass/fail): the Go benchmarks of
// store/ and collector/ (median of -count runs), then the real binary
// against the in-process fake broker over loopback (scrape time, memory,
// stream propagation, idle CPU, scrapes while the broker stalls), then the
// health group: the status page and /api/v1/health against a gzip scrape,
// interleaved, at 1k, 10k and 30k credentials with usage.
//
//	go run ./bench/cmd/perf                 # everything, ~7.5 minutes
//	go run ./bench/cmd/perf -quick          # fewer runs, shorter idle window
//	go run ./bench/cmd/perf -only health    # the health group alone, ~2 minutes
//
// It only reports; nothing here fails a build.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

type options struct {
	n          int
	count      int
	idle       time.Duration
	samples    int
	skipBench  bool
	skipLive   bool
	resultsDir string
	markdown   string

	only         string
	healthSizes  []int
	healthRounds int
}

func main() {
	var o options
	quick := flag.Bool("quick", false, "fewer benchmark runs (3), a 20 s idle window, fewer propagation samples")
	flag.IntVar(&o.n, "n", 10000, "credentials for the live runs")
	flag.IntVar(&o.count, "count", 5, "runs of each Go benchmark (the table shows the median)")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "idle window for the CPU measurement")
	flag.IntVar(&o.samples, "samples", 100, "propagation samples at 100 and 1k credentials (a fifth of it at -n)")
	flag.BoolVar(&o.skipBench, "skip-bench", false, "skip the Go benchmarks")
	flag.BoolVar(&o.skipLive, "skip-live", false, "skip the live runs")
	flag.StringVar(&o.resultsDir, "results", "bench/results", "directory for raw benchmark output (benchstat input); empty = none")
	flag.StringVar(&o.markdown, "markdown", "", "also write the table as Markdown to this file")
	flag.StringVar(&o.only, "only", "", "run one row group only: health (status page and health API against a gzip scrape), or heap (the in-process live heap at -n; PERF_HEAP_PROFILE=file writes its profile), or scrape-ab (this checkout's /metrics against -against's at -n)")
	sizes := flag.String("health-sizes", "1000,10000,30000", "credentials (with as many usage reports) for the health group")
	flag.IntVar(&o.healthRounds, "health-rounds", 7, "interleaved rounds (scrape, page, API) per size in the health group, after one warm-up round")
	skipHealth := flag.Bool("skip-health", false, "skip the health group")
	against := flag.String("against", "", "with -only scrape-ab: the other exporter binary (e.g. built from the commit before a change)")
	abRounds := flag.Int("ab-rounds", 21, "with -only scrape-ab: interleaved rounds")
	flag.Parse()
	if *quick {
		o.count, o.idle, o.samples = 3, 20*time.Second, 40
	}
	var err error
	if o.healthSizes, err = parseSizes(*sizes); err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		os.Exit(2)
	}
	switch o.only {
	case "":
		if *skipHealth {
			o.healthSizes = nil
		}
	case "health":
		o.skipBench, o.skipLive = true, true
	case "heap":
		// The in-process live heap alone; PERF_HEAP_PROFILE=file also
		// writes its heap profile.
		live, err := exporterHeap(o.n)
		if err != nil {
			fmt.Fprintln(os.Stderr, "perf:", err)
			os.Exit(1)
		}
		fmt.Printf("exporter live heap, %d credentials with usage (after scrapes and a GC): %.1f MiB (%.1f KiB/credential)\n",
			o.n, float64(live)/(1<<20), float64(live)/float64(o.n)/1024)
		return
	case "scrape-ab":
		// This checkout's exporter against -against, scrape for scrape.
		if err := scrapeABBuild(*against, o.n, *abRounds); err != nil {
			fmt.Fprintln(os.Stderr, "perf:", err)
			os.Exit(1)
		}
		return
	default:
		fmt.Fprintf(os.Stderr, "perf: -only %q: want health, heap or scrape-ab\n", o.only)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		os.Exit(1)
	}
}

var (
	logf     = harness.Logf
	repoRoot = harness.RepoRoot
)

func run(o options) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	t := &table{}
	t.add("machine load (1-min load average) at start", "(report)", loadavg(), true)
	dir := o.resultsDir
	if dir != "" && !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	if !o.skipBench {
		if dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		r, err := runBenchmarks(root, dir, o.count, []benchRun{
			{pkg: "./store/", pattern: "^(BenchmarkStreamDelta|BenchmarkStreamDeltaSSE|BenchmarkStreamPass|BenchmarkSnapshotFrame|BenchmarkSnapshotSSE)$"},
			{pkg: "./collector/", pattern: "^BenchmarkCollect$/creds/usage=fresh", benchtime: "3x"},
			{pkg: "./collector/", pattern: "^BenchmarkScrape$/creds/^gzip$", benchtime: "3x"},
			{pkg: "./collector/", pattern: "^BenchmarkRuntimeCollectors$"},
		}, logf)
		if err != nil {
			return err
		}
		benchRows(t, r)
	}
	if !o.skipLive {
		if err := liveRows(t, root, o); err != nil {
			return err
		}
	}
	if len(o.healthSizes) > 0 {
		if err := healthGroup(t, root, o, dir); err != nil {
			return err
		}
	}
	t.add("machine load at end", "(report)", loadavg(), true)
	t.print(os.Stdout)
	if o.markdown != "" {
		f, err := os.Create(o.markdown)
		if err != nil {
			return err
		}
		defer f.Close()
		t.markdown(f)
	}
	return nil
}

func benchRows(t *table, r results) {
	const linearTol = 1.5 // per-unit cost may grow this much across sizes
	for _, via := range []struct{ bench, what string }{
		{"StreamDelta", "decode+apply"},
		{"StreamDeltaSSE", "SSE read+decode+apply"},
	} {
		per := map[string]float64{}
		for _, n := range []string{"10k", "100k"} {
			name := via.bench + "/creds=" + n
			ns, ok1 := r.median(name, "ns/op")
			allocs, ok2 := r.median(name, "allocs/op")
			if !ok1 || !ok2 {
				t.add("stream entry frame, "+via.what+", "+n+" creds", "< 20 µs, < 10 allocs", "not run", false)
				continue
			}
			per[n] = ns
			t.add("stream entry frame, "+via.what+", "+n+" creds", "< 20 µs, < 10 allocs",
				fmt.Sprintf("%s, %.0f allocs", dur(ns), allocs), ns < 20e3 && allocs < 10)
		}
		if per["10k"] > 0 && per["100k"] > 0 {
			ratio := per["100k"] / per["10k"]
			t.add("stream entry frame, "+via.what+": O(1)", "100k/10k cost ≤ 1.5", fmt.Sprintf("%.2f", ratio), ratio <= linearTol)
		}
	}

	for _, n := range []string{"1k", "10k"} {
		name := "StreamPass/creds=" + n
		perFrame, ok1 := r.median(name, "ns/frame")
		allocs, ok2 := r.median(name, "allocs/op")
		if !ok1 || !ok2 {
			continue
		}
		count := map[string]float64{"1k": 1e3, "10k": 1e4}[n]
		t.add("broker pass (all "+n+" entries re-sent at once), per frame, SSE", "< 20 µs, < 10 allocs",
			fmt.Sprintf("%s, %.0f allocs (whole pass %s)", dur(perFrame), allocs, dur(perFrame*count)), perFrame < 20e3 && allocs < 10)
	}

	var snap []float64
	for _, n := range []string{"1k", "10k", "100k"} {
		ns, ok := r.median("SnapshotFrame/creds="+n, "ns/op")
		if !ok {
			continue
		}
		perCred, _ := r.median("SnapshotFrame/creds="+n, "ns/cred")
		snap = append(snap, perCred)
		target, pass := "(linearity)", true
		if n == "10k" {
			target, pass = "< 60 ms", ns < 60e6
		}
		t.add("full snapshot frame decode+apply, "+n+" creds", target, fmt.Sprintf("%s (%s/cred)", dur(ns), dur(perCred)), pass)
	}
	if len(snap) == 3 {
		ratio := slices.Max(snap) / slices.Min(snap)
		t.add("full snapshot frame: linear 1k→100k", "per-cred spread ≤ 1.5", fmt.Sprintf("%.2f", ratio), ratio <= linearTol)
	}
	for _, n := range []string{"10k", "100k"} {
		if ns, ok := r.median("SnapshotSSE/creds="+n, "ns/op"); ok {
			target, pass := "(report)", true
			if n == "10k" {
				target, pass = "< 60 ms", ns < 60e6
			}
			t.add("full snapshot as first stream frame, SSE read+decode+apply, "+n+" creds", target, dur(ns), pass)
		}
	}

	var perCred []float64
	sizes := map[string]float64{"1k": 1e3, "10k": 1e4, "50k": 5e4}
	for _, n := range []string{"1k", "10k", "50k"} {
		ns, ok := r.median("Scrape/creds="+n+"/gzip", "ns/op")
		if !ok {
			continue
		}
		perCred = append(perCred, ns/sizes[n])
		series, _ := r.median("Collect/creds="+n+"/usage=fresh", "series/op")
		target, pass := "(linearity)", true
		if n == "10k" {
			target, pass = "< 600 ms", ns < 600e6
		}
		t.add(fmt.Sprintf("/metrics render, gzip, %s creds × 4 limits (%.0fk series)", n, series/1e3), target,
			fmt.Sprintf("%s (%s/cred)", dur(ns), dur(ns/sizes[n])), pass)
		if ours, ok := r.median("Collect/creds="+n+"/usage=fresh", "ns/op"); ok {
			t.add("  of which per-credential text (ours) / gzip, registry families, HTTP", "(report)",
				fmt.Sprintf("%s (%.0f%%) / %s", dur(ours), 100*ours/ns, dur(ns-ours)), true)
		}
	}
	if len(perCred) == 3 {
		ratio := slices.Max(perCred) / slices.Min(perCred)
		t.add("/metrics render: linear 1k→10k→50k", "per-cred spread ≤ 1.5", fmt.Sprintf("%.2f", ratio), ratio <= linearTol)
	}
	if ns, ok := r.median("RuntimeCollectors", "ns/op"); ok {
		t.add("Go + process collectors per scrape", "cheap (< 5 ms)", dur(ns), ns < 5e6)
	}
}

// healthGroup builds the exporter and runs the health group.
func healthGroup(t *table, root string, o options, results string) error {
	return withExporter(root, "authbroker-perf-health-", func(bin, dir string) error {
		return healthRows(t, bin, dir, o, results)
	})
}

// withExporter builds the exporter of root into a scratch directory and
// runs fn with the binary and the directory, which it then removes.
func withExporter(root, prefix string, fn func(bin, dir string) error) error {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := harness.BuildExporter(root, dir)
	if err != nil {
		return err
	}
	return fn(bin, dir)
}

func liveRows(t *table, root string, o options) error {
	dir, err := os.MkdirTemp("", "authbroker-perf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "authbroker_exporter")
	logf("go build -o %s .", bin)
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir, build.Stderr = root, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}

	// Baseline: no credentials, no usage.
	logf("baseline exporter, 0 credentials")
	f0 := newFixture(0, false)
	e0, err := startExporter(bin, dir, f0)
	if err != nil {
		f0.broker.Close()
		return err
	}
	for range 3 {
		if _, _, _, err := e0.scrape(false); err != nil {
			return err
		}
	}
	base, err := readProc(e0.cmd.Process.Pid)
	e0.stop()
	f0.broker.Close()
	if err != nil {
		return err
	}

	for _, n := range []int{100, 1000} {
		if n >= o.n {
			continue
		}
		if err := propagationRun(t, bin, dir, n, o.samples); err != nil {
			return err
		}
	}

	logf("fixture: %d credentials with usage", o.n)
	f := newFixture(o.n, true)
	defer f.broker.Close()
	e, err := startExporter(bin, dir, f)
	if err != nil {
		return err
	}
	defer e.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err = e.waitUsage(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("usage never showed: %w", err)
	}

	logf("scrapes")
	var ds []time.Duration
	size := 0
	for range 10 {
		d, n, _, err := e.scrape(false)
		if err != nil {
			return err
		}
		ds = append(ds, d)
		size = n
	}
	t.add(fmt.Sprintf("live /metrics scrape over loopback, %s creds (%.1f MB gzip)", kcount(o.n), float64(size)/1e6),
		"< 600 ms", fmt.Sprintf("median %s, max %s", durD(pct(ds, 50)), durD(slices.Max(ds))), pct(ds, 50) < 600*time.Millisecond)

	pid := e.cmd.Process.Pid
	mem, err := readProc(pid)
	if err != nil {
		return err
	}
	_, _, text, err := e.scrape(true)
	if err != nil {
		return err
	}
	heap, _ := sampleValue(text, "go_memstats_heap_inuse_bytes ")
	t.add(fmt.Sprintf("RSS, %s creds with usage (after scrapes / peak)", kcount(o.n)), "< 150 MB",
		fmt.Sprintf("%s / %s (heap in use %s)", mb(mem.rss), mb(mem.hwm), mb(int64(heap))), mem.hwm < 150e6)
	t.add("RSS per credential over a 0-credential exporter (GC headroom included)", "(report)",
		fmt.Sprintf("%.1f KiB/cred (baseline RSS %s)", float64(mem.rss-base.rss)/float64(o.n)/1024, mb(base.rss)), true)

	logf("in-process live heap at %d credentials", o.n)
	if live, err := exporterHeap(o.n); err != nil {
		return err
	} else {
		t.add(fmt.Sprintf("exporter live heap, %s creds with usage (in-process, after scrapes and a GC)", kcount(o.n)), "(report)",
			fmt.Sprintf("%s (%.1f KiB/cred)", mb(int64(live)), float64(live)/float64(o.n)/1024), true)
	}

	logf("propagation at %d credentials", o.n)
	if err := propagation(t, e, f, o.n, max(5, o.samples/10)); err != nil {
		return err
	}
	if err := passApplied(t, e, f, o.n, max(5, o.samples/10), 5*time.Second); err != nil {
		return err
	}
	if err := calibrate(t, o.n, max(5, o.samples/10)); err != nil {
		return err
	}

	logf("idle for %s (keepalives only, no scrapes)", o.idle)
	time.Sleep(2 * time.Second)
	before, err := readProc(pid)
	if err != nil {
		return err
	}
	time.Sleep(o.idle)
	after, err := readProc(pid)
	if err != nil {
		return err
	}
	cpu := after.cpu - before.cpu
	share := 100 * cpu.Seconds() / o.idle.Seconds()
	used := durD(cpu)
	if cpu == 0 {
		used = "< 10 ms" // one clock tick: /proc's resolution
	}
	t.add(fmt.Sprintf("idle CPU, %s creds, keepalives + healthz probes only", kcount(o.n)), "< 1 % of a core",
		fmt.Sprintf("%.3f %% (%s CPU in %s)", max(share, 100*0.01/o.idle.Seconds()), used, o.idle), share < 1)

	// The idle window outlasted the 15 s usage TTL: the next scrape starts
	// a usage fetch, which now stalls at the broker.
	logf("scrapes while the broker stalls")
	if o.idle < 16*time.Second {
		time.Sleep(16*time.Second - o.idle)
	}
	for _, st := range []struct {
		path, what string
	}{{"/v1/usage", "/v1/usage stalled"}, {"", "every new broker request stalled"}} {
		f.broker.AddFault(brokertest.Fault{Path: st.path, Stall: true})
		var sd []time.Duration
		for range 3 {
			d, _, _, err := e.scrape(false)
			if err != nil {
				f.broker.ClearFaults()
				return err
			}
			sd = append(sd, d)
		}
		f.broker.ClearFaults()
		t.add("scrape with "+st.what, "≤ usage timeout (2 s) + render",
			fmt.Sprintf("%s, %s, %s", durD(sd[0]), durD(sd[1]), durD(sd[2])), slices.Max(sd) < 2*time.Second+2*pct(ds, 50))
		time.Sleep(16 * time.Second) // let the usage cache expire again
	}
	return nil
}

// propagationRun starts a fixture and exporter of n credentials just for
// the propagation measurement.
func propagationRun(t *table, bin, dir string, n, samples int) error {
	logf("propagation at %d credentials", n)
	f := newFixture(n, true)
	defer f.broker.Close()
	e, err := startExporter(bin, dir, f)
	if err != nil {
		return err
	}
	defer e.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.waitUsage(ctx); err != nil {
		return err
	}
	if err := propagation(t, e, f, n, samples); err != nil {
		return err
	}
	if err := passApplied(t, e, f, n, min(samples, 20), time.Second); err != nil {
		return err
	}
	return calibrate(t, n, min(samples, 20))
}

// propagation rotates one credential at the broker (new access token and
// expiry) and polls /metrics (plain text) back to back until the new
// expiry shows. It
// also reads the exporter's last-sync time (receipt of the frame) from the
// scrape that showed it, to split broker→exporter delivery from the wait
// for a scrape.
func propagation(t *table, e *exporter, f *fixture, n, samples int) error {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	base := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	var total, deliver, scrapes []time.Duration
	const entriesApplied = `authbroker_stream_events_total{kind="entry",result="applied"} `
	_, text, err := e.poll()
	if err != nil {
		return err
	}
	framesBefore, _ := sampleValue(text, entriesApplied)
	var framesAfter float64
	for k := range samples {
		i := rng.IntN(len(f.ids))
		c := f.oauth[i]
		c.Expires = base.Add(time.Duration(k) * time.Second)
		c.Access = fmt.Sprintf("rotated-%d-%d", i, k)
		f.oauth[i] = c
		prefix := fmt.Sprintf(`authbroker_credential_expiry_timestamp_seconds{id="%d",provider="%s"} `, f.ids[i], providers[i%len(providers)])
		want := float64(c.Expires.Unix())
		t0 := time.Now()
		f.broker.UpdateOAuth(f.ids[i], c)
		for {
			d, text, err := e.poll()
			if err != nil {
				return err
			}
			if v, ok := sampleValue(text, prefix); ok && v == want {
				total = append(total, time.Since(t0))
				framesAfter, _ = sampleValue(text, entriesApplied)
				scrapes = append(scrapes, d)
				if recv, ok := sampleValue(text, "authbroker_snapshot_last_sync_timestamp_seconds "); ok {
					deliver = append(deliver, time.Unix(0, int64(recv*1e9)).Sub(t0))
				}
				break
			}
			if time.Since(t0) > 30*time.Second {
				return fmt.Errorf("change to credential %d not visible after 30 s", f.ids[i])
			}
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
	}
	t.add(fmt.Sprintf("propagation broker change → /metrics, stream, %s creds (%d samples)", kcount(n), samples), "p99 < 100 ms",
		fmt.Sprintf("p50 %s, p99 %s", durD(pct(total, 50)), durD(pct(total, 99))), pct(total, 99) < 100*time.Millisecond)
	t.add("  entry frames applied per broker change (the broker re-sends every OAuth entry)", "(report)",
		fmt.Sprintf("%.0f", (framesAfter-framesBefore)/float64(samples)), true)
	if len(deliver) > 0 {
		t.add("  of which broker change → frame received (fake broker rebuild + loopback)", "(report)",
			fmt.Sprintf("p50 %s, p99 %s", durD(pct(deliver, 50)), durD(pct(deliver, 99))), true)
	}
	t.add("  plain-text scrape duration while polling", "(report)",
		fmt.Sprintf("p50 %s, p99 %s", durD(pct(scrapes, 50)), durD(pct(scrapes, 99))), true)
	return nil
}

// passApplied rotates one credential, waits without scraping, then reads
// from one scrape the exporter's receipt time of the last frame applied:
// how long the whole pass the change caused took to reach the mirror, with
// no scrape competing for the CPU.
func passApplied(t *table, e *exporter, f *fixture, n, samples int, wait time.Duration) error {
	rng := rand.New(rand.NewPCG(uint64(n), 11))
	base := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	var ds []time.Duration
	for k := range samples {
		i := rng.IntN(len(f.ids))
		c := f.oauth[i]
		c.Expires = base.Add(time.Duration(k) * time.Second)
		f.oauth[i] = c
		t0 := time.Now()
		f.broker.UpdateOAuth(f.ids[i], c)
		time.Sleep(wait)
		_, text, err := e.poll()
		if err != nil {
			return err
		}
		prefix := fmt.Sprintf(`authbroker_credential_expiry_timestamp_seconds{id="%d",provider="%s"} `, f.ids[i], providers[i%len(providers)])
		if v, ok := sampleValue(text, prefix); !ok || v != float64(c.Expires.Unix()) {
			return fmt.Errorf("change to credential %d not applied within %s", f.ids[i], wait)
		}
		recv, ok := sampleValue(text, "authbroker_snapshot_last_sync_timestamp_seconds ")
		if !ok {
			return errors.New("no last-sync timestamp")
		}
		ds = append(ds, time.Unix(0, int64(recv*1e9)).Sub(t0))
	}
	t.add(fmt.Sprintf("  change → whole pass applied by the exporter, no scrapes, %s creds", kcount(n)), "(report)",
		fmt.Sprintf("p50 %s, p99 %s", durD(pct(ds, 50)), durD(pct(ds, 99))), true)
	return nil
}

// calibrate measures the fake broker's own change → frame time at n
// credentials, without an exporter attached.
func calibrate(t *table, n, samples int) error {
	f := newFixture(n, false)
	defer f.broker.Close()
	ds, err := brokerDelivery(f, samples)
	if err != nil {
		return err
	}
	t.add(fmt.Sprintf("  fake broker alone: change → entry frame on the wire, %s creds", kcount(n)), "(report)",
		fmt.Sprintf("p50 %s, p99 %s", durD(pct(ds, 50)), durD(pct(ds, 99))), true)
	return nil
}

// pct is the nearest-rank percentile.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func kcount(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func dur(ns float64) string { return durD(time.Duration(ns)) }

func durD(d time.Duration) string {
	switch {
	case d < 0:
		return "−" + durD(-d)
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	case d >= time.Microsecond:
		return fmt.Sprintf("%.2f µs", float64(d)/1e3)
	}
	return fmt.Sprintf("%d ns", d.Nanoseconds())
}
