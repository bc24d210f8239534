#!/usr/bin/env bash
# Checks what operators deploy with (deploy/):
#  1. the deploy/ Go module's tests: the Helm chart linted (helm lint --strict)
#     and rendered (helm template) with Helm's own library, every object
#     decoded strictly into the Kubernetes and prometheus-operator API types,
#     the PrometheusRule equal to alerts/authbroker-*.yml (and, with a custom
#     job name, a disabled alert and an extra label, promtool-tested), every
#     dashboard in a ConfigMap with per-release uids, no symlink in the chart;
#     the dashboards decoded strictly into Grafana's schema; the systemd units
#     linted against systemd's directive list;
#  2. systemd-analyze verify and security on the units, with the real binary;
#  3. the binary served on a socket handed over by systemd-socket-activate,
#     as the .socket unit does (--web.systemd-socket).
# Steps 2 and 3 need systemd's tools; without them they are skipped with a
# message, and step 1 still lints the units.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
log() { printf 'check-deploy: %s\n' "$*"; }

log "go test ./... in deploy/ (chart, dashboards, systemd units)"
(cd deploy && "$GO" vet ./... && "$GO" test -count=1 ./...)

if ! command -v systemd-analyze >/dev/null && [[ ${CI:-} == true && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
	log "installing systemd (for systemd-analyze)"
	apt-get install -y --no-install-recommends systemd >/dev/null 2>&1 || log "apt-get install systemd failed"
fi
if ! command -v systemd-analyze >/dev/null; then
	log "SKIPPED systemd-analyze verify/security and the socket-activation run: systemd-analyze is not installed (apt-get install systemd); the units were linted against systemd's directive list above"
	exit 0
fi

tmp=$(mktemp -d)
pid=
cleanup() {
	if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
./scripts/build.sh "$tmp/authbroker_exporter"

# verify wants ExecStart's binary to exist: point the unit at the one just built.
sed "s|/usr/local/bin/authbroker_exporter|$tmp/authbroker_exporter|" deploy/systemd/authbroker_exporter.service >"$tmp/authbroker_exporter.service"
cp deploy/systemd/authbroker_exporter.socket deploy/systemd/authbroker_exporter-token.path deploy/systemd/authbroker_exporter-token.service "$tmp/"
# verify exits 0 on unknown or misplaced directives and only prints them, so
# any line about these units fails the check.
out=$(systemd-analyze verify --man=no "$tmp/authbroker_exporter.socket" "$tmp/authbroker_exporter.service" \
	"$tmp/authbroker_exporter-token.path" "$tmp/authbroker_exporter-token.service" 2>&1) || {
	echo "$out"
	log "systemd-analyze verify failed"
	exit 1
}
if grep -q authbroker_exporter <<<"$out"; then
	echo "$out"
	log "systemd-analyze verify complained about the units"
	exit 1
fi
log "systemd-analyze verify: ok ($(systemd-analyze --version | head -1))"

# Exposure score (0 = fully sandboxed, 10 = not at all); fail above 2.0.
if sec=$(systemd-analyze security --offline=yes --threshold=20 "$tmp/authbroker_exporter.service" 2>&1); then
	log "systemd-analyze security: $(grep -o 'Overall exposure level.*' <<<"$sec")"
else
	echo "$sec" | tail -n 40
	log "systemd-analyze security: exposure above 2.0"
	exit 1
fi

# Socket activation: systemd-socket-activate binds a port and hands it over
# like the .socket unit does; the exporter must serve /-/healthy on it.
# The broker address is a closed loopback port: /-/healthy needs no broker.
# Extra flags come split on spaces, as the unit's $AUTHBROKER_EXPORTER_ARGS.
if ! command -v systemd-socket-activate >/dev/null; then
	log "SKIPPED socket-activation run: systemd-socket-activate is not installed"
	exit 0
fi
port=$((20000 + RANDOM % 20000))
extra_args="--log.format=json --web.max-requests=5"
printf 'canary-token-not-a-secret\n' >"$tmp/token"
chmod 600 "$tmp/token"
systemd-socket-activate -l "127.0.0.1:$port" "$tmp/authbroker_exporter" \
	--web.systemd-socket --broker.url=http://127.0.0.1:9 --broker.token-file="$tmp/token" \
	--monitor.probe-interval=1h $extra_args >"$tmp/exporter.log" 2>&1 &
pid=$!
ok=
for _ in $(seq 1 50); do
	if code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/-/healthy") && [[ $code == 200 ]]; then
		ok=1
		break
	fi
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.2
done
if [[ -z $ok ]]; then
	cat "$tmp/exporter.log"
	log "the exporter did not serve /-/healthy on the socket systemd handed it"
	exit 1
fi
if ! grep -q '^{.*"msg":"starting authbroker_exporter"' "$tmp/exporter.log"; then
	cat "$tmp/exporter.log"
	log "the extra flags did not reach the exporter: its first line is not JSON (--log.format=json)"
	exit 1
fi
if grep -q 'canary-token-not-a-secret' "$tmp/exporter.log"; then
	log "the token reached the log"
	exit 1
fi
log "socket activation: /-/healthy answered 200 on 127.0.0.1:$port (--web.systemd-socket)"
