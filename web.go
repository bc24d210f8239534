package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/version"
	"golang.org/x/sync/singleflight"

	"github.com/authbroker/authbroker_exporter/collector"
	"github.com/authbroker/authbroker_exporter/health"
	"github.com/authbroker/authbroker_exporter/identity"
	"github.com/authbroker/authbroker_exporter/monitor"
	"github.com/authbroker/authbroker_exporter/store"
)

// errorLogger adapts go-kit to promhttp's error log.
type errorLogger struct{ l log.Logger }

func (e errorLogger) Println(v ...any) { level.Error(e.l).Log("msg", fmt.Sprint(v...)) }

// healthSource gathers the health evaluation's input from cached state
// only; the usage read is bounded like a scrape's.
func healthSource(cfg *config, st *store.Store, mon *monitor.Monitor, usage *collector.UsageReader, brokerURL string) func(context.Context) health.Input {
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
		if usage != nil {
			in.Usage, in.UsageOK = usage.Reports(ctx)
		}
		in.Tombstones, in.TombstonesOK = mon.Tombstones()
		return in
	}
}

// sharedGatherer lets scrapes that arrive while a gather is running wait
// for it and share its result: with many Prometheus servers scraping 300k
// series, gathering once instead of N times is what keeps them all under
// their timeout. The result is at most one gather old, and it is only read.
type sharedGatherer struct {
	g      prometheus.Gatherer
	flight singleflight.Group
}

type gathered struct {
	mfs []*dto.MetricFamily
	err error
}

func (s *sharedGatherer) Gather() ([]*dto.MetricFamily, error) {
	v, _, _ := s.flight.Do("", func() (any, error) {
		mfs, err := s.g.Gather()
		return gathered{mfs, err}, nil
	})
	r := v.(gathered)
	return r.mfs, r.err
}

func (c *config) routes(reg *prometheus.Registry, st *store.Store, source func(context.Context) health.Input, ids *identity.Redactor, logger log.Logger) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.Handle(c.metricsPath, promhttp.HandlerFor(&sharedGatherer{g: reg}, promhttp.HandlerOpts{
		ErrorLog:      errorLogger{log.With(logger, "component", "http")},
		ErrorHandling: promhttp.ContinueOnError,
		// Concurrent scrapes share one gather, so each extra scrape costs
		// only its encoding; the cap still stops a scrape storm from
		// queueing unbounded work (excess scrapes get 503).
		MaxRequestsInFlight: 64,
	}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !st.Ready() {
			http.Error(w, "Not ready: no snapshot from the broker yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready")
	})
	if c.metricsPath != "/" {
		mux.Handle("/", health.NewHandler(health.HandlerOptions{
			Source:      source,
			Thresholds:  c.thresholds(),
			Redactor:    ids,
			Version:     version.Version,
			MetricsPath: c.metricsPath,
		}))
	}
	return mux, nil
}
