#!/usr/bin/env bash
# Runs every fuzz target of store/ and store/broker/ (one per broker
# document: FuzzSnapshot, FuzzStreamFrame, FuzzUsage, FuzzCallAnswer; and
# FuzzMatchUsage) for a bounded time, found with `go test -list`, one
# target per `go test` call (go test -fuzz takes one), and fails on the
# first crash. A crash leaves its input under <package>/testdata/fuzz/<Target>/:
# commit it with the fix, and it runs as a regression test in every `go test`.
#
#   scripts/fuzz.sh                 FUZZTIME=2m scripts/fuzz.sh
#   scripts/fuzz.sh FuzzStreamFrame
#
# The default budget is a count of executions, not a duration: Go 1.26's
# fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when a -fuzztime duration runs out while a worker is busy
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
# Minimising a new input is bounded by a count for the same reason, and
# so that it cannot stall a CI run for the default 60 s per input.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-30000x}
minimize=${FUZZMINIMIZETIME:-200x}
packages=(./store/ ./store/broker/)
ran=0
for pkg in "${packages[@]}"; do
	mapfile -t found < <(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
	for target in "${found[@]}"; do
		if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$target"; then
			continue
		fi
		echo "fuzz: $pkg $target for $fuzztime"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg"
		ran=$((ran + 1))
	done
done
if [ "$ran" -eq 0 ]; then
	echo "fuzz: no target matched: $*" >&2
	exit 1
fi
