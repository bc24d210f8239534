package collector

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/go-kit/log"

	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/store"
)

// UsageReader reads the store's cached usage reports with a bounded wait.
// Scrapes and the status page share one, so they agree on what they show.
type UsageReader struct {
	src     Source
	timeout time.Duration
	logger  log.Logger

	// lastGood serves a reader whose bounded wait ran out while a fetch was
	// still under way, so slow usage does not make series flap.
	mu       sync.Mutex
	lastGood []store.UsageReport
	timedOut bool
	// idx indexes the last report set seen; the store hands out the same
	// immutable slice until its next fetch, so one index serves every
	// scrape in between.
	idx *store.UsageIndex
	of  []store.UsageReport
}

// index returns the match index of reports, built once per report set.
func (u *UsageReader) index(reports []store.UsageReport) *store.UsageIndex {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.idx == nil || !sameReports(u.of, reports) {
		u.idx, u.of = store.NewUsageIndex(reports), reports
	}
	return u.idx
}

func sameReports(a, b []store.UsageReport) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// NewUsageReader returns a reader that waits at most timeout (default 2 s)
// for the shared fetch; the fetch itself goes on without it.
func NewUsageReader(src Source, timeout time.Duration, logger log.Logger) *UsageReader {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	return &UsageReader{src: src, timeout: timeout, logger: logger}
}

// usageCollector publishes the broker's usage reports matched to
// credentials by identity.
type usageCollector struct {
	o Options

	usedFraction, used, max, remaining, resets, status, fetched, match, unmatched *prometheus.Desc
}

func newUsageCollector(o Options) *usageCollector {
	l := []string{"id", "provider", "limit", "window"}
	lu := append(append([]string(nil), l...), "unit")
	return &usageCollector{
		o:            o,
		usedFraction: desc("usage_limit_used_fraction", "Effective used fraction of a usage limit; > 1 = overage.", l...),
		used:         desc("usage_limit_used", "Amount used in the limit's window, when the report has it.", lu...),
		max:          desc("usage_limit_max", "The limit's maximum amount, when the report has it.", lu...),
		remaining:    desc("usage_limit_remaining", "Amount remaining in the limit's window, when the report has it.", lu...),
		resets:       desc("usage_limit_resets_timestamp_seconds", "When the limit's window resets.", l...),
		status:       desc("usage_limit_status", "Limit status: 0 ok, 1 warning, 2 exhausted, -1 unknown.", l...),
		fetched:      desc("usage_report_fetched_timestamp_seconds", "fetchedAt of the usage report matched to the credential.", "id", "provider"),
		match:        desc("usage_match", "1 for the credential's usage match state (matched, unmatched), 0 for the other; OAuth credentials only.", "id", "provider", "state"),
		unmatched:    desc("usage_reports_unmatched", "Usage reports no credential claimed, by provider.", "provider"),
	}
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, c.usedFraction, c.used, c.max, c.remaining, c.resets, c.status, c.fetched, c.match, c.unmatched)
}

// Reports returns the usage reports and whether there is usage data at
// all: a failed fetch (which the store caches as "no data" for its TTL)
// yields false, an empty report list true.
func (u *UsageReader) Reports(ctx context.Context) ([]store.UsageReport, bool) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	reports, err := u.src.UsageReports(ctx)
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case err == nil && reports != nil:
		u.lastGood, u.timedOut = reports, false
		return reports, true
	case errors.Is(err, context.DeadlineExceeded):
		if !u.timedOut {
			level.Warn(u.logger).Log("msg", "usage fetch slower than a scrape may wait; serving the last good reports", "timeout", u.timeout)
			u.timedOut = true
		}
		return u.lastGood, u.lastGood != nil
	}
	// The fetch failed (the store counts and logs it): usage goes away
	// rather than show numbers the broker no longer vouches for.
	u.lastGood = nil
	return nil, false
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	reports, ok := c.o.Usage.Reports(context.Background())
	if !ok {
		return
	}
	x := c.o.Usage.index(reports)
	claimed := make(map[*store.UsageReport]struct{}, len(reports))
	for _, e := range c.o.Source.Snapshot().Entries {
		if e.Credential.Type != store.TypeOAuth {
			continue
		}
		id, provider := strconv.FormatInt(e.ID, 10), label(e.Provider)
		r, found := x.Match(e)
		gauge(ch, c.match, boolf(found), id, provider, "matched")
		gauge(ch, c.match, boolf(!found), id, provider, "unmatched")
		if !found {
			continue
		}
		claimed[r] = struct{}{}
		gauge(ch, c.fetched, unix(r.FetchedAt), id, provider)
		c.collectLimits(ch, r, id, provider)
	}
	unmatched := map[string]int{}
	for i := range reports {
		n := unmatched[reports[i].Provider]
		if _, ok := claimed[&reports[i]]; !ok {
			n++
		}
		unmatched[reports[i].Provider] = n
	}
	for p, n := range unmatched {
		gauge(ch, c.unmatched, float64(n), label(p))
	}
}

var statusValue = map[string]float64{"ok": 0, "warning": 1, "exhausted": 2}

func (c *usageCollector) collectLimits(ch chan<- prometheus.Metric, r *store.UsageReport, id, provider string) {
	seen := map[[2]string]struct{}{}
	for i := range r.Limits {
		l := &r.Limits[i]
		window := ""
		if l.Window != nil {
			window = label(l.Window.ID)
		}
		limit := label(l.ID)
		// A report listing one limit twice would otherwise emit a duplicate
		// series and fail the whole scrape.
		key := [2]string{limit, window}
		if _, dup := seen[key]; dup {
			continue
		}
		seen[key] = struct{}{}
		lv := []string{id, provider, limit, window}
		if f, ok := l.Amount.EffectiveUsedFraction(); ok {
			gauge(ch, c.usedFraction, f, lv...)
		}
		unit := label(l.Amount.Unit)
		for _, a := range []struct {
			d *prometheus.Desc
			v *float64
		}{{c.used, l.Amount.Used}, {c.max, l.Amount.Limit}, {c.remaining, l.Amount.Remaining}} {
			if a.v != nil {
				gauge(ch, a.d, *a.v, id, provider, limit, window, unit)
			}
		}
		if l.Window != nil && !l.Window.ResetsAt.IsZero() {
			gauge(ch, c.resets, unix(l.Window.ResetsAt), lv...)
		}
		s, known := statusValue[l.Status]
		if !known {
			s = -1
		}
		gauge(ch, c.status, s, lv...)
	}
}
