// Package harness holds what the bench commands share: building the
// exporter from the checkout they run in, running it against a broker on
// loopback, and reading a process's CPU and memory from /proc.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Main runs a bench command's run under a context that ends at timeout
// or on an interrupt, and exits 1 with name and the error if it fails.
func Main(name string, timeout time.Duration, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		stop()
		cancel()
		os.Exit(1)
	}
}

// Logf prints a timestamped progress line on stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// RepoRoot is the directory of the main module's go.mod.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run inside the module")
	}
	return filepath.Dir(mod), nil
}

// BuildExporter builds the exporter of the checkout at root into dir.
func BuildExporter(root, dir string) (string, error) {
	bin := filepath.Join(dir, "authbroker_exporter")
	Logf("go build -o %s . (in %s)", bin, root)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir, cmd.Stderr = root, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	return bin, nil
}

// Workspace is a checkout to measure: its root, a scratch directory and
// the exporter binary.
type Workspace struct {
	Root, Dir, Bin string
}

// Setup finds the checkout, makes a scratch directory and builds the
// exporter into it, unless bin names a binary to use instead. Close
// removes the directory.
func Setup(name, bin string) (*Workspace, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "authbroker-"+name+"-")
	if err != nil {
		return nil, err
	}
	w := &Workspace{Root: root, Dir: dir, Bin: bin}
	if w.Bin == "" {
		if w.Bin, err = BuildExporter(root, dir); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

// Close removes the scratch directory.
func (w *Workspace) Close() { os.RemoveAll(w.Dir) }

// PostJSON posts body as JSON with a bearer token and wants a 200.
func PostJSON(ctx context.Context, url, token string, body any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

// SeedOAuth uploads n Anthropic OAuth credentials to a broker at url,
// eight uploads at a time, each with its own email and account id and an
// expiry 48 h away (no refresh falls due). tag goes into the token values.
func SeedOAuth(ctx context.Context, url, token string, n int, tag string) error {
	expires := time.Now().Add(48 * time.Hour).UnixMilli()
	jobs := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var first error
			for i := range jobs {
				err := PostJSON(ctx, url+"/v1/credential", token, map[string]any{"provider": "anthropic", "credential": map[string]any{
					"type": "oauth", "access": fmt.Sprintf("%s-access-%d", tag, i), "refresh": fmt.Sprintf("%s-refresh-%d", tag, i),
					"expires": expires, "email": fmt.Sprintf("user%d@%s.example", i, tag), "accountId": fmt.Sprintf("acct-%d", i)}})
				if err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// LoadAvg is the 1-minute load average: the machine may be shared.
func LoadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

// Exporter is the exporter binary running against a broker.
type Exporter struct {
	Cmd    *exec.Cmd
	URL    string // http://127.0.0.1:port
	Client *http.Client
	logs   *lockedBuffer
	done   chan struct{}
}

type lockedBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// ExporterOptions configure StartExporter.
type ExporterOptions struct {
	Bin       string
	Dir       string // scratch directory (token file, HOME)
	BrokerURL string
	Token     string
	Args      []string  // extra flags
	Env       []string  // extra environment (e.g. GODEBUG=gctrace=1)
	Log       io.Writer // a copy of the exporter's output, optional
	Ready     time.Duration
}

// StartExporter runs the binary on a free loopback port and waits until
// its mirror holds the first snapshot (WaitReady).
func StartExporter(ctx context.Context, o ExporterOptions) (*Exporter, error) {
	tok := filepath.Join(o.Dir, "token")
	if err := os.WriteFile(tok, []byte(o.Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"--broker.url=" + o.BrokerURL, "--broker.token-file=" + tok,
		"--web.listen-address=127.0.0.1:" + port, "--log.level=warn"}, o.Args...)
	cmd := exec.Command(o.Bin, args...)
	env := []string{"HOME=" + o.Dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OMP_") && !strings.HasPrefix(kv, "AUTHBROKER_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, o.Env...)
	e := &Exporter{Cmd: cmd, URL: "http://127.0.0.1:" + port, logs: &lockedBuffer{mu: make(chan struct{}, 1)},
		done: make(chan struct{}), Client: &http.Client{Transport: &http.Transport{DisableCompression: true}}}
	var out io.Writer = e.logs
	if o.Log != nil {
		out = io.MultiWriter(e.logs, o.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(e.done) }()
	wait := o.Ready
	if wait == 0 {
		wait = 5 * time.Minute
	}
	if err := WaitReady(ctx, e.Client, e.URL, e.done, wait); err != nil {
		if !errors.Is(err, ErrExited) {
			e.Stop()
		}
		return nil, fmt.Errorf("%w: %s", err, e.logs.String())
	}
	return e, nil
}

// ErrExited: the exporter ended before it was ready.
var ErrExited = errors.New("exporter exited")

// WaitReady polls url's /api/v1/health until its mirror holds a snapshot
// (sync.ready; /-/ready answers as soon as the exporter serves), exited is
// closed (ErrExited), ctx ends or wait has passed.
func WaitReady(ctx context.Context, c *http.Client, url string, exited <-chan struct{}, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		resp, err := c.Get(url + "/api/v1/health")
		if err == nil {
			var h struct {
				Sync struct {
					Ready bool `json:"ready"`
				} `json:"sync"`
			}
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && h.Sync.Ready {
				return nil
			}
		}
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("exporter not ready after %v", wait)
		}
	}
}

// Pid is the exporter's process id.
func (e *Exporter) Pid() int { return e.Cmd.Process.Pid }

// Logs is what the exporter printed so far.
func (e *Exporter) Logs() string { return e.logs.String() }

// Exited is closed when the process has ended.
func (e *Exporter) Exited() <-chan struct{} { return e.done }

// Stop ends the exporter (SIGTERM, then SIGKILL after 10 s).
func (e *Exporter) Stop() {
	e.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		e.Cmd.Process.Kill()
		<-e.done
	}
}

// Get fetches path uncompressed and returns the body.
func (e *Exporter) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return body, nil
}

// SampleValue finds the value of the first series line starting with
// prefix (a metric name plus, optionally, the start of its label set).
func SampleValue(text []byte, prefix string) (float64, bool) {
	var line []byte
	if bytes.HasPrefix(text, []byte(prefix)) {
		line = text
	} else {
		i := bytes.Index(text, []byte("\n"+prefix))
		if i < 0 {
			return 0, false
		}
		line = text[i+1:]
	}
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	k := bytes.LastIndexByte(line, ' ')
	if k < 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(line[k+1:]), 64)
	return v, err == nil
}

