package collector

import "github.com/prometheus/client_golang/prometheus"

// The exporter's one metric catalogue: every family it writes, declared
// once, in the order README's metric table lists them. Describe, the
// collectors, the README table test and the dashboard and alert tests all
// read it; its help texts are what README's table says of each family.
var (
	gauge   = prometheus.GaugeValue
	counter = prometheus.CounterValue

	// The mirror and its sync.
	mUp                = newFamily(gauge, "up", "1 while the mirror is live: stream connected, or the last long-poll answered within its window, and the broker's healthz answers.")
	mBrokerInfo        = newFamily(gauge, "broker_info", "Broker version as reported by /v1/healthz; always 1.", "version")
	mSyncMode          = newFamily(gauge, "sync_mode", "1 for the active sync mode (stream or poll), 0 for the other.", "mode")
	mStreamConnected   = newFamily(gauge, "stream_connected", "1 while the SSE stream is open and past its first frame.")
	mStreamSupported   = newFamily(gauge, "stream_supported", "0 once the broker answered 404 on the stream and long-poll was latched, or when --no-broker.stream turned the stream off.")
	mSyncRequests      = newFamily(counter, "sync_requests_total", "Stream connections, long-polls and stream-mode reconciling GETs (mode stream, poll, reconcile) by result (ok, unchanged, error).", "mode", "result")
	mSyncErrors        = newFamily(counter, "sync_errors_total", "Sync failures by mode and reason.", "mode", "reason")
	mStreamEvents      = newFamily(counter, "stream_events_total", "Stream frames by kind and whether they were applied or stale.", "kind", "result")
	mGeneration        = newFamily(gauge, "snapshot_generation", "Generation of the mirrored snapshot.")
	mGenerationResets  = newFamily(counter, "snapshot_generation_resets_total", "Broker restarts seen: full snapshots whose generation went backwards.")
	mLastSync          = newFamily(gauge, "snapshot_last_sync_timestamp_seconds", "Last time the mirror was confirmed current (frame applied, long-poll 200 or 304).")
	mGeneratedAt       = newFamily(gauge, "snapshot_generated_timestamp_seconds", "generatedAt of the last full snapshot (broker clock).")
	mClockSkew         = newFamily(gauge, "broker_clock_skew_seconds", "Local receipt time minus the broker's serverNowMs of the last frame.")
	mRefresherEnabled  = newFamily(gauge, "refresher_enabled", "1 when the broker's background refresher is enabled.")
	mRefresherInterval = newFamily(gauge, "refresher_interval_seconds", "Interval between the broker's refresh sweeps.")
	mRefresherSkew     = newFamily(gauge, "refresher_skew_seconds", "How long before expiry the broker refreshes a credential.")
	mNextSweep         = newFamily(gauge, "refresher_next_sweep_timestamp_seconds", "When the broker's next refresh sweep is due; absent while the refresher is disabled.")

	// Credentials.
	mCredentials  = newFamily(gauge, "credentials", "Active credentials by provider and type (oauth, api_key).", "provider", "type")
	mInfo         = newFamily(gauge, "credential_info", "Identity of each credential (raw, hashed or empty per --collector.identity); always 1.", "id", "provider", "type", "identity", "email", "account", "org")
	mExpiry       = newFamily(gauge, "credential_expiry_timestamp_seconds", "OAuth access-token expiry (broker clock).", "id", "provider")
	mRotatesIn    = newFamily(gauge, "credential_rotates_in_seconds", "Seconds until the broker next attempts to refresh the credential; negative = overdue.", "id", "provider")
	mLastRotation = newFamily(gauge, "credential_last_rotation_timestamp_seconds", "When a token change was last observed; absent until one is.", "id", "provider")
	mRotations    = newFamily(counter, "credential_rotations_total", "Token rotations observed by the exporter.", "id", "provider")
	mBlocked      = newFamily(gauge, "credential_blocked_until_timestamp_seconds", "End of an active rate-limit block, per scope.", "id", "provider", "scope")
	mDisabled     = newFamily(gauge, "credentials_disabled", "Disabled credentials (broker tombstones) by provider and cause.", "provider", "cause")

	// Usage.
	mUsedFraction    = newFamily(gauge, "usage_limit_used_fraction", "Effective used fraction of a usage limit; > 1 = overage.", "id", "provider", "limit", "window")
	mUsed            = newFamily(gauge, "usage_limit_used", "Amount used in the limit's window, when the report has it.", "id", "provider", "limit", "window", "unit")
	mMax             = newFamily(gauge, "usage_limit_max", "The limit's maximum amount, when the report has it.", "id", "provider", "limit", "window", "unit")
	mRemaining       = newFamily(gauge, "usage_limit_remaining", "Amount remaining in the limit's window, when the report has it.", "id", "provider", "limit", "window", "unit")
	mResets          = newFamily(gauge, "usage_limit_resets_timestamp_seconds", "When the limit's window resets.", "id", "provider", "limit", "window")
	mStatus          = newFamily(gauge, "usage_limit_status", "Limit status: 0 ok, 1 warning, 2 exhausted, -1 unknown.", "id", "provider", "limit", "window")
	mFetched         = newFamily(gauge, "usage_report_fetched_timestamp_seconds", "fetchedAt of the usage report matched to the credential.", "id", "provider")
	mMatch           = newFamily(gauge, "usage_match", "1 for the credential's usage match state (matched, unmatched), 0 for the other; OAuth credentials only.", "id", "provider", "state")
	mUnmatched       = newFamily(gauge, "usage_reports_unmatched", "Usage reports no credential claimed, by provider.", "provider")
	mResetCredits    = newFamily(gauge, "usage_reset_credits", "Saved usage resets of the credential's account: available or redeemable (resetCredits counts).", "id", "provider", "state")
	mResetCooldown   = newFamily(gauge, "usage_reset_cooldown_until_timestamp_seconds", "End of the saved-reset cooldown, when the report gives one.", "id", "provider")
	mResetNextExpiry = newFamily(gauge, "usage_reset_credit_next_expiry_timestamp_seconds", "Earliest expiry of a usable saved reset.", "id", "provider")
	mLimitResets     = newFamily(gauge, "usage_limit_reset_credits", "Usable saved resets that clear the limit.", "id", "provider", "limit")

	// Calls through the broker.
	mUsageFetches     = newFamily(counter, "usage_fetches_total", "Upstream /v1/usage calls (after single-flight and caching).")
	mUsageFetchErrors = newFamily(counter, "usage_fetch_errors_total", "Failed upstream /v1/usage calls by reason.", "reason")
	mRefreshRequests  = newFamily(counter, "refresh_requests_total", "Credential refresh calls made through the broker, by result (ok, error).", "provider", "result")
	mRefreshErrors    = newFamily(counter, "refresh_errors_total", "Failed refresh calls by reason.", "provider", "reason")
	mDisableRequests  = newFamily(counter, "disable_requests_total", "Credential disable calls made through the broker, by result (ok, error).", "provider", "result")
	mDisableErrors    = newFamily(counter, "disable_errors_total", "Failed disable calls by reason.", "provider", "reason")

	// Provider capacity: the "usable now" rule of docs/health.md.
	mProviderCredentials = newFamily(gauge, "provider_credentials", "Active credentials by provider and health state (the status page's states); every state is present.", "provider", "state")
	mProviderUsable      = newFamily(gauge, "provider_usable_credentials", "Credentials usable now: OAuth token not expired, no unscoped rate-limit block, no exhausted usage limit.", "provider")
	mProviderNextUsable  = newFamily(gauge, "provider_next_usable_timestamp_seconds", "While the provider has active credentials and none is usable: when one becomes usable again (a block ends, a usage window resets; now when a saved reset can be redeemed); absent when unknown.", "provider")
)

