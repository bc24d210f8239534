// Command rules measures what the alerting and recording rules of alerts/
// cost in a real Prometheus at scale: n OAuth credentials with n matching
// usage reports (four limits each), an hour of history.
//
//	go run ./bench/rules                       # 10k credentials, ~25 minutes
//	go run ./bench/rules -n 1000 -run 3m       # a quick look
//
// It writes an hour of the exporter's series as OpenMetrics at 15 s steps
// (bench/rules/fleet.go: the exporter's metric names and label sets, every
// value a function of credential, limit and time), backfills it with
// `promtool tsdb create-blocks-from openmetrics`, backfills the hour of the
// forecast's 5-minute recording rule with `promtool tsdb create-blocks-from
// rules` (a Prometheus that has run for an hour has it), and then starts two
// Prometheus servers on loopback on copies of that TSDB: one with the rules
// of the base commit (-base, "before") and one with the working tree's
// ("after"). A loopback target continues the same series, so both scrape
// the fleet every 15 s and evaluate with a full hour behind them. Every 15 s
// it samples prometheus_rule_group_last_duration_seconds; at the end it
// reads per-rule evaluation times and active alerts from /api/v1/rules and
// /api/v1/alerts. Then "before" is stopped and "after" runs alone for
// -alone. It prints a Markdown report (and writes it to -out) and stops by
// itself; it only reports, nothing fails on a timing.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
)

