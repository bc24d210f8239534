package board

func rate(metric string, extra ...string) string {
	return "rate(" + m(metric, extra...) + "[$__rate_interval])"
}

func inRange(metric string) string {
	return "sum(increase(" + m(metric) + "[$__range]))"
}

func errorsBoard() *Dashboard {
	b := newDashboard("authbroker-errors", "Auth broker / Errors",
		"Failures as rates: broker sync (stream and long-poll), refresh and disable calls, usage fetches, and stale stream events.")

	b.row("In the selected range")
	b.add(4, 4,
		stat("Sync errors", "", "none", q{inRange("authbroker_sync_errors_total"), "errors"}).withThresholds(steps("green", 1, "orange")),
		stat("Refresh errors", "", "none", q{inRange("authbroker_refresh_errors_total"), "errors"}).withThresholds(steps("green", 1, "red")),
		stat("Disable errors", "", "none", q{inRange("authbroker_disable_errors_total"), "errors"}).withThresholds(steps("green", 1, "red")),
		stat("Usage fetch errors", "", "none", q{inRange("authbroker_usage_fetch_errors_total"), "errors"}).withThresholds(steps("green", 1, "orange")),
		stat("Stale stream events", "Stream frames discarded because their generation was older than the mirror's.", "none",
			q{"sum(increase(" + m("authbroker_stream_events_total", `result="stale"`) + "[$__range]))", "stale"}).withThresholds(steps("green", 1, "orange")),
		stat("Broker restarts", "", "none", q{inRange("authbroker_snapshot_generation_resets_total"), "restarts"}).withThresholds(steps("green", 1, "orange")),
	)

	b.row("Sync")
	b.add(12, 8,
		stacked(timeseries("Sync errors by mode and reason", "network, timeout, unauthorized, http_4xx, http_5xx, protocol, idle (no byte for 60 s), eof.", "ops",
			q{"sum by (mode, reason) (" + rate("authbroker_sync_errors_total") + ")", "{{mode}} {{reason}}"})),
		stacked(timeseries("Sync requests by mode and result", "Stream connections and long-polls: ok, unchanged (304), error.", "ops",
			q{"sum by (mode, result) (" + rate("authbroker_sync_requests_total") + ")", "{{mode}} {{result}}"})),
		stacked(timeseries("Stream events by kind and result", "Frames applied vs discarded as stale, by kind (snapshot, entry, removed).", "ops",
			q{"sum by (kind, result) (" + rate("authbroker_stream_events_total") + ")", "{{kind}} {{result}}"})),
		timeseries("Stale stream events ratio", "Share of stream frames discarded as stale.", "percentunit",
			q{"sum(" + rate("authbroker_stream_events_total", `result="stale"`) + ") / sum(" + rate("authbroker_stream_events_total") + ")", "stale"}).
			withMinMax(f64(0), f64(1)),
	)

	b.row("Refresh and disable")
	b.add(12, 8,
		stacked(timeseries("Refresh errors by reason", "Refresh calls through the broker that failed: not_found, upstream, timeout, network, unauthorized, invalid_response.", "ops",
			q{"sum by (provider, reason) (" + rate("authbroker_refresh_errors_total") + ")", "{{provider}} {{reason}}"})),
		stacked(timeseries("Refresh requests by result", "", "ops",
			q{"sum by (provider, result) (" + rate("authbroker_refresh_requests_total") + ")", "{{provider}} {{result}}"})),
		stacked(timeseries("Disable errors by reason", "", "ops",
			q{"sum by (provider, reason) (" + rate("authbroker_disable_errors_total") + ")", "{{provider}} {{reason}}"})),
		stacked(timeseries("Disable requests by result", "", "ops",
			q{"sum by (provider, result) (" + rate("authbroker_disable_requests_total") + ")", "{{provider}} {{result}}"})),
	)

	b.row("Usage fetches")
	b.add(12, 8,
		stacked(timeseries("Usage fetch errors by reason", "Failed upstream /v1/usage calls.", "ops",
			q{"sum by (reason) (" + rate("authbroker_usage_fetch_errors_total") + ")", "{{reason}}"})),
		timeseries("Usage fetches", "Upstream /v1/usage calls (after single-flight and the 15 s cache) and the share that failed.", "ops",
			q{"sum(" + rate("authbroker_usage_fetches_total") + ")", "fetches"},
			q{"sum(" + rate("authbroker_usage_fetch_errors_total") + ")", "errors"}),
	)
	return b.d
}
