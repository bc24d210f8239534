// Command passcpu measures the CPU the exporter spends following one broker
// pass next to the CPU the real broker spends producing it, in one run.
//
//	go run ./bench/passcpu                  # 10k credentials, 10 passes
//	go run ./bench/passcpu -n 1000 -passes 3
//
// It starts a real 18.2.3 broker on loopback (scripts/real-broker.sh, in its
// own state directory), seeds n OAuth credentials (-seed), builds and starts the
// exporter of this checkout against it, and then triggers passes: each
// uploads one new API key, and the broker re-sends every OAuth entry
// because rotatesInMs is relative to serverNowMs (docs/broker-protocol.md
// §6.3, §7.1). Around each pass both processes must be idle (no CPU for
// -settle, "idle" = under 2 ms per step); the CPU each used in between is read from /proc/PID/stat
// (utime+stime, 10 ms ticks) and, finer, from the threads' schedstat.
// Both keep some background work while idle (the broker polls its SQLite
// store and runs timers); its rate, from the quiet stretches before the
// passes, times a pass's wall time is subtracted in the "net" figures.
// The exporter's generation and applied-frame counter are read from
// /metrics after each reading, so the scrape is never inside a measured
// window.
//
// It only reports; nothing here asserts a timing.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
)

type options struct {
	n        int
	passes   int
	idle     time.Duration
	settle   time.Duration
	timeout  time.Duration
	exporter string
	markdown string
	seed     string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 10000, "OAuth credentials to seed")
	flag.IntVar(&o.passes, "passes", 10, "passes to measure")
	flag.DurationVar(&o.idle, "idle", 20*time.Second, "window for each process's idle CPU rate")
	flag.DurationVar(&o.settle, "settle", 500*time.Millisecond, "both processes idle this long = the pass is over")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound on the whole run")
	flag.StringVar(&o.exporter, "exporter", "", "exporter binary (default: go build this checkout)")
	flag.StringVar(&o.markdown, "markdown", "", "also write the result as Markdown to this file")
	flag.StringVar(&o.seed, "seed", "sqlite", "how to seed: sqlite (one upload, copied in the broker's store with sqlite3 while it is stopped; seconds) or http (n uploads; ~30 min at 10k)")
	flag.Parse()
	harness.Main("passcpu", o.timeout, func(ctx context.Context) error { return run(ctx, o) })
}

// broker is the real broker started by scripts/real-broker.sh.
type broker struct {
	script, dir string
	url, token  string
	tokenFile   string
	pid         int
}

func startBroker(ctx context.Context, root, dir string) (*broker, error) {
	b := &broker{script: filepath.Join(root, "scripts", "real-broker.sh"), dir: dir}
	return b, b.start(ctx)
}

// start runs the broker of b.dir (again, keeping its data and port).
func (b *broker) start(ctx context.Context) error {
	dir := b.dir
	cmd := exec.CommandContext(ctx, b.script, "start")
	cmd.Env = append(os.Environ(), "REAL_BROKER_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("real-broker.sh start: %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "URL":
			b.url = v
		case "TOKEN_FILE":
			b.tokenFile = v
		case "PID":
			b.pid, _ = strconv.Atoi(v)
		}
	}
	if b.url == "" || b.tokenFile == "" || b.pid == 0 {
		b.stop()
		return fmt.Errorf("real-broker.sh start said %q", out)
	}
	raw, err := os.ReadFile(b.tokenFile)
	if err != nil {
		b.stop()
		return err
	}
	b.token = strings.TrimSpace(string(raw))
	return nil
}

// stop ends the broker and removes its state directory.
func (b *broker) stop() { b.stopKeep(false) }

func (b *broker) stopKeep(keep bool) {
	cmd := exec.Command(b.script, "stop")
	cmd.Env = append(os.Environ(), "REAL_BROKER_DIR="+b.dir)
	if keep {
		cmd.Env = append(cmd.Env, "REAL_BROKER_KEEP=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Run()
}

// cpu sums the CPU of every process in the broker's session (the broker is
// its session leader; anything it spawned stays in the session).
func (b *broker) cpu() (harness.CPU, error) {
	var sum harness.CPU
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return sum, err
	}
	found := false
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		if len(f) < 4 {
			continue
		}
		if sid, _ := strconv.Atoi(f[3]); sid != b.pid && pid != b.pid {
			continue
		}
		c, err := harness.ReadCPU(pid)
		if err != nil {
			continue
		}
		found = true
		sum = sum.Add(c)
	}
	if !found {
		return sum, errors.New("broker process gone")
	}
	return sum, nil
}

