// Package monitor watches the broker actively, beside the passive mirror:
// it probes /v1/healthz, polls the disabled-credential tombstones at a low
// rate, and, when the operator opts in, asks the broker to heal credentials
// whose rotation is overdue or which stayed expired too long.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// Broker is the part of the broker client the monitor uses.
type Broker interface {
	Healthz(ctx context.Context) (broker.Health, error)
	Disabled(ctx context.Context, provider string) ([]broker.Tombstone, error)
}

// Mirror is the part of the store the monitor reads and acts through.
type Mirror interface {
	Snapshot() store.View
	Status() store.SyncStatus
	RefreshOAuthCredential(ctx context.Context, id int64) error
	DisableCredentialRemote(ctx context.Context, id int64, cause string) (bool, error)
}

// Options configure a Monitor. Zero durations take the defaults noted.
type Options struct {
	Broker Broker
	Mirror Mirror
	Logger log.Logger
	Now    func() time.Time

	ProbeInterval    time.Duration // 15 s
	ProbeTimeout     time.Duration // 5 s
	DisabledInterval time.Duration // 60 s

	// RefreshOverdue asks the broker to refresh OAuth credentials whose
	// rotation is overdue, at most once per RefreshEvery per credential.
	RefreshOverdue bool
	RefreshEvery   time.Duration // 10 min
	// RotationGrace is the grace of the rotation rule (health.RotationRule);
	// zero follows the broker's refresher interval, as the health report does.
	RotationGrace time.Duration
	// DisableExpiredAfter disables a credential that has stayed expired
	// longer than this; 0 turns it off.
	DisableExpiredAfter time.Duration
	// MaxActionsPerPass bounds how many heal calls one pass makes, so a
	// broker-wide outage cannot turn the exporter into a request storm.
	MaxActionsPerPass int           // 5
	HealInterval      time.Duration // 30 s
}

// Probe is the result of the last healthz probe.
type Probe struct {
	Checked bool      // a probe has completed
	At      time.Time // when the last probe completed
	Up      bool
	Version string // last version the broker reported
	Latency time.Duration
	Err     string
}

// Monitor runs the probes. Its getters are safe for concurrent use.
type Monitor struct {
	o Options

	mu           sync.Mutex
	probe        Probe
	tombstones   []broker.Tombstone
	tombstonesOK bool
	lastAttempt  map[int64]time.Time // heal rate limit per credential
}

// New returns a Monitor; call Run to start it.
func New(o Options) *Monitor {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ProbeInterval, 15*time.Second)
	def(&o.ProbeTimeout, 5*time.Second)
	def(&o.DisabledInterval, 60*time.Second)
	def(&o.RefreshEvery, 10*time.Minute)
	def(&o.HealInterval, 30*time.Second)
	if o.MaxActionsPerPass <= 0 {
		o.MaxActionsPerPass = 5
	}
	if o.Logger == nil {
		o.Logger = log.NewNopLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Monitor{o: o, lastAttempt: map[int64]time.Time{}}
}

// Run probes until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	loop := func(every time.Duration, f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				f(ctx)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	loop(m.o.ProbeInterval, m.probeOnce)
	loop(m.o.DisabledInterval, m.pollDisabled)
	if m.o.RefreshOverdue || m.o.DisableExpiredAfter > 0 {
		loop(m.o.HealInterval, m.heal)
	}
	wg.Wait()
}

// Probe returns the last healthz result.
func (m *Monitor) Probe() Probe {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.probe
}

// Tombstones returns the last disabled list; ok is false until one poll
// succeeded, and after a failed poll, so stale tombstones are not shown.
func (m *Monitor) Tombstones() ([]broker.Tombstone, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tombstones, m.tombstonesOK
}

func (m *Monitor) probeOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, m.o.ProbeTimeout)
	defer cancel()
	start := m.o.Now()
	h, err := m.o.Broker.Healthz(ctx)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return // shutting down
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.probe
	end := m.o.Now()
	p := Probe{Checked: true, At: end, Latency: end.Sub(start), Version: was.Version}
	if err != nil {
		p.Err = err.Error()
	} else {
		p.Up = h.OK
		if !h.OK {
			p.Err = "healthz answered ok=false"
		}
		if h.Version != "" {
			p.Version = h.Version
		}
	}
	m.probe = p
	if !was.Checked || was.Up != p.Up {
		if p.Up {
			level.Info(m.o.Logger).Log("msg", "broker healthz ok", "version", p.Version)
		} else {
			level.Warn(m.o.Logger).Log("msg", "broker healthz failing", "err", p.Err)
		}
	}
}

func (m *Monitor) pollDisabled(ctx context.Context) {
	ts, err := m.o.Broker.Disabled(ctx, "")
	if err != nil && ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	wasOK := m.tombstonesOK
	if err != nil {
		m.tombstones, m.tombstonesOK = nil, false
		if wasOK {
			level.Warn(m.o.Logger).Log("msg", "listing disabled credentials failed", "err", err)
		}
		return
	}
	m.tombstones, m.tombstonesOK = ts, true
}

// heal runs one self-healing pass. Outcomes are counted by the store in
// the refresh and disable families.
func (m *Monitor) heal(ctx context.Context) {
	now := m.o.Now()
	v := m.o.Mirror.Snapshot()
	m.forgetGone(v)
	rule := health.RotationRule{Refresher: v.Refresher, Grace: m.o.RotationGrace, MirrorLive: m.o.Mirror.Status().Live}
	actions := 0
	for _, e := range v.Entries {
		if actions >= m.o.MaxActionsPerPass || ctx.Err() != nil {
			return
		}
		if e.Credential.Type != broker.TypeOAuth {
			continue
		}
		if !m.due(e.ID, now) {
			continue
		}
		expiredFor := time.Duration(0)
		if e.Credential.HasExpires && now.After(e.Credential.Expires) {
			expiredFor = now.Sub(e.Credential.Expires)
		}
		switch {
		case m.o.DisableExpiredAfter > 0 && expiredFor > m.o.DisableExpiredAfter:
			actions++
			m.attempted(e.ID, now)
			cause := fmt.Sprintf("authbroker_exporter: expired for more than %s", m.o.DisableExpiredAfter)
			_, err := m.o.Mirror.DisableCredentialRemote(ctx, e.ID, cause)
			m.logAction("disable expired credential", e, err)
		case m.o.RefreshOverdue && rule.Overdue(e, now):
			actions++
			m.attempted(e.ID, now)
			err := m.o.Mirror.RefreshOAuthCredential(ctx, e.ID)
			m.logAction("refresh overdue credential", e, err)
		}
	}
}

func (m *Monitor) due(id int64, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	last, ok := m.lastAttempt[id]
	return !ok || now.Sub(last) >= m.o.RefreshEvery
}

// forgetGone drops rate-limit state of credentials no longer mirrored, so
// the map stays as large as the mirror.
func (m *Monitor) forgetGone(v store.View) {
	live := make(map[int64]struct{}, len(v.Entries))
	for _, e := range v.Entries {
		live[e.ID] = struct{}{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.lastAttempt {
		if _, ok := live[id]; !ok {
			delete(m.lastAttempt, id)
		}
	}
}

func (m *Monitor) attempted(id int64, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastAttempt[id] = now
}

func (m *Monitor) logAction(what string, e *store.Entry, err error) {
	if err != nil {
		level.Warn(m.o.Logger).Log("msg", what+" failed", "id", e.ID, "provider", e.Provider, "err", err)
		return
	}
	level.Info(m.o.Logger).Log("msg", what, "id", e.ID, "provider", e.Provider)
}
