// Command deltacost measures what one stream delta (an `entry` frame)
// costs the exporter binary and the reference TypeScript client
// (@oh-my-pi/pi-ai 18.2.3 RemoteAuthCredentialStore under bun), side by
// side in one run, on one feed from the in-process fake broker
// (store/brokertest) over loopback.
//
//	go run ./bench/deltacost                               # 1k, 5k, 10k, 50k credentials
//	go run ./bench/deltacost -sizes 1000,5000 -rounds 2    # quicker
//
// Per size n: the fake broker holds n OAuth credentials; one real pass of
// n entry frames is recorded from its stream and serves as the template,
// so every delta is a frame in the broker's own bytes (only the generation,
// access token and expiry differ: a rotation). Each client follows the
// stream alone; the feed is written to its stream in one go. The time from
// writing the feed to the client holding the feed's last generation is
// T(frames); per-delta cost = (T(1+M) − T(1)) / M, the median over
// -rounds interleaved pairs. M is calibrated per client so a feed takes
// about -target. The reference client reports the generation itself,
// right after it applied a frame (bench/deltacost/follow.ts); the
// exporter's is read from authbroker_snapshot_generation on /metrics
// (usage collector off, so a poll costs only the credential families),
// polled once the feed is written, pausing after each poll as long as
// it took.
//
// It needs the npm install of scripts/install-deps.sh broker (bun and
// @oh-my-pi/pi-coding-agent 18.2.3, which brings @oh-my-pi/pi-ai 18.2.3).
// It only reports; nothing here asserts a timing.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

type options struct {
	sizes     []int
	rounds    int
	target    time.Duration
	refBudget time.Duration
	timeout   time.Duration
	npm       string
	exporter  string
	skipRef   bool
	out       string
}

func main() {
	var o options
	sizes := flag.String("sizes", "1000,5000,10000,50000", "credential counts, comma-separated")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved (baseline, feed) pairs per client and size; the median is reported")
	flag.DurationVar(&o.target, "target", 2*time.Second, "about how long one feed should take the client (sets M)")
	flag.DurationVar(&o.refBudget, "ref-budget", 4*time.Minute, "skip the reference client at the next size once a size took it longer than this")
	flag.DurationVar(&o.timeout, "timeout", 40*time.Minute, "bound on the whole run")
	cache := os.Getenv("AUTHBROKER_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "authbroker_exporter")
	}
	flag.StringVar(&o.npm, "npm", filepath.Join(cache, "npm"), "npm prefix of scripts/install-deps.sh broker (bun, @oh-my-pi/pi-ai)")
	flag.StringVar(&o.exporter, "exporter", "", "exporter binary (default: go build this checkout)")
	flag.BoolVar(&o.skipRef, "skip-ref", false, "measure the exporter only")
	flag.StringVar(&o.out, "markdown", "", "also write the result table as Markdown to this file")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "deltacost: bad size %q\n", s)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	harness.Main("deltacost", o.timeout, func(ctx context.Context) error { return run(ctx, o) })
}

// result is one client at one size.
type result struct {
	n        int
	client   string
	m        int             // deltas per feed
	perDelta []time.Duration // one per round
	base     []time.Duration // T(1) per round
	full     []time.Duration // T(1+M) per round
	note     string
}

