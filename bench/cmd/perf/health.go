package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
)

// The health group (issues 11 and 13): at each size, one exporter against
// a fake broker with n OAuth credentials and n matching usage reports, and
// interleaved requests, each with Accept-Encoding: gzip: a /metrics scrape,
// the status page "/" (default view) and /api/v1/health (default summary
// view), round after round, so that the three see the same machine load.

// healthResult is one size's measurements.
type healthResult struct {
	n                      int
	scrape, page, api      time.Duration // medians
	scrapeCPU, pageCPU     time.Duration // the exporter's CPU per request, medians
	apiCPU                 time.Duration
	pageRatio, apiRatio    float64 // medians of the per-round ratios
	scrapeGz               int
	pageRaw, pageGz        int
	apiRaw, apiGz          int
	pageGzipped, apiGzippd bool
	reports, unmatched     int
}

// healthTarget is the size the ratio targets apply to.
const healthTarget = 10000

func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-health-sizes: %q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// healthRows runs the health group and adds its rows to t; it also writes
// the group's own table, with the machine and its load, to
// <results>/health.md when results is set.
func healthRows(t *table, bin, dir string, o options, results string) error {
	loadBefore := loadavgFull()
	var rs []healthResult
	for _, n := range o.healthSizes {
		r, err := healthRun(bin, dir, n, o.healthRounds)
		if err != nil {
			return fmt.Errorf("health at %d credentials: %w", n, err)
		}
		rs = append(rs, r)
		addHealthRows(t, r)
	}
	addLinearity(t, rs)
	loadAfter := loadavgFull()
	var md bytes.Buffer
	writeHealthMarkdown(&md, rs, o.healthRounds, loadBefore, loadAfter)
	fmt.Println()
	os.Stdout.Write(md.Bytes())
	fmt.Println()
	if results == "" {
		return nil
	}
	if err := os.MkdirAll(results, 0o755); err != nil {
		return err
	}
	path := filepath.Join(results, "health.md")
	logf("writing %s", path)
	return os.WriteFile(path, md.Bytes(), 0o644)
}

