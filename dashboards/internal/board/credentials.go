package board

import "strings"

// Per-credential health, worst first: 3 expired, 2 rotation overdue (the
// rotation deadline passed more than one refresher interval ago), 1 blocked,
// 0 ok. Each check gets its own "check" label so "or" keeps all of them;
// max picks the worst per credential. The info term makes every credential,
// api keys included, show up as ok when no check fires.
func healthExpr() string {
	by := "max by (job, instance, id, provider) "
	terms := []string{
		`label_replace(3 * (` + m("authbroker_credential_expiry_timestamp_seconds") + ` < bool time()), "check", "expired", "", "")`,
		`label_replace(2 * (` + m("authbroker_credential_rotates_in_seconds") + ` < bool on (job, instance) group_left ()` +
			` -` + m("authbroker_refresher_interval_seconds") + `), "check", "overdue", "", "")`,
		`label_replace(` + by + `(` + m("authbroker_credential_blocked_until_timestamp_seconds") + ` > bool time()), "check", "blocked", "", "")`,
		`label_replace(0 * ` + m("authbroker_credential_info") + `, "check", "present", "", "")`,
	}
	return by + "(\n  " + strings.Join(terms, "\n  or ") + "\n)"
}

var healthMap = valueMap(
	0, "ok", "green",
	1, "blocked", "orange",
	2, "rotation overdue", "orange",
	3, "expired", "red",
)

func credentials() *Dashboard {
	b := newDashboard("authbroker-credentials", "Auth broker / Credentials",
		"Every credential in the broker's snapshot: identity, token expiry, the refresher's rotation deadline, observed rotations and rate-limit blocks.")

	perCred := "max by (job, instance, id, provider) "
	withIdentity := " * on (job, instance, id) group_left (identity) " + m("authbroker_credential_info")

	b.row("Now")
	b.add(6, 4,
		stat("Expired", "OAuth credentials past their access-token expiry. The broker keeps serving them until a refresh succeeds or fails definitively.", "none",
			q{"count(" + m("authbroker_credential_expiry_timestamp_seconds") + " < time()) or vector(0)", "expired"}).
			withThresholds(steps("green", 1, "red")),
		stat("Rotation overdue", "Credentials whose rotation deadline passed more than one refresher interval ago.", "none",
			q{"count(" + m("authbroker_credential_rotates_in_seconds") + " < on (job, instance) group_left () -" +
				m("authbroker_refresher_interval_seconds") + ") or vector(0)", "overdue"}).
			withThresholds(steps("green", 1, "orange")),
		stat("Blocked", "Credentials with an active rate-limit block (any scope).", "none",
			q{"count(count by (job, instance, id) (" + m("authbroker_credential_blocked_until_timestamp_seconds") + " > time())) or vector(0)", "blocked"}).
			withThresholds(steps("green", 1, "orange")),
		stat("Rotations", "Token rotations observed in the selected time range.", "none",
			q{"sum(increase(" + m("authbroker_credential_rotations_total") + "[$__range]))", "rotations"}).withColorMode("none"),
	)

	exp := steps("red", 0, "orange", 600, "green")
	b.add(24, 11, table("Credentials",
		"One row per credential, soonest expiry first. Expires in: access-token expiry (negative = expired). "+
			"Rotates in: until the refresher's next attempt (negative = overdue). Blocked for: the longest active rate-limit block. "+
			"Health: expired > rotation overdue > blocked > ok.",
		[]string{"provider", "identity", "email", "account", "org", "type", "id", "instance"},
		[]column{
			{expr: "max by (job, instance, id, provider, type, identity, email, account, org) (" + m("authbroker_credential_info") + ")"},
			{name: "Expires in", expr: perCred + "(" + m("authbroker_credential_expiry_timestamp_seconds") + ") - time()",
				props: []Property{prop("unit", "s"), prop("thresholds", exp), cellColor("color-text")}},
			{name: "Rotates in", expr: perCred + "(" + m("authbroker_credential_rotates_in_seconds") + ")",
				props: []Property{prop("unit", "s"), prop("thresholds", steps("orange", 0, "green")), cellColor("color-text")}},
			{name: "Last rotation", expr: perCred + "(" + m("authbroker_credential_last_rotation_timestamp_seconds") + ") * 1000",
				props: []Property{prop("unit", "dateTimeFromNow")}},
			{name: "Rotations (range)", expr: perCred + "(increase(" + m("authbroker_credential_rotations_total") + "[$__range]))",
				props: []Property{prop("unit", "none"), prop("decimals", 0)}},
			{name: "Blocked for", expr: perCred + "(" + m("authbroker_credential_blocked_until_timestamp_seconds") + ") - time() > 0",
				props: []Property{prop("unit", "s"), prop("thresholds", steps("orange")), cellColor("color-text")}},
			{name: "Health", expr: healthExpr(),
				props: []Property{prop("mappings", []Mapping{healthMap}), cellColor("color-background")}},
		},
		"Expires in", false))

	b.row("Over time")
	b.add(12, 8,
		timeseries("Expires in", "Access-token expiry per OAuth credential; a healthy credential saw-tooths as the refresher rotates it.", "s",
			q{"(" + m("authbroker_credential_expiry_timestamp_seconds") + " - time())" + withIdentity, "{{provider}} {{identity}} ({{id}})"}).
			withThresholds(steps("red", 0, "transparent")),
		timeseries("Rotates in", "Time until the refresher's next attempt per credential; negative = overdue.", "s",
			q{m("authbroker_credential_rotates_in_seconds") + withIdentity, "{{provider}} {{identity}} ({{id}})"}),
		timeseries("Active blocks", "Remaining rate-limit block per credential and scope.", "s",
			q{"(" + m("authbroker_credential_blocked_until_timestamp_seconds") + " - time()) > 0", "{{provider}} {{id}} {{scope}}"}),
		timeseries("Observed rotations per hour", "Token changes the exporter observed, per credential.", "none",
			q{"sum by (provider, id) (increase(" + m("authbroker_credential_rotations_total") + "[1h]))", "{{provider}} {{id}}"}),
	)
	return b.d
}
