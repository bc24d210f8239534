package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// scrapeAB puts two exporter binaries side by side (-only scrape-ab
// -against BIN): this checkout's and another (e.g. one built from the
// commit before a change), each against the same fake broker of n OAuth
// credentials with n usage reports, and times gzip /metrics scrapes in
// interleaved rounds, the order alternating, so both see the same machine
// load. It prints the medians of the time to the last byte and of the
// exporter's CPU per scrape, and the median of the per-round ratios.
func scrapeAB(binA, binB string, n, rounds int) error {
	dir, err := os.MkdirTemp("", "perf-ab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf("scrape-ab: fixture of %d credentials with %d usage reports", n, n)
	f := newFixture(n, true)
	defer f.broker.Close()
	var es [2]*exporter
	for i, bin := range []string{binA, binB} {
		d := fmt.Sprintf("%s/%d", dir, i)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		e, err := startExporter(bin, d, f)
		if err != nil {
			return err
		}
		defer e.stop()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		err = e.waitUsage(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: usage never showed: %w", bin, err)
		}
		es[i] = e
	}
	load := loadavgFull()
	logf("scrape-ab: %d interleaved rounds at %d credentials", rounds, n)
	var ds, cs [2][]time.Duration
	var ratios []float64
	for r := range rounds {
		var d [2]time.Duration
		for k := range 2 {
			i := (r + k) % 2
			c, err := cpuOf(es[i].cmd.Process.Pid, func() (err error) { d[i], _, _, err = es[i].scrape(false); return err })
			if err != nil {
				return err
			}
			ds[i], cs[i] = append(ds[i], d[i]), append(cs[i], c)
		}
		ratios = append(ratios, d[0].Seconds()/d[1].Seconds())
	}
	fmt.Printf("scrape-ab, %d credentials with usage, %d interleaved rounds, gzip /metrics\n", n, rounds)
	fmt.Printf("  %-40s median %8s  CPU %8s\n", "A (this checkout) "+binA, pct(ds[0], 50).Round(100*time.Microsecond), pct(cs[0], 50).Round(100*time.Microsecond))
	fmt.Printf("  %-40s median %8s  CPU %8s\n", "B "+binB, pct(ds[1], 50).Round(100*time.Microsecond), pct(cs[1], 50).Round(100*time.Microsecond))
	fmt.Printf("  A/B: ratio of medians %.3f, median of per-round ratios %.3f\n", pct(ds[0], 50).Seconds()/pct(ds[1], 50).Seconds(), medianF(ratios))
	fmt.Printf("  /proc/loadavg before the rounds: %s, after: %s\n", load, loadavgFull())
	return nil
}

// scrapeABBuild builds this checkout's exporter and runs scrapeAB against
// the binary other.
func scrapeABBuild(other string, n, rounds int) error {
	if other == "" {
		return fmt.Errorf("-only scrape-ab needs -against BIN")
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	return withExporter(root, "authbroker-perf-ab-", func(bin, _ string) error { return scrapeAB(bin, other, n, rounds) })
}
