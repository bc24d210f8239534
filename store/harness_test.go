package store

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authbroker/authbroker_exporter/store/broker"
	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// harness wires a fake broker, a client and a store on one fake clock.
type harness struct {
	t         *testing.T
	sig       *signal
	clk       *fakeClock
	b         *brokertest.Broker
	c         *broker.Client
	s         *Store
	log       *logRecorder
	tokenPath string
	url       string
	proxy     *proxy
}

type setup struct {
	broker brokertest.Options
	client broker.ClientOptions
	proxy  bool // put a recording, failable front server before the broker
}

func newHarness(t *testing.T, cfg setup) *harness {
	t.Helper()
	h := &harness{t: t, sig: newSignal(), log: &logRecorder{}}
	h.clk = newFakeClock(h.sig)
	bo := cfg.broker
	if bo.Token == "" {
		bo.Token = canaryToken
	}
	if bo.Now == nil {
		bo.Now = h.clk.Now
	}
	if bo.KeepaliveInterval == 0 {
		bo.KeepaliveInterval = -1
	}
	h.b = brokertest.New(bo)
	t.Cleanup(h.b.Close)
	h.url = h.b.URL
	if cfg.proxy {
		h.proxy = newProxy(t, h.b.Handler(), h.sig)
		h.url = h.proxy.URL
	}
	h.tokenPath = filepath.Join(t.TempDir(), "auth-broker.token")
	writeFile(t, h.tokenPath, bo.Token+"\n")
	co := cfg.client
	co.URL = h.url
	if co.Token == nil {
		co.Token = broker.FileToken(h.tokenPath)
	}
	co.Clock = h.clk
	c, err := broker.NewClient(co)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	t.Cleanup(c.CloseIdleConnections)
	return h
}

// start creates the store; Cleanup closes it before the broker.
func (h *harness) start(opts Options) *Store {
	h.t.Helper()
	if opts.Broker == nil {
		opts.Broker = h.c
	}
	opts.Clock = h.clk
	if opts.ReconcileEvery == 0 {
		opts.ReconcileEvery = -1 // on only where a test asks (reconcile_test.go)
	}
	if opts.UsageTTL == 0 {
		opts.UsageTTL = -1 // on only where a test asks (usage_test.go)
	}
	if opts.Logger == nil {
		opts.Logger = h.log
	}
	h.s = newStore(opts)
	h.s.changed = h.sig.Fire
	h.s.start()
	h.t.Cleanup(h.s.Close)
	return h.s
}

func (h *harness) waitView(what string, cond func(View) bool) View {
	h.t.Helper()
	var v View
	h.sig.WaitFor(h.t, what, func() bool {
		v = h.s.Snapshot()
		return cond(v)
	})
	return v
}

func (h *harness) waitCounters(what string, cond func(Counters) bool) Counters {
	h.t.Helper()
	var c Counters
	h.sig.WaitFor(h.t, what, func() bool {
		c = h.s.Counters()
		return cond(c)
	})
	return c
}

func (h *harness) waitStatus(what string, cond func(SyncStatus) bool) SyncStatus {
	h.t.Helper()
	var st SyncStatus
	h.sig.WaitFor(h.t, what, func() bool {
		st = h.s.Status()
		return cond(st)
	})
	return st
}

func (h *harness) waitGeneration(gen int64) View {
	h.t.Helper()
	return h.waitView("generation", func(v View) bool { return v.Ready && v.Generation == gen })
}

// sleepAndAdvance waits for the sync loop's backoff sleep, checks its
// length, and lets it expire.
func (h *harness) sleepAndAdvance(want time.Duration) {
	h.t.Helper()
	if d := h.clk.WaitSleep(h.t, 30*time.Second); d != want {
		h.t.Fatalf("backoff %v, want %v", d, want)
	}
	h.clk.Advance(want)
}

// proxy fronts the fake broker: it records requests and can hang up on
// every connection (a broker that is down).
type proxy struct {
	*httptest.Server
	down atomic.Bool
	mu   sync.Mutex
	reqs []recorded
}

func newProxy(t *testing.T, next http.Handler, sig *signal) *proxy {
	p := &proxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.reqs = append(p.reqs, recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()})
		p.mu.Unlock()
		sig.Fire()
		if p.down.Load() {
			hangUp(w)
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		p.CloseClientConnections()
		p.Close()
	})
	return p
}

func (p *proxy) requests(path string) []recorded {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []recorded
	for _, r := range p.reqs {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// cutStreams cuts the store's stream once the broker has registered it (a
// first frame can reach the store before its connection is listed).
func (h *harness) cutStreams() {
	h.t.Helper()
	if err := h.b.WaitForStreams(h.t.Context(), 1); err != nil {
		h.t.Fatal(err)
	}
	h.b.CutStreams()
}
