package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authbroker/authbroker_exporter/store/brokertest"
)

// results is what the scrapers measured, shared under mu.
type results struct {
	mu            sync.Mutex
	ok, fail      int
	noUp, noUsage int
	failures      map[string]int
	latencies     []time.Duration // to the last byte on the wire
	withClient    []time.Duration // and through this harness's decompression
	bytes         int64
	// Scrapes near a usage fetch: the latencies of those that ran while
	// the exporter fetched and decoded usage (a /v1/usage request arrived
	// at most usageNear before the scrape started, or during it).
	nearUsage []time.Duration
	lastUsage atomic.Int64 // unix ns of the latest /v1/usage request seen
	// spans are the good scrapes' start, latency and distance from a
	// usage request, to set against the exporter's GC cycles in the report.
	spans []span
}

type span struct {
	start time.Time
	took  time.Duration
	// sinceUsage: from the latest /v1/usage request to the scrape's start
	// (-1 before the first; negative when the request came during the
	// scrape; to within watchUsage's 5 ms).
	sinceUsage time.Duration
}

// usageNear is how long after a /v1/usage request a scrape counts as near
// it: the broker's answer and the exporter's decode of 10k reports take
// well under this.
const usageNear = time.Second

// watchUsage notes when the broker answers /v1/usage, to within 5 ms.
func (r *results) watchUsage(ctx context.Context, b *brokertest.Broker) {
	seen := b.Requests("/v1/usage")
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := b.Requests("/v1/usage"); n != seen {
				seen = n
				r.lastUsage.Store(time.Now().UnixNano())
			}
		}
	}
}

func (r *results) record(start time.Time, d time.Duration, got scraped, err error) {
	sp := span{start: start, took: d, sinceUsage: -1}
	last := r.lastUsage.Load()
	if last != 0 {
		sp.sinceUsage = start.Sub(time.Unix(0, last))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.fail++
		if r.failures == nil {
			r.failures = map[string]int{}
		}
		r.failures[err.Error()]++
		return
	}
	r.ok++
	r.latencies = append(r.latencies, d)
	r.withClient = append(r.withClient, got.withClient)
	if last != 0 && sp.sinceUsage < usageNear {
		r.nearUsage = append(r.nearUsage, d)
	}
	r.spans = append(r.spans, sp)
	r.bytes += got.bytes
	if !got.up {
		r.noUp++
	}
	if !got.usage {
		r.noUsage++
	}
}

func (r *results) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, r.fail
}
