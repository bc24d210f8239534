//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the module root (the parent of this package's directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the e2e package directory")
	}
	return filepath.Dir(filepath.Dir(file))
}

// proc is a child process in its own process group, logging to a file.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts argv in a new process group with stdout and stderr
// appended to logPath, and registers a cleanup that ends the whole group
// (SIGTERM, then SIGKILL after 10 s).
func startProc(t testing.TB, name, logPath string, env []string, argv ...string) *proc {
	t.Helper()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("%s: log file: %v", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = lf, lf
	// Pdeathsig ends the child if the test binary dies without cleanups
	// (e.g. the go test timeout panic).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("%s: start: %v", name, err)
	}
	reaper.add(cmd.Process.Pid)
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) stop() {
	pid := p.cmd.Process.Pid
	defer reaper.remove(pid)
	if p.exited() {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-p.done
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before the child binds it; on loopback in a test run that
// race is remote and shows up as a clear start failure.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runScript runs a repository script and returns its stdout; stderr is
// kept for the error message.
func runScript(ctx context.Context, env []string, dir string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(errb.String(), 40))
	}
	return out.String(), nil
}

// keyValues parses KEY=VALUE lines.
func keyValues(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k != "" {
			out[k] = v
		}
	}
	return out
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// logTail prints the end of a log file, canaries redacted, for diagnosing
// a failed run.
func logTail(t testing.TB, name, path string, lines int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("--- %s log (%s): %v", name, path, err)
		return
	}
	t.Logf("--- %s log (%s), last %d lines:\n%s", name, path, lines, canaries.redact(tail(string(b), lines)))
}

// waitHTTP200 polls url until it answers 200.
func waitHTTP200(ctx context.Context, hc *http.Client, url string, timeout time.Duration, alive func() error) error {
	return poll(ctx, timeout, func() error {
		if alive != nil {
			if err := alive(); err != nil {
				return backoffStop{err}
			}
		}
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
}

// backoffStop makes poll give up at once (e.g. the process died).
type backoffStop struct{ err error }

func (b backoffStop) Error() string { return b.err.Error() }

// poll calls f every 250 ms until it returns nil, the timeout passes or
// ctx ends; the error then carries f's last complaint. The timeout only
// bounds how long the suite waits for a state; nothing asserts on speed.
func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		var stop backoffStop
		if errors.As(err, &stop) {
			return stop.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

func (p *proc) alive() error {
	if p.exited() {
		return fmt.Errorf("%s exited: %v (log: %s)", p.name, p.err, p.log)
	}
	return nil
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
