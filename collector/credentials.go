package collector

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/internal/health"
	"github.com/authbroker/authbroker_exporter/store"
)

var disableCauses = []string{health.CauseRefreshFailed, health.CauseReplaced, health.CauseManual, health.CauseOther}

// credentialCollector publishes one set of series per mirrored credential,
// plus the broker's tombstones.
type credentialCollector struct {
	o Options

	credentials, info, expiry, rotatesIn, lastRotation, rotations, blocked, disabled *family

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
	r.idProvider = c.expiry.set(r.id, r.provider) // also rotatesIn, lastRotation, rotations
	r.info = c.info.set(r.id, r.provider, r.typ, c.ident(e.IdentityKey), c.ident(cr.Email), c.ident(cr.AccountID), c.ident(cr.OrgID))
	return r
}

func newCredentialCollector(o Options) *credentialCollector {
	g := prometheus.GaugeValue
	return &credentialCollector{
		o:            o,
		credentials:  newFamily(g, "credentials", "Active credentials by provider and type (oauth, api_key).", "provider", "type"),
		info:         newFamily(g, "credential_info", "Identity of each credential (raw, hashed or empty per --collector.identity); always 1.", "id", "provider", "type", "identity", "email", "account", "org"),
		expiry:       newFamily(g, "credential_expiry_timestamp_seconds", "OAuth access-token expiry (broker clock).", "id", "provider"),
		rotatesIn:    newFamily(g, "credential_rotates_in_seconds", "Seconds until the broker next attempts to refresh the credential; negative = overdue.", "id", "provider"),
		lastRotation: newFamily(g, "credential_last_rotation_timestamp_seconds", "When a token change was last observed; absent until one is.", "id", "provider"),
		rotations:    newFamily(prometheus.CounterValue, "credential_rotations_total", "Token rotations observed by the exporter.", "id", "provider"),
		blocked:      newFamily(g, "credential_blocked_until_timestamp_seconds", "End of an active rate-limit block, per scope.", "id", "provider", "scope"),
		disabled:     newFamily(g, "credentials_disabled", "Disabled credentials (broker tombstones) by provider and cause.", "provider", "cause"),
	}
}

func (c *credentialCollector) Describe(ch chan<- *prometheus.Desc) {
	describeFamilies(ch, c.credentials, c.info, c.expiry, c.rotatesIn, c.lastRotation, c.rotations, c.blocked, c.disabled)
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
	counts := map[[2]string]int{}
	for _, r := range rows {
		counts[[2]string{r.provider, r.typ}]++
		s.add(c.info, &r.info, 1)
	}
	oauth := slices.DeleteFunc(rows, func(r *credentialRow) bool { return r.e.Credential.Type != store.TypeOAuth })
	for _, r := range oauth {
		if cr := &r.e.Credential; cr.HasExpires {
			s.add(c.expiry, &r.idProvider, unix(cr.Expires))
		}
	}
	for _, r := range oauth {
		if d, ok := r.e.RotationDeadline(); ok {
			s.add(c.rotatesIn, &r.idProvider, d.Sub(now).Seconds())
		}
	}
	for _, r := range oauth {
		if !r.e.LastRotation.IsZero() {
			s.add(c.lastRotation, &r.idProvider, unix(r.e.LastRotation))
		}
	}
	for _, r := range oauth {
		s.add(c.rotations, &r.idProvider, float64(r.e.Rotations))
	}
	for _, r := range oauth {
		if len(r.e.Blocks) == 0 {
			continue
		}
		blocks := activeBlocks(r.e.Blocks, now)
		for _, scope := range slices.Sorted(maps.Keys(blocks)) {
			l := c.blocked.set(r.id, r.provider, scope)
			s.add(c.blocked, &l, unix(blocks[scope]))
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(counts), cmpPair) {
		l := c.credentials.set(k[0], k[1])
		s.add(c.credentials, &l, float64(counts[k]))
	}
	c.writeDisabled(s)
}

func cmpPair(a, b [2]string) int {
	return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
}

func (c *credentialCollector) ident(s string) string { return label(c.o.Identity.Render(s)) }

// activeBlocks keeps the latest end per scope: blocks of different
// provider keys may share a scope, and two series with one label set would
// fail the whole scrape.
func activeBlocks(bs []store.Block, now time.Time) map[string]time.Time {
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
	counts := map[[2]string]int{}
	providers := map[string]struct{}{}
	for _, t := range ts {
		p := label(t.Provider)
		providers[p] = struct{}{}
		counts[[2]string{p, health.DisableCause(t.Cause)}]++
	}
	// Every cause of a provider is present (0 included) so that increase()
	// sees the first tombstone of a cause.
	for _, p := range slices.Sorted(maps.Keys(providers)) {
		for _, cause := range slices.Sorted(slices.Values(disableCauses)) {
			l := c.disabled.set(p, cause)
			s.add(c.disabled, &l, float64(counts[[2]string{p, cause}]))
		}
	}
}
