// Package harness is what the bench commands share: a bounded run, building
// the exporter of a checkout, running the binary against a broker on
// loopback, and reading a process's CPU and memory from /proc.
package harness

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Main runs a bench command's run under a context that ends at timeout
// or on an interrupt, and exits 1 with name and the error if it fails.
func Main(name string, timeout time.Duration, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	err := run(ctx)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Logf prints a timestamped progress line on stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Build builds the exporter of the checkout at root into bin.
func Build(ctx context.Context, root, bin string) error {
	Logf("go build -o %s . (in %s)", bin, root)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir, cmd.Stderr = root, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build in %s: %w", root, err)
	}
	return nil
}

// Revision names the commit checked out at root, "+dirty" if the work
// tree differs from it.
func Revision(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "?"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		rev += "+dirty"
	}
	return rev
}

// Uptime is what `uptime` prints (the machine may be shared), or the load
// averages of /proc/loadavg without it.
func Uptime() string {
	if out, err := exec.Command("uptime").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return "load average: " + strings.Join(strings.Fields(string(raw))[:3], ", ")
}

// Machine is the CPU count and model, for the report.
func Machine() string {
	model := "?"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(raw), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs, %s", runtimeCPUs(), model)
}

func runtimeCPUs() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// Median is the middle of xs (the upper one of an even count), 0 if empty.
func Median[T cmp.Ordered](xs []T) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// Exporter is the exporter binary running against a broker.
type Exporter struct {
	Name   string
	URL    string // http://127.0.0.1:port
	Client *http.Client
	cmd    *exec.Cmd
	logs   lockedBuffer
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

// Options configure Start.
type Options struct {
	Name      string // for errors
	Bin       string
	Dir       string // scratch directory (token file, HOME)
	BrokerURL string
	Token     string
	Args      []string // extra flags
	Env       []string // extra environment, e.g. GODEBUG=gctrace=1
}

// Start runs the binary on a free loopback port and waits until /-/ready
// answers 200 and /metrics shows a snapshot generation: the first
// snapshot is applied (which /-/ready alone does not say in every
// version).
func Start(ctx context.Context, o Options) (*Exporter, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	tok := filepath.Join(o.Dir, "token")
	if err := os.WriteFile(tok, []byte(o.Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	args := append([]string{"--broker.url=" + o.BrokerURL, "--broker.token-file=" + tok,
		"--web.listen-address=" + addr, "--log.level=warn"}, o.Args...)
	cmd := exec.Command(o.Bin, args...)
	env := []string{"HOME=" + o.Dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OMP_") && !strings.HasPrefix(kv, "AUTHBROKER_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, o.Env...)
	e := &Exporter{Name: o.Name, URL: "http://" + addr, cmd: cmd, done: make(chan struct{}),
		logs:   lockedBuffer{mu: make(chan struct{}, 1)},
		Client: &http.Client{Transport: &http.Transport{DisableCompression: true}}}
	cmd.Stdout, cmd.Stderr = &e.logs, &e.logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(e.done) }()
	if err := e.waitReady(ctx, 5*time.Minute); err != nil {
		e.Stop()
		return nil, fmt.Errorf("%s: %w: %s", o.Name, err, e.logs.String())
	}
	return e, nil
}

func (e *Exporter) waitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		if resp, err := e.Client.Get(e.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if gen, err := e.Metric(ctx, "authbroker_snapshot_generation "); err == nil && gen > 0 {
					return nil
				}
			}
		}
		select {
		case <-e.done:
			return errors.New("exporter exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no snapshot applied after %v", wait)
		}
	}
}

// Logs is what the exporter printed so far (stdout and stderr).
func (e *Exporter) Logs() string { return e.logs.String() }

// Pid is the exporter's process id.
func (e *Exporter) Pid() int { return e.cmd.Process.Pid }

// Stop ends the exporter (SIGTERM, then SIGKILL after 10 s).
func (e *Exporter) Stop() {
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-e.done
	}
}

// Response is one timed GET: the time from the request to the body's last
// byte, and the body as it came over the wire.
type Response struct {
	Took     time.Duration
	Body     []byte
	Encoding string // Content-Encoding
	Status   int
}

// Get requests path with the given headers and reads the whole body.
// Any status is returned; an exited exporter or a transport error is an
// error.
func (e *Exporter) Get(ctx context.Context, path string, header ...string) (Response, error) {
	var r Response
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+path, nil)
	if err != nil {
		return r, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := e.Client.Do(req)
	if err != nil {
		return r, fmt.Errorf("%s %s: %w", e.Name, path, err)
	}
	r.Body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	r.Took = time.Since(start)
	r.Status, r.Encoding = resp.StatusCode, resp.Header.Get("Content-Encoding")
	if err != nil {
		return r, fmt.Errorf("%s %s: %w", e.Name, path, err)
	}
	return r, nil
}

// Metric is the value of the first series line of /metrics (plain text)
// starting with prefix (a metric name plus, optionally, the start of its
// label set).
func (e *Exporter) Metric(ctx context.Context, prefix string) (float64, error) {
	r, err := e.Get(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	if r.Status != http.StatusOK {
		return 0, fmt.Errorf("%s /metrics: HTTP %d", e.Name, r.Status)
	}
	v, ok := sampleValue(r.Body, prefix)
	if !ok {
		return 0, fmt.Errorf("%s /metrics: no %q", e.Name, prefix)
	}
	return v, nil
}

// sampleValue finds the value of the first series line starting with
// prefix in an exposition.
func sampleValue(text []byte, prefix string) (float64, bool) {
	line := text
	if !bytes.HasPrefix(text, []byte(prefix)) {
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

// CPU is the process's CPU time so far: the sum over its threads of the
// on-CPU nanoseconds of /proc/PID/task/*/schedstat. A Go process keeps
// its threads, so no thread's time leaves with it.
func (e *Exporter) CPU() (time.Duration, error) {
	pid := e.Pid()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		if f := strings.Fields(string(raw)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum, nil
}

// Mem is a process's resident memory in bytes, now and at its peak.
type Mem struct{ RSS, HWM int64 }

// Mem reads VmRSS and VmHWM of /proc/PID/status.
func (e *Exporter) Mem() (Mem, error) {
	var m Mem
	s, err := os.Open(fmt.Sprintf("/proc/%d/status", e.Pid()))
	if err != nil {
		return m, err
	}
	defer s.Close()
	sc := bufio.NewScanner(s)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		if f := strings.Fields(v); len(f) > 0 && (k == "VmRSS" || k == "VmHWM") {
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			if k == "VmRSS" {
				m.RSS = kb << 10
			} else {
				m.HWM = kb << 10
			}
		}
	}
	return m, sc.Err()
}