func (r result) median() time.Duration { return median(r.perDelta) }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func run(ctx context.Context, o options) error {
	ws, err := harness.Setup("deltacost", o.exporter)
	if err != nil {
		return err
	}
	defer ws.Close()
	root, dir, bin := ws.Root, ws.Dir, ws.Bin
	var bun, piAi string
	if !o.skipRef {
		bun = filepath.Join(o.npm, "node_modules", "bun", "bin", "bun.exe")
		piAi = filepath.Join(o.npm, "node_modules", "@oh-my-pi", "pi-ai")
		if _, err := os.Stat(filepath.Join(piAi, "src", "auth-broker", "remote-store.ts")); err != nil {
			return fmt.Errorf("reference client not installed (run scripts/install-deps.sh broker): %w", err)
		}
		if out, err := exec.Command(bun, "--version").Output(); err != nil {
			return fmt.Errorf("bun: %w", err)
		} else {
			harness.Logf("bun %s, %s", strings.TrimSpace(string(out)), piAi)
		}
	}
	script := filepath.Join(root, "bench", "deltacost", "follow.ts")
	loadStart := harness.LoadAvg()
	var results []result
	refSkipped := ""
	for _, n := range o.sizes {
		f, err := newFeed(ctx, n)
		if err != nil {
			return err
		}
		exp := exporterClient{bin: bin, dir: dir}
		r, err := measure(ctx, f, &exp, o, 2000)
		if err != nil {
			f.broker.Close()
			return fmt.Errorf("exporter at %d: %w", n, err)
		}
		r.note = fmt.Sprintf("poll of /metrics (no usage) %s median", median(exp.pollCost).Round(100*time.Microsecond))
		results = append(results, r)
		if !o.skipRef && refSkipped == "" {
			start := time.Now()
			ref := refClient{bun: bun, script: script, piAi: piAi, dir: dir}
			r, err := measure(ctx, f, &ref, o, 50)
			if err != nil {
				f.broker.Close()
				return fmt.Errorf("reference client at %d: %w", n, err)
			}
			took := time.Since(start)
			r.note = fmt.Sprintf("this size took %s (snapshot load %s)", took.Round(time.Second), ref.loadTime.Round(time.Millisecond))
			results = append(results, r)
			if took > o.refBudget {
				refSkipped = fmt.Sprintf("skipped above %d credentials: %d took %s (budget -ref-budget %s)", n, n, took.Round(time.Second), o.refBudget)
			}
		}
		f.broker.Close()
	}
	loadEnd := harness.LoadAvg()
	return report(os.Stdout, o, results, refSkipped, loadStart, loadEnd)
}

// follower is one client under test, following the broker's stream.
type follower interface {
	name() string
	start(ctx context.Context, f *feed) error
	// await returns when the client holds generation gen or a later one,
	// with the estimated time it got there.
	await(ctx context.Context, gen int64) (time.Time, error)
	// resolution is how finely await can tell when (0: exactly).
	resolution() time.Duration
	stop()
}

// measure runs one client at one size: calibrate M, then rounds of
// (baseline, feed) pairs.
func measure(ctx context.Context, f *feed, c follower, o options, m0 int) (result, error) {
	r := result{n: f.n, client: c.name()}
	harness.Logf("%s: %d credentials, starting", c.name(), f.n)
	if err := f.waitNoStreams(ctx); err != nil {
		return r, err
	}
	// A new client starts from the broker's own generation (the feed's
	// frames went past it, but only to the previous client).
	f.gen = f.broker.Generation()
	if err := c.start(ctx, f); err != nil {
		return r, err
	}
	defer c.stop()
	if err := f.broker.WaitForStreams(ctx, 1); err != nil {
		return r, err
	}
	timeFeed := func(frames int) (time.Duration, error) {
		raw, last := f.build(frames)
		t0 := time.Now()
		f.broker.SendRaw(raw)
		at, err := c.await(ctx, last)
		if err != nil {
			return 0, err
		}
		return at.Sub(t0), nil
	}
	// Warm up and calibrate: one small feed sets M for the target.
	if _, err := timeFeed(1); err != nil {
		return r, err
	}
	b0, err := timeFeed(1)
	if err != nil {
		return r, err
	}
	t0, err := timeFeed(1 + m0)
	if err != nil {
		return r, err
	}
	per := max(time.Duration(1), (t0-b0)/time.Duration(m0))
	// A feed lasts -target, and at least 20 times the observation's
	// resolution.
	target := max(o.target, 20*c.resolution())
	r.m = int(min(max(float64(target)/float64(per), float64(m0)), 200000))
	harness.Logf("%s: %d credentials, calibration %s per delta, M = %d", c.name(), f.n, per, r.m)
	for i := range o.rounds {
		// Interleave: baseline first on even rounds, last on odd ones.
		var base, full time.Duration
		if i%2 == 0 {
			if base, err = timeFeed(1); err == nil {
				full, err = timeFeed(1 + r.m)
			}
		} else {
			if full, err = timeFeed(1 + r.m); err == nil {
				base, err = timeFeed(1)
			}
		}
		if err != nil {
			return r, err
		}
		r.base, r.full = append(r.base, base), append(r.full, full)
		r.perDelta = append(r.perDelta, (full-base)/time.Duration(r.m))
		harness.Logf("%s: %d credentials, round %d: T(1) %s, T(1+%d) %s, %s per delta", c.name(), f.n, i+1,
			base.Round(time.Microsecond), r.m, full.Round(time.Millisecond), r.perDelta[i])
	}
	return r, nil
}

