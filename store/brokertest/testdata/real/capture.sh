#!/usr/bin/env bash
# Captures the wire format of a real omp 18.2.3 auth-broker for
# TestRealBrokerShapes. Only fake credentials are uploaded; the broker's
# bearer token is never written to a capture (checked at the end).
#
#   store/brokertest/testdata/real/capture.sh
#
# Needs network access to npm the first time (scripts/install-deps.sh).
# Each capture NAME gets NAME.status (HTTP status), NAME.headers (the
# headers the comparison looks at) and NAME.body.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
export REAL_BROKER_DIR
REAL_BROKER_DIR=$(mktemp -d /tmp/authbroker-capture.XXXXXX)
stream_pid=
cleanup() {
	[[ -n $stream_pid ]] && kill "$stream_pid" 2>/dev/null || true
	"$root/scripts/real-broker.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

eval "$("$root/scripts/real-broker.sh" start)"
token=$("$root/scripts/real-broker.sh" token)
out=$here
rm -f "$out"/*.status "$out"/*.headers "$out"/*.body "$out"/stream.txt

keep_headers='^(content-type|etag|cache-control|vary|connection|x-accel-buffering|transfer-encoding|www-authenticate):'

# cap NAME METHOD PATH [BODY] [extra curl args...]: authenticated request.
cap() {
	local name=$1 method=$2 path=$3 body=${4:-}
	shift 3 || true
	shift || true
	local args=(-s -X "$method" -H "Authorization: Bearer $token" -D "$out/$name.hdr" -o "$out/$name.body")
	[[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-raw "$body")
	curl "${args[@]}" "$@" "$URL$path"
	finish "$name"
}

# anon NAME METHOD PATH [curl args...]: request without a token.
anon() {
	local name=$1 method=$2 path=$3
	shift 3
	curl -s -X "$method" -D "$out/$name.hdr" -o "$out/$name.body" "$@" "$URL$path"
	finish "$name"
}

finish() {
	local name=$1
	tr -d '\r' <"$out/$name.hdr" | head -n1 | awk '{print $2}' >"$out/$name.status"
	tr -d '\r' <"$out/$name.hdr" | grep -iE "$keep_headers" | sort -f >"$out/$name.headers" || true
	rm -f "$out/$name.hdr"
}

now_ms=$(($(date +%s%N) / 1000000))
exp1=$((now_ms + 2 * 3600 * 1000))
exp2=$((now_ms + 3 * 3600 * 1000))

anon healthz GET /v1/healthz
anon unauthorized GET /v1/snapshot
anon unauthorized-unknown GET /v1/nope
cap no-route GET /v1/nope
cap no-route-delete DELETE /v1/credential/1

cap upload-apikey POST /v1/credential '{"provider":"openai","credential":{"type":"api_key","key":"sk-fake-capture-1"}}'
cap upload-anthropic POST /v1/credential '{"provider":"anthropic","credential":{"type":"oauth","access":"fake-access-anthropic","refresh":"fake-refresh-anthropic","expires":'"$exp1"',"email":"Alice@Example.com","accountId":"acct-A"}}'
cap upload-codex POST /v1/credential '{"provider":"openai-codex","credential":{"type":"oauth","access":"fake-access-codex","refresh":"fake-refresh-codex","expires":'"$exp2"',"accountId":"acct-B","email":"b@example.com","orgId":"org-X","orgName":"Org X"}}'
cap upload-mcp POST /v1/credential '{"provider":"mcp-thing","credential":{"type":"oauth","access":"fake-access-mcp","refresh":"fake-refresh-mcp","expires":8640000000000000,"clientSecret":"fake-client-secret","clientId":"cid","tokenUrl":"http://127.0.0.1:1/token"}}'

cap snapshot GET /v1/snapshot
gen=$(sed -n 's/^{"generation":\([0-9]*\),.*/\1/p' "$out/snapshot.body")
cap snapshot-304 GET "/v1/snapshot?wait=200" '' -H "If-None-Match: \"$gen\""

# Stream: one change per step, far enough apart not to coalesce.
curl -s -N -H "Authorization: Bearer $token" -D "$out/stream.hdr" -o "$out/stream.txt" "$URL/v1/snapshot/stream" &
stream_pid=$!
for _ in $(seq 50); do [[ -s $out/stream.txt ]] && break; sleep 0.1; done
sleep 0.3
cap upload-apikey2 POST /v1/credential '{"provider":"openai","credential":{"type":"api_key","key":"sk-fake-capture-2"}}'
sleep 0.3
cap block POST /v1/credential/2/block '{"providerKey":"anthropic:oauth","blockScope":"","blockedUntilMs":'"$exp1"'}'
sleep 0.3
cap disable POST /v1/credential/5/disable '{"cause":"spot check"}'
sleep 0.3
kill "$stream_pid" 2>/dev/null || true
wait "$stream_pid" 2>/dev/null || true
stream_pid=
finish stream

cap disable-again POST /v1/credential/5/disable ''
cap disable-bad-cause POST /v1/credential/1/disable '{"cause":5}'
cap disabled GET /v1/credentials/disabled
cap disabled-provider GET '/v1/credentials/disabled?provider=anthropic'
cap refresh-unknown POST /v1/credential/999/refresh
cap refresh-apikey POST /v1/credential/1/refresh
cap refresh-oauth POST /v1/credential/2/refresh
cap usage GET /v1/usage
cap upload-sentinel POST /v1/credential '{"provider":"x","credential":{"type":"oauth","access":"a","refresh":"__remote__","expires":1}}'
cap upload-extra-key POST /v1/credential '{"provider":"x","credential":{"type":"api_key","key":"k","foo":1}}'
cap upload-empty POST /v1/credential ''
cap block-missing POST /v1/credential/1/block '{}'

# Codex meter scopes with and without the capability header.
cap block-codex-chat POST /v1/credential/3/block '{"providerKey":"openai-codex:oauth","blockScope":"chat","blockedUntilMs":'"$exp1"'}'
cap block-codex-shared POST /v1/credential/3/block '{"providerKey":"openai-codex:oauth","blockScope":"shared","blockedUntilMs":'"$((exp1 + 1000))"'}'
cap snapshot-codex-caps GET /v1/snapshot '' -H 'OMP-Auth-Broker-Capabilities: codex-meter-block-scopes'
cap snapshot-codex-nocaps GET /v1/snapshot
cap delete-blocks DELETE /v1/credential/3/blocks

"$root/scripts/real-broker.sh" restart >/dev/null
cap snapshot-after-restart GET /v1/snapshot

if grep -rqF -- "$token" "$out"; then
	echo "capture: the bearer token leaked into a capture" >&2
	exit 1
fi
echo "captured into $out" >&2
