package collector

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

var (
	callResults = []string{store.SyncResultError, store.SyncResultOK}
	callReasons = []string{broker.ReasonInvalidResponse, broker.ReasonNetwork, broker.ReasonNotFound, broker.ReasonTimeout,
		broker.ReasonUnauthorized, broker.ReasonUpstream}
	// Only a usage answer is large enough to be refused for its size.
	usageReasons = []string{broker.ReasonInvalidResponse, broker.ReasonNetwork, broker.ReasonNotFound, broker.ReasonTimeout,
		broker.ReasonTooLarge, broker.ReasonUnauthorized, broker.ReasonUpstream}
)

// operationsCollector publishes the outcomes of refresh and disable calls
// made through the broker, and of the upstream usage fetches.
type operationsCollector struct{ o Options }

func (c *operationsCollector) Describe(ch chan<- *prometheus.Desc) {
	describeFamilies(ch, mUsageFetches, mUsageFetchErrors, mRefreshRequests, mRefreshErrors, mDisableRequests, mDisableErrors)
}

func (c *operationsCollector) Collect(ch chan<- prometheus.Metric) { c.write(registrySink{ch}) }

func (c *operationsCollector) write(s sink) {
	cn := c.o.Source.Counters()
	// Zero series for every provider the mirror holds, so that rate() and
	// increase() see the first error instead of a series appearing at 1.
	providers := map[string]struct{}{}
	for _, e := range c.o.Source.Snapshot().Entries {
		providers[e.Provider] = struct{}{}
	}
	for _, m := range []map[store.CallOutcome]uint64{cn.RefreshRequests, cn.DisableRequests} {
		for k := range m {
			providers[k.Provider] = struct{}{}
		}
	}
	for _, m := range []map[store.CallFailure]uint64{cn.RefreshErrors, cn.DisableErrors} {
		for k := range m {
			providers[k.Provider] = struct{}{}
		}
	}
	sorted := slices.Sorted(maps.Keys(providers))
	s.one(mUsageFetches, float64(cn.UsageFetches))
	for _, r := range usageReasons {
		s.one(mUsageFetchErrors, float64(cn.UsageFetchErrors[r]), r)
	}
	calls := func(f *family, m map[store.CallOutcome]uint64) {
		for _, p := range sorted {
			for _, r := range callResults {
				s.one(f, float64(m[store.CallOutcome{Provider: p, Result: r}]), label(p), r)
			}
		}
	}
	failures := func(f *family, m map[store.CallFailure]uint64) {
		for _, p := range sorted {
			for _, r := range callReasons {
				s.one(f, float64(m[store.CallFailure{Provider: p, Reason: r}]), label(p), r)
			}
		}
	}
	calls(mRefreshRequests, cn.RefreshRequests)
	failures(mRefreshErrors, cn.RefreshErrors)
	calls(mDisableRequests, cn.DisableRequests)
	failures(mDisableErrors, cn.DisableErrors)
}
