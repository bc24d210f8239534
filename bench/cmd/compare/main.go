// Command compare measures the exporter of two checkouts side by side in
// one run, against the in-process fake broker (store/brokertest) over
// loopback, and prints one table of head/base ratios: the performance rows
// of README.md.
//
//	go run ./bench/cmd/compare -base /path/to/base/checkout         # head = this checkout
//	go run ./bench/cmd/compare -base ../base -head . -out bench/results/compare.md
//
// It builds both binaries and drives them only through their flags and
// HTTP; CPU and memory come from /proc. Two phases, each with one fake
// broker per side holding the same -n OAuth credentials:
//
//   - stream (usage collector off): CPU per 10k-entry broker pass (a
//     content-free generation bump, after which the broker re-sends every
//     OAuth entry), then the CPU and wall time per stream delta: a feed of M
//     rotation frames in the broker's own bytes, written in one go.
//     Interleaved rounds, base and head alternating which goes first.
//   - usage (n usage reports of four limits): interleaved rounds of a gzip
//     /metrics scrape as Prometheus 3 asks for it, the status page and the
//     health API; then both exporters under the same load at once
//     (scrapes, a health poller, a credential change every 10 s, usage
//     refreshed by each exporter on its own schedule) while their RSS is
//     sampled.
//
// It only reports; no figure is asserted.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
)

type options struct {
	base, head   string
	n            int
	passes       int
	deltaRounds  int
	deltaCPU     time.Duration
	scrapeRounds int
	load         time.Duration
	out          string
	phase        string
}

func main() {
	var o options
	flag.StringVar(&o.base, "base", "", "checkout of the start (required), e.g. a worktree at 4471925")
	flag.StringVar(&o.head, "head", ".", "checkout to compare with it")
	flag.IntVar(&o.n, "n", 10000, "OAuth credentials (and usage reports) per fake broker")
	flag.IntVar(&o.passes, "passes", 15, "broker passes per side")
	flag.IntVar(&o.deltaRounds, "delta-rounds", 7, "delta feeds per side")
	flag.DurationVar(&o.deltaCPU, "delta-cpu", time.Second, "about how much exporter CPU one delta feed should take (sets M)")
	flag.IntVar(&o.scrapeRounds, "scrape-rounds", 21, "interleaved rounds of /metrics, / and /api/v1/health")
	flag.DurationVar(&o.load, "load", 3*time.Minute, "how long both exporters run under load for the RSS figures")
	flag.StringVar(&o.out, "out", "", "also write the report (Markdown) to this file")
	flag.StringVar(&o.phase, "phase", "all", "run only this phase: stream (rows a and b), usage (rows d and e), or all")
	flag.Parse()
	if o.base == "" {
		fmt.Fprintln(os.Stderr, "compare: -base is required (a checkout of the start)")
		os.Exit(2)
	}
	harness.Main("compare", 30*time.Minute+o.load, func(ctx context.Context) error { return run(ctx, o) })
}

// side is one checkout under test.
type side struct {
	name, root, rev, bin, dir string
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	upStart := harness.Uptime()
	dir, err := os.MkdirTemp("", "authbroker-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var sides [2]*side
	for i, name := range []string{"base", "head"} {
		root, err := filepath.Abs([]string{o.base, o.head}[i])
		if err != nil {
			return err
		}
		s := &side{name: name, root: root, rev: harness.Revision(root), dir: filepath.Join(dir, name)}
		s.bin = filepath.Join(dir, name+"-authbroker_exporter")
		if err := harness.Build(ctx, root, s.bin); err != nil {
			return err
		}
		sides[i] = s
	}
	var t table
	if o.phase != "usage" {
		if err := streamPhase(ctx, o, sides, &t); err != nil {
			return fmt.Errorf("stream phase: %w", err)
		}
	}
	if o.phase != "stream" {
		if err := usagePhase(ctx, o, sides, &t); err != nil {
			return fmt.Errorf("usage phase: %w", err)
		}
	}
	var w strings.Builder
	fmt.Fprintf(&w, "base %s (%s), head %s (%s); %d credentials; %s, %s\n\n", sides[0].rev, sides[0].root,
		sides[1].rev, sides[1].root, o.n, harness.Machine(), runtime.Version())
	fmt.Fprintf(&w, "uptime at start: %s\n\n", upStart)
	t.write(&w)
	fmt.Fprintf(&w, "\nuptime at end: %s\nruntime %s\n", harness.Uptime(), time.Since(began).Round(time.Second))
	io.WriteString(os.Stdout, w.String())
	if o.out != "" {
		return os.WriteFile(o.out, []byte(w.String()), 0o644)
	}
	return nil
}

// table is the report: one row per figure, base and head side by side.
type table struct{ rows []row }

type row struct {
	id, what, bound string
	base, head      float64
	unit            string  // "µs", "ms", "MB", "x" (a ratio)
	limit           float64 // head/base bound (0: none; for unit "x", a bound on head's value)
	note            string
}

func (t *table) add(r row) { t.rows = append(t.rows, r) }

func (t *table) write(w io.Writer) {
	fmt.Fprintln(w, "| row | what | bound | base | head | head / base | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range t.rows {
		ratio, verdict := "", ""
		if r.base > 0 && r.unit != "x" {
			q := r.head / r.base
			ratio = fmt.Sprintf("%.2f", q)
			if r.limit > 0 {
				verdict = map[bool]string{true: "within", false: "OVER"}[q <= r.limit]
			}
		} else if r.limit > 0 {
			verdict = map[bool]string{true: "within", false: "OVER"}[r.head <= r.limit]
		}
		if r.note != "" {
			verdict = strings.TrimSpace(verdict + " " + r.note)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.id, r.what, r.bound,
			format(r.base, r.unit), format(r.head, r.unit), ratio, verdict)
	}
}

func format(v float64, unit string) string {
	switch unit {
	case "x":
		return fmt.Sprintf("%.2f", v)
	case "µs", "ms":
		return fmt.Sprintf("%.3g %s", v, unit)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }
func ms(d time.Duration) float64 { return float64(d) / 1e6 }