// feed is a fake broker with n OAuth credentials and the template frames
// (one real entry frame per credential, as the broker wrote it).
type feed struct {
	n         int
	broker    *brokertest.Broker
	templates [][]byte // SSE event bytes, "event: entry\ndata: …\n\n"
	gen       int64    // last generation sent
	seq       int      // deltas built so far (makes every rotation new)
}

var providers = []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}

func newFeed(ctx context.Context, n int) (*feed, error) {
	harness.Logf("fake broker with %d credentials", n)
	// A 6 h refresher interval: frames carry numeric rotatesInMs, as on a
	// live broker, but no rotation deadline or sweep falls inside the run
	// (which would make the exporter reconcile with a GET).
	b := brokertest.New(brokertest.Options{Token: fmt.Sprintf("deltacost-token-%d", time.Now().UnixNano()),
		RefresherInterval: 6 * time.Hour, RefresherSkew: 5 * time.Minute})
	expires := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	for i := range n {
		b.AddOAuth(providers[i%len(providers)], brokertest.OAuth{Access: fmt.Sprintf("access-%d", i), Refresh: "r",
			Expires: expires, Email: fmt.Sprintf("user%d@example.com", i), AccountID: fmt.Sprintf("acct-%d", i)})
	}
	f := &feed{n: n, broker: b}
	if err := f.record(ctx); err != nil {
		b.Close()
		return nil, err
	}
	f.gen = b.Generation()
	return f, nil
}

// record reads one pass from the stream: after a content-free bump the
// broker re-sends every OAuth entry (rotatesInMs moved), n frames.
func (f *feed) record(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.broker.URL+"/v1/snapshot/stream", nil)
	req.Header.Set("Authorization", "Bearer "+f.broker.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stream: %s", resp.Status)
	}
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	next := func() ([]byte, error) {
		var ev []byte
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return nil, err
			}
			if len(line) == 1 && len(ev) > 0 {
				return append(ev, '\n'), nil
			}
			if len(line) > 1 {
				ev = append(ev, line...)
			}
		}
	}
	first, err := next()
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(first, []byte("event: snapshot\n")) {
		return fmt.Errorf("first event is not a snapshot: %.40q", first)
	}
	time.Sleep(5 * time.Millisecond) // serverNowMs moves, so every rotatesInMs does
	f.broker.Bump()
	for len(f.templates) < f.n {
		ev, err := next()
		if err != nil {
			return fmt.Errorf("recording the pass: %w", err)
		}
		if bytes.HasPrefix(ev, []byte("event: entry\n")) {
			f.templates = append(f.templates, ev)
		}
	}
	return nil
}

