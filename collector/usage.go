package collector

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
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

	usedFraction, used, max, remaining, resets, status, fetched, match, unmatched *family

	cache entryCache[*usageRow]
}

func newUsageCollector(o Options) *usageCollector {
	l := []string{"id", "provider", "limit", "window"}
	lu := append(slices.Clone(l), "unit")
	g := prometheus.GaugeValue
	return &usageCollector{
		o:            o,
		usedFraction: newFamily(g, "usage_limit_used_fraction", "Effective used fraction of a usage limit; > 1 = overage.", l...),
		used:         newFamily(g, "usage_limit_used", "Amount used in the limit's window, when the report has it.", lu...),
		max:          newFamily(g, "usage_limit_max", "The limit's maximum amount, when the report has it.", lu...),
		remaining:    newFamily(g, "usage_limit_remaining", "Amount remaining in the limit's window, when the report has it.", lu...),
		resets:       newFamily(g, "usage_limit_resets_timestamp_seconds", "When the limit's window resets.", l...),
		status:       newFamily(g, "usage_limit_status", "Limit status: 0 ok, 1 warning, 2 exhausted, -1 unknown.", l...),
		fetched:      newFamily(g, "usage_report_fetched_timestamp_seconds", "fetchedAt of the usage report matched to the credential.", "id", "provider"),
		match:        newFamily(g, "usage_match", "1 for the credential's usage match state (matched, unmatched), 0 for the other; OAuth credentials only.", "id", "provider", "state"),
		unmatched:    newFamily(g, "usage_reports_unmatched", "Usage reports no credential claimed, by provider.", "provider"),
	}
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	describeFamilies(ch, c.usedFraction, c.used, c.max, c.remaining, c.resets, c.status, c.fetched, c.match, c.unmatched)
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

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) { c.write(registrySink{ch}) }

// write emits one family at a time, each in label order.
func (c *usageCollector) write(s sink) {
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
		if !hit {
			old = nil
		}
		return c.row(e, x, old), true
	})
	sortedByID(rows, func(r *usageRow) string { return r.id })
	claimed := make(map[*store.UsageReport]struct{}, len(reports))
	for _, r := range rows {
		found := r.report != nil
		s.add(c.match, &r.matched, boolf(found))
		s.add(c.match, &r.unmatched, boolf(!found))
		if found {
			claimed[r.report] = struct{}{}
		}
	}
	for _, r := range rows {
		if r.report != nil {
			s.add(c.fetched, &r.idProvider, unix(r.report.FetchedAt))
		}
	}
	// Limits sort by (limit, window); the amount families sort by (limit,
	// unit, window), which is the same order unless one limit id repeats
	// with different units, which a scraper accepts in any order.
	eachLimit(s, rows, c.usedFraction, func(l *limitRow) (*labelSet, float64, bool) { return &l.labels, l.fraction, l.hasFraction })
	amount := func(v func(a *store.UsageAmount) *float64) func(l *limitRow) (*labelSet, float64, bool) {
		return func(l *limitRow) (*labelSet, float64, bool) {
			if p := v(&l.src.Amount); p != nil {
				return &l.unitLabels, *p, true
			}
			return nil, 0, false
		}
	}
	eachLimit(s, rows, c.used, amount(func(a *store.UsageAmount) *float64 { return a.Used }))
	eachLimit(s, rows, c.max, amount(func(a *store.UsageAmount) *float64 { return a.Limit }))
	eachLimit(s, rows, c.remaining, amount(func(a *store.UsageAmount) *float64 { return a.Remaining }))
	eachLimit(s, rows, c.resets, func(l *limitRow) (*labelSet, float64, bool) {
		if w := l.src.Window; w != nil && !w.ResetsAt.IsZero() {
			return &l.labels, unix(w.ResetsAt), true
		}
		return nil, 0, false
	})
	eachLimit(s, rows, c.status, func(l *limitRow) (*labelSet, float64, bool) { return &l.labels, l.status, true })

	unmatched := map[string]int{}
	for i := range reports {
		n := unmatched[reports[i].Provider]
		if _, ok := claimed[&reports[i]]; !ok {
			n++
		}
		unmatched[reports[i].Provider] = n
	}
	byLabel := map[string]int{}
	for p, n := range unmatched {
		byLabel[label(p)] += n
	}
	for _, p := range slices.Sorted(maps.Keys(byLabel)) {
		l := c.unmatched.set(p)
		s.add(c.unmatched, &l, float64(byLabel[p]))
	}
}