// ClockTick is USER_HZ on Linux: the unit of utime and stime.
const ClockTick = 100

// CPU is a process's CPU time: utime+stime of /proc/PID/stat (all
// threads, in clock ticks) and, finer, the sum of the threads' on-CPU
// nanoseconds from /proc/PID/task/*/schedstat.
type CPU struct {
	Stat  time.Duration // utime+stime, 10 ms resolution
	Sched time.Duration // sum over live threads of schedstat's first field
}

// Sub is c − o.
func (c CPU) Sub(o CPU) CPU { return CPU{Stat: c.Stat - o.Stat, Sched: c.Sched - o.Sched} }

// Add is c + o.
func (c CPU) Add(o CPU) CPU { return CPU{Stat: c.Stat + o.Stat, Sched: c.Sched + o.Sched} }

// ReadCPU reads pid's CPU time.
func ReadCPU(pid int) (CPU, error) {
	var c CPU
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c, err
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	rest := raw[bytes.LastIndexByte(raw, ')')+2:]
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return c, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	c.Stat = time.Duration(ut+st) * time.Second / ClockTick
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return c, err
	}
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		if f := strings.Fields(string(raw)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			c.Sched += time.Duration(ns)
		}
	}
	return c, nil
}

// Mem is a process's resident memory from /proc/PID/status.
type Mem struct {
	RSS, HWM int64 // bytes: current and peak resident set
}

// ReadMem reads pid's VmRSS and VmHWM.
func ReadMem(pid int) (Mem, error) {
	var m Mem
	s, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	defer s.Close()
	sc := bufio.NewScanner(s)
	for sc.Scan() {
		line := sc.Text()
		for key, dst := range map[string]*int64{"VmRSS:": &m.RSS, "VmHWM:": &m.HWM} {
			if strings.HasPrefix(line, key) {
				kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				*dst = kb << 10
			}
		}
	}
	return m, sc.Err()
}

// MB formats bytes in decimal megabytes.
func MB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
