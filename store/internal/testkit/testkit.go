// Package testkit holds what the store's and the broker client's tests
// share: canary secrets, a broadcast signal, an injected clock that tests
// advance by hand, and a log recorder. Tests wait on state, never on time.
package testkit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Canary secrets: they must never show up in any output of the package.
const (
	CanaryAccess = "CANARY-ACCESS-9f8e7d6c5b4a"
	CanaryKey    = "CANARY-APIKEY-1a2b3c4d5e6f"
	CanaryExtra  = "CANARY-CLIENTSECRET-0a9b8c"
	CanaryToken  = "CANARY-BEARER-77aa66bb55cc"
	CanaryToken2 = "CANARY-BEARER-ROTATED-44dd"
)

var Canaries = []string{CanaryAccess, CanaryKey, CanaryExtra, CanaryToken, CanaryToken2}

func AssertNoCanary(t *testing.T, what, s string) {
	t.Helper()
	for _, c := range Canaries {
		if strings.Contains(s, c) {
			t.Fatalf("%s leaks canary %q: %s", what, c, s)
		}
	}
}

var Epoch = time.UnixMilli(1795751638608)

// Signal is a broadcast: every Fire wakes every waiter. The fake clock and
// the store's test hook Fire it, so tests wait on state, never on time.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func NewSignal() *Signal { return &Signal{ch: make(chan struct{})} }

func (s *Signal) Fire() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

func (s *Signal) current() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// WaitFor waits until cond holds, re-checking on every Signal. The long
// fail-safe only turns a hang into a failure; nothing is timed.
func (s *Signal) WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
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

// FakeClock is the injected clock: time moves only on Advance, and tests
// can wait for a goroutine to be asleep on it.
type FakeClock struct {
	sig      *Signal
	mu       sync.Mutex
	now      time.Time
	sleepers []*sleeper
}

type sleeper struct {
	until time.Time
	d     time.Duration
	ch    chan struct{}
}

func NewFakeClock(sig *Signal) *FakeClock {
	if sig == nil {
		sig = NewSignal()
	}
	return &FakeClock{now: Epoch, sig: sig}
}

func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *FakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	c.mu.Lock()
	s := &sleeper{until: c.now.Add(d), d: d, ch: make(chan struct{})}
	c.sleepers = append(c.sleepers, s)
	c.mu.Unlock()
	c.sig.Fire()
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
		c.sig.Fire()
		return ctx.Err()
	}
}

// Advance moves time and wakes every sleeper that is due.
func (c *FakeClock) Advance(d time.Duration) {
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
	c.sig.Fire()
}

// Sleeping returns the duration of a pending sleep of at most maxD (the
// idle watchdog sleeps longer than any backoff step).
func (c *FakeClock) Sleeping(maxD time.Duration) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sleepers {
		if s.d <= maxD {
			return s.d, true
		}
	}
	return 0, false
}

// WaitSleep blocks until a sleep of at most maxD is pending and returns it.
func (c *FakeClock) WaitSleep(t *testing.T, maxD time.Duration) time.Duration {
	t.Helper()
	var d time.Duration
	c.sig.WaitFor(t, "a pending sleep", func() bool {
		var ok bool
		d, ok = c.Sleeping(maxD)
		return ok
	})
	return d
}

func WriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// LogRecorder collects log lines for assertions.
type LogRecorder struct {
	mu    sync.Mutex
	lines [][]any
}

func (l *LogRecorder) Log(kv ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, kv)
	return nil
}

func (l *LogRecorder) Messages() []string {
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

func (l *LogRecorder) String() string {
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

// NextWake is the earliest pending sleep of at most maxD.
func (c *FakeClock) NextWake(maxD time.Duration) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at time.Time
	for _, s := range c.sleepers {
		if s.d <= maxD && (at.IsZero() || s.until.Before(at)) {
			at = s.until
		}
	}
	return at, !at.IsZero()
}

// Lines returns the recorded lines whose msg contains substr, as maps.
func (l *LogRecorder) Lines(substr string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, kv := range l.lines {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmtAny(kv[i])] = fmtAny(kv[i+1])
		}
		if strings.Contains(m["msg"], substr) {
			out = append(out, m)
		}
	}
	return out
}
