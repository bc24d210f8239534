package main

import (
	"fmt"
	"io"
	"strings"
)

// The results table the harness prints and writes.

type row struct {
	target, goal, measured string
	pass                   bool
}

type table struct{ rows []row }

func (t *table) add(target, goal, measured string, pass bool) {
	t.rows = append(t.rows, row{target, goal, measured, pass})
	logf("%s: %s", target, measured)
}

func verdict(r row) string {
	if strings.HasPrefix(r.goal, "(") {
		return ""
	}
	if r.pass {
		return "pass"
	}
	return "FAIL"
}

func (t *table) print(w io.Writer) {
	wt, wg, wm := len("target"), len("goal"), len("measured")
	for _, r := range t.rows {
		wt, wg, wm = max(wt, len([]rune(r.target))), max(wg, len([]rune(r.goal))), max(wm, len([]rune(r.measured)))
	}
	line := func(a, b, c, d string) {
		fmt.Fprintf(w, "%s  %s  %s  %s\n", padR(a, wt), padR(b, wg), padR(c, wm), d)
	}
	line("target", "goal", "measured", "")
	line(strings.Repeat("-", wt), strings.Repeat("-", wg), strings.Repeat("-", wm), "----")
	for _, r := range t.rows {
		line(r.target, r.goal, r.measured, verdict(r))
	}
}

func padR(s string, n int) string {
	return s + strings.Repeat(" ", max(0, n-len([]rune(s))))
}

func (t *table) markdown(w io.Writer) {
	fmt.Fprintln(w, "| target | goal | measured | |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", strings.TrimSpace(r.target), r.goal, r.measured, verdict(r))
	}
}
