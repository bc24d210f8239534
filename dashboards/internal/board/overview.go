package board

func upDownMap(up, down string) Mapping {
	return valueMap(0, down, "red", 1, up, "green")
}

func overview() *Dashboard {
	b := newDashboard("authbroker-overview", "Auth broker / Overview",
		"Is the exporter's mirror of the auth-broker live, how it syncs, the refresher schedule and the credential inventory.")

	b.row("Mirror")
	b.add(3, 4,
		stat("Mirror", "authbroker_up: 1 while the mirror is live (stream connected, or the last long-poll answered within its window).", "",
			q{m("authbroker_up"), "{{instance}}"}).
			withMappings(upDownMap("live", "down")).withThresholds(steps("red", 1, "green")).withColorMode("background"),
		nameStat("Sync mode", "The active sync mode: stream (SSE) or poll (long-poll fallback).",
			q{m("authbroker_sync_mode") + " == 1", "{{mode}}"}),
		stat("Stream", "SSE stream open and past its first frame.", "",
			q{m("authbroker_stream_connected"), "{{instance}}"}).
			withMappings(upDownMap("connected", "disconnected")).withThresholds(steps("red", 1, "green")),
		stat("Stream supported", "0 once the broker answered 404 on the stream: the exporter stays in long-poll mode until restarted.", "",
			q{m("authbroker_stream_supported"), "{{instance}}"}).
			withMappings(valueMap(0, "no: long-poll", "orange", 1, "yes", "green")).withThresholds(steps("orange", 1, "green")),
		stat("Generation", "Generation of the mirrored snapshot; it moves on every broker-side change.", "none",
			q{m("authbroker_snapshot_generation"), "{{instance}}"}).withColorMode("none"),
		stat("Last sync", "Seconds since the mirror was last confirmed current (frame applied, long-poll 200 or 304). "+
			"In poll mode it stays below the 30 s long-poll window; in stream mode it grows between broker changes, which is normal while the stream is connected.", "s",
			q{"time() - " + m("authbroker_snapshot_last_sync_timestamp_seconds"), "{{instance}}"}).withColorMode("none"),
		stat("Broker clock skew", "Local receipt time minus the broker's serverNowMs of the last frame. Rotation deadlines are computed from receipt time, so skew does not shift them.", "s",
			q{m("authbroker_broker_clock_skew_seconds"), "{{instance}}"}).
			withThresholds(steps("red", -30, "orange", -5, "green", 5, "orange", 30, "red")),
		stat("Broker restarts", "Full snapshots whose generation went backwards (broker restarts) in the selected time range.", "none",
			q{"sum(increase(" + m("authbroker_snapshot_generation_resets_total") + "[$__range]))", "restarts"}).
			withThresholds(steps("green", 1, "orange")),
	)
	b.add(4, 4,
		nameStat("Broker version", "From the broker's /v1/healthz.",
			q{m("authbroker_broker_info"), "{{version}}"}),
		nameStat("Exporter version", "authbroker_exporter build.",
			q{m("authbroker_exporter_build_info"), "{{version}}"}),
		stat("Snapshot age", "Seconds since the broker built the last full snapshot (generatedAt). Deltas do not move it.", "s",
			q{"time() - " + m("authbroker_snapshot_generated_timestamp_seconds"), "{{instance}}"}).withColorMode("none"),
		stat("Active credentials", "Credentials in the mirrored snapshot.", "none",
			q{"sum(" + m("authbroker_credentials") + ")", "credentials"}).withColorMode("none"),
		stat("Disabled credentials", "Tombstones listed by /v1/credentials/disabled (refresh failed, replaced, manual).", "none",
			q{"sum(" + m("authbroker_credentials_disabled") + ")", "disabled"}).
			withThresholds(steps("green", 1, "orange")),
		stat("Scrape", "Prometheus' own view: is the exporter being scraped?", "",
			q{m("up"), "{{instance}}"}).
			withMappings(upDownMap("up", "down")).withThresholds(steps("red", 1, "green")),
	)

	b.row("Refresher")
	b.add(6, 4,
		stat("Refresher", "The broker's background refresher schedule.", "",
			q{m("authbroker_refresher_enabled"), "{{instance}}"}).
			withMappings(valueMap(0, "disabled", "orange", 1, "enabled", "green")).withThresholds(steps("orange", 1, "green")),
		stat("Sweep interval", "Time between refresher sweeps.", "s",
			q{m("authbroker_refresher_interval_seconds"), "{{instance}}"}).withColorMode("none"),
		stat("Refresh skew", "A sweep refreshes every OAuth credential expiring within this long.", "s",
			q{m("authbroker_refresher_skew_seconds"), "{{instance}}"}).withColorMode("none"),
		stat("Next sweep in", "Seconds until the next refresher sweep (0 during a sweep; may read 0 until the next broker change). Absent while the refresher is disabled.", "s",
			q{m("authbroker_refresher_next_sweep_timestamp_seconds") + " - time()", "{{instance}}"}).
			withNoValue("disabled").withColorMode("none"),
	)

	b.row("Credentials")
	b.add(12, 8,
		stacked(timeseries("Credentials by provider and type", "Active credentials (type = oauth, api_key).", "none",
			q{"sum by (provider, type) (" + m("authbroker_credentials") + ")", "{{provider}} {{type}}"})),
		bargauge("Credentials now", "Active credentials by provider and type.", "none",
			q{"sum by (provider, type) (" + m("authbroker_credentials") + ")", "{{provider}} {{type}}"}),
		stacked(timeseries("Disabled credentials by cause", "Tombstones by provider and cause (refresh_failed, replaced, manual, other).", "none",
			q{"sum by (provider, cause) (" + m("authbroker_credentials_disabled") + ")", "{{provider}} {{cause}}"})),
		timeseries("Observed rotations", "Token rotations the exporter observed per provider, per hour.", "none",
			q{"sum by (provider) (increase(" + m("authbroker_credential_rotations_total") + "[1h]))", "{{provider}}"}),
	)

	b.row("Sync")
	b.add(12, 8,
		timeseries("Mirror and stream", "1 = live / connected.", "none",
			q{m("authbroker_up"), "live {{instance}}"},
			q{m("authbroker_stream_connected"), "stream {{instance}}"}).withMinMax(f64(0), f64(1)),
		timeseries("Last sync age", "Seconds since the mirror was last confirmed current.", "s",
			q{"time() - " + m("authbroker_snapshot_last_sync_timestamp_seconds"), "{{instance}}"}),
		timeseries("Snapshot generation", "Steps back mark broker restarts.", "none",
			q{m("authbroker_snapshot_generation"), "{{instance}}"}),
		timeseries("Broker clock skew", "Local receipt time minus the broker's serverNowMs.", "s",
			q{m("authbroker_broker_clock_skew_seconds"), "{{instance}}"}),
	)

	b.row("Exporter process")
	b.add(6, 6,
		timeseries("Scrape up", "Prometheus' up series for the exporter.", "none",
			q{m("up"), "{{instance}}"}).withMinMax(f64(0), f64(1)),
		timeseries("Resident memory", "", "bytes",
			q{m("process_resident_memory_bytes"), "{{instance}}"}),
		timeseries("CPU", "", "percentunit",
			q{"rate(" + m("process_cpu_seconds_total") + "[$__rate_interval])", "{{instance}}"}),
		timeseries("Goroutines", "", "none",
			q{m("go_goroutines"), "{{instance}}"}),
	)
	return b.d
}
