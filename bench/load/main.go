// Command load runs the exporter binary against an in-process fake broker
// holding many credentials, each with a usage report, while the broker's
// stream applies a steady rate of deltas and many scrapers read /metrics
// concurrently. It prints a table of the exporter's heap, RSS and
// goroutines over time and a summary.
//
// A health poller reads the JSON health API and /-/ready meanwhile. Memory
// is reported three ways: peak RSS (VmHWM), steady-state RSS (the median
// of the samples in the second half of the run) and the heap live after
// each garbage collection (the exporter runs with GODEBUG=gctrace=1).
//
// It asserts correctness only: every scrape and health request must
// succeed and upstream /v1/usage calls must stay within one per usage TTL
// (the store's single-flight cache). Timings are reported, never asserted.
//
//	go run ./bench/load                      # 10k credentials, 10 scrapers, a change every 10 s, 30 s
//	go run ./bench/load -duration=5m         # the memory target's run
//	go run ./bench/load -duration=30s -credentials=2000 -scrapers=50 -deltas=1000 -interval=0   # a stress test
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type config struct {
	credentials int
	scrapers    int
	interval    time.Duration
	deltas      float64
	health      time.Duration
	duration    time.Duration
	sample      time.Duration
	usageTTL    time.Duration
	binary      string
	spans       string
	floor       int
}

func run() error {
	var c config
	flag.IntVar(&c.credentials, "credentials", 10000, "OAuth credentials in the broker, each with a usage report")
	flag.IntVar(&c.scrapers, "scrapers", 10, "concurrent scrapers")
	flag.DurationVar(&c.interval, "interval", 15*time.Second, "each scraper's scrape interval, the scrapers spread over it like independent Prometheus servers (0 = back to back, a stress test)")
	flag.Float64Var(&c.deltas, "deltas", 0.1, "credential changes per second on the broker (fractions allowed); each bump makes the broker re-send every OAuth entry")
	flag.DurationVar(&c.health, "health-interval", 5*time.Second, "how often the health poller reads /api/v1/health and /-/ready (0 = no poller)")
	flag.DurationVar(&c.duration, "duration", 30*time.Second, "how long to run (the memory target: 5m)")
	flag.DurationVar(&c.sample, "sample", 5*time.Second, "how often to sample the exporter's heap and goroutines")
	flag.DurationVar(&c.usageTTL, "usage-ttl", 15*time.Second, "the store's usage cache TTL (for the upstream call bound)")
	flag.StringVar(&c.binary, "exporter", "", "exporter binary (default: go build the repository's)")
	flag.StringVar(&c.spans, "spans", "", "write each good scrape's start (seconds into the run) and latency (ms) to this file, to look for a pattern in the tail")
	flag.IntVar(&c.floor, "floor", 0, "first time this many runs of a fixed task, at the scrapes' cadence and alone, for the machine's own p99/p50 (see floor.go)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bin := c.binary
	if bin == "" {
		dir, err := os.MkdirTemp("", "authbroker-load")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "authbroker_exporter")
		fmt.Println("building the exporter…")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			return fmt.Errorf("go build (run from the repository root): %v\n%s", err, out)
		}
	}

	if c.floor > 0 {
		every := c.interval / time.Duration(max(c.scrapers, 1))
		fmt.Printf("timing the machine's floor: %d runs of a fixed task, one every %v…\n", c.floor, every)
		f, err := measureFloor(ctx, c.floor, every)
		if err != nil {
			return err
		}
		fmt.Println(f)
	}

	b, ids, err := seed(c)
	if err != nil {
		return err
	}
	defer b.Close()

	exp, err := startExporter(ctx, bin, b)
	if err != nil {
		return err
	}
	defer exp.stop()
	fmt.Printf("exporter on %s; waiting for the first snapshot of %d credentials…\n", exp.addr, c.credentials)
	if err := exp.waitReady(ctx, c.credentials); err != nil {
		return err
	}
	// The first usage fetch has no answer to serve meanwhile, so the scrapes
	// that meet it wait; the run measures the steady state after it.
	fmt.Println("waiting for the first usage answer…")
	if err := exp.waitUsage(ctx); err != nil {
		return err
	}
	usageBefore := b.Requests("/v1/usage")

	runCtx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	exp.runStart.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	var changes atomic.Int64
	wg.Go(func() { churn(runCtx, b, ids, c.deltas, &changes) })
	res := &results{}
	// A full sample scrapes /metrics: taken before the run and after it,
	// never during it, where it would be an unmeasured extra scraper.
	first := sampleOnce(exp, 0, res, &changes, true)
	wg.Go(func() { res.watchUsage(runCtx, b) })
	client := &http.Client{Timeout: 2 * time.Minute}
	for i := range c.scrapers {
		wg.Go(func() { scrapeLoop(runCtx, client, exp.addr, c.interval, i, c.scrapers, res) })
	}
	hp := &healthResults{}
	if c.health > 0 {
		wg.Go(func() { healthLoop(runCtx, client, exp.addr, c.health, hp) })
	}
	samples := append([]sample{first}, sampleLoop(runCtx, exp, c.sample, res, &changes)...)
	wg.Wait()
	end := sampleOnce(exp, time.Duration(0), res, &changes, true)
	end.t = c.duration

	usageCalls := b.Requests("/v1/usage") - usageBefore
	return report(c, append(samples, end), res, hp, usageCalls, changes.Load(), exp)
}