func healthRun(bin, dir string, n, rounds int) (healthResult, error) {
	r := healthResult{n: n}
	logf("health: fixture of %d credentials with %d usage reports", n, n)
	f := newFixture(n, true)
	defer f.broker.Close()
	e, err := startExporter(bin, dir, f)
	if err != nil {
		return r, err
	}
	defer e.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	err = e.waitUsage(ctx)
	cancel()
	if err != nil {
		return r, fmt.Errorf("usage never showed: %w", err)
	}

	// Warm-up round, which also gives the sizes and checks that the health
	// report holds every credential and its usage.
	logf("health: warm-up round at %d credentials", n)
	_, sgz, _, err := e.scrape(false)
	if err != nil {
		return r, err
	}
	r.scrapeGz = sgz
	pg, err := e.health("/", "text/html")
	if err != nil {
		return r, err
	}
	r.pageRaw, r.pageGz, r.pageGzipped = len(pg.body), pg.wire, pg.gzipped
	ap, err := e.health("/api/v1/health", "application/json")
	if err != nil {
		return r, err
	}
	r.apiRaw, r.apiGz, r.apiGzippd = len(ap.body), ap.wire, ap.gzipped
	var sum struct {
		Summary struct {
			Credentials int `json:"credentials"`
		} `json:"summary"`
		Usage struct {
			Available bool `json:"available"`
			Reports   int  `json:"reports"`
			Unmatched int  `json:"unmatched"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(ap.body, &sum); err != nil {
		return r, fmt.Errorf("/api/v1/health: %w", err)
	}
	if sum.Summary.Credentials != n || !sum.Usage.Available || sum.Usage.Reports != n {
		return r, fmt.Errorf("/api/v1/health reports %d credentials, usage available %v with %d reports; want %d and %d",
			sum.Summary.Credentials, sum.Usage.Available, sum.Usage.Reports, n, n)
	}
	r.reports, r.unmatched = sum.Usage.Reports, sum.Usage.Unmatched

	logf("health: %d interleaved rounds (scrape, page, api) at %d credentials", rounds, n)
	var ss, ps, as, sc, pc, ac []time.Duration
	var pr, ar []float64
	pid := e.cmd.Process.Pid
	for range rounds {
		var ds time.Duration
		cs, err := cpuOf(pid, func() (err error) { ds, _, _, err = e.scrape(false); return err })
		if err != nil {
			return r, err
		}
		var p, a healthAnswer
		cp, err := cpuOf(pid, func() (err error) { p, err = e.health("/", "text/html"); return err })
		if err != nil {
			return r, err
		}
		ca, err := cpuOf(pid, func() (err error) { a, err = e.health("/api/v1/health", "application/json"); return err })
		if err != nil {
			return r, err
		}
		ss, ps, as = append(ss, ds), append(ps, p.d), append(as, a.d)
		sc, pc, ac = append(sc, cs), append(pc, cp), append(ac, ca)
		pr, ar = append(pr, p.d.Seconds()/ds.Seconds()), append(ar, a.d.Seconds()/ds.Seconds())
	}
	r.scrape, r.page, r.api = pct(ss, 50), pct(ps, 50), pct(as, 50)
	r.scrapeCPU, r.pageCPU, r.apiCPU = pct(sc, 50), pct(pc, 50), pct(ac, 50)
	r.pageRatio, r.apiRatio = medianF(pr), medianF(ar)
	return r, nil
}

// cpuOf runs fn and returns the exporter's on-CPU time meanwhile (the sum
// of its threads' schedstat run time), which a loaded machine inflates far
// less than the wall time. It includes whatever else the exporter did
// meanwhile, such as a background usage refresh.
func cpuOf(pid int, fn func() error) (time.Duration, error) {
	before, err := harness.ReadCPU(pid)
	if err != nil {
		return 0, err
	}
	if err := fn(); err != nil {
		return 0, err
	}
	after, err := harness.ReadCPU(pid)
	if err != nil {
		return 0, err
	}
	return after.Sub(before).Sched, nil
}

// healthAnswer is one page or API request: time to the last byte, bytes on
// the wire, and the decoded body.
type healthAnswer struct {
	d       time.Duration
	wire    int
	body    []byte
	gzipped bool
}

func (e *exporter) health(path, accept string) (healthAnswer, error) {
	d, wire, body, enc, err := e.request(path, accept, true)
	if err != nil {
		return healthAnswer{}, err
	}
	a := healthAnswer{d: d, wire: wire, body: body, gzipped: enc == "gzip"}
	if a.gzipped {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return a, fmt.Errorf("%s: %w", path, err)
		}
		if a.body, err = io.ReadAll(zr); err != nil {
			return a, fmt.Errorf("%s: %w", path, err)
		}
	}
	return a, nil
}

func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = time.Duration(x * 1e9)
	}
	return pct(ds, 50).Seconds()
}

func addHealthRows(t *table, r healthResult) {
	k := kcount(r.n)
	goal, pass := "(report)", true
	if r.n == healthTarget {
		goal = "≤ 0.5 of the scrape"
	}
	t.add(fmt.Sprintf("health: gzip /metrics scrape, %s creds with usage (%.1f MB gzip), interleaved", k, float64(r.scrapeGz)/1e6),
		"(report)", fmt.Sprintf("median %s (CPU %s)", durD(r.scrape), durD(r.scrapeCPU)), true)
	if r.n == healthTarget {
		pass = r.pageRatio <= 0.5
	}
	t.add(fmt.Sprintf("health: status page /, %s creds (%s, %s gzip)", k, mb(int64(r.pageRaw)), kb(r.pageGz)), goal,
		fmt.Sprintf("median %s, page/scrape %.2f (%s/cred; CPU %s)", durD(r.page), r.pageRatio, durD(r.page/time.Duration(r.n)), durD(r.pageCPU)), pass)
	if r.n == healthTarget {
		pass = r.apiRatio <= 0.5
	}
	t.add(fmt.Sprintf("health: /api/v1/health summary, %s creds (%s, %s gzip)", k, kb(r.apiRaw), kb(r.apiGz)), goal,
		fmt.Sprintf("median %s, api/scrape %.2f (%s/cred; CPU %s)", durD(r.api), r.apiRatio, durD(r.api/time.Duration(r.n)), durD(r.apiCPU)), pass)
	if r.n == healthTarget {
		t.add("health: default page at 10k creds under 1 MB uncompressed", "< 1 MB", mb(int64(r.pageRaw)), r.pageRaw < 1e6)
	}
}

// healthMeasures are the medians the linearity check looks at.
var healthMeasures = []struct {
	what string
	get  func(healthResult) time.Duration
}{
	{"/metrics wall", func(r healthResult) time.Duration { return r.scrape }},
	{"`/` wall", func(r healthResult) time.Duration { return r.page }},
	{"`/api/v1/health` wall", func(r healthResult) time.Duration { return r.api }},
	{"/metrics CPU", func(r healthResult) time.Duration { return r.scrapeCPU }},
	{"`/` CPU", func(r healthResult) time.Duration { return r.pageCPU }},
	{"`/api/v1/health` CPU", func(r healthResult) time.Duration { return r.apiCPU }},
}

// marginal is one measure's marginal cost per credential (ns) between the
// smallest and the middle size, and between the middle and the largest: a
// linear cost keeps the two close (a fixed cost per request only inflates
// the per-credential time at the small size, not the slopes).
type marginal struct {
	what   string
	s1, s2 float64
}

// linearity is nil with fewer than three sizes; span names the two steps.
func linearity(rs []healthResult) (span string, ms []marginal) {
	if len(rs) < 3 {
		return "", nil
	}
	a, b, c := rs[0], rs[len(rs)/2], rs[len(rs)-1]
	span = fmt.Sprintf("%s→%s / %s→%s", kcount(a.n), kcount(b.n), kcount(b.n), kcount(c.n))
	for _, m := range healthMeasures {
		ms = append(ms, marginal{m.what, slope(m.get(a), m.get(b), a.n, b.n), slope(m.get(b), m.get(c), b.n, c.n)})
	}
	return span, ms
}

func addLinearity(t *table, rs []healthResult) {
	span, ms := linearity(rs)
	for _, m := range ms {
		t.add(fmt.Sprintf("health: %s linear, marginal cost per cred %s", strings.ReplaceAll(m.what, "`", ""), span),
			"(report)", fmt.Sprintf("%s / %s (ratio %.2f)", dur(m.s1), dur(m.s2), m.s2/m.s1), true)
	}
}