func (b *broker) post(ctx context.Context, body any) error {
	return harness.PostJSON(ctx, b.url+"/v1/credential", b.token, body)
}

// seedSQLite uploads one credential through the broker, stops it, copies
// that row n−1 times in the broker's SQLite store (each copy with its own
// token values, email and account id, as the uploads would have written
// them), and starts the broker again, which loads all n at boot. The real
// broker's upload costs O(n) (it rebuilds its snapshot per change): 10k
// uploads take ~30 minutes on a loaded 2-core machine, this ~15 seconds.
func (b *broker) seedSQLite(ctx context.Context, n int) error {
	if err := harness.SeedOAuth(ctx, b.url, b.token, 1, "passcpu"); err != nil {
		return err
	}
	b.stopKeep(true)
	dbs, _ := filepath.Glob(filepath.Join(b.dir, "home", ".omp", "*", "agent.db"))
	if len(dbs) != 1 {
		return fmt.Errorf("broker store: found %q under %s", dbs, b.dir)
	}
	q := fmt.Sprintf(`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM seq WHERE i < %d)
INSERT INTO auth_credentials (provider, credential_type, data, identity_key, created_at, updated_at)
SELECT c.provider, c.credential_type,
  replace(replace(replace(replace(c.data,
    '"passcpu-access-0"', '"passcpu-access-'||i||'"'),
    '"passcpu-refresh-0"', '"passcpu-refresh-'||i||'"'),
    '"user0@passcpu.example"', '"user'||i||'@passcpu.example"'),
    '"acct-0"', '"acct-'||i||'"'),
  replace(c.identity_key, ':user0@', ':user'||i||'@'), c.created_at, c.updated_at
FROM seq, auth_credentials c WHERE c.id = (SELECT min(id) FROM auth_credentials);
SELECT count(*) FROM auth_credentials WHERE disabled_cause IS NULL;`, n-1)
	out, err := exec.CommandContext(ctx, "sqlite3", dbs[0], q).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sqlite3 (or use -seed http): %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(n) {
		return fmt.Errorf("sqlite3 seeded %s credentials, want %d", got, n)
	}
	return b.start(ctx)
}