// seed fills the broker: credentials over four providers, one usage
// report per credential, matched by email.
func seed(c config) (*brokertest.Broker, []int64, error) {
	token := fmt.Sprintf("load-token-%d", rand.Int64())
	b := brokertest.New(brokertest.Options{Token: token})
	providers := []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}
	now := time.Now()
	ids := make([]int64, c.credentials)
	reports := make([]json.RawMessage, c.credentials)
	for i := range c.credentials {
		p := providers[i%len(providers)]
		email := fmt.Sprintf("user%d@example.com", i)
		ids[i] = b.AddOAuth(p, brokertest.OAuth{Access: fmt.Sprintf("access-%d-0", i), Refresh: "r",
			Expires: now.Add(time.Duration(1+i%240) * time.Minute), Email: email, AccountID: fmt.Sprintf("acct-%d", i)})
		rep, err := json.Marshal(map[string]any{
			"provider": p, "fetchedAt": now.UnixMilli(), "metadata": map[string]any{"email": email},
			"limits": []any{
				map[string]any{"id": p + ":5h", "label": "5h", "scope": map[string]any{"provider": p},
					"window": map[string]any{"id": "5h", "label": "5 Hour", "resetsAt": now.Add(time.Hour).UnixMilli()},
					"amount": map[string]any{"used": i % 100, "limit": 100, "unit": "percent"}, "status": "ok"},
				map[string]any{"id": p + ":7d", "label": "7d", "scope": map[string]any{"provider": p},
					"window": map[string]any{"id": "7d", "label": "7 Day"},
					"amount": map[string]any{"usedFraction": float64(i%1000) / 1000, "unit": "percent"}},
			}})
		if err != nil {
			b.Close()
			return nil, nil, err
		}
		reports[i] = rep
	}
	b.SetUsage(reports)
	return b, ids, nil
}

// churn rotates credentials at the given rate, in batches of at least
// 10 ms.
func churn(ctx context.Context, b *brokertest.Broker, ids []int64, perSecond float64, n *atomic.Int64) {
	if perSecond <= 0 {
		return
	}
	tick := max(10*time.Millisecond, time.Duration(float64(time.Second)/perSecond))
	per := max(1, int(perSecond*tick.Seconds()))
	t := time.NewTicker(tick)
	defer t.Stop()
	rng := rand.New(rand.NewPCG(1, 2))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range per {
			i := rng.IntN(len(ids))
			k := n.Add(1)
			cur, _ := b.OAuth(ids[i])
			cur.Access = fmt.Sprintf("access-%d-%d", i, k)
			cur.Expires = time.Now().Add(time.Duration(60+k%180) * time.Minute)
			b.UpdateOAuth(ids[i], cur)
		}
	}
}

type exporter struct {
	cmd    *exec.Cmd
	addr   string
	log    *bytes.Buffer
	logMu  *sync.Mutex
	exited chan error
	// runStart is when the measured run began (Unix ns); gcs are the
	// collections seen since.
	runStart atomic.Int64
	gcs      []gcLine
}

