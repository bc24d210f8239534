#!/usr/bin/env bash
# Checks the Prometheus rules in alerts/: that they are a fresh render of
# mixin/ (make generate), promtool check rules, promtool test rules, amtool
# check-config on the example Alertmanager configuration, then the Go checks in alerts/rules_test.go (names, for, severity, annotations,
# runbook anchors, metric contract, unit-test coverage, storm threshold and
# mutation tests, the multi-cluster and custom-configuration renders).
# Exits non-zero on the first failing step.
#
#   scripts/test-rules.sh          PROMTOOL=/path/to/promtool AMTOOL=/path/to/amtool scripts/test-rules.sh
set -euo pipefail
cd "$(dirname "$0")/.."

promtool=${PROMTOOL:-promtool}
if ! command -v "$promtool" >/dev/null; then
	echo "test-rules: promtool not found; install it with scripts/install-deps.sh prometheus or set PROMTOOL" >&2
	exit 1
fi

amtool=${AMTOOL:-amtool}
if ! command -v "$amtool" >/dev/null; then
	echo "test-rules: amtool not found; install it with scripts/install-deps.sh prometheus or set AMTOOL" >&2
	exit 1
fi

go run ./mixin/render -check
"$promtool" check rules alerts/authbroker-alerts.yml alerts/authbroker-rules.yml
"$promtool" test rules alerts/tests/*.yml
"$amtool" check-config alerts/alertmanager.example.yml
# CI=true: the Go test must not skip its promtool and amtool parts either.
CI=true PROMTOOL=$(command -v "$promtool") AMTOOL=$(command -v "$amtool") go test -race -count=1 ./alerts/