func (b *broker) generation(ctx context.Context) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var s struct {
		Generation int64 `json:"generation"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return 0, err
	}
	return s.Generation, nil
}

// pass is one measured pass.
type pass struct {
	exp, brk harness.CPU
	wall     time.Duration
	frames   int64
	gen      int64
}

func run(ctx context.Context, o options) error {
	ws, err := harness.Setup("passcpu", o.exporter)
	if err != nil {
		return err
	}
	defer ws.Close()
	root, dir, bin := ws.Root, ws.Dir, ws.Bin
	loadStart := harness.LoadAvg()
	harness.Logf("starting a real broker (scripts/real-broker.sh)")
	b, err := startBroker(ctx, root, filepath.Join(dir, "broker"))
	if err != nil {
		return err
	}
	defer b.stop()
	version := "?"
	if resp, err := http.Get(b.url + "/v1/healthz"); err == nil {
		var h struct {
			Version string `json:"version"`
		}
		json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		version = h.Version
	}
	harness.Logf("broker %s at %s (pid %d); seeding %d OAuth credentials (%s)", version, b.url, b.pid, o.n, o.seed)
	t := time.Now()
	switch o.seed {
	case "http":
		err = harness.SeedOAuth(ctx, b.url, b.token, o.n, "passcpu")
	case "sqlite":
		err = b.seedSQLite(ctx, o.n)
	default:
		err = fmt.Errorf("-seed %q: want sqlite or http", o.seed)
	}
	if err != nil {
		return err
	}
	harness.Logf("seeded in %s; broker pid %d", time.Since(t).Round(time.Millisecond), b.pid)

	e, err := harness.StartExporter(ctx, harness.ExporterOptions{Bin: bin, Dir: dir, BrokerURL: b.url, Token: b.token})
	if err != nil {
		return err
	}
	defer e.Stop()
	want, err := b.generation(ctx)
	if err != nil {
		return err
	}
	frames, err := exporterState(ctx, e, want)
	if err != nil {
		return err
	}

	// Idle rates.
	if _, err := settle(ctx, e.Pid(), b, o.settle); err != nil {
		return err
	}
	harness.Logf("idle window %s", o.idle)
	e0, _ := harness.ReadCPU(e.Pid())
	b0, err := b.cpu()
	if err != nil {
		return err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.idle):
	}
	e1, _ := harness.ReadCPU(e.Pid())
	b1, _ := b.cpu()
	idleWall := time.Since(t0)
	eIdle, bIdle := e1.Sub(e0), b1.Sub(b0)

	var ps []pass
	var floor quiet
	for i := range o.passes {
		q, err := settle(ctx, e.Pid(), b, o.settle)
		if err != nil {
			return err
		}
		floor = floor.add(q)
		e0, _ := harness.ReadCPU(e.Pid())
		b0, err := b.cpu()
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := b.post(ctx, map[string]any{"provider": "openai", "credential": map[string]any{
			"type": "api_key", "key": fmt.Sprintf("passcpu-key-%d-%d", time.Now().UnixNano(), i)}}); err != nil {
			return err
		}
		if _, err := settle(ctx, e.Pid(), b, o.settle); err != nil {
			return err
		}
		e1, _ := harness.ReadCPU(e.Pid())
		b1, _ := b.cpu()
		p := pass{exp: e1.Sub(e0), brk: b1.Sub(b0), wall: time.Since(t0)}
		if p.gen, err = b.generation(ctx); err != nil {
			return err
		}
		got, err := exporterState(ctx, e, p.gen)
		if err != nil {
			return err
		}
		p.frames, frames = got-frames, got
		ps = append(ps, p)
		harness.Logf("pass %d: %d frames; exporter %s, broker %s (schedstat %s / %s)", i+1, p.frames,
			p.exp.Stat, p.brk.Stat, p.exp.Sched.Round(time.Millisecond), p.brk.Sched.Round(time.Millisecond))
	}
	return report(o, version, ps, floor, eIdle, bIdle, idleWall, loadStart, harness.LoadAvg())
}

// exporterState waits until the exporter holds generation gen and returns
// its applied entry-frame counter.
func exporterState(ctx context.Context, e *harness.Exporter, gen int64) (int64, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		body, err := e.Get(ctx, "/metrics")
		if err != nil {
			return 0, err
		}
		g, _ := harness.SampleValue(body, "authbroker_snapshot_generation ")
		applied, _ := harness.SampleValue(body, `authbroker_stream_events_total{kind="entry",result="applied"}`)
		if int64(g) >= gen {
			return int64(applied), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("exporter at generation %v, want %d", g, gen)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// quiet is CPU used while both processes counted as idle.
type quiet struct {
	exp, brk harness.CPU
	wall     time.Duration
}

func (q quiet) add(o quiet) quiet {
	return quiet{exp: q.exp.Add(o.exp), brk: q.brk.Add(o.brk), wall: q.wall + o.wall}
}

// settle waits until neither process used more than 2 ms of CPU in each
// of the last five d/5-long steps, and returns what they used in those
// steps: the floor of background work (the broker's SQLite polling and
// timers, the exporter's) that a pass window also contains.
func settle(ctx context.Context, exp int, b *broker, d time.Duration) (quiet, error) {
	step := d / 5
	n := 0
	deadline := time.Now().Add(2 * time.Minute)
	pe, _ := harness.ReadCPU(exp)
	pb, err := b.cpu()
	if err != nil {
		return quiet{}, err
	}
	se, sb, st := pe, pb, time.Now()
	for n < 5 {
		select {
		case <-ctx.Done():
			return quiet{}, ctx.Err()
		case <-time.After(step):
		}
		ce, err := harness.ReadCPU(exp)
		if err != nil {
			return quiet{}, fmt.Errorf("exporter: %w", err)
		}
		cb, err := b.cpu()
		if err != nil {
			return quiet{}, err
		}
		if ce.Sub(pe).Sched < 2*time.Millisecond && cb.Sub(pb).Sched < 2*time.Millisecond {
			n++
		} else {
			n = 0
			se, sb, st = ce, cb, time.Now()
		}
		pe, pb = ce, cb
		if time.Now().After(deadline) {
			return quiet{}, errors.New("processes never went idle for 2 minutes")
		}
	}
	return quiet{exp: pe.Sub(se), brk: pb.Sub(sb), wall: time.Since(st)}, nil
}

func report(o options, version string, ps []pass, floor quiet, eIdle, bIdle harness.CPU, idleWall time.Duration, loadStart, loadEnd string) error {
	perSec := func(c time.Duration, wall time.Duration) time.Duration {
		return time.Duration(float64(c) / max(wall.Seconds(), 1e-9))
	}
	// utime+stime, not schedstat: bun's threads come and go, and a thread
	// that ended takes its schedstat with it, while its ticks stay in the
	// process's stat.
	fe, fb := perSec(floor.exp.Stat, floor.wall), perSec(floor.brk.Stat, floor.wall)
	net := func(c time.Duration, rate, wall time.Duration) time.Duration {
		return c - time.Duration(float64(rate)*wall.Seconds())
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "Real broker %s, %d OAuth credentials, exporter of this checkout, %d passes (one API key upload each); %s, GOMAXPROCS %d; load average %s at start, %s at end.\n\n",
		version, o.n, len(ps), runtime.Version(), runtime.GOMAXPROCS(0), loadStart, loadEnd)
	fmt.Fprintf(&md, "Background CPU while both were quiet before the passes (utime+stime, %s in all): exporter %s per second, broker %s per second; "+
		"\"net\" subtracts it times the pass's wall time. Over the whole %s idle window after start-up: exporter %s/s, broker %s/s.\n\n",
		floor.wall.Round(100*time.Millisecond), fe.Round(10*time.Microsecond), fb.Round(10*time.Microsecond),
		idleWall.Round(time.Second), perSec(eIdle.Stat, idleWall).Round(10*time.Microsecond), perSec(bIdle.Stat, idleWall).Round(10*time.Microsecond))
	fmt.Fprintln(&md, "| pass | frames | wall | exporter CPU (stat) | broker CPU (stat) | ratio (stat) | exporter net | broker net | ratio (net) | exporter / broker (schedstat, gross) |")
	fmt.Fprintln(&md, "|---|---|---|---|---|---|---|---|---|---|")
	var rStat, rNet, rSched []float64
	var sum, sumB harness.CPU
	var netE, netB time.Duration
	for i, p := range ps {
		ne, nb := net(p.exp.Stat, fe, p.wall), net(p.brk.Stat, fb, p.wall)
		rs := float64(p.exp.Stat) / float64(max(p.brk.Stat, 1))
		rn := float64(ne) / float64(max(nb, 1))
		// A bun thread that ended takes its schedstat along: a negative
		// window is reported as 0%, never trusted.
		var rc float64
		if p.brk.Sched > 0 {
			rc = float64(p.exp.Sched) / float64(p.brk.Sched)
		}
		rStat, rNet, rSched = append(rStat, rs), append(rNet, rn), append(rSched, rc)
		sum, sumB = sum.Add(p.exp), sumB.Add(p.brk)
		netE, netB = netE+ne, netB+nb
		fmt.Fprintf(&md, "| %d | %d | %s | %s | %s | %.0f%% | %s | %s | %.0f%% | %s / %s = %.0f%% |\n", i+1, p.frames, p.wall.Round(time.Millisecond),
			p.exp.Stat, p.brk.Stat, 100*rs, ne.Round(time.Millisecond), nb.Round(time.Millisecond), 100*rn,
			p.exp.Sched.Round(time.Millisecond), p.brk.Sched.Round(time.Millisecond), 100*rc)
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	k := time.Duration(len(ps))
	gross := float64(sum.Stat) / float64(max(sumB.Stat, 1))
	netR := float64(netE) / float64(max(netB, 1))
	fmt.Fprintf(&md, "\nPer pass (mean of %d), /proc/PID/stat utime+stime: exporter %s, broker %s: **%.0f%%** (net of background: %s, %s: **%.0f%%**; schedstat gross: %s, %s: %.0f%%). Medians of the per-pass ratios: %.0f%% (stat), %.0f%% (net), %.0f%% (schedstat).\n",
		len(ps), (sum.Stat / k).Round(time.Millisecond), (sumB.Stat / k).Round(time.Millisecond), 100*gross,
		(netE / k).Round(time.Millisecond), (netB / k).Round(time.Millisecond), 100*netR,
		(sum.Sched / k).Round(time.Millisecond), (sumB.Sched / k).Round(time.Millisecond), 100*float64(sum.Sched)/float64(max(sumB.Sched, 1)),
		100*med(rStat), 100*med(rNet), 100*med(rSched))
	// The median, not the mean: the broker's refresher sweep (every
	// minute, over all rows) lands in some pass windows and inflates the
	// broker's side there.
	verdict := "met"
	if med(rNet) > 0.1 {
		verdict = "NOT met"
	}
	fmt.Fprintf(&md, "Target exporter ≤ 10%% of the broker's CPU per pass: %s (median %.0f%% net; mean %.0f%% net, %.0f%% gross).\n", verdict, 100*med(rNet), 100*netR, 100*gross)
	os.Stdout.Write(md.Bytes())
	if o.markdown != "" {
		return os.WriteFile(o.markdown, md.Bytes(), 0o644)
	}
	return nil
}