// eachLimit writes family f: v's series of every limit of every row.
func eachLimit(s sink, rows []*usageRow, f *family, v func(l *limitRow) (*labelSet, float64, bool)) {
	for _, r := range rows {
		for i := range r.limits {
			if l, val, ok := v(&r.limits[i]); ok {
				s.add(f, l, val)
			}
		}
	}
}

var statusValue = map[string]float64{"ok": 0, "warning": 1, "exhausted": 2}

// usageRow is the label material of one OAuth entry version against one
// report set (idx): its match and the series of its report's limits.
type usageRow struct {
	idx                *store.UsageIndex
	report             *store.UsageReport // nil = unmatched
	id, provider       string
	idProvider         labelSet
	matched, unmatched labelSet // {id, provider, state}
	limits             []limitRow
}

type limitRow struct {
	src                *store.UsageLimit
	limit, window      string
	unit               string
	labels, unitLabels labelSet // {id, provider, limit, window}, + unit
	fraction, status   float64
	hasFraction        bool
}

// row builds e's row against x, reusing the label sets of prev (e's row
// against an earlier report set) where the labels are the same: a new
// report set every usage fetch mostly brings new numbers, not new limits.
func (c *usageCollector) row(e *store.Entry, x *store.UsageIndex, prev *usageRow) *usageRow {
	r := &usageRow{idx: x}
	if prev != nil {
		r.id, r.provider, r.idProvider, r.matched, r.unmatched = prev.id, prev.provider, prev.idProvider, prev.matched, prev.unmatched
	} else {
		r.id, r.provider = strconv.FormatInt(e.ID, 10), label(e.Provider)
		r.idProvider = c.fetched.set(r.id, r.provider)
		r.matched = c.match.set(r.id, r.provider, "matched")
		r.unmatched = c.match.set(r.id, r.provider, "unmatched")
	}
	rep, found := x.Match(e)
	if !found {
		return r
	}
	r.report = rep
	r.limits = make([]limitRow, 0, len(rep.Limits))
	for i := range rep.Limits {
		l := &rep.Limits[i]
		lr := limitRow{src: l, limit: label(l.ID), unit: label(l.Amount.Unit)}
		if l.Window != nil {
			lr.window = label(l.Window.ID)
		}
		// A report listing one limit twice would otherwise emit a
		// duplicate series and fail the whole scrape; the first wins.
		if slices.ContainsFunc(r.limits, func(o limitRow) bool { return o.limit == lr.limit && o.window == lr.window }) {
			continue
		}
		if p := prev.limit(lr.limit, lr.window); p != nil {
			lr.labels = p.labels
			if p.unit == lr.unit {
				lr.unitLabels = p.unitLabels
			}
		}
		if lr.labels.text == "" {
			lr.labels = c.usedFraction.set(r.id, r.provider, lr.limit, lr.window) // also resets, status
		}
		if lr.unitLabels.text == "" {
			lr.unitLabels = c.used.set(r.id, r.provider, lr.limit, lr.window, lr.unit) // also max, remaining
		}
		lr.fraction, lr.hasFraction = l.Amount.EffectiveUsedFraction()
		var known bool
		if lr.status, known = statusValue[l.Status]; !known {
			lr.status = -1
		}
		r.limits = append(r.limits, lr)
	}
	slices.SortFunc(r.limits, func(a, b limitRow) int {
		return cmp.Or(strings.Compare(a.limit, b.limit), strings.Compare(a.window, b.window))
	})
	return r
}

// limit finds the row's limit of that id and window (nil-safe).
func (r *usageRow) limit(id, window string) *limitRow {
	if r == nil {
		return nil
	}
	for i := range r.limits {
		if l := &r.limits[i]; l.limit == id && l.window == window {
			return l
		}
	}
	return nil
}
