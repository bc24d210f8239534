//go:build e2e

// Package e2e runs the exporter against the real oh-my-pi auth-broker, a
// real Prometheus loading the shipped rules and a real Alertmanager. It is
// excluded from plain `go test ./...` by its build tag; see README.md.
package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// canaries holds every secret the scenario hands to the broker (and the
// broker's bearer token once it exists). Each must stay out of metrics,
// logs, Prometheus and this test's own output.
var canaries = &canarySet{byValue: map[string]string{}}

// Canary secret values, random per run so that a match can only come from
// this run's broker traffic.
var (
	canaryAccess  = newCanary("CANARY-e2e-access-")
	canaryRefresh = newCanary("CANARY-e2e-refresh-")
	canaryAPIKey  = newCanary("CANARY-e2e-apikey-")
	canarySecret  = newCanary("CANARY-e2e-clientsecret-")
)

func init() {
	canaries.add("OAuth access token", canaryAccess)
	canaries.add("OAuth refresh token", canaryRefresh)
	canaries.add("API key", canaryAPIKey)
	canaries.add("unknown credential field (clientSecret)", canarySecret)
}

func newCanary(prefix string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

type canarySet struct {
	mu      sync.Mutex
	byValue map[string]string // value -> role
}

func (c *canarySet) add(role, value string) {
	if value == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byValue[value] = role
}

// find reports the role of the first canary contained in s.
func (c *canarySet) find(s string) (role string, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	roles := make([]string, 0, len(c.byValue))
	for v, r := range c.byValue {
		if strings.Contains(s, v) {
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 {
		return "", false
	}
	sort.Strings(roles)
	return strings.Join(roles, ", "), true
}

// redact replaces every canary in s by its role, for printing diagnostics
// (logs of failed runs) without spreading a leak into the test output.
func (c *canarySet) redact(s string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for v, r := range c.byValue {
		s = strings.ReplaceAll(s, v, "[canary: "+r+"]")
	}
	return s
}

// reaper knows every process group the suite started, so a SIGINT/SIGTERM
// of the test binary still ends them (t.Cleanup does not run then).
var reaper = &groups{pgids: map[int]struct{}{}}

type groups struct {
	mu    sync.Mutex
	pgids map[int]struct{}
}

func (g *groups) add(pgid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pgids[pgid] = struct{}{}
}

func (g *groups) remove(pgid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.pgids, pgid)
}

func (g *groups) killAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for pgid := range g.pgids {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	g.pgids = map[int]struct{}{}
}

// TestMain routes the test binary's stdout (where the testing package
// writes every t.Log and failure) through a scanner that fails the run if
// a canary shows up there, and ends leftover processes on a signal.
func TestMain(m *testing.M) {
	realOut := os.Stdout
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: pipe:", err)
		os.Exit(1)
	}
	os.Stdout = w
	var leaked string
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		leaked = copyScanning(realOut, r)
	}()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case s := <-sigs:
			reaper.killAll()
			fmt.Fprintf(realOut, "e2e: %v: ended every process the suite started\n", s)
			os.Exit(130)
		case <-stopWatch:
		}
	}()

	code := m.Run()

	signal.Stop(sigs)
	close(stopWatch)
	<-watched
	reaper.killAll()
	os.Stdout = realOut
	_ = w.Close()
	<-scanned
	_ = r.Close()
	if leaked != "" {
		fmt.Fprintf(realOut, "FAIL: canary (%s) appeared in the test output\n", leaked)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("os/signal.signal_recv"), goleak.IgnoreAnyFunction("os/signal.loop")); err != nil {
			fmt.Fprintln(realOut, "FAIL: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// copyScanning copies r to out line by line, redacting canaries, and
// returns the roles of the canaries it saw.
func copyScanning(out io.Writer, r io.Reader) string {
	br := bufio.NewReaderSize(r, 64<<10)
	seen := map[string]struct{}{}
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if role, ok := canaries.find(line); ok {
				seen[role] = struct{}{}
				line = canaries.redact(line)
			}
			_, _ = io.WriteString(out, line)
		}
		if err != nil {
			break
		}
	}
	roles := make([]string, 0, len(seen))
	for r := range seen {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return strings.Join(roles, "; ")
}
