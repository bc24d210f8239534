package collector

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"

	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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

	names                        *labelNames
	stateMatched, stateUnmatched *dto.LabelPair
	cache                        entryCache[*usageRow]
}

func newUsageCollector(o Options) *usageCollector {
	l := []string{"id", "provider", "limit", "window"}
	lu := append(append([]string(nil), l...), "unit")
	c := &usageCollector{
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
		names:        newLabelNames(),
	}
	c.stateMatched = pair(&c.names.state, &c.names.matched)
	c.stateUnmatched = pair(&c.names.state, &c.names.unmatched)
	return c
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, c.usedFraction, c.used, c.max, c.remaining, c.resets, c.status, c.fetched, c.match, c.unmatched)
}

// Reports returns the usage reports and whether there is usage data at
// all: a failed fetch (which the store caches as "no data" for its TTL)
// yields false, an empty report list true.
func (u *UsageReader) Reports(ctx context.Context) ([]store.UsageReport, bool) {
	u.mu.Lock()
	wait := u.timeout
	if u.timedOut {
		// The shared fetch already outlasted one scrape's wait: later
		// scrapes only look whether it has finished, so a stalled broker
		// costs one scrape the timeout, not every scrape until it answers.
		wait = min(wait, stalledWait)
	}
	u.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, wait)
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
	u.lastGood, u.timedOut = nil, false
	return nil, false
}

// stalledWait is how long a scrape looks for a usage fetch that already
// made an earlier scrape time out; a cached answer returns well within it.
const stalledWait = 5 * time.Millisecond

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	reports, ok := c.o.Usage.Reports(context.Background())
	if !ok {
		return
	}
	x := c.o.Usage.index(reports)
	rows := c.cache.update(c.o.Source.Snapshot().Entries, func(e *store.Entry, old *usageRow, hit bool) (*usageRow, bool) {
		if e.Credential.Type != store.TypeOAuth {
			return nil, false
		}
		if hit && old.idx == x {
			return old, true
		}
		return c.row(e, x), true
	})
	sortedByID(rows, func(r *usageRow) string { return r.id })
	claimed := make(map[*store.UsageReport]struct{}, len(reports))
	em := emitter{ch: ch}
	for _, r := range rows {
		found := r.report != nil
		em.gauge(c.match, r.matched, boolf(found))
		em.gauge(c.match, r.unmatched, boolf(!found))
		if !found {
			continue
		}
		claimed[r.report] = struct{}{}
		em.gauge(c.fetched, r.idProvider, unix(r.report.FetchedAt))
		for i := range r.limits {
			l := &r.limits[i]
			if l.hasFraction {
				em.gauge(c.usedFraction, l.labels, l.fraction)
			}
			a := &l.src.Amount
			if a.Used != nil {
				em.gauge(c.used, l.unitLabels, *a.Used)
			}
			if a.Limit != nil {
				em.gauge(c.max, l.unitLabels, *a.Limit)
			}
			if a.Remaining != nil {
				em.gauge(c.remaining, l.unitLabels, *a.Remaining)
			}
			if w := l.src.Window; w != nil && !w.ResetsAt.IsZero() {
				em.gauge(c.resets, l.labels, unix(w.ResetsAt))
			}
			em.gauge(c.status, l.labels, l.status)
		}
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

// usageRow is the label material of one OAuth entry version against one
// report set (idx): its match and the series of its report's limits.
type usageRow struct {
	idx                *store.UsageIndex
	report             *store.UsageReport // nil = unmatched
	id, provider       string
	idProvider         []*dto.LabelPair
	matched, unmatched []*dto.LabelPair // {id, provider, state}
	limits             []limitRow
}

type limitRow struct {
	src                *store.UsageLimit
	limit, window      string
	unit               string
	labels, unitLabels []*dto.LabelPair // {id, limit, provider, window}, + unit
	fraction, status   float64
	hasFraction        bool
}

func (c *usageCollector) row(e *store.Entry, x *store.UsageIndex) *usageRow {
	n := c.names
	r := &usageRow{idx: x, id: strconv.FormatInt(e.ID, 10), provider: label(e.Provider)}
	rep, found := x.Match(e)
	var limits []limitRow
	if found {
		r.report = rep
		limits = make([]limitRow, 0, len(rep.Limits))
		for i := range rep.Limits {
			l := &rep.Limits[i]
			lr := limitRow{src: l, limit: label(l.ID), unit: label(l.Amount.Unit)}
			if l.Window != nil {
				lr.window = label(l.Window.ID)
			}
			// A report listing one limit twice would otherwise emit a
			// duplicate series and fail the whole scrape; the first wins.
			if slices.ContainsFunc(limits, func(o limitRow) bool { return o.limit == lr.limit && o.window == lr.window }) {
				continue
			}
			lr.fraction, lr.hasFraction = l.Amount.EffectiveUsedFraction()
			var known bool
			if lr.status, known = statusValue[l.Status]; !known {
				lr.status = -1
			}
			limits = append(limits, lr)
		}
		slices.SortFunc(limits, func(a, b limitRow) int {
			return cmp.Or(strings.Compare(a.limit, b.limit), strings.Compare(a.window, b.window))
		})
	}
	r.limits = limits
	// All pairs of the row in one allocation and all label slices in
	// another; they point into r and r.limits, which are final now.
	pairs := make([]dto.LabelPair, 2+3*len(limits))
	ptrs := make([]*dto.LabelPair, 0, 2+3+3+9*len(limits))
	mk := func(name, value *string) *dto.LabelPair {
		p := &pairs[0]
		pairs = pairs[1:]
		p.Name, p.Value = name, value
		return p
	}
	labels := func(ps ...*dto.LabelPair) []*dto.LabelPair {
		start := len(ptrs)
		ptrs = append(ptrs, ps...)
		return ptrs[start:len(ptrs):len(ptrs)]
	}
	id, provider := mk(&n.id, &r.id), mk(&n.provider, &r.provider)
	r.idProvider = labels(id, provider)
	r.matched = labels(id, provider, c.stateMatched)
	r.unmatched = labels(id, provider, c.stateUnmatched)
	for i := range r.limits {
		lr := &r.limits[i]
		lim, win, unit := mk(&n.limit, &lr.limit), mk(&n.window, &lr.window), mk(&n.unit, &lr.unit)
		lr.labels = labels(id, lim, provider, win)
		lr.unitLabels = labels(id, lim, provider, unit, win)
	}
	return r
}