// gcLine is one GODEBUG=gctrace=1 line: when the cycle ended (when the
// line was read), its wall-clock length and the heap live after it.
type gcLine struct {
	at   time.Time
	took time.Duration
	live float64 // MB
}

var (
	listening = regexp.MustCompile(`msg="Listening on" address=(\S+)`)
	gctrace   = regexp.MustCompile(`^gc \d+ @[\d.]+s \S+ ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock.* (\d+)->(\d+)->(\d+) MB`)
)

func startExporter(ctx context.Context, bin string, b *brokertest.Broker) (*exporter, error) {
	dir, err := os.MkdirTemp("", "authbroker-load-token")
	if err != nil {
		return nil, err
	}
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(b.Token()), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--broker.url="+b.URL, "--broker.token-file="+tok, "--web.listen-address=127.0.0.1:0", "--log.level=info")
	cmd.Env = append(os.Environ(), "OMP_AUTH_BROKER_TOKEN=", "OMP_AUTH_BROKER_URL=", "GODEBUG=gctrace=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e := &exporter{cmd: cmd, log: &bytes.Buffer{}, logMu: &sync.Mutex{}, exited: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			if m := gctrace.FindStringSubmatch(line); m != nil {
				live, _ := strconv.ParseFloat(m[6], 64)
				var ms float64
				for _, part := range m[1:4] {
					v, _ := strconv.ParseFloat(part, 64)
					ms += v
				}
				e.logMu.Lock()
				if start := e.runStart.Load(); start != 0 {
					e.gcs = append(e.gcs, gcLine{at: time.Now(), took: time.Duration(ms * float64(time.Millisecond)), live: live})
				}
				e.logMu.Unlock()
				continue
			}
			e.logMu.Lock()
			e.log.WriteString(line + "\n")
			e.logMu.Unlock()
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		e.exited <- cmd.Wait()
		os.RemoveAll(dir)
	}()
	select {
	case e.addr = <-addr:
		return e, nil
	case err := <-e.exited:
		return nil, fmt.Errorf("exporter exited: %v\n%s", err, e.logs())
	case <-ctx.Done():
		e.stop()
		return nil, ctx.Err()
	}
}

func (e *exporter) logs() string {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.log.String()
}

func (e *exporter) stop() {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.exited
	}
}

// waitReady waits until the mirror holds a snapshot: /api/v1/health's
// sync.ready (/-/ready answers as soon as the exporter serves).
func (e *exporter) waitReady(ctx context.Context, n int) error {
	return e.poll(ctx, "/api/v1/health", 100*time.Millisecond, func(_ int, body []byte) bool {
		var h struct {
			Sync struct {
				Ready bool `json:"ready"`
			} `json:"sync"`
		}
		return json.Unmarshal(body, &h) == nil && h.Sync.Ready
	})
}

// waitUsage scrapes until /metrics carries usage series.
func (e *exporter) waitUsage(ctx context.Context) error {
	return e.poll(ctx, "/metrics", 500*time.Millisecond, func(_ int, body []byte) bool {
		return bytes.Contains(body, []byte("authbroker_usage_limit_used_fraction{"))
	})
}

// poll GETs path every interval until done says so.
func (e *exporter) poll(ctx context.Context, path string, every time.Duration, done func(status int, body []byte) bool) error {
	for {
		if resp, err := http.Get("http://" + e.addr + path); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if done(resp.StatusCode, body) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-e.exited:
			return fmt.Errorf("exporter exited: %v\n%s", err, e.logs())
		case <-time.After(every):
		}
	}
}

