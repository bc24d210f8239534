// Package collector publishes the mirror's state as Prometheus metrics.
// Every collector reads store and monitor state at scrape time and emits
// const metrics, so a credential that disappears takes its series with it.
package collector

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/internal/identity"
	"github.com/authbroker/authbroker_exporter/internal/monitor"
	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

const namespace = "authbroker"

// Source is the part of the store the collectors read.
type Source interface {
	Snapshot() store.View
	Status() store.SyncStatus
	Counters() store.Counters
	Usage() *store.Usage
}

// Broker is what the active monitor knows beyond the mirror.
type Broker interface {
	Probe() monitor.Probe
	Tombstones() ([]broker.Tombstone, bool)
}

// Options configure the collectors.
type Options struct {
	Source   Source
	Broker   Broker
	Identity *identity.Redactor
	// Usage turns the usage collector on. A scrape shows the store's last
	// usage answer; it never waits for one.
	Usage bool
	// StreamDisabled says --no-broker.stream chose long-poll, so polling is
	// not a degradation and stream_supported reads 0.
	StreamDisabled bool
	// Thresholds are the health rules' (--health.*): the provider
	// capacity families count credentials by the status page's states.
	Thresholds health.Thresholds
	Now        func() time.Time
	Logger     log.Logger
}

// Collectors is the exporter's metric set.
type Collectors struct {
	registered []prometheus.Collector
	direct     []directCollector
}

// directCollector is a collector whose families the /metrics handler
// writes straight as text; see series.go.
type directCollector interface {
	prometheus.Collector
	write(sink)
}

// New returns the exporter's collectors.
func New(o Options) *Collectors {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = log.NewNopLogger()
	}
	c := &Collectors{
		registered: []prometheus.Collector{&syncCollector{o}, &operationsCollector{o}, &capacityCollector{o}},
		direct:     []directCollector{&credentialCollector{o: o}},
	}
	if o.Usage {
		c.direct = append(c.direct, &usageCollector{o: o})
	}
	return c
}

// Register registers the collectors of few series with reg, the registry
// Handler gathers; the per-credential ones are Handler's own.
func (c *Collectors) Register(reg prometheus.Registerer) error {
	for _, x := range c.registered {
		if err := reg.Register(x); err != nil {
			return err
		}
	}
	return nil
}

// label makes a broker-supplied string safe as a label value: the client
// library rejects invalid UTF-8, and one bad row must not fail the scrape.
func label(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