// waitNoStreams waits until the previous client's stream is gone, so
// SendRaw reaches exactly one client.
func (f *feed) waitNoStreams(ctx context.Context) error {
	for f.broker.StreamConnections() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

var (
	genKey     = []byte(`"generation":`)
	accessKey  = []byte(`"access":"`)
	expiresKey = []byte(`"expires":`)
)

// build returns k entry frames, each a rotation (new access token, later
// expiry) of one credential, spread over the mirror, with generations
// counting up from the last one sent; and the last generation.
func (f *feed) build(k int) ([]byte, int64) {
	out := make([]byte, 0, k*(len(f.templates[0])+16))
	for range k {
		f.seq++
		f.gen++
		t := f.templates[(f.seq*7919)%len(f.templates)]
		out = appendReplaced(out, t, f.gen, f.seq)
	}
	return out, f.gen
}

// appendReplaced copies template t with its generation, access token and
// expiry replaced; each key occurs exactly once in an entry frame (checked
// when the templates are recorded in the same shape by the broker).
func appendReplaced(out, t []byte, gen int64, seq int) []byte {
	i := bytes.Index(t, genKey) + len(genKey)
	j := i + bytes.IndexAny(t[i:], ",}")
	out = append(out, t[:i]...)
	out = strconv.AppendInt(out, gen, 10)
	t = t[j:]
	i = bytes.Index(t, accessKey) + len(accessKey)
	j = i + bytes.IndexByte(t[i:], '"')
	out = append(out, t[:i]...)
	out = append(out, "rotated-"...)
	out = strconv.AppendInt(out, int64(seq), 10)
	t = t[j:]
	i = bytes.Index(t, expiresKey) + len(expiresKey)
	j = i + bytes.IndexAny(t[i:], ",}")
	exp, _ := strconv.ParseInt(string(t[i:j]), 10, 64)
	out = append(out, t[:i]...)
	out = strconv.AppendInt(out, exp+int64(seq)*1000, 10)
	return append(out, t[j:]...)
}

// exporterClient is the exporter binary; its generation is polled from
// /metrics once the feed is written.
type exporterClient struct {
	bin, dir string
	e        *harness.Exporter
	pollCost []time.Duration
}

func (c *exporterClient) name() string { return "exporter" }

func (c *exporterClient) start(ctx context.Context, f *feed) error {
	e, err := harness.StartExporter(ctx, harness.ExporterOptions{Bin: c.bin, Dir: c.dir, BrokerURL: f.broker.URL,
		Token: f.broker.Token(), Args: []string{"--no-collector.usage", "--monitor.probe-interval=1h", "--collector.disabled.interval=1h",
			"--broker.max-frame-bytes=134217728"}})
	if err != nil {
		return err
	}
	c.e = e
	_, err = c.await(ctx, f.gen)
	return err
}

func (c *exporterClient) await(ctx context.Context, gen int64) (time.Time, error) {
	deadline := time.Now().Add(10 * time.Minute)
	prev := time.Now()
	for {
		at := time.Now()
		body, err := c.e.Get(ctx, "/metrics")
		if err != nil {
			return time.Time{}, err
		}
		cost := time.Since(at)
		c.pollCost = append(c.pollCost, cost)
		if v, ok := harness.SampleValue(body, "authbroker_snapshot_generation "); ok && int64(v) >= gen {
			// The view is taken as the request starts: the generation was
			// reached between the previous poll's start and this one's.
			return prev.Add(at.Sub(prev) / 2), nil
		}
		prev = at
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("generation %d not reached in 10 minutes", gen)
		}
		// Rendering at most half the time leaves the stream a core.
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(max(time.Millisecond, cost)):
		}
	}
}

// resolution is a poll and the pause after it.
func (c *exporterClient) resolution() time.Duration { return 2 * median(c.pollCost) }

func (c *exporterClient) stop() {
	if c.e != nil {
		c.e.Stop()
	}
}

// refClient is follow.ts under bun.
type refClient struct {
	bun, script, piAi, dir string
	cmd                    *exec.Cmd
	stdin                  io.WriteCloser
	lines                  chan line
	done                   chan error
	loadTime               time.Duration
	stderr                 bytes.Buffer
}

type line struct {
	at   time.Time
	text string
}

func (c *refClient) name() string { return "reference client" }

func (c *refClient) resolution() time.Duration { return 0 }

func (c *refClient) start(ctx context.Context, f *feed) error {
	tok := filepath.Join(c.dir, "ref-token")
	if err := os.WriteFile(tok, []byte(f.broker.Token()+"\n"), 0o600); err != nil {
		return err
	}
	c.cmd = exec.Command(c.bun, c.script, c.piAi, f.broker.URL, tok)
	c.cmd.Stderr = &c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := c.cmd.Start(); err != nil {
		return err
	}
	c.lines, c.done = make(chan line, 16), make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- line{time.Now(), sc.Text()}
		}
		c.done <- c.cmd.Wait()
	}()
	select {
	case l := <-c.lines:
		var gen, n int64
		if _, err := fmt.Sscanf(l.text, "ready %d %d", &gen, &n); err != nil || gen != f.gen || int(n) != f.n {
			return fmt.Errorf("reference client: unexpected %q (want generation %d, %d credentials)", l.text, f.gen, f.n)
		}
		c.loadTime = l.at.Sub(t0)
		return nil
	case err := <-c.done:
		return fmt.Errorf("reference client exited: %v: %s", err, c.stderr.String())
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *refClient) await(ctx context.Context, gen int64) (time.Time, error) {
	if _, err := fmt.Fprintf(c.stdin, "wait %d\n", gen); err != nil {
		return time.Time{}, err
	}
	want := fmt.Sprintf("reached %d", gen)
	for {
		select {
		case l := <-c.lines:
			if l.text == want {
				return l.at, nil
			}
		case err := <-c.done:
			return time.Time{}, fmt.Errorf("reference client exited: %v: %s", err, c.stderr.String())
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func (c *refClient) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.stdin.Close() // follow.ts closes the store and exits at EOF
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}
