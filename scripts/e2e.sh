#!/usr/bin/env bash
# Runs the end-to-end suite against the real broker, Prometheus and
# Alertmanager (see e2e/README.md). Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -tags e2e -count=1 -timeout 14m -v "$@" ./e2e/
