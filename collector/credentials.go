package collector

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// credentialCollector publishes one set of series per mirrored credential,
// plus the broker's tombstones.
type credentialCollector struct {
	o     Options
	cache entryCache[*credentialRow]
}

// credentialRow is the label material of one entry version.
type credentialRow struct {
	e                *store.Entry
	id, provider     string
	typ              string
	idProvider, info labelSet
}

func (c *credentialCollector) row(e *store.Entry) *credentialRow {
	cr := &e.Credential
	r := &credentialRow{e: e, id: strconv.FormatInt(e.ID, 10), provider: label(e.Provider), typ: label(cr.Type)}
	r.idProvider = mExpiry.set(r.id, r.provider) // also rotatesIn, lastRotation, rotations
	r.info = mInfo.set(r.id, r.provider, r.typ, c.ident(e.IdentityKey), c.ident(cr.Email), c.ident(cr.AccountID), c.ident(cr.OrgID))
	return r
}

func (c *credentialCollector) Describe(ch chan<- *prometheus.Desc) {
	describeFamilies(ch, mCredentials, mInfo, mExpiry, mRotatesIn, mLastRotation, mRotations, mBlocked, mDisabled)
}

func (c *credentialCollector) Collect(ch chan<- prometheus.Metric) { c.write(registrySink{ch}) }

// write emits one family at a time, each in label order.
func (c *credentialCollector) write(s sink) {
	now := c.o.Now()
	rows := c.cache.update(c.o.Source.Snapshot().Entries, func(e *store.Entry, old *credentialRow, hit bool) (*credentialRow, bool) {
		if hit {
			return old, true
		}
		return c.row(e), true
	})
	sortedByID(rows, func(r *credentialRow) string { return r.id })
	counts := map[labelPair]int{}
	for _, r := range rows {
		counts[labelPair{r.provider, r.typ}]++
		s.add(mInfo, &r.info, 1)
	}
	oauth := slices.DeleteFunc(rows, func(r *credentialRow) bool { return r.e.Credential.Type != broker.TypeOAuth })
	for _, r := range oauth {
		if cr := &r.e.Credential; cr.HasExpires {
			s.add(mExpiry, &r.idProvider, unix(cr.Expires))
		}
	}
	for _, r := range oauth {
		if d, ok := r.e.RotationDeadline(); ok {
			s.add(mRotatesIn, &r.idProvider, d.Sub(now).Seconds())
		}
	}
	for _, r := range oauth {
		if !r.e.LastRotation.IsZero() {
			s.add(mLastRotation, &r.idProvider, unix(r.e.LastRotation))
		}
	}
	for _, r := range oauth {
		s.add(mRotations, &r.idProvider, float64(r.e.Rotations))
	}
	for _, r := range oauth {
		if len(r.e.Blocks) == 0 {
			continue
		}
		blocks := activeBlocks(r.e.Blocks, now)
		for _, scope := range slices.Sorted(maps.Keys(blocks)) {
			l := mBlocked.set(r.id, r.provider, scope)
			s.add(mBlocked, &l, unix(blocks[scope]))
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(counts), cmpPair) {
		l := mCredentials.set(k.a, k.b)
		s.add(mCredentials, &l, float64(counts[k]))
	}
	c.writeDisabled(s)
}

// labelPair is two label values of one series.
type labelPair struct{ a, b string }

func cmpPair(x, y labelPair) int {
	return cmp.Or(strings.Compare(x.a, y.a), strings.Compare(x.b, y.b))
}

func (c *credentialCollector) ident(s string) string { return label(c.o.Identity.Render(s)) }

// activeBlocks keeps the latest end per scope: blocks of different
// provider keys may share a scope, and two series with one label set would
// fail the whole scrape.
func activeBlocks(bs []broker.Block, now time.Time) map[string]time.Time {
	if len(bs) == 0 {
		return nil
	}
	out := map[string]time.Time{}
	for _, b := range bs {
		if !b.BlockedUntil.After(now) {
			continue
		}
		s := label(b.Scope)
		if b.BlockedUntil.After(out[s]) {
			out[s] = b.BlockedUntil
		}
	}
	return out
}

func (c *credentialCollector) writeDisabled(s sink) {
	ts, ok := c.o.Broker.Tombstones()
	if !ok {
		return
	}
	counts := map[labelPair]int{}
	providers := map[string]struct{}{}
	for _, t := range ts {
		p := label(t.Provider)
		providers[p] = struct{}{}
		counts[labelPair{p, t.CauseClass()}]++
	}
	// Every cause of a provider is present (0 included) so that increase()
	// sees the first tombstone of a cause.
	for _, p := range slices.Sorted(maps.Keys(providers)) {
		for _, cause := range broker.DisableCauses {
			l := mDisabled.set(p, cause)
			s.add(mDisabled, &l, float64(counts[labelPair{p, cause}]))
		}
	}
}