func slope(d1, d2 time.Duration, n1, n2 int) float64 {
	return float64(d2-d1) / float64(n2-n1)
}

func kb(b int) string {
	if b >= 1e6 {
		return mb(int64(b))
	}
	return fmt.Sprintf("%.1f kB", float64(b)/1e3)
}

// writeHealthMarkdown is the group's own table: the three requests side by
// side per size, the machine and its load.
func writeHealthMarkdown(w io.Writer, rs []healthResult, rounds int, loadBefore, loadAfter string) {
	fmt.Fprintf(w, "## Health page and API against a gzip scrape (`go run ./bench/cmd/perf -only health`)\n\n")
	fmt.Fprintf(w, "Run %s. Machine: `nproc` = %d, `%s`. `/proc/loadavg` before: `%s`, after: `%s`.\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), nprocs(), cpuModel(), loadBefore, loadAfter)
	fmt.Fprintf(w, "The machine is shared with other jobs: absolute times depend on its load; the ratios, measured\n")
	fmt.Fprintf(w, "side by side in one run, are what to compare.\n\n")
	fmt.Fprintf(w, "Medians of %d interleaved rounds (scrape, page, API) after one warm-up round, every request with\n", rounds)
	fmt.Fprintf(w, "`Accept-Encoding: gzip`; n OAuth credentials with n matching usage reports of four limits each.\n")
	fmt.Fprintf(w, "Ratios are medians of the per-round ratios. Per-credential time is the median divided by n.\n\n")
	fmt.Fprintln(w, "| credentials | /metrics (gzip) | `/` | `/api/v1/health` | page / scrape | API / scrape | page size (raw / gzip) | API size (raw / gzip) | page per cred | API per cred |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f | %.2f | %s / %s%s | %s / %s%s | %s | %s |\n",
			kcount(r.n), durD(r.scrape), durD(r.page), durD(r.api), r.pageRatio, r.apiRatio,
			kb(r.pageRaw), kb(r.pageGz), notGzipped(r.pageGzipped), kb(r.apiRaw), kb(r.apiGz), notGzipped(r.apiGzippd),
			durD(r.page/time.Duration(r.n)), durD(r.api/time.Duration(r.n)))
	}
	fmt.Fprintln(w, "\nThe exporter's own CPU time per request (sum of its threads' schedstat run time over the request,")
	fmt.Fprintln(w, "median; less inflated by the machine's load than the wall time; it includes any background work meanwhile):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| credentials | /metrics (gzip) | `/` | `/api/v1/health` | page / scrape | API / scrape | scrape per cred | page per cred | API per cred |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		n := time.Duration(r.n)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f | %.2f | %s | %s | %s |\n", kcount(r.n), durD(r.scrapeCPU), durD(r.pageCPU), durD(r.apiCPU),
			r.pageCPU.Seconds()/r.scrapeCPU.Seconds(), r.apiCPU.Seconds()/r.scrapeCPU.Seconds(),
			durD(r.scrapeCPU/n), durD(r.pageCPU/n), durD(r.apiCPU/n))
	}
	if span, ms := linearity(rs); ms != nil {
		fmt.Fprintf(w, "\nLinearity: marginal cost per credential between the sizes (a fixed cost per request inflates the\n")
		fmt.Fprintf(w, "per-credential time at the smallest size, not these slopes); a ratio near 1 is linear.\n\n")
		s1, s2, _ := strings.Cut(span, " / ")
		fmt.Fprintf(w, "| | %s | %s | ratio |\n|---|---|---|---|\n", s1, s2)
		for _, m := range ms {
			fmt.Fprintf(w, "| %s | %s | %s | %.2f |\n", m.what, dur(m.s1), dur(m.s2), m.s2/m.s1)
		}
	}
	for _, r := range rs {
		if r.unmatched > 0 {
			fmt.Fprintf(w, "\nAt %s credentials the report counts %d of %d usage reports unmatched.\n", kcount(r.n), r.unmatched, r.reports)
		}
	}
}

func notGzipped(gz bool) string {
	if gz {
		return ""
	}
	return " (not gzipped)"
}

func loadavgFull() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(raw))
}

// nprocs is what `nproc` prints: the CPUs this process may run on.
func nprocs() int { return runtime.NumCPU() }

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "model name: ?"
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return "model name: " + strings.TrimSpace(v)
		}
	}
	return "model name: ?"
}
