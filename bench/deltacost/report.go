package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// The report of a run.

func report(w io.Writer, o options, rs []result, refSkipped, loadStart, loadEnd string) error {
	var md bytes.Buffer
	fmt.Fprintf(&md, "Per-delta cost, (T(1+M) − T(1)) / M, median of %d interleaved rounds; %s, GOMAXPROCS %d; load average %s at start, %s at end.\n\n",
		o.rounds, runtime.Version(), runtime.GOMAXPROCS(0), loadStart, loadEnd)
	fmt.Fprintln(&md, "| credentials | client | M (deltas per feed) | per delta | rounds | T(1) median | ratio reference / exporter | note |")
	fmt.Fprintln(&md, "|---|---|---|---|---|---|---|---|")
	byN := map[int]map[string]result{}
	for _, r := range rs {
		if byN[r.n] == nil {
			byN[r.n] = map[string]result{}
		}
		byN[r.n][r.client] = r
	}
	for _, r := range rs {
		ratio := ""
		if r.client == "reference client" {
			if e, ok := byN[r.n]["exporter"]; ok && e.median() > 0 {
				ratio = fmt.Sprintf("%.0f×", float64(r.median())/float64(e.median()))
			}
		}
		var rounds []string
		for _, d := range r.perDelta {
			rounds = append(rounds, fmtDur(d))
		}
		fmt.Fprintf(&md, "| %d | %s | %d | %s | %s | %s | %s | %s |\n", r.n, r.client, r.m, fmtDur(r.median()),
			strings.Join(rounds, ", "), fmtDur(median(r.base)), ratio, r.note)
	}
	if refSkipped != "" {
		fmt.Fprintf(&md, "\nReference client %s.\n", refSkipped)
	}
	if e, ok1 := byN[5000]["exporter"]; ok1 {
		if ref, ok2 := byN[5000]["reference client"]; ok2 && e.median() > 0 {
			ratio := float64(ref.median()) / float64(e.median())
			verdict := "met"
			if ratio < 1000 {
				verdict = "NOT met"
			}
			fmt.Fprintf(&md, "\nTarget ≥ 1000× the reference client at 5k credentials: %.0f× (%s).\n", ratio, verdict)
		}
	}
	w.Write(md.Bytes())
	if o.out != "" {
		return os.WriteFile(o.out, md.Bytes(), 0o644)
	}
	return nil
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "≤ 0 (noise)"
	case d < time.Millisecond:
		return fmt.Sprintf("%.2f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
