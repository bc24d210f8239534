#!/usr/bin/env bash
# Runs every fuzz target of store/ for a bounded time, one target per
# `go test` call (go test -fuzz takes one), and fails on the first crash.
# A crash leaves its input under store/testdata/fuzz/<Target>/: commit it
# with the fix, and it runs as a regression test in every `go test`.
#
#   scripts/fuzz.sh                 FUZZTIME=2m scripts/fuzz.sh
#   scripts/fuzz.sh FuzzStreamBytes
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-7s}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	mapfile -t targets < <(go test -list '^Fuzz' ./store/ | grep '^Fuzz')
fi
for target in "${targets[@]}"; do
	echo "fuzz: $target for $fuzztime"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" ./store/
done
