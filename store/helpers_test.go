package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Canary secrets: they must never show up in any output of the package.
const (
	canaryAccess = "CANARY-ACCESS-9f8e7d6c5b4a"
	canaryKey    = "CANARY-APIKEY-1a2b3c4d5e6f"
	canaryExtra  = "CANARY-CLIENTSECRET-0a9b8c"
	canaryToken  = "CANARY-BEARER-77aa66bb55cc"
	canaryToken2 = "CANARY-BEARER-ROTATED-44dd"
)

var canaries = []string{canaryAccess, canaryKey, canaryExtra, canaryToken, canaryToken2}

func assertNoCanary(t *testing.T, what, s string) {
	t.Helper()
	for _, c := range canaries {
		if strings.Contains(s, c) {
			t.Fatalf("%s leaks canary %q: %s", what, c, s)
		}
	}
}

var epoch = time.UnixMilli(1795751638608)

// signal is a broadcast: every fire wakes every waiter. The fake clock and
// the store's test hook fire it, so tests wait on state, never on time.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) fire() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

func (s *signal) current() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// waitFor waits until cond holds, re-checking on every signal. The long
// fail-safe only turns a hang into a failure; nothing is timed.
func (s *signal) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := s.current()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// fakeClock is the injected clock: time moves only on Advance, and tests
// can wait for a goroutine to be asleep on it.
type fakeClock struct {
	sig      *signal
	mu       sync.Mutex
	now      time.Time
	sleepers []*sleeper
}

type sleeper struct {
	until time.Time
	d     time.Duration
	ch    chan struct{}
}

func newFakeClock(sig *signal) *fakeClock {
	if sig == nil {
		sig = newSignal()
	}
	return &fakeClock{now: epoch, sig: sig}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	c.mu.Lock()
	s := &sleeper{until: c.now.Add(d), d: d, ch: make(chan struct{})}
	c.sleepers = append(c.sleepers, s)
	c.mu.Unlock()
	c.sig.fire()
	select {
	case <-s.ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		for i, x := range c.sleepers {
			if x == s {
				c.sleepers = append(c.sleepers[:i], c.sleepers[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		c.sig.fire()
		return ctx.Err()
	}
}

// Advance moves time and wakes every sleeper that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	kept := c.sleepers[:0]
	for _, s := range c.sleepers {
		if !s.until.After(c.now) {
			close(s.ch)
		} else {
			kept = append(kept, s)
		}
	}
	c.sleepers = kept
	c.mu.Unlock()
	c.sig.fire()
}

// sleeping returns the duration of a pending sleep of at most maxD (the
// idle watchdog sleeps longer than any backoff step).
func (c *fakeClock) sleeping(maxD time.Duration) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sleepers {
		if s.d <= maxD {
			return s.d, true
		}
	}
	return 0, false
}

// waitSleep blocks until a sleep of at most maxD is pending and returns it.
func (c *fakeClock) waitSleep(t *testing.T, maxD time.Duration) time.Duration {
	t.Helper()
	var d time.Duration
	c.sig.waitFor(t, "a pending sleep", func() bool {
		var ok bool
		d, ok = c.sleeping(maxD)
		return ok
	})
	return d
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// logRecorder collects log lines for assertions.
type logRecorder struct {
	mu    sync.Mutex
	lines [][]any
}

func (l *logRecorder) Log(kv ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, kv)
	return nil
}

func (l *logRecorder) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, kv := range l.lines {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == "msg" {
				out = append(out, kv[i+1].(string))
			}
		}
	}
	return out
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, kv := range l.lines {
		for _, v := range kv {
			b.WriteString(strings.TrimSpace(fmtAny(v)))
			b.WriteByte(' ')
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func fmtAny(v any) string {
	switch x := v.(type) {
	case error:
		return x.Error()
	case string:
		return x
	default:
		return fmt.Sprintf("%v", x)
	}
}
