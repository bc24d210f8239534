package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/authbroker/authbroker_exporter/bench/internal/harness"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

var providers = []string{"anthropic", "openai-codex", "google-gemini-cli", "github-copilot"}

// fixture is a fake broker holding n OAuth credentials spread over four
// providers, each with an email and account id and, with usage, its own
// report of four limits carrying every amount, a window and a status (the
// shape of the collector's and the usage decoder's benchmarks).
type fixture struct {
	broker *brokertest.Broker
	ids    []int64
	oauth  []brokertest.OAuth
}

func newFixture(n int, usage bool) *fixture {
	// A 6 h refresher interval: frames carry a numeric rotatesInMs, as on
	// a live broker, but no rotation deadline falls inside the run (which
	// would make the exporter reconcile with a GET).
	b := brokertest.New(brokertest.Options{Token: fmt.Sprintf("compare-token-%d", time.Now().UnixNano()),
		RefresherInterval: 6 * time.Hour, RefresherSkew: 5 * time.Minute})
	f := &fixture{broker: b}
	now := time.Now()
	expires := now.Add(48 * time.Hour).Truncate(time.Second)
	var reports []json.RawMessage
	for i := range n {
		p := providers[i%len(providers)]
		c := brokertest.OAuth{Access: fmt.Sprintf("access-%d", i), Refresh: fmt.Sprintf("refresh-%d", i),
			Expires: expires, Email: fmt.Sprintf("user%d@example.com", i), AccountID: fmt.Sprintf("acct-%d", i)}
		f.ids = append(f.ids, b.AddOAuth(p, c))
		f.oauth = append(f.oauth, c)
		if !usage {
			continue
		}
		var limits []map[string]any
		for j, w := range []string{"5h", "7d", "7d-opus", "30d"} {
			used := (i + j) % 100
			limits = append(limits, map[string]any{
				"id": p + ":" + w, "label": w, "scope": map[string]any{"provider": p, "windowId": w},
				"window": map[string]any{"id": w, "label": w, "durationMs": 18000000, "resetsAt": now.Add(3 * time.Hour).UnixMilli()},
				"amount": map[string]any{"used": used, "limit": 100, "remaining": 100 - used, "usedFraction": float64(used) / 100, "unit": "percent"},
				"status": "ok",
			})
		}
		raw, _ := json.Marshal(map[string]any{"provider": p, "fetchedAt": now.UnixMilli(),
			"metadata": map[string]any{"email": c.Email, "accountId": c.AccountID}, "limits": limits})
		reports = append(reports, raw)
	}
	if usage {
		b.SetUsage(reports)
	}
	return f
}

// rotate gives credential i a new access token and a later expiry; the
// broker bumps its generation and re-sends every OAuth entry.
func (f *fixture) rotate(i, k int) {
	c := f.oauth[i]
	c.Access = fmt.Sprintf("access-%d-%d", i, k)
	c.Expires = c.Expires.Add(time.Minute)
	f.oauth[i] = c
	f.broker.UpdateOAuth(f.ids[i], c)
}

// start runs the side's binary against f with extra environment env
// and flags args.
func (s *side) start(ctx context.Context, f *fixture, env []string, args ...string) (*harness.Exporter, error) {
	return harness.Start(ctx, harness.Options{Name: s.name, Bin: s.bin, Dir: s.dir, BrokerURL: f.broker.URL,
		Token: f.broker.Token(), Args: args, Env: env})
}

// cleanup is what a phase started, stopped in reverse when it ends.
type cleanup []func()

func (c *cleanup) add(f func()) { *c = append(*c, f) }

// run is deferred as a method value of a *cleanup, so it sees what was
// added after the defer.
func (c *cleanup) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// order is which side goes first in round r: base, head, head, base, …
func order(r int) [2]int {
	if r%2 == 0 {
		return [2]int{0, 1}
	}
	return [2]int{1, 0}
}

// idleFor: an exporter that used less than idleCPU in each tick for
// settle has finished what it was given.
const (
	tick    = 10 * time.Millisecond
	idleCPU = 500 * time.Microsecond
	settle  = 500 * time.Millisecond
)

// busy runs work (which may block, e.g. writing a feed) and waits until it
// returned, the exporter was busy and has then been idle for settle. It
// returns the CPU the exporter used from the start until then, and the
// wall time from the start to its last busy tick. With no work it waits
// for quiet.
func busy(ctx context.Context, e *harness.Exporter, work func()) (cpu, wall time.Duration, err error) {
	c0, err := e.CPU()
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	done := make(chan struct{})
	go func() {
		if work != nil {
			work()
		}
		close(done)
	}()
	prev, lastBusy := c0, t0
	for {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(tick):
		}
		c, err := e.CPU()
		if err != nil {
			return 0, 0, err
		}
		now := time.Now()
		if c-prev > idleCPU {
			lastBusy = now
		}
		prev = c
		select {
		case <-done:
			if (work == nil || lastBusy.After(t0)) && now.Sub(lastBusy) >= settle {
				return c - c0, lastBusy.Sub(t0), nil
			}
		default:
		}
		if now.Sub(t0) > 5*time.Minute {
			return 0, 0, fmt.Errorf("%s: still busy after 5 minutes", e.Name)
		}
	}
}