// scrapeLoop scrapes like a Prometheus server would (text format, gzip),
// checking that each answer is a complete exposition. A scrape under way
// when the run ends is finished, not cut.
func scrapeLoop(ctx context.Context, client *http.Client, addr string, interval time.Duration, i, n int, res *results) {
	if interval > 0 {
		// Spread the scrapers over one interval, as independent servers are.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(i) * interval / time.Duration(n)):
		}
	}
	var bufs scrapeBuffers
	for ctx.Err() == nil {
		start := time.Now()
		got, err := scrape(context.WithoutCancel(ctx), client, addr, start, &bufs)
		res.record(start, got.wire, got, err)
		if wait := interval - time.Since(start); interval > 0 && wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// scraped is what one good scrape saw.
type scraped struct {
	bytes     int64 // decompressed
	up, usage bool
	// wire is the time from the request to the body's last compressed
	// byte: the exporter's answer time, which the latency figures are.
	// withClient adds this harness decompressing and scanning the body,
	// on the same cores, after that.
	wire, withClient time.Duration
}

// scrapeBuffers are one scraper's, reused from scrape to scrape: this
// process shares the exporter's cores, and its garbage collections would
// otherwise show in the exporter's figures.
type scrapeBuffers struct {
	wire bytes.Buffer
	zr   *gzip.Reader
	scan []byte
}

// scrape reads /metrics as a Prometheus server does (text, gzip), times
// it to the last byte on the wire, then checks the exposition.
func scrape(ctx context.Context, client *http.Client, addr string, start time.Time, bufs *scrapeBuffers) (scraped, error) {
	var out scraped
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport leaves the body compressed
	resp, err := client.Do(req)
	if err != nil {
		return out, errors.New("transport: " + strings.TrimPrefix(err.Error(), "Get \"http://"+addr+"/metrics\": "))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	bufs.wire.Reset()
	_, err = bufs.wire.ReadFrom(resp.Body)
	out.wire = time.Since(start)
	if err != nil {
		return out, errors.New("body: " + err.Error())
	}
	var body io.Reader = bytes.NewReader(bufs.wire.Bytes())
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if bufs.zr == nil {
			bufs.zr, err = gzip.NewReader(body)
		} else {
			err = bufs.zr.Reset(body)
		}
		if err != nil {
			return out, errors.New("body: " + err.Error())
		}
		body = bufs.zr
	}
	if bufs.scan == nil {
		bufs.scan = make([]byte, 64<<10)
	}
	buf := bufs.scan
	var last byte
	for {
		k, err := body.Read(buf)
		if k > 0 {
			chunk := buf[:k]
			out.up = out.up || bytes.Contains(chunk, []byte("\nauthbroker_up 1"))
			out.usage = out.usage || bytes.Contains(chunk, []byte("\nauthbroker_usage_limit_used_fraction{"))
			out.bytes += int64(k)
			last = chunk[k-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, errors.New("body: " + err.Error())
		}
	}
	out.withClient = time.Since(start)
	if out.bytes == 0 || last != '\n' {
		return out, errors.New("truncated exposition")
	}
	return out, nil
}

// healthResults counts the health poller's requests.
type healthResults struct {
	mu        sync.Mutex
	ok, fail  int
	failures  map[string]int
	latencies []time.Duration
}

// healthLoop reads the JSON health report and /-/ready every interval, as a
// status page and an orchestrator's readiness probe would.
func healthLoop(ctx context.Context, client *http.Client, addr string, every time.Duration, hr *healthResults) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, path := range []string{"/api/v1/health", "/-/ready"} {
			start := time.Now()
			err := healthGet(context.WithoutCancel(ctx), client, "http://"+addr+path)
			hr.mu.Lock()
			if err != nil {
				hr.fail++
				if hr.failures == nil {
					hr.failures = map[string]int{}
				}
				hr.failures[path+": "+err.Error()]++
			} else {
				hr.ok++
				if path == "/api/v1/health" {
					hr.latencies = append(hr.latencies, time.Since(start))
				}
			}
			hr.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func healthGet(ctx context.Context, client *http.Client, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return errors.New("transport")
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return errors.New("body")
	}
	// The health API answers 503 when the verdict is critical; that is a
	// verdict, not a failure of the endpoint.
	if resp.StatusCode != http.StatusOK && !(strings.HasSuffix(url, "/api/v1/health") && resp.StatusCode == http.StatusServiceUnavailable) {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

type sample struct {
	t                      time.Duration
	heapAlloc, heapInuse   float64
	rss                    float64
	goroutines             float64
	okScrapes, failScrapes int
	applied, changes       int64
}