type options struct {
	n         int
	base      string
	run       time.Duration
	alone     time.Duration
	lead      time.Duration
	work      string
	out       string
	keep      bool
	promtool  string
	prometheu string

	dashboards bool          // run the dashboards' queries instead of the rule comparison
	hours      int           // hours of history to backfill
	settle     time.Duration // -dashboards: how long the rules evaluate before the queries
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 10000, "OAuth credentials (each with one usage report of 4 limits)")
	flag.StringVar(&o.base, "base", "4471925", "commit whose alerts/ rules are \"before\" (the start of this round)")
	flag.DurationVar(&o.run, "run", 8*time.Minute, "how long both servers evaluate side by side (≥ 5m lets for: 5m alerts fire)")
	flag.DurationVar(&o.alone, "alone", 10*time.Minute, "how long \"after\" then runs alone (≥ 10m: the second half then holds an evaluation of the 5-minute group made alone)")
	flag.DurationVar(&o.lead, "lead", 0, "end of the backfilled hour, from now (0: estimated from -n)")
	flag.StringVar(&o.work, "work", "", "working directory (default: a new temporary one, removed at the end)")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory")
	flag.StringVar(&o.promtool, "promtool", "promtool", "promtool binary")
	flag.StringVar(&o.prometheu, "prometheus", "prometheus", "prometheus binary")
	flag.BoolVar(&o.dashboards, "dashboards", false, "instead of comparing rules: run every panel query of dashboards/ against one server with the working tree's rules, and fail when one takes 1 s or more or returns more than 50 series")
	flag.IntVar(&o.hours, "hours", 1, "hours of history to backfill (the dashboards' default range is 6)")
	flag.DurationVar(&o.settle, "settle", 6*time.Minute, "-dashboards: how long the rules evaluate before the queries run (≥ 5m: the 5-minute group evaluates)")
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench/rules: ")

	// The run bounds itself: everything it starts ends by this deadline.
	harness.Main("bench/rules", o.run+o.alone+45*time.Minute, func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o options) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "authbroker-bench-rules-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(work)
		}
	}
	log.Printf("working in %s", work)

	// Rule files: every alerts/*.yml with rule groups, before from git,
	// after from the working tree. The dashboards' check needs after only.
	sets := []*ruleSet{{name: "before"}, {name: "after"}}
	if o.dashboards {
		sets = sets[1:]
	}
	for _, s := range sets {
		if err := s.stage(ctx, root, work, o.base); err != nil {
			return err
		}
	}

	lead := o.lead
	if lead == 0 {
		// Measured on 2 busy cores (load 13–16): about 50 s per 1k
		// credentials to write and backfill the hour; the margin absorbs a
		// busier machine.
		lead = time.Duration(o.n/1000+1) * 70 * time.Second * time.Duration(o.hours)
		if o.dashboards {
			// Twice the series, but only the small families and the
			// breaching sets go back further than an hour.
			lead = time.Duration(o.n/1000+1) * 140 * time.Second
		}
	}
	end := time.Now().Add(lead).Truncate(15 * time.Second)
	fl := &fleet{n: o.n, job: "authbroker", instance: "bench:8766", end: end.Unix(), dashboards: o.dashboards}
	after := sets[len(sets)-1]
	fams := fl.families()
	// The after rules' groups with an interval of their own feed range
	// selectors only ([1h]); a server that has run for an hour has their
	// hour, so it is written with the rest.
	slow, err := slowRecords(after.files, fams)
	if err != nil {
		return err
	}
	if o.dashboards {
		recentOnly(fams, end.Unix())
		recentOnly(slow, end.Unix())
		slow = append(slow, fl.ruleHistory()...)
	}
	nseries := 0
	for _, f := range fams {
		nseries += len(f.series)
	}
	start := end.Add(-time.Duration(o.hours) * time.Hour)
	log.Printf("%d credentials, %d series; history %s … %s", o.n, nseries, start.Format(time.TimeOnly), end.Format(time.TimeOnly))

	// 1. The hour as OpenMetrics, backfilled. promtool parses its whole
	// input once per 2-hour block window it touches (and once more for the
	// time range), so the hour goes in as time slices, two converted at a
	// time: each slice is parsed twice instead of the whole file three
	// times when the hour crosses a window boundary.
	began := time.Now()
	var datas []string
	for _, s := range sets {
		s.data = filepath.Join(s.dir, "data")
		datas = append(datas, s.data)
	}
	if err := backfill(ctx, o, work, fams, slow, start.Unix(), end.Unix(), datas...); err != nil {
		return err
	}
	log.Printf("wrote and backfilled the history in %s", time.Since(began).Round(time.Second))
	preparation := time.Since(began)
	if wait := time.Until(end); wait > 0 {
		log.Printf("prepared in %s; waiting %s for the end of the backfilled hour", preparation.Round(time.Second), wait.Round(time.Second))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		log.Printf("prepared in %s, %s after the end of the backfilled hour (a gap of that length in the data)", preparation.Round(time.Second), (-wait).Round(time.Second))
	}

	// 3. The live target and both servers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_ = writeText(w, fams, time.Now().Unix())
	})}
	go srv.Serve(ln)
	defer srv.Close()
	target := ln.Addr().String()

	for _, s := range sets {
		if err := s.start(ctx, o.prometheu, target, fl); err != nil {
			return err
		}
		defer s.stop()
	}
	rep := &report{n: o.n, series: nseries, base: o.base, preparation: preparation, lag: time.Since(end)}
	if o.dashboards {
		return checkDashboards(ctx, o, after, rep)
	}
	rep.loadBefore = loadavg()
	log.Printf("both servers up; evaluating side by side for %s", o.run)
	if err := sample(ctx, sets, o.run, rep); err != nil {
		return err
	}
	for _, s := range sets {
		if err := s.snapshot(ctx); err != nil {
			log.Printf("%s: %v", s.name, err)
		}
	}
	rep.loadSide = loadavg()
	sets[0].stop()
	log.Printf("before stopped; after alone for %s", o.alone)
	if err := sample(ctx, sets[1:], o.alone, rep); err != nil {
		return err
	}
	rep.loadAlone = loadavg()
	rep.sets = sets

	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// stage writes the server's rule files into its directory: before's from
