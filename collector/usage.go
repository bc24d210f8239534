package collector

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// usageCollector publishes the broker's usage reports matched to
// credentials by identity.
type usageCollector struct {
	o     Options
	cache entryCache[*usageRow]
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	describeFamilies(ch, mUsedFraction, mUsed, mMax, mRemaining, mResets, mStatus, mFetched, mMatch, mUnmatched,
		mResetCredits, mResetCooldown, mResetNextExpiry, mLimitResets)
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) { c.write(registrySink{ch}) }

// write emits one family at a time, each in label order.
func (c *usageCollector) write(s sink) {
	x := c.o.Source.Usage() // the store's last answer; it counts and logs failures
	if !x.HasData() {
		return
	}
	rows := c.rows(x)
	for _, r := range rows {
		s.add(mMatch, &r.matched, boolf(r.found))
		s.add(mMatch, &r.unmatched, boolf(!r.found))
	}
	for _, r := range rows {
		if r.found {
			s.add(mFetched, &r.idProvider, r.fetchedAt)
		}
	}
	// Limits sort by (limit, window); the amount families sort by (limit,
	// unit, window), which is the same order unless one limit id repeats
	// with different units, which a scraper accepts in any order.
	eachLimit(s, rows, mUsedFraction, func(l *limitRow) (*labelSet, float64, bool) { return &l.labels, l.fraction, l.hasFraction })
	eachLimit(s, rows, mUsed, func(l *limitRow) (*labelSet, float64, bool) { return &l.unitLabels, l.used, l.hasUsed })
	eachLimit(s, rows, mMax, func(l *limitRow) (*labelSet, float64, bool) { return &l.unitLabels, l.max, l.hasMax })
	eachLimit(s, rows, mRemaining, func(l *limitRow) (*labelSet, float64, bool) {
		return &l.unitLabels, l.remaining, l.hasRemaining
	})
	eachLimit(s, rows, mResets, func(l *limitRow) (*labelSet, float64, bool) { return &l.labels, l.resetsAt, l.hasResetsAt })
	eachLimit(s, rows, mStatus, func(l *limitRow) (*labelSet, float64, bool) { return &l.labels, l.status, true })
	writeSavedResets(s, rows)

	byLabel := map[string]int{}
	for p, n := range x.UnmatchedByProvider {
		byLabel[label(p)] += n
	}
	for _, p := range slices.Sorted(maps.Keys(byLabel)) {
		l := mUnmatched.set(p)
		s.add(mUnmatched, &l, float64(byLabel[p]))
	}
}

// rows returns the row of every OAuth entry against x, in id order,
// building those the cache does not hold for x.
func (c *usageCollector) rows(x *store.Usage) []*usageRow {
	now, wx := c.o.Now(), weak.Make(x)
	rows := c.cache.update(c.o.Source.Snapshot().Entries, func(e *store.Entry, old *usageRow, hit bool) (*usageRow, bool) {
		if e.Credential.Type != broker.TypeOAuth {
			return nil, false
		}
		if hit && old.usage == wx {
			return old, true
		}
		if !hit {
			old = nil
		}
		r := c.row(e, x, old, now)
		r.usage = wx
		return r, true
	})
	sortedByID(rows, func(r *usageRow) string { return r.id })
	return rows
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
// usage answer (usage): its match and the series of its report's limits.
type usageRow struct {
	// usage is the answer the row was built against. Weak: once the store
	// has a newer answer, the rows do not keep the old one alive until the
	// next scrape rebuilds them (a 10k-report answer is some 18 MB).
	usage              weak.Pointer[store.Usage]
	found              bool    // a report matched
	fetchedAt          float64 // its fetchedAt, Unix seconds
	id, provider       string
	idProvider         labelSet
	matched, unmatched labelSet // {id, provider, state}
	limits             []limitRow
	resets             *resetRow // nil without saved resets
}

// limitRow holds a limit's values as well as its labels: a scrape reads
// them in one sweep over the rows, not through pointers into the report.
type limitRow struct {
	limit, window      string
	unit               string
	labels, unitLabels labelSet // {id, provider, limit, window}, + unit
	fraction, status   float64
	used, max          float64
	remaining          float64
	resetsAt           float64 // Unix seconds
	hasFraction        bool
	hasUsed, hasMax    bool
	hasRemaining       bool
	hasResetsAt        bool
}

// row builds e's row against x, reusing the label sets of prev (e's row
// against an earlier report set) where the labels are the same: a new
// report set every usage fetch mostly brings new numbers, not new limits.
func (c *usageCollector) row(e *store.Entry, x *store.Usage, prev *usageRow, now time.Time) *usageRow {
	r := &usageRow{}
	if prev != nil {
		r.id, r.provider, r.idProvider, r.matched, r.unmatched = prev.id, prev.provider, prev.idProvider, prev.matched, prev.unmatched
	} else {
		r.id, r.provider = strconv.FormatInt(e.ID, 10), label(e.Provider)
		r.idProvider = mFetched.set(r.id, r.provider)
		r.matched = mMatch.set(r.id, r.provider, "matched")
		r.unmatched = mMatch.set(r.id, r.provider, "unmatched")
	}
	rep, found := x.Match(e)
	if !found {
		return r
	}
	r.found, r.fetchedAt = true, unix(rep.FetchedAt)
	r.resets = newResetRow(r.id, r.provider, rep.Resets, now)
	r.limits = make([]limitRow, 0, len(rep.Limits))
	for i := range rep.Limits {
		l := &rep.Limits[i]
		lr := limitRow{limit: label(l.ID), unit: label(l.Amount.Unit)}
		if w := l.Window; w != nil {
			lr.window = label(w.ID)
			lr.resetsAt, lr.hasResetsAt = unix(w.ResetsAt), !w.ResetsAt.IsZero()
		}
		lr.used, lr.hasUsed = value(l.Amount.Used)
		lr.max, lr.hasMax = value(l.Amount.Limit)
		lr.remaining, lr.hasRemaining = value(l.Amount.Remaining)
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
			lr.labels = mUsedFraction.set(r.id, r.provider, lr.limit, lr.window) // also resets, status
		}
		if lr.unitLabels.text == "" {
			lr.unitLabels = mUsed.set(r.id, r.provider, lr.limit, lr.window, lr.unit) // also max, remaining
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

// value is *p; false for nil.
func value(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}
