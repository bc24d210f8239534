#!/usr/bin/env bash
# Checks the Prometheus rules in alerts/: promtool check rules, promtool test
# rules, then the Go checks in alerts/rules_test.go (names, for, severity,
# annotations, runbook anchors, metric contract, unit-test coverage and
# mutation tests). Exits non-zero on the first failing step.
#
#   scripts/test-rules.sh          PROMTOOL=/path/to/promtool scripts/test-rules.sh
set -euo pipefail
cd "$(dirname "$0")/.."

promtool=${PROMTOOL:-promtool}
if ! command -v "$promtool" >/dev/null; then
	echo "test-rules: promtool not found; install it with scripts/install-deps.sh prometheus or set PROMTOOL" >&2
	exit 1
fi

"$promtool" check rules alerts/authbroker-alerts.yml alerts/authbroker-rules.yml
"$promtool" test rules alerts/tests/*.yml
# CI=true: the Go test must not skip its promtool part either.
CI=true PROMTOOL=$(command -v "$promtool") go test -race -count=1 ./alerts/
