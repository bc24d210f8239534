package collector

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/authbroker/authbroker_exporter/health"
	"github.com/authbroker/authbroker_exporter/store"
)

var disableCauses = []string{health.CauseRefreshFailed, health.CauseReplaced, health.CauseManual, health.CauseOther}

// credentialCollector publishes one set of series per mirrored credential,
// plus the broker's tombstones.
type credentialCollector struct {
	o Options

	credentials, info, expiry, rotatesIn, lastRotation, rotations, blocked, disabled *prometheus.Desc

	names *labelNames
	cache entryCache[*credentialRow]
}

// credentialRow is the label material of one entry version.
type credentialRow struct {
	e                             *store.Entry
	id, provider, typ             string
	identity, email, account, org string
	idProvider                    []*dto.LabelPair // {id, provider}
	info                          []*dto.LabelPair
}

func (c *credentialCollector) row(e *store.Entry) *credentialRow {
	cr := &e.Credential
	r := &credentialRow{e: e, id: strconv.FormatInt(e.ID, 10), provider: label(e.Provider), typ: label(cr.Type),
		identity: c.ident(e.IdentityKey), email: c.ident(cr.Email), account: c.ident(cr.AccountID), org: c.ident(cr.OrgID)}
	n := c.names
	id, provider := pair(&n.id, &r.id), pair(&n.provider, &r.provider)
	r.idProvider = []*dto.LabelPair{id, provider}
	// Sorted by label name, as the client library keeps them.
	r.info = []*dto.LabelPair{pair(&n.account, &r.account), pair(&n.email, &r.email), id,
		pair(&n.identity, &r.identity), pair(&n.org, &r.org), provider, pair(&n.typ, &r.typ)}
	return r
}

func newCredentialCollector(o Options) *credentialCollector {
	return &credentialCollector{
		o:            o,
		credentials:  desc("credentials", "Active credentials by provider and type (oauth, api_key).", "provider", "type"),
		info:         desc("credential_info", "Identity of each credential (raw, hashed or empty per --collector.identity); always 1.", "id", "provider", "type", "identity", "email", "account", "org"),
		expiry:       desc("credential_expiry_timestamp_seconds", "OAuth access-token expiry (broker clock).", "id", "provider"),
		rotatesIn:    desc("credential_rotates_in_seconds", "Seconds until the broker next attempts to refresh the credential; negative = overdue.", "id", "provider"),
		lastRotation: desc("credential_last_rotation_timestamp_seconds", "When a token change was last observed; absent until one is.", "id", "provider"),
		rotations:    desc("credential_rotations_total", "Token rotations observed by the exporter.", "id", "provider"),
		blocked:      desc("credential_blocked_until_timestamp_seconds", "End of an active rate-limit block, per scope.", "id", "provider", "scope"),
		disabled:     desc("credentials_disabled", "Disabled credentials (broker tombstones) by provider and cause.", "provider", "cause"),
		names:        newLabelNames(),
	}
}

func (c *credentialCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, c.credentials, c.info, c.expiry, c.rotatesIn, c.lastRotation, c.rotations, c.blocked, c.disabled)
}

func (c *credentialCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.o.Now()
	v := c.o.Source.Snapshot()
	rows := c.cache.update(v.Entries, func(e *store.Entry, old *credentialRow, hit bool) (*credentialRow, bool) {
		if hit {
			return old, true
		}
		return c.row(e), true
	})
	sortedByID(rows, func(r *credentialRow) string { return r.id })
	counts := map[[2]string]int{}
	em := emitter{ch: ch}
	for _, r := range rows {
		e, cr := r.e, &r.e.Credential
		counts[[2]string{r.provider, r.typ}]++
		em.gauge(c.info, r.info, 1)
		if cr.Type != store.TypeOAuth {
			continue
		}
		if cr.HasExpires {
			em.gauge(c.expiry, r.idProvider, unix(cr.Expires))
		}
		if d, ok := e.RotationDeadline(); ok {
			em.gauge(c.rotatesIn, r.idProvider, d.Sub(now).Seconds())
		}
		if !e.LastRotation.IsZero() {
			em.gauge(c.lastRotation, r.idProvider, unix(e.LastRotation))
		}
		em.counter(c.rotations, r.idProvider, float64(e.Rotations))
		if len(e.Blocks) > 0 {
			blocks := activeBlocks(e.Blocks, now)
			for _, scope := range slices.Sorted(maps.Keys(blocks)) {
				gauge(ch, c.blocked, unix(blocks[scope]), r.id, r.provider, scope)
			}
		}
	}
	for k, n := range counts {
		gauge(ch, c.credentials, float64(n), k[0], k[1])
	}
	c.collectDisabled(ch)
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

func (c *credentialCollector) collectDisabled(ch chan<- prometheus.Metric) {
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
	for p := range providers {
		for _, cause := range disableCauses {
			gauge(ch, c.disabled, float64(counts[[2]string{p, cause}]), p, cause)
		}
	}
}
