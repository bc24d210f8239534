package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/store"
)

var (
	opResults = []string{"ok", "error"}
	opReasons = []string{store.ReasonNotFound, store.ReasonUpstream, store.ReasonTimeout, store.ReasonNetwork,
		store.ReasonUnauthorized, store.ReasonInvalidResponse}
)

// operationsCollector publishes the outcomes of refresh and disable calls
// made through the broker, and of the upstream usage fetches.
type operationsCollector struct {
	o Options

	refreshRequests, refreshErrors, disableRequests, disableErrors *prometheus.Desc
	usageFetches, usageFetchErrors                                 *prometheus.Desc
}

func newOperationsCollector(o Options) *operationsCollector {
	return &operationsCollector{
		o:                o,
		refreshRequests:  desc("refresh_requests_total", "Credential refresh calls made through the broker, by result (ok, error).", "provider", "result"),
		refreshErrors:    desc("refresh_errors_total", "Failed refresh calls by reason.", "provider", "reason"),
		disableRequests:  desc("disable_requests_total", "Credential disable calls made through the broker, by result (ok, error).", "provider", "result"),
		disableErrors:    desc("disable_errors_total", "Failed disable calls by reason.", "provider", "reason"),
		usageFetches:     desc("usage_fetches_total", "Upstream /v1/usage calls (after single-flight and caching)."),
		usageFetchErrors: desc("usage_fetch_errors_total", "Failed upstream /v1/usage calls by reason.", "reason"),
	}
}

func (c *operationsCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, c.refreshRequests, c.refreshErrors, c.disableRequests, c.disableErrors, c.usageFetches, c.usageFetchErrors)
}

func (c *operationsCollector) Collect(ch chan<- prometheus.Metric) {
	cn := c.o.Source.Counters()
	// Zero series for every provider the mirror holds, so that rate() and
	// increase() see the first error instead of a series appearing at 1.
	providers := map[string]struct{}{}
	for _, e := range c.o.Source.Snapshot().Entries {
		providers[e.Provider] = struct{}{}
	}
	for _, m := range []map[[2]string]uint64{cn.RefreshRequests, cn.RefreshErrors, cn.DisableRequests, cn.DisableErrors} {
		for k := range m {
			providers[k[0]] = struct{}{}
		}
	}
	for p := range providers {
		lp := label(p)
		for _, r := range opResults {
			k := [2]string{p, r}
			counter(ch, c.refreshRequests, float64(cn.RefreshRequests[k]), lp, r)
			counter(ch, c.disableRequests, float64(cn.DisableRequests[k]), lp, r)
		}
		for _, r := range opReasons {
			k := [2]string{p, r}
			counter(ch, c.refreshErrors, float64(cn.RefreshErrors[k]), lp, r)
			counter(ch, c.disableErrors, float64(cn.DisableErrors[k]), lp, r)
		}
	}
	counter(ch, c.usageFetches, float64(cn.UsageFetches))
	for _, r := range opReasons {
		counter(ch, c.usageFetchErrors, float64(cn.UsageFetchErrors[r]), r)
	}
}
