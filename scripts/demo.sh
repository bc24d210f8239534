#!/usr/bin/env bash
# make demo: the exporter, the real oh-my-pi auth-broker, Prometheus with the
# shipped rules and Alertmanager, all on 127.0.0.1, from a fresh clone.
#
#   scripts/demo.sh
#
# It installs what it needs once, into a cache (scripts/install-deps.sh
# broker prometheus: bun and the broker from npm, Debian's prometheus and
# prometheus-alertmanager with apt), builds the exporter from this checkout
# (scripts/build.sh), and starts, each on a free loopback port and under one
# temporary directory:
#   - the broker (scripts/real-broker.sh) with its own $HOME, kept offline:
#     its HTTP(S) proxy is a closed loopback port, so every call to a
#     provider fails at once and nothing leaves the machine. It is seeded
#     through its HTTP API with fake credentials:
#       soon@demo.example    anthropic OAuth expiring in 230 s, inside the
#                            4 min window of AuthBrokerCredentialExpiringSoon,
#                            which fires after its `for: 1m` (rules unchanged)
#       expired@demo.example openai-codex OAuth expired 10 min ago; its
#                            refresh fails (the broker's and the exporter's
#                            self-healing one), so AuthBrokerCredentialExpired
#                            fires and authbroker_refresh_errors_total counts
#       day@demo.example     google-gemini-cli OAuth valid for a day (healthy)
#       an openai API key
#   - the exporter (--collector.identity=raw: the identities are fake;
#     --monitor.refresh-overdue);
#   - Prometheus scraping it every 2 s with alerts/authbroker-*.yml as they are, sending
#     to Alertmanager;
#   - Alertmanager with alerts/alertmanager.example.yml, its receivers'
#     URLs pointed at the closed port: its inhibitions at work (the expired
#     credential's "expiring soon" is suppressed by its "expired").
# Then it prints the URLs and waits. Ctrl-C (SIGINT) or SIGTERM stops all of
# it and removes the temporary directory. If one of them dies, the demo says
# which, with the end of its log, and stops the rest.
#
# Environment: AUTHBROKER_CACHE (see install-deps.sh), TMPDIR.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
say() { printf 'demo: %s\n' "$*" >&2; }

dir=
pids=() # process group leaders started here (setsid), besides the broker
names=()
broker_started=
sleeper=

