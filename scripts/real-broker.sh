#!/usr/bin/env bash
# Runs a real oh-my-pi auth-broker (omp 18.2.3) on loopback for tests.
#
#   scripts/real-broker.sh start [PORT]  start (no-op when already running); prints URL, TOKEN_FILE,
#                                        BROKER_HOME and PID as KEY=VALUE lines (safe to eval)
#   scripts/real-broker.sh stop          stop it (SIGTERM, then SIGKILL after 10 s) and remove its state dir
#   scripts/real-broker.sh restart       stop and start again on the same port, keeping its data
#   scripts/real-broker.sh status        exit 0 when running and healthy
#   scripts/real-broker.sh url|token|token-file|home|pid|log   print one value
#
# Environment:
#   REAL_BROKER_DIR   state dir (default /tmp/authbroker-real-broker); holds
#                     home/ (the broker's $HOME: .omp/auth-broker.token and the
#                     SQLite store), pid, port, broker.log. Several brokers can
#                     run side by side with different dirs.
#   OMP               omp executable (default: the one scripts/install-deps.sh
#                     caches; installed on demand)
#   AUTHBROKER_CACHE  cache root passed to install-deps.sh
#
# PORT 0 or absent picks a free port (the broker reports the one it bound).
# `stop` keeps the state dir when REAL_BROKER_KEEP=1. The broker needs no
# network: providers are unreachable, so refreshes and usage fetches fail
# the way they do on an offline host. The bearer token is created by `serve`
# itself (32 random bytes, base64url) in home/.omp/auth-broker.token.
set -euo pipefail

dir=${REAL_BROKER_DIR:-/tmp/authbroker-real-broker}
here=$(cd "$(dirname "$0")" && pwd)

die() {
	printf 'real-broker: %s\n' "$*" >&2
	exit 1
}

omp_bin() {
	if [[ -n ${OMP:-} ]]; then
		echo "$OMP"
		return
	fi
	local v
	v=$("$here/install-deps.sh" broker 2>/dev/null | sed -n 's/^OMP=//p') || true
	[[ -n $v ]] || { "$here/install-deps.sh" broker >/dev/null; die "omp not installed"; }
	echo "$v"
}

running_pid() {
	local pid
	[[ -f $dir/pid ]] || return 1
	pid=$(<"$dir/pid")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

url() { echo "http://127.0.0.1:$(<"$dir/port")"; }

healthy() {
	[[ -f $dir/port ]] || return 1
	curl -fsS --max-time 2 "$(url)/v1/healthz" >/dev/null 2>&1
}

start() {
	local port=${1:-}
	if running_pid >/dev/null && healthy; then
		describe
		return 0
	fi
	if [[ -z $port && -f $dir/port ]]; then
		port=$(<"$dir/port") # restart: keep the port clients know
	fi
	port=${port:-0}
	[[ $port =~ ^[0-9]+$ ]] || die "bad port: $port"
	local omp
	omp=$(omp_bin)
	mkdir -p "$dir/home"
	rm -f "$dir/pid"
	: >"$dir/broker.log"
	# setsid: the broker gets its own process group so stop can end exactly it.
	(
		cd "$dir/home"
		HOME=$dir/home XDG_CONFIG_HOME=$dir/home/.config XDG_CACHE_HOME=$dir/home/.cache \
			XDG_DATA_HOME=$dir/home/.local/share \
			exec setsid "$omp" auth-broker serve --bind="127.0.0.1:${port}" </dev/null >>"$dir/broker.log" 2>&1
	) &
	echo $! >"$dir/pid"
	local pid
	pid=$(<"$dir/pid")
	# Wait for the listening line (it carries the bound port), then for healthz.
	local i bound=
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || {
			tail -n 20 "$dir/broker.log" >&2
			die "broker exited during start"
		}
		bound=$(sed -n 's/.*"auth-broker listening".*"url":"http:\/\/127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$dir/broker.log" | tail -n1)
		if [[ -n $bound ]]; then
			echo "$bound" >"$dir/port"
			healthy && break
		fi
		sleep 0.1
	done
	healthy || {
		tail -n 20 "$dir/broker.log" >&2
		stop_pid
		die "broker did not become healthy within 30 s"
	}
	for ((i = 0; i < 50; i++)); do
		[[ -s $dir/home/.omp/auth-broker.token ]] && break
		sleep 0.1
	done
	[[ -s $dir/home/.omp/auth-broker.token ]] || die "no token file"
	describe
}

describe() {
	echo "URL=$(url)"
	echo "TOKEN_FILE=$dir/home/.omp/auth-broker.token"
	echo "BROKER_HOME=$dir/home"
	echo "PID=$(<"$dir/pid")"
}

stop_pid() {
	local pid i
	pid=$(running_pid) || {
		rm -f "$dir/pid"
		return 0
	}
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	rm -f "$dir/pid"
}

cmd=${1:-}
shift || true
case $cmd in
start) start "$@" ;;
stop)
	stop_pid
	if [[ ${REAL_BROKER_KEEP:-0} != 1 ]]; then
		rm -rf "$dir"
	fi
	;;
restart)
	stop_pid
	start "$@"
	;;
status)
	running_pid >/dev/null && healthy
	;;
url) url ;;
token) tr -d '[:space:]' <"$dir/home/.omp/auth-broker.token" && echo ;;
token-file) echo "$dir/home/.omp/auth-broker.token" ;;
home) echo "$dir/home" ;;
pid) running_pid ;;
log) cat "$dir/broker.log" ;;
*)
	sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
