package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/authbroker/authbroker_exporter/collector"
	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/monitor"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

type quietBroker struct{}

func (quietBroker) Probe() monitor.Probe                   { return monitor.Probe{Checked: true, Up: true} }
func (quietBroker) Tombstones() ([]broker.Tombstone, bool) { return nil, true }

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// exporterHeap measures, in this process, the live heap the exporter's
// store and collectors keep for n credentials with usage, after scrapes
// and a GC: what RSS would be without the transient scrape working set.
// The fake broker's share (its rows and one stream connection's state) is
// measured first and left out.
func exporterHeap(n int) (uint64, error) {
	f := newFixture(n, true)
	defer f.broker.Close()
	// The broker's per-connection stream state, with a bare client.
	req, _ := http.NewRequest(http.MethodGet, f.broker.URL+"/v1/snapshot/stream", nil)
	req.Header.Set("Authorization", "Bearer "+f.broker.Token())
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		return 0, err
	}
	go io.Copy(io.Discard, resp.Body)
	time.Sleep(time.Second)
	base := liveHeap()
	cancel()
	resp.Body.Close()

	cl, err := broker.NewClient(broker.ClientOptions{URL: f.broker.URL, Token: broker.StaticToken(f.broker.Token())})
	if err != nil {
		return 0, err
	}
	st := store.New(store.Options{Broker: cl, Stream: true})
	defer st.Close()
	for deadline := time.Now().Add(time.Minute); !st.Usage().HasData(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return 0, errors.New("in-process store never ready")
		}
	}
	ids, err := identity.New(identity.Hashed, []byte("perf"))
	if err != nil {
		return 0, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cs := collector.New(collector.Options{Source: st, Broker: quietBroker{}, Identity: ids,
		Usage: true})
	if err := cs.Register(reg); err != nil {
		return 0, err
	}
	h := cs.Handler(reg, collector.HandlerOpts{})
	for range 3 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			return 0, fmt.Errorf("in-process scrape: %d", rec.Code)
		}
	}
	total := liveHeap()
	// PERF_HEAP_PROFILE names a file for the heap profile at this point.
	if path := os.Getenv("PERF_HEAP_PROFILE"); path != "" {
		pf, err := os.Create(path)
		if err != nil {
			return 0, err
		}
		err = pprof.WriteHeapProfile(pf)
		pf.Close()
		if err != nil {
			return 0, err
		}
	}
	if total < base {
		return 0, nil
	}
	return total - base, nil
}
