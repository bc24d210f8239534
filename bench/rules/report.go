package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

type report struct {
	n, series   int
	base        string
	preparation time.Duration
	lag         time.Duration // from the end of the backfilled hour to the servers' start
	loadBefore  string
	loadSide    string
	loadAlone   string
	sets        []*ruleSet
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v >= 1:
		return fmt.Sprintf("%.2f s", v)
	}
	return fmt.Sprintf("%.1f ms", v*1000)
}

func pct(v float64) string { return fmt.Sprintf("%.1f %%", v*100) }

func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	cores := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cores = strings.Count(string(b), "processor\t:")
	}
	ver := "?"
	if out, err := exec.Command("prometheus", "--version").Output(); err == nil {
		ver, _, _ = strings.Cut(string(out), "\n")
	}
	return fmt.Sprintf("%d × %s; %s", cores, model, ver)
}

// markdown: per group, per rule, alerts; before and after side by side.
func (r *report) markdown() string {
	var b strings.Builder
	before, after := r.sets[0], r.sets[1]
	fmt.Fprintf(&b, "# Rule evaluation cost at %d credentials (bench/rules)\n\n", r.n)
	fmt.Fprintf(&b, "`go run ./bench/rules -n %d`, %s UTC. %d series (%d OAuth credentials, %d usage limits), an hour of history at 15 s steps backfilled, then live scrapes every 15 s; rules evaluated every 15 s. Before = `alerts/` at %s, after = the working tree.\n\n",
		r.n, time.Now().UTC().Format("2006-01-02 15:04"), r.series, r.n, 4*r.n, r.base)
	fmt.Fprintf(&b, "- machine: %s\n", machine())
	fmt.Fprintf(&b, "- `/proc/loadavg`: at the start %s; end of side by side %s; end of after alone %s\n", r.loadBefore, r.loadSide, r.loadAlone)
	fmt.Fprintf(&b, "- preparation (write, backfill, rule backfill) %s; servers started %s after the end of the backfilled hour\n\n", r.preparation.Round(time.Second), r.lag.Round(time.Second))

	b.WriteString("## Rule groups: `prometheus_rule_group_last_duration_seconds`\n\n")
	b.WriteString("Median (max) over the second half of each phase. Share = duration / group interval; the total is the share of one core the rules take.\n\n")
	b.WriteString("| group | interval | before, side by side | after, side by side | after alone | after alone, share |\n|---|---|---|---|---|---|\n")
	var groups []string
	for _, s := range r.sets {
		for _, ph := range s.durations {
			for g := range ph {
				if !slices.Contains(groups, g) {
					groups = append(groups, g)
				}
			}
		}
	}
	slices.Sort(groups)
	cell := func(s *ruleSet, phase, g string) string {
		v := s.durations[phase][g]
		if len(v) == 0 {
			return "–"
		}
		return fmt.Sprintf("%s (%s)", ms(median(v)), ms(slices.Max(v)))
	}
	share := map[string]float64{}
	for _, g := range groups {
		iv := after.intervals[g]
		if iv == 0 {
			iv = before.intervals[g]
		}
		a := after.durations["alone"][g]
		sh := "–"
		if len(a) > 0 && iv > 0 {
			share["alone"] += median(a) / iv
			sh = pct(median(a) / iv)
		}
		for _, s := range r.sets {
			if v := s.durations["side by side"][g]; len(v) > 0 && iv > 0 {
				share[s.name] += median(v) / iv
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f s | %s | %s | %s | %s |\n", g, iv, cell(before, "side by side", g), cell(after, "side by side", g), cell(after, "alone", g), sh)
	}
	fmt.Fprintf(&b, "| **all groups, share of interval** | | **%s** | **%s** | | **%s** |\n\n", pct(share["before"]), pct(share["after"]), pct(share["alone"]))
	missed := func(s *ruleSet) float64 {
		t := 0.0
		for _, v := range s.missed {
			t += v
		}
		return t
	}
	failures := func(s *ruleSet) float64 {
		t := 0.0
		for _, v := range s.failures {
			t += v
		}
		return t
	}
	fmt.Fprintf(&b, "Missed iterations (`prometheus_rule_group_iterations_missed_total`): before %.0f, after %.0f. Failed rule evaluations (`prometheus_rule_evaluation_failures_total`, e.g. the 2-minute query timeout): before %.0f, after %.0f. Unanswered metric reads: before %d, after %d.\n\n",
		missed(before), missed(after), failures(before), failures(after), before.failedReads, after.failedReads)

	fmt.Fprintf(&b, "CPU the servers got (`process_cpu_seconds_total`, share of one core): before %.2f side by side; after %.2f side by side, %.2f alone. Where this is far below 1 while groups take long, their durations are mostly waiting for CPU.\n\n",
		before.cores("side by side"), after.cores("side by side"), after.cores("alone"))
	b.WriteString("## Rules: `evaluationTime` from `/api/v1/rules`, and active alerts\n\n")
	b.WriteString("At the end of the side-by-side phase. Alerts: firing / pending.\n\n")
	b.WriteString("| rule | before | after | before alerts | after alerts |\n|---|---|---|---|---|\n")
	// Per rule, index 0 = before, 1 = after.
	type row struct {
		name string
		t    [2]float64
		f, p [2]int
		in   [2]bool
	}
	var rows []*row
	find := func(name string) *row {
		for _, r := range rows {
			if r.name == name {
				return r
			}
		}
		r := &row{name: name}
		rows = append(rows, r)
		return r
	}
	for i, s := range []*ruleSet{before, after} {
		for _, st := range s.rules {
			x := find(st.name)
			x.t[i] += st.seconds
			x.f[i] += st.firing
			x.p[i] += st.pending
			x.in[i] = true
		}
	}
	slices.SortStableFunc(rows, func(a, b *row) int {
		switch {
		case max(a.t[0], a.t[1]) > max(b.t[0], b.t[1]):
			return -1
		case max(a.t[0], a.t[1]) < max(b.t[0], b.t[1]):
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var tf [4]int
	alerts := func(in bool, f, p int) string {
		if !in {
			return "–"
		}
		return fmt.Sprintf("%d / %d", f, p)
	}
	for _, x := range rows {
		bt, at := ms(x.t[0]), ms(x.t[1])
		if !x.in[0] {
			bt = "(new)"
		}
		if !x.in[1] {
			at = "(gone)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", x.name, bt, at, alerts(x.in[0], x.f[0], x.p[0]), alerts(x.in[1], x.f[1], x.p[1]))
		tf[0] += x.f[0]
		tf[1] += x.p[0]
		tf[2] += x.f[1]
		tf[3] += x.p[1]
	}
	fmt.Fprintf(&b, "| **active alerts** | | | **%d / %d** | **%d / %d** |\n\n", tf[0], tf[1], tf[2], tf[3])
	return b.String()
}
