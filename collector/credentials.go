package collector

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authbroker/authbroker_exporter/health"
	"github.com/authbroker/authbroker_exporter/store"
)

var disableCauses = []string{health.CauseRefreshFailed, health.CauseReplaced, health.CauseManual, health.CauseOther}

// credentialCollector publishes one set of series per mirrored credential,
// plus the broker's tombstones.
type credentialCollector struct {
	o Options

	credentials, info, expiry, rotatesIn, lastRotation, rotations, blocked, disabled *prometheus.Desc
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
	}
}

func (c *credentialCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, c.credentials, c.info, c.expiry, c.rotatesIn, c.lastRotation, c.rotations, c.blocked, c.disabled)
}

func (c *credentialCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.o.Now()
	v := c.o.Source.Snapshot()
	counts := map[[2]string]int{}
	for _, e := range v.Entries {
		cr := &e.Credential
		id, provider := strconv.FormatInt(e.ID, 10), label(e.Provider)
		counts[[2]string{provider, label(cr.Type)}]++
		gauge(ch, c.info, 1, id, provider, label(cr.Type),
			c.ident(e.IdentityKey), c.ident(cr.Email), c.ident(cr.AccountID), c.ident(cr.OrgID))
		if cr.Type != store.TypeOAuth {
			continue
		}
		if cr.HasExpires {
			gauge(ch, c.expiry, unix(cr.Expires), id, provider)
		}
		if d, ok := e.RotationDeadline(); ok {
			gauge(ch, c.rotatesIn, d.Sub(now).Seconds(), id, provider)
		}
		if !e.LastRotation.IsZero() {
			gauge(ch, c.lastRotation, unix(e.LastRotation), id, provider)
		}
		counter(ch, c.rotations, float64(e.Rotations), id, provider)
		for scope, until := range activeBlocks(e.Blocks, now) {
			gauge(ch, c.blocked, unix(until), id, provider, scope)
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
