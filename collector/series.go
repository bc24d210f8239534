package collector

import (
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/authbroker/authbroker_exporter/store"
)

// Per-credential series are nearly all of a large scrape (32 per credential
// with usage). MustNewConstMetric would rebuild and re-validate every label
// pair of every series on every scrape, about 20 allocations each. Instead
// the label pairs are built once per entry version (entries are immutable
// and replaced on change, so the pointer is the cache key) and each scrape
// writes its series into slabs that point at them. The pairs are read-only
// once built, exactly like a cached const metric's; the registry never
// writes to them.
//
// Series are also emitted in label order (credentials sorted by their id
// label), so the registry's per-family sort finds its input sorted.

// gaugeSample and counterSample are one series of one scrape.
type gaugeSample struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	value  float64
	g      dto.Gauge
}

func (s *gaugeSample) Desc() *prometheus.Desc { return s.desc }

func (s *gaugeSample) Write(out *dto.Metric) error {
	out.Label, out.Gauge = s.labels, &s.g
	return nil
}

type counterSample struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	value  float64
	c      dto.Counter
}

func (s *counterSample) Desc() *prometheus.Desc { return s.desc }

func (s *counterSample) Write(out *dto.Metric) error {
	out.Label, out.Counter = s.labels, &s.c
	return nil
}

// emitter hands samples to the registry from slabs of slabSize, so a scrape
// allocates per slab, not per series. A sent sample is never written again:
// appends below capacity only touch later elements.
type emitter struct {
	ch       chan<- prometheus.Metric
	gauges   []gaugeSample
	counters []counterSample
}

const slabSize = 256

func (e *emitter) gauge(d *prometheus.Desc, labels []*dto.LabelPair, v float64) {
	if len(e.gauges) == cap(e.gauges) {
		e.gauges = make([]gaugeSample, 0, slabSize)
	}
	e.gauges = append(e.gauges, gaugeSample{desc: d, labels: labels, value: v})
	s := &e.gauges[len(e.gauges)-1]
	s.g.Value = &s.value
	e.ch <- s
}

func (e *emitter) counter(d *prometheus.Desc, labels []*dto.LabelPair, v float64) {
	if len(e.counters) == cap(e.counters) {
		e.counters = make([]counterSample, 0, slabSize)
	}
	e.counters = append(e.counters, counterSample{desc: d, labels: labels, value: v})
	s := &e.counters[len(e.counters)-1]
	s.c.Value = &s.value
	e.ch <- s
}

// pair is one label pair; name and value must outlive it and never change.
func pair(name, value *string) *dto.LabelPair {
	return &dto.LabelPair{Name: name, Value: value}
}

// labelNames holds the label names the cached pairs point at.
type labelNames struct {
	id, provider, typ, identity, email, account, org string
	state, limit, window, unit                       string
	matched, unmatched                               string
}

func newLabelNames() *labelNames {
	return &labelNames{id: "id", provider: "provider", typ: "type", identity: "identity", email: "email",
		account: "account", org: "org", state: "state", limit: "limit", window: "window", unit: "unit",
		matched: "matched", unmatched: "unmatched"}
}

// sortedByID orders rows by their id label as strings compare, the order
// the registry sorts series of {id, ...} label sets in.
func sortedByID[T any](rows []T, id func(T) string) {
	slices.SortFunc(rows, func(a, b T) int { return strings.Compare(id(a), id(b)) })
}

// entryCache keeps per-entry label material across scrapes. Every update
// swaps in a map of only the current entries, so departed credentials
// take their cached pairs with them.
type entryCache[T any] struct {
	mu sync.Mutex
	m  map[*store.Entry]T
}

// update returns fn's row for every entry (in entries' order), passing the
// cached row, if any. fn returning ok=false skips the entry.
func (c *entryCache[T]) update(entries []*store.Entry, fn func(e *store.Entry, old T, hit bool) (T, bool)) []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[*store.Entry]T, len(entries))
	rows := make([]T, 0, len(entries))
	for _, e := range entries {
		old, hit := c.m[e]
		row, ok := fn(e, old, hit)
		if !ok {
			continue
		}
		next[e] = row
		rows = append(rows, row)
	}
	c.m = next
	return rows
}