var catalogue = []*family{
	mUp, mBrokerInfo, mSyncMode, mStreamConnected, mStreamSupported, mSyncRequests, mSyncErrors, mStreamEvents,
	mGeneration, mGenerationResets, mLastSync, mGeneratedAt, mClockSkew,
	mRefresherEnabled, mRefresherInterval, mRefresherSkew, mNextSweep,
	mCredentials, mInfo, mExpiry, mRotatesIn, mLastRotation, mRotations, mBlocked, mDisabled,
	mUsedFraction, mUsed, mMax, mRemaining, mResets, mStatus, mFetched, mMatch, mUnmatched,
	mResetCredits, mResetCooldown, mResetNextExpiry, mLimitResets,
	mUsageFetches, mUsageFetchErrors, mRefreshRequests, mRefreshErrors, mDisableRequests, mDisableErrors,
	mProviderCredentials, mProviderUsable, mProviderNextUsable,
}

// Metric describes one family of the catalogue.
type Metric struct {
	Name   string // with the authbroker_ prefix
	Type   string // gauge or counter
	Help   string
	Labels []string
}

// Catalogue returns every family the exporter's own collectors write, in
// README order. (The Go, process, build-info and promhttp families come
// from client_golang.)
func Catalogue() []Metric {
	out := make([]Metric, len(catalogue))
	for i, f := range catalogue {
		out[i] = Metric{Name: f.name, Type: f.typeName(), Help: f.help, Labels: f.labels.names}
	}
	return out
}
