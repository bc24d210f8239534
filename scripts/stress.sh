#!/usr/bin/env bash
# Runs the unit tests under load, as CI's busy 2-core machine runs them:
# `go test -race -count=N` while one CPU hog per core keeps every core busy.
# A test that passes alone but fails here waits on time instead of on a
# condition.
#
#   scripts/stress.sh [packages...]        (default ./...)
#   STRESS_COUNT=5 STRESS_TIMEOUT=60m      (the defaults)
#
# Prints the wall time; exits with go test's status. The hogs stop with it.
set -euo pipefail
cd "$(dirname "$0")/.."

count=${STRESS_COUNT:-5}
timeout=${STRESS_TIMEOUT:-60m}
pkgs=("$@")
[[ ${#pkgs[@]} -gt 0 ]] || pkgs=(./...)

hogs=()
stop_hogs() {
	for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done
	wait "${hogs[@]}" 2>/dev/null || true
}
trap stop_hogs EXIT INT TERM
for _ in $(seq "$(nproc)"); do
	# A busy loop in its own shell: no output, no I/O, all CPU.
	bash -c 'while :; do :; done' &
	hogs+=($!)
done

start=$(date +%s)
status=0
go test -race -count="$count" -timeout "$timeout" "${pkgs[@]}" || status=$?
end=$(date +%s)
echo "stress: go test -race -count=$count ${pkgs[*]} under $(nproc) CPU hogs: exit $status, wall $((end - start)) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
