package health

import (
	"time"

	"github.com/authbroker/authbroker_exporter/store"
	"github.com/authbroker/authbroker_exporter/store/broker"
)

// hostile is broker-supplied text that must come out escaped.
const hostile = `<script>alert("x")</script>`

// showcase is an Input with one credential in every state, a hostile
// provider name and email, and tombstones of every cause class: the page
// tests render it and the screenshots show it.
func showcase() Input {
	in := healthy()
	in.Status.ClockSkew = 1200 * time.Millisecond
	in.Status.LastSync = t0.Add(-3 * time.Second)
	in.View.Generation = 57
	in.Status.GenerationResets = 1
	in.Broker.Latency = 2 * time.Millisecond

	ok := in.View.Entries[0]
	ok.LastRotation, ok.Rotations = t0.Add(-65*time.Minute), 12
	ok.Credential.OrgID = "org-acme"

	expiring := oauth(3, "openai-codex", "ops@example.com", 3*time.Minute, -70*time.Second)

	expired := oauth(4, "anthropic", "old@example.com", -2*time.Hour, 20*time.Second)
	expired.LastRotation, expired.Rotations = t0.Add(-3*time.Hour), 2

	overdue := oauth(5, "google-gemini-cli", "gem@example.com", 2*time.Hour, -3*time.Minute)

	blocked := oauth(6, "openai-codex", "team@example.com", 6*time.Hour, 5*time.Hour+55*time.Minute)
	blocked.Blocks = []broker.Block{
		{ProviderKey: "openai-codex:oauth", Scope: "chat", BlockedUntil: t0.Add(42 * time.Minute)},
		{ProviderKey: "openai-codex:oauth", Scope: "spark", BlockedUntil: t0.Add(17 * time.Minute)},
	}

	exhausted := oauth(7, "anthropic", "heavy@example.com", 7*time.Hour, 6*time.Hour+55*time.Minute)

	weird := oauth(8, hostile, hostile+"@example.com", 9*time.Hour, 8*time.Hour)
	weird.IdentityKey = "email:" + hostile

	in.View.Entries = append(in.View.Entries, expiring, expired, overdue, blocked, exhausted, weird)

	reports := []broker.UsageReport{
		report("anthropic", "a@example.com",
			limit("anthropic:5h", f64(0.42), "ok", 3*time.Hour),
			withWindow(limit("anthropic:7d", f64(0.91), "warning", 0), "7 Day", 4*24*time.Hour)),
		report("anthropic", "heavy@example.com",
			limit("anthropic:5h", f64(1.07), "exhausted", 95*time.Minute),
			withWindow(limit("anthropic:7d", f64(0.63), "ok", 0), "7 Day", 2*24*time.Hour)),
		report("openai-codex", "team@example.com", limit("openai-codex:primary", f64(0.18), "ok", 2*time.Hour)),
		report("openai-codex", "ops@example.com", limit("openai-codex:primary", nil, "", 0)),
		report(hostile, hostile+"@example.com", broker.UsageLimit{ID: hostile, Label: hostile, Amount: broker.UsageAmount{UsedFraction: f64(0.5)}}),
	}
	reports[0].Metadata.OrgID = "org-acme"
	in.Usage = store.NewUsage(reports, t0, in.View.Entries)
	in.Tombstones = []broker.Tombstone{
		{ID: 11, Provider: "anthropic", Type: "oauth", Email: "left@example.com", Cause: "oauth refresh failed: invalid_grant: refresh token revoked", DisabledAt: t0.Add(-40 * time.Minute)},
		{ID: 12, Provider: "openai", Type: "api_key", Cause: "replaced by newer credential", DisabledAt: t0.Add(-26 * time.Hour)},
		{ID: 13, Provider: "openai-codex", Type: "oauth", Email: "bye@example.com", Cause: "logged out by user", DisabledAt: t0.Add(-72 * time.Hour)},
		{ID: 14, Provider: hostile, Type: "oauth", Email: hostile, Cause: hostile},
	}
	return in
}

func withWindow(l broker.UsageLimit, label string, resetsIn time.Duration) broker.UsageLimit {
	l.Window = &broker.UsageWindow{ID: label, Label: label, ResetsAt: t0.Add(resetsIn)}
	return l
}

// showcaseStates is the state each showcase credential must end up in.
var showcaseStates = map[int64]string{
	1: StateOK, 2: StateOK, 3: StateExpiring, 4: StateExpired, 5: StateRotationOverdue,
	6: StateBlocked, 7: StateUsageExhausted, 8: StateOK,
}
