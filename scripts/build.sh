#!/usr/bin/env bash
# The one build command shared by the Dockerfile and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-authbroker_exporter}
version=${VERSION:-$(cat VERSION 2>/dev/null || echo 0.0.0)}
revision=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
branch=${BRANCH:-$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)}
pkg=github.com/prometheus/common/version
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X ${pkg}.Version=${version} -X ${pkg}.Revision=${revision} -X ${pkg}.Branch=${branch} -X ${pkg}.BuildUser=${BUILD_USER:-authbroker} -X ${pkg}.BuildDate=${BUILD_DATE:-$(date -u +%Y%m%d-%H:%M:%S)}" \
  -o "$out" .