// git at base, after's from the working tree.
func (s *ruleSet) stage(ctx context.Context, root, work, base string) error {
	s.dir = filepath.Join(work, s.name)
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	rev := ""
	read := func(f string) ([]byte, error) { return os.ReadFile(filepath.Join(root, "alerts", f)) }
	if s.name == "before" {
		rev = base
		read = func(f string) ([]byte, error) {
			return exec.CommandContext(ctx, "git", "-C", root, "show", base+":alerts/"+f).Output()
		}
	}
	names, err := ruleFiles(ctx, root, rev)
	if err != nil {
		return fmt.Errorf("%s rules: %v", s.name, err)
	}
	for _, f := range names {
		b, err := read(f)
		if err != nil {
			return fmt.Errorf("%s rules %s: %v", s.name, f, err)
		}
		if !bytes.HasPrefix(b, []byte("groups:")) && !bytes.Contains(b, []byte("\ngroups:")) {
			continue // not a rule file (e.g. alertmanager.example.yml)
		}
		p := filepath.Join(s.dir, f)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		s.files = append(s.files, p)
	}
	if len(s.files) == 0 {
		return fmt.Errorf("%s rules: no alerts/*.yml with rule groups", s.name)
	}
	return nil
}

// backfill writes [start, end] in 15-minute slices and converts them with
// promtool, two at a time, into blocks under each of dsts.
func backfill(ctx context.Context, o options, work string, fams, slow []family, start, end int64, dsts ...string) error {
	const slice = 15 * 60
	type job struct {
		file, out string
		fams      []family
		from, to  int64
	}
	jobs := make(chan job)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			var first error
			for j := range jobs {
				if first != nil {
					continue
				}
				if err := writeSlice(j.file, j.fams, j.from, j.to); err != nil {
					first = err
					continue
				}
				if out, err := exec.CommandContext(ctx, o.promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", j.file, j.out).CombinedOutput(); err != nil {
					first = fmt.Errorf("promtool create-blocks-from openmetrics %s: %v\n%s", j.file, err, out)
				}
				_ = os.Remove(j.file)
			}
			errs <- first
		}()
	}
	// Both servers get the same blocks; they hold the after rules' slow
	// series too (no before rule reads them), in the same slices, so that
	// no two blocks overlap and neither server compacts during the run.
	var js []job
	for i, from := 0, start; from <= end; i, from = i+1, from+slice {
		to := min(from+slice-15, end)
		js = append(js, job{file: filepath.Join(work, fmt.Sprintf("slice-%d.om", i)), out: filepath.Join(work, fmt.Sprintf("blocks-%d", i)), fams: append(slices.Clone(fams), slow...), from: from, to: to})
	}
	for _, j := range js {
		jobs <- j
	}
	close(jobs)
	var werr error
	for range 2 {
		if err := <-errs; err != nil && werr == nil {
			werr = err
		}
	}
	if werr != nil {
		return werr
	}
	for _, dst := range dsts {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	}
	last := len(dsts) - 1
	for _, j := range js {
		entries, err := os.ReadDir(j.out)
		if err != nil {
			return err
		}
		for _, e := range entries {
			src := filepath.Join(j.out, e.Name())
			for _, dst := range dsts[:last] {
				if out, err := exec.CommandContext(ctx, "cp", "-a", src, filepath.Join(dst, e.Name())).CombinedOutput(); err != nil {
					return fmt.Errorf("copy block: %v\n%s", err, out)
				}
			}
			if err := os.Rename(src, filepath.Join(dsts[last], e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeSlice(path string, fams []family, from, to int64) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeOpenMetrics(fh, fams, from, to, 15); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// ruleFiles names the *.yml files directly in alerts/, of the working
// tree or (rev set) of a commit.
func ruleFiles(ctx context.Context, root, rev string) ([]string, error) {
	var names []string
	if rev != "" {
		out, err := exec.CommandContext(ctx, "git", "-C", root, "ls-tree", "--name-only", rev, "alerts/").Output()
		if err != nil {
			return nil, fmt.Errorf("git ls-tree %s alerts/: %v", rev, err)
		}
		for _, l := range strings.Fields(string(out)) {
			names = append(names, strings.TrimPrefix(l, "alerts/"))
		}
	} else {
		ents, err := os.ReadDir(filepath.Join(root, "alerts"))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	return slices.DeleteFunc(names, func(n string) bool { return !strings.HasSuffix(n, ".yml") }), nil
}

// repoRoot is the top of the git checkout this runs in (the before rules
// come from its history).
func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("run inside the repository's git checkout: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
}
