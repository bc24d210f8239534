#!/usr/bin/env bash
# Proves the release build: builds with scripts/build.sh (the Dockerfile's
# command) and checks the binary is static, trimmed and carries its version;
# and that `go install .` from the checkout, without VCS information, still
# reports VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)/authbroker_exporter
trap 'rm -rf "$(dirname "$out")"' EXIT
./scripts/build.sh "$out"
info=$(go version -m "$out")
for want in "CGO_ENABLED=0" "-trimpath=true"; do
	grep -qF -- "$want" <<<"$info" || { echo "check-build: binary lacks build setting $want" >&2; exit 1; }
done
ver=$("$out" --version 2>&1)
grep -qF "version $(cat VERSION)" <<<"$ver" || { echo "check-build: --version does not report $(cat VERSION): $ver" >&2; exit 1; }
grep -qE "revision: [0-9a-f]{7,}|revision: unknown" <<<"$ver" || { echo "check-build: no revision in --version" >&2; exit 1; }
# README's `go install .` from a checkout, as CI builds it (-buildvcs=false:
# no VCS information): the release version all the same, from VERSION.
GOBIN="$(dirname "$out")/gobin" GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false" go install .
installed=$("$(dirname "$out")/gobin/authbroker_exporter" --version 2>&1)
grep -qF "version $(cat VERSION) " <<<"$installed" || { echo "check-build: go install -buildvcs=false binary does not report $(cat VERSION): $installed" >&2; exit 1; }
# The Dockerfile must keep calling the same script.
grep -q 'scripts/build.sh' Dockerfile || { echo "check-build: Dockerfile does not use scripts/build.sh" >&2; exit 1; }
# README's `docker build`, where a Docker engine answers: the image runs and
# reports VERSION. Without an engine, the build script above is what the
# Dockerfile runs.
docker_note="no Docker engine: docker build not run"
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
	tag="authbroker_exporter-check-build:$$"
	docker build -q -t "$tag" . >/dev/null
	image_ver=$(docker run --rm --user 4242:4242 "$tag" --version 2>&1)
	docker rmi -f "$tag" >/dev/null
	grep -qF "version $(cat VERSION) " <<<"$image_ver" || { echo "check-build: the image does not report $(cat VERSION): $image_ver" >&2; exit 1; }
	docker_note="docker build: $(head -1 <<<"$image_ver")"
fi
echo "check-build: ok ($(du -h "$out" | cut -f1), static, trimpath, $(head -1 <<<"$ver"); go install: $(head -1 <<<"$installed"); $docker_note)"
