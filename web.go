package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/monitor"
	"github.com/authbroker/authbroker_exporter/store"
)

// healthSource gathers the health evaluation's input from cached state
// only: it never waits for the broker.
func healthSource(cfg *config, st *store.Store, mon *monitor.Monitor, brokerURL string) func(context.Context) health.Input {
	return func(ctx context.Context) health.Input {
		now := time.Now()
		p := mon.Probe()
		in := health.Input{
			Now:       now,
			BrokerURL: brokerURL,
			Broker:    health.BrokerProbe{Up: p.Up, Version: p.Version, Latency: p.Latency, Err: p.Err},
			View:      st.Snapshot(),
			Status:    st.Status(),
			ForcePoll: !cfg.stream,
		}
		if p.Checked {
			in.Broker.Checked = p.At
		}
		if cfg.usage {
			in.Usage = st.Usage()
		}
		in.Tombstones, in.TombstonesOK = mon.Tombstones()
		return in
	}
}

// routes serves metrics, the probes and the status page.
func (c *config) routes(metrics http.Handler, source func(context.Context) health.Input, ids *identity.Redactor) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(c.metricsPath, metrics)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "Healthy")
	})
	// Ready once the listeners serve, whatever the broker's state: the page
	// and the health API are most useful while the broker is down, and the
	// broker's state is authbroker_up's and the health API's to tell.
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "Ready")
	})
	if c.metricsPath != "/" {
		mux.Handle("/", health.NewHandler(health.HandlerOptions{
			Source:      source,
			Thresholds:  c.thresholds(),
			Redactor:    ids,
			Version:     exporterVersion(),
			MetricsPath: c.metricsPath,
		}))
	}
	return mux
}
