package board

// Recording rules from alerts/: credentials per (job, provider, limit), and
// those of them whose used fraction is below 0.9.
const (
	ruleCredentials = "provider_limit:authbroker_usage_limit_credentials:count"
	ruleHeadroom    = "provider_limit:authbroker_usage_limit_headroom_credentials:count"
)

var statusMap = valueMap(
	-1, "unknown", "text",
	0, "ok", "green",
	1, "warning", "orange",
	2, "exhausted", "red",
)

func usage() *Dashboard {
	b := newDashboard("authbroker-usage", "Auth broker / Usage",
		"How much of each account's provider usage limits is consumed, when the windows reset, a linear exhaustion forecast, "+
			"saved resets and the limits they clear, headroom per provider and limit, and usage reports no credential claimed.")

	used := m("authbroker_usage_limit_used_fraction")
	withIdentity := " * on (job, instance, id) group_left (identity) " + m("authbroker_credential_info")
	legend := "{{provider}} {{identity}} {{limit}}"
	fraction := steps("green", 0.9, "orange", 1, "red")

	b.row("Limits")
	b.add(12, 10,
		bargauge("Used fraction", "Effective used fraction per credential and limit (the broker's usedFraction, else used/limit, else percent/100, else 1 - remainingFraction). Above 100% = overage.", "percentunit",
			q{used + withIdentity, legend}).
			withMinMax(f64(0), f64(1)).withThresholds(fraction),
		timeseries("Used fraction over time", "A drop marks a window reset.", "percentunit",
			q{used + withIdentity, legend}).withThresholds(fraction),
	)
	perLimit := "max by (job, instance, id, provider, limit, window) "
	b.add(24, 10, table("Limits",
		"One row per credential and limit, fullest first. Exhausts in: linear forecast from the last hour's trend (empty when usage is flat or falling).",
		[]string{"provider", "identity", "limit", "window", "id", "instance"},
		[]column{
			{name: "Used", expr: used + withIdentity,
				props: []Property{prop("unit", "percentunit"), prop("thresholds", fraction), cellColor("color-text")}},
			{name: "Status", expr: perLimit + "(" + m("authbroker_usage_limit_status") + ")",
				props: []Property{prop("mappings", []Mapping{statusMap}), cellColor("color-text")}},
			{name: "Resets in", expr: perLimit + "(" + m("authbroker_usage_limit_resets_timestamp_seconds") + ") - time()",
				props: []Property{prop("unit", "s")}},
			{name: "Exhausts in", expr: "(1 - " + used + ") / (deriv(" + used + "[1h]) > 0)",
				props: []Property{prop("unit", "s"), prop("thresholds", steps("red", 3600, "orange", 4*3600, "green")), cellColor("color-text")}},
		},
		"Used", true))

	b.row("Forecast and resets")
	b.add(12, 8,
		timeseries("Forecast: used fraction in 1 h", "predict_linear over the last hour, one hour ahead. Above 100% means the limit runs out within the hour at the current pace, unless the window resets first.", "percentunit",
			q{"predict_linear(" + used + "[1h], 3600)", "{{provider}} {{id}} {{limit}}"}).withThresholds(fraction),
		timeseries("Window resets in", "Time until each limit window resets.", "s",
			q{m("authbroker_usage_limit_resets_timestamp_seconds") + " - time()", "{{provider}} {{id}} {{limit}}"}),
	)

	// Saved resets (docs/broker-protocol.md §13.1): which exhausted limits a
	// usable saved reset would clear, and each account's counts.
	b.row("Saved resets")
	resetCredits := m("authbroker_usage_limit_reset_credits")
	perCred := "max by (job, instance, id, provider) "
	// One row per limit whatever its windows: the worst status, the fullest window.
	byLimit := "max by (job, instance, id, provider, limit) "
	withResets := " and on (job, instance, id, provider, limit) " + resetCredits
	b.add(14, 9, table("Saved resets by limit",
		"One row per credential and limit that a usable saved reset clears, exhausted limits first. Usable resets: the account's usable saved resets that name the limit. "+
			"A reset is worth redeeming when the limit is exhausted and its window does not reset soon anyway.",
		[]string{"provider", "identity", "limit", "id", "instance"},
		[]column{
			{name: "Usable resets", expr: resetCredits + withIdentity,
				props: []Property{prop("unit", "none"), prop("decimals", 0)}},
			{name: "Status", expr: byLimit + "(" + m("authbroker_usage_limit_status") + ")" + withResets,
				props: []Property{prop("mappings", []Mapping{statusMap}), cellColor("color-text")}},
			{name: "Used", expr: byLimit + "(" + used + ")" + withResets,
				props: []Property{prop("unit", "percentunit"), prop("thresholds", fraction), cellColor("color-text")}},
			{name: "Window resets in", expr: "min by (job, instance, id, provider, limit) (" + m("authbroker_usage_limit_resets_timestamp_seconds") + ") - time()" + withResets,
				props: []Property{prop("unit", "s")}},
		},
		"Status", true),
		table("Saved resets by credential",
			"Saved usage resets per credential, from the broker's resetCredits. Available and redeemable: the broker's counts. "+
				"Cooldown ends in: until another reset may be redeemed (only while one runs). Next expiry in: the earliest expiry of a usable saved reset.",
			[]string{"provider", "identity", "id", "instance"},
			[]column{
				{expr: "group by (job, instance, id, provider) (" + m("authbroker_usage_reset_credits") + " or " + resetCredits + ")" + withIdentity},
				{name: "Available", expr: perCred + "(" + m("authbroker_usage_reset_credits", `state="available"`) + ")",
					props: []Property{prop("unit", "none"), prop("decimals", 0)}},
				{name: "Redeemable", expr: perCred + "(" + m("authbroker_usage_reset_credits", `state="redeemable"`) + ")",
					props: []Property{prop("unit", "none"), prop("decimals", 0)}},
				{name: "Cooldown ends in", expr: perCred + "(" + m("authbroker_usage_reset_cooldown_until_timestamp_seconds") + ") - time() > 0",
					props: []Property{prop("unit", "s")}},
				{name: "Next expiry in", expr: "min by (job, instance, id, provider) (" + m("authbroker_usage_reset_credit_next_expiry_timestamp_seconds") + ") - time()",
					props: []Property{prop("unit", "s"), prop("thresholds", steps("red", 0, "orange", 86400, "green")), cellColor("color-text")}},
			},
			"Available", true),
	)
	b.add(24, 7,
		timeseries("Saved resets over time", "The broker's available and redeemable saved-reset counts per credential; a step down is a redeemed or expired reset.", "none",
			q{m("authbroker_usage_reset_credits") + withIdentity, "{{provider}} {{identity}} {{state}}"}),
	)

	b.row("Headroom")
	b.add(8, 8,
		bargauge("Credentials with headroom", "Share of credentials per provider and limit with used fraction below 90% (recording rules).", "percentunit",
			q{"(" + rule(ruleHeadroom) + " or 0 * " + rule(ruleCredentials) + ") / " + rule(ruleCredentials), "{{provider}} {{limit}}"}).
			withMinMax(f64(0), f64(1)).withThresholds(steps("red", 0.01, "orange", 0.5, "green")),
		timeseries("Credentials with headroom over time", "Credentials below 90% used, per provider and limit.", "none",
			q{rule(ruleHeadroom), "{{provider}} {{limit}} with headroom"},
			q{rule(ruleCredentials), "{{provider}} {{limit}} total"}),
		timeseries("Raw amounts", "Used and limit in the report's own unit, when the provider reports them.", "none",
			q{m("authbroker_usage_limit_used"), "used {{provider}} {{id}} {{limit}} ({{unit}})"},
			q{m("authbroker_usage_limit_max"), "max {{provider}} {{id}} {{limit}} ({{unit}})"},
			q{m("authbroker_usage_limit_remaining"), "remaining {{provider}} {{id}} {{limit}} ({{unit}})"}),
	)

	b.row("Reports")
	b.add(8, 8,
		timeseries("Unmatched reports", "Usage reports no credential claimed (org-aware matching). Non-zero usually means an account whose credential was removed or replaced.", "none",
			q{"sum by (provider) (" + m("authbroker_usage_reports_unmatched") + ")", "{{provider}}"}),
		timeseries("OAuth credentials without a report", "OAuth credentials the last usage fetch returned no report for.", "none",
			q{"sum by (provider) (" + m("authbroker_usage_match", `state="unmatched"`) + ")", "{{provider}}"}),
		bargauge("Report age", "Seconds since the provider data behind each matched report was fetched.", "s",
			q{"time() - " + m("authbroker_usage_report_fetched_timestamp_seconds"), "{{provider}} {{id}}"}).
			withThresholds(steps("green", 900, "orange", 3600, "red")),
	)
	return b.d
}