stop_all() {
	local code=$?
	trap '' INT TERM
	trap - EXIT
	if [[ -n $sleeper ]]; then
		kill "$sleeper" 2>/dev/null || true
		wait "$sleeper" 2>/dev/null || true
	fi
	if [[ -n $dir ]]; then
		say "stopping"
		local i j pid
		for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
			kill -TERM -- "-${pids[i]}" 2>/dev/null || true
		done
		for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
			pid=${pids[i]}
			for ((j = 0; j < 100; j++)); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL -- "-$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		done
		if [[ -n $broker_started ]]; then
			REAL_BROKER_DIR=$dir/broker "$root/scripts/real-broker.sh" stop >/dev/null 2>&1 || true
		fi
		cd /
		rm -rf -- "$dir"
		say "stopped; removed $dir"
	fi
	exit "$code"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools and build ----
say "installing what the demo needs (cached after the first run)"
deps=$("$root/scripts/install-deps.sh" broker prometheus)
omp=$(sed -n 's/^OMP=//p' <<<"$deps")
prometheus=$(sed -n 's/^PROMETHEUS=//p' <<<"$deps")
alertmanager=$(sed -n 's/^ALERTMANAGER=//p' <<<"$deps")
[[ -n $omp && -n $prometheus && -n $alertmanager ]] || {
	say "install-deps.sh did not report omp, prometheus and alertmanager"
	exit 1
}
command -v curl >/dev/null || {
	say "curl is required"
	exit 1
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/authbroker-demo.XXXXXX")
cd "$dir" # every child's working directory is inside it
mkdir -p broker exporter prometheus/data alertmanager/data

say "building the exporter (scripts/build.sh)"
"$root/scripts/build.sh" "$dir/exporter/authbroker_exporter" >&2

# ---- ports ----
# A port nothing listens on, in 20000-32767 (below Linux's ephemeral range,
# so no outgoing connection holds it). Another process could still bind it
# first; start_on_free_port then tries another.
declare -A taken=()
pick_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + (RANDOM % 12768)))
		[[ -n ${taken[$p]:-} ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			taken[$p]=1
			echo "$p"
			return 0
		fi
	done
	say "no free port found"
	return 1
}

# start NAME LOG URL_PATH ARGV... with @PORT@ in ARGV replaced by a free
# port, in its own process group; waits until http://127.0.0.1:PORT/URL_PATH
# answers 200. When the process exits first (the port was taken between
# the check and the bind), tries another port. Sets $port.
port=
start_on_free_port() {
	local name=$1 log=$2 path=$3
	shift 3
	local attempt pid i a argv
	for ((attempt = 0; attempt < 5; attempt++)); do
		port=$(pick_port)
		argv=()
		for a in "$@"; do argv+=("${a//@PORT@/$port}"); done
		setsid "${argv[@]}" </dev/null >>"$log" 2>&1 &
		pid=$!
		for ((i = 0; i < 600; i++)); do
			if ! kill -0 "$pid" 2>/dev/null; then
				wait "$pid" 2>/dev/null || true
				break
			fi
			if curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${port}${path}" 2>/dev/null; then
				pids+=("$pid")
				names+=("$name")
				return 0
			fi
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL -- "-$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			say "$name did not answer on port $port within 60 s; last lines of $log:"
			tail -n 20 "$log" >&2
			return 1
		fi
		if ! grep -qi 'address already in use' "$log"; then
			say "$name exited at start; last lines of $log:"
			tail -n 20 "$log" >&2
			return 1
		fi
		say "$name: port $port was taken, trying another"
	done
	say "$name: no port after 5 attempts"
	return 1
}

# ---- broker ----
# Offline: bun's fetch honours the proxy variables, so provider calls hit a
# closed port and fail at once (the broker treats that as transient and
# keeps the rows), as on a host without network.
proxy="http://127.0.0.1:$(pick_port)"
say "starting the broker"
broker_started=1
broker_env=(REAL_BROKER_DIR="$dir/broker" OMP="$omp"
	HTTP_PROXY="$proxy" HTTPS_PROXY="$proxy" http_proxy="$proxy" https_proxy="$proxy" ALL_PROXY="$proxy" all_proxy="$proxy"
	NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost)
bkv=$(env "${broker_env[@]}" "$root/scripts/real-broker.sh" start 0)
broker_url=$(sed -n 's/^URL=//p' <<<"$bkv")
token_file=$(sed -n 's/^TOKEN_FILE=//p' <<<"$bkv")
broker_pid=$(sed -n 's/^PID=//p' <<<"$bkv")

# The bearer token goes to curl in a header file, never on a command line.
auth=$dir/broker/auth-header
(
	umask 077
	printf 'Authorization: Bearer %s\n' "$(tr -d '[:space:]' <"$token_file")" >"$auth"
)
upload() {
	curl -fsS --max-time 10 -o /dev/null -H @"$auth" -H 'Content-Type: application/json' \
		--data-binary "$1" "$broker_url/v1/credential" || {
		say "uploading a demo credential failed"
		return 1
	}
}
now_ms=$(($(date +%s) * 1000))
oauth() { # provider email expires_ms
	printf '{"provider":"%s","credential":{"type":"oauth","access":"demo-access-%s","refresh":"demo-refresh-%s","expires":%s,"email":"%s"}}' \
		"$1" "${2%@*}" "${2%@*}" "$3" "$2"
}
say "seeding the broker with fake credentials"
upload "$(oauth anthropic soon@demo.example $((now_ms + 230 * 1000)))"
upload "$(oauth openai-codex expired@demo.example $((now_ms - 10 * 60 * 1000)))"
upload "$(oauth google-gemini-cli day@demo.example $((now_ms + 24 * 3600 * 1000)))"
upload '{"provider":"openai","credential":{"type":"api_key","key":"demo-api-key-not-a-secret"}}'

# ---- Alertmanager, exporter, Prometheus ----
# The shipped example (alerts/alertmanager.example.yml) with its routes,
# time intervals and inhibitions as they are; only its receivers' URLs point
# at the closed loopback port, so no notification leaves the machine.
sed -E "s#url: https?://[^[:space:]]+#url: ${proxy}/demo-receiver#" "$root/alerts/alertmanager.example.yml" >alertmanager/alertmanager.yml
say "starting Alertmanager"
start_on_free_port alertmanager "$dir/alertmanager/alertmanager.log" /-/ready \
	env -i PATH="$PATH" HOME="$dir/alertmanager" "$alertmanager" \
	--config.file="$dir/alertmanager/alertmanager.yml" --storage.path="$dir/alertmanager/data" \
	--web.listen-address=127.0.0.1:@PORT@ --cluster.listen-address=
am_port=$port

say "starting the exporter"
start_on_free_port exporter "$dir/exporter/exporter.log" /-/ready \
	env -i PATH="$PATH" HOME="$dir/exporter" TZ=UTC "$dir/exporter/authbroker_exporter" \
	--broker.url="$broker_url" --broker.token-file="$token_file" \
	--web.listen-address=127.0.0.1:@PORT@ --collector.identity=raw --monitor.refresh-overdue
exporter_port=$port

{
	printf 'global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 2s\n'
	printf 'rule_files:\n'
	for f in "$root"/alerts/authbroker-*.yml; do printf '  - "%s"\n' "$f"; done
	printf "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:%s']\n" "$am_port"
	# job "authbroker" is the name the shipped rules expect.
	printf "scrape_configs:\n  - job_name: authbroker\n    static_configs:\n      - targets: ['127.0.0.1:%s']\n" "$exporter_port"
} >prometheus/prometheus.yml
say "starting Prometheus"
start_on_free_port prometheus "$dir/prometheus/prometheus.log" /-/ready \
	env -i PATH="$PATH" HOME="$dir/prometheus" "$prometheus" \
	--config.file="$dir/prometheus/prometheus.yml" --storage.tsdb.path="$dir/prometheus/data" \
	--web.listen-address=127.0.0.1:@PORT@
prom_port=$port

cat <<EOF

authbroker_exporter demo is running (Ctrl-C stops it and removes $dir):

  status page:   http://127.0.0.1:${exporter_port}/
  metrics:       http://127.0.0.1:${exporter_port}/metrics
  health API:    http://127.0.0.1:${exporter_port}/api/v1/health
  alerts:        http://127.0.0.1:${prom_port}/alerts
  prometheus:    http://127.0.0.1:${prom_port}/
  alertmanager:  http://127.0.0.1:${am_port}/
  broker:        ${broker_url} (token in ${token_file})

AuthBrokerCredentialExpiringSoon (soon@demo.example) fires about a minute after start, AuthBrokerCredentialExpired
(expired@demo.example) too; the exporter's refreshes of the expired credential fail and are counted in
authbroker_refresh_errors_total. Alertmanager (alerts/alertmanager.example.yml) shows expired@demo.example's
AuthBrokerCredentialExpiringSoon suppressed by its AuthBrokerCredentialExpired. Logs are in ${dir}.
EOF

# ---- wait ----
# Until a signal, or until one of the processes dies.
while :; do
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[i]}" 2>/dev/null; then
			say "${names[i]} exited; last lines of its log:"
			tail -n 20 "$dir/${names[i]}/${names[i]}.log" >&2 || true
			exit 1
		fi
	done
	if ! kill -0 "$broker_pid" 2>/dev/null; then
		say "the broker exited; last lines of its log:"
		tail -n 20 "$dir/broker/broker.log" >&2 || true
		exit 1
	fi
	sleep 2 &
	sleeper=$!
	wait "$sleeper" || true
	sleeper=
done
