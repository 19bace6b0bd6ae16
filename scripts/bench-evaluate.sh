#!/usr/bin/env bash
# Load benchmark of `POST /v1/evaluate`: pimgate against a bare actix-web handler (the floor).
#
# Loopback only, bounded (8 measured runs of BENCH_DURATION plus 2 s warm-ups), stops by itself and
# kills the servers it started on any exit. Prints a table; see BENCHMARKS.md for a recorded run.
#
#   scripts/bench-evaluate.sh                 # defaults: wrk -t1 -c16 -d10s, 1 server worker
#   BENCH_DURATION=5s BENCH_CONNECTIONS=32 scripts/bench-evaluate.sh
#   BENCH_PIMGATE=/tmp/pimgate-before scripts/bench-evaluate.sh   # measure a saved binary instead
#   BENCH_BARE=/tmp/bare_handler ...          # and a saved floor (no build at all)
#
# Every pimgate row except "replays" sends a distinct PIM request `id` per request (a wrk Lua counter
# substituted into the fixture), because pimgate answers a repeated id from its replay cache and the
# point is to measure real evaluations. The "replays" row sends the fixture unchanged on purpose.
set -euo pipefail

DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
THREADS=${BENCH_THREADS:-1}
PACE_MS=${BENCH_PACE_MS:-16} # mean think time per connection, paced runs: 16 conns / 16 ms ≈ 1,000 req/s
PIMGATE_ADDR=127.0.0.1:18080
BARE_ADDR=127.0.0.1:18081
# The operator endpoints (/readyz, /metrics) live on the admin listener, not on PIM's.
ADMIN_ADDR=127.0.0.1:18083
FIXTURE=tests/fixtures/requests/group-activation.json
CONFIG=config/example.toml

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pimgate-bench.XXXXXX")
SERVER_PID=""

RECEIVER_PID=""

cleanup() {
    if [[ -n "$RECEIVER_PID" ]]; then
        kill "$RECEIVER_PID" 2>/dev/null || true
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "bench-evaluate: $*" >&2
    exit 1
}

# --- tools -----------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
        echo "installing wrk (apt-get)..." >&2
        apt-get update -qq >&2 && apt-get install -y -qq wrk >&2 || true
    fi
fi
if ! command -v wrk >/dev/null; then
    # No oha fallback: oha sends one fixed body, so it could only measure replays, not evaluations.
    die "wrk is not installed and could not be installed (apt-get install -y wrk); install it and rerun"
fi
command -v curl >/dev/null || die "curl is needed for the sanity checks"
PIN_SERVER=()
PIN_LOAD=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
    PIN_SERVER=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
fi

# --- build -----------------------------------------------------------------------------------------
echo "building (release)..." >&2
BARE=${BENCH_BARE:-$ROOT/target/release/examples/bare_handler}
if [[ -n ${BENCH_PIMGATE:-} ]]; then
    [[ -n ${BENCH_BARE:-} ]] || cargo build --release --locked --example bare_handler >&2
    PIMGATE=$BENCH_PIMGATE
else
    cargo build --release --locked --bin pimgate --example bare_handler >&2
    PIMGATE="$ROOT/target/release/pimgate"
fi

# --- the wrk script --------------------------------------------------------------------------------
cat >"$WORK/evaluate.lua" <<'LUA'
-- BENCH_MODE=distinct: a fresh PIM request id per request; fixed: the fixture as is (replays).
local mode = os.getenv("BENCH_MODE") or "distinct"
local prefix = os.getenv("BENCH_ID_PREFIX") or "bench"
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "0")
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local template = file:read("*a")
file:close()

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")

local threads = 0
function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

local head, tail, fixed
local counter = 0
function init(args)
  math.randomseed(os.time() + (thread_index or 0))
  if mode == "fixed" then
    fixed = wrk.format(nil, nil, nil, template)
    return
  end
  local first, last = template:find('"id"%s*:%s*"[^"]*"')
  assert(first, "the request body has no \"id\" to vary")
  head = template:sub(1, first - 1) .. '"id": "'
  tail = '"' .. template:sub(last + 1)
end

function request()
  if fixed then
    return fixed
  end
  counter = counter + 1
  local id = string.format("%s-%d-%d", prefix, thread_index or 0, counter)
  return wrk.format(nil, nil, nil, head .. id .. tail)
end

-- Exponential think time (mean BENCH_PACE_MS) so the connections do not fire in lock-step bursts,
-- which would measure queueing behind the burst rather than the server's latency.
if pace > 0 then
  function delay()
    return math.floor(-pace * math.log(1 - math.random()))
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx=%d socket_errors=%d timeouts=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, e.status, e.connect + e.read + e.write,
    e.timeout))
end
LUA

# --- helpers ---------------------------------------------------------------------------------------
wait_until_up() { # url, method
    local url=$1 method=$2 tries=100
    while ((tries-- > 0)); do
        if [[ $method == GET ]]; then
            curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        else
            curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' --data '{}' "$url" 2>/dev/null && return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            cat "$WORK"/*.err >&2 2>/dev/null || true
            die "the server exited during start-up"
        fi
        sleep 0.1
    done
    die "$url did not come up within 10 s"
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

start_pimgate() { # audit sink: off | file, then extra NAME=VALUE settings
    local sink=$1
    shift
    local -a env=("$@" PIMGATE__SERVER__LISTEN=$PIMGATE_ADDR PIMGATE__ADMIN__LISTEN=$ADMIN_ADDR PIMGATE__AUDIT__SINK=$sink
        PIMGATE__LOG__LEVEL=warn PIMGATE__SERVER__WORKERS=1
        # Dev tokens need no keys, but the refresher would still call Entra's discovery URL from the
        # example config: point it at a closed loopback port so the benchmark stays on loopback.
        PIMGATE__AUTH__METADATA_URL=http://127.0.0.1:9/.well-known/openid-configuration)
    [[ $sink == file ]] && env+=(PIMGATE__AUDIT__PATH="$WORK/audit.jsonl")
    env "${env[@]}" "${PIN_SERVER[@]}" "$PIMGATE" serve --config "$CONFIG" \
        >"$WORK/pimgate.out" 2>"$WORK/pimgate.err" &
    SERVER_PID=$!
    wait_until_up "http://$ADMIN_ADDR/readyz" GET
}

start_bare() {
    "${PIN_SERVER[@]}" "$BARE" "$BARE_ADDR" 1 >"$WORK/bare.out" 2>"$WORK/bare.err" &
    SERVER_PID=$!
    wait_until_up "http://$BARE_ADDR/v1/evaluate" POST
}

ROWS=()
# label, url, mode (distinct|fixed), id prefix, pace ms (0 = closed loop)
measure() {
    local label=$1 url=$2 mode=$3 prefix=$4 pace=$5 duration=${6:-$DURATION}
    local out="$WORK/wrk.txt"
    BENCH_MODE=$mode BENCH_ID_PREFIX=$prefix BENCH_PACE_MS=$pace BENCH_BODY="$ROOT/$FIXTURE" \
        BENCH_TOKEN="$TOKEN" "${PIN_LOAD[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" \
        --latency -s "$WORK/evaluate.lua" "$url" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    local line
    line=$(grep '^BENCH ' "$out") || { cat "$out" >&2; die "wrk printed no summary"; }
    local non2xx socket timeouts
    non2xx=$(sed -E 's/.* non2xx=([0-9]+).*/\1/' <<<"$line")
    socket=$(sed -E 's/.* socket_errors=([0-9]+).*/\1/' <<<"$line")
    timeouts=$(sed -E 's/.* timeouts=([0-9]+).*/\1/' <<<"$line")
    if [[ $non2xx != 0 ]]; then
        cat "$out" >&2
        die "$label: $non2xx responses were not 2xx"
    fi
    if [[ $socket != 0 || $timeouts != 0 ]]; then
        cat "$out" >&2
        die "$label: $socket socket errors, $timeouts timeouts"
    fi
    [[ $label == warmup ]] && return 0
    echo "  $label: $line" >&2
    ROWS+=("$label|$line")
}

field() { sed -E "s/.* $2=([0-9.]+).*/\1/" <<<"$1"; }

# --- rule sets for the guard-cost rows ------------------------------------------------------------
# `five`: one policy matching everything with five local checks, no guards. `guarded`: the same policy
# plus one guard whose `require` repeats one of them, spec for spec. A check written identically in
# several places is evaluated once per request (rules/README.md, "Checks shared by guards and
# policies"), so the target is guarded ≤ 1.2 × five in cost: rps(five) / rps(guarded) ≤ 1.2.
mkdir -p "$WORK/rules-five" "$WORK/rules-guarded"
cat >"$WORK/rules-five/rules.yaml" <<'YAML'
windows:
  always:
    timezone: UTC
    weekly:
      - { days: [Mon, Tue, Wed, Thu, Fri, Sat, Sun], from: "00:00", to: "24:00" }
policies:
  - name: five-local-checks
    match: { resource_types: [entraRoles, entraGroups, azureResources] }
    require:
      - justification: { min_length: 10, min_words: 3 }
      - duration: { max: PT8H }
      - start: { max_past: PT5M, max_future: P7D }
      - ticket: { systems: [ServiceNow], patterns: { ServiceNow: "INC[0-9]{7}" } }
      - window: always
YAML
{
    cat "$WORK/rules-five/rules.yaml"
    cat <<'YAML'
guards:
  - name: a-justification-everywhere
    require:
      - justification: { min_length: 10, min_words: 3 }
YAML
} >"$WORK/rules-guarded/rules.yaml"

# --- sanity: a real evaluation is Approved, and a repeated id is a replay -------------------------
TOKEN=$("$PIMGATE" dev token --config "$CONFIG")
[[ -n "$TOKEN" ]] || die "pimgate dev token printed nothing"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start_pimgate off
IDLE_RSS_KB=$(ps -o rss= -p "$SERVER_PID" | tr -d ' ')
post() {
    curl -sS -w '\n%{http_code}' -X POST "http://$PIMGATE_ADDR/v1/evaluate" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data-binary "@$ROOT/$FIXTURE"
}
first=$(post)
second=$(post)
[[ $(tail -n1 <<<"$first") == 200 ]] || die "sanity request was not answered 200: $first"
grep -q '"evaluationOutcome":"Approved"' <<<"$first" || die "sanity request was not Approved: $first"
[[ "$(head -n1 <<<"$first")" == "$(head -n1 <<<"$second")" ]] || die "a repeated id was not answered from the replay cache"
stop_server
for rules in five guarded; do
    start_pimgate off PIMGATE__RULES__PATH="$WORK/rules-$rules"
    answer=$(post)
    [[ $(tail -n1 <<<"$answer") == 200 ]] || die "sanity request under rules-$rules was not answered 200: $answer"
    grep -q '"evaluationOutcome":"Approved"' <<<"$answer" || die "sanity request under rules-$rules was not Approved: $answer"
    stop_server
done

# --- runs ------------------------------------------------------------------------------------------
echo "running: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency${PIN_LOAD:+ (pinned: servers core 0, wrk core 1)}" >&2

start_bare
measure warmup "http://$BARE_ADDR/v1/evaluate" distinct warm 0 2s
measure "bare actix-web handler" "http://$BARE_ADDR/v1/evaluate" distinct bare 0
measure "bare, paced ~1,000 req/s" "http://$BARE_ADDR/v1/evaluate" distinct barepaced "$PACE_MS"
stop_server

start_pimgate off
measure warmup "http://$PIMGATE_ADDR/v1/evaluate" distinct warm 0 2s
measure "pimgate, distinct ids, audit off" "http://$PIMGATE_ADDR/v1/evaluate" distinct run 0
measure "pimgate, paced ~1,000 req/s, audit off" "http://$PIMGATE_ADDR/v1/evaluate" distinct paced "$PACE_MS"
stop_server

start_pimgate off
measure warmup "http://$PIMGATE_ADDR/v1/evaluate" fixed warm 0 2s
measure "pimgate, replays (fixed id), audit off" "http://$PIMGATE_ADDR/v1/evaluate" fixed replay 0
stop_server

start_pimgate file
measure warmup "http://$PIMGATE_ADDR/v1/evaluate" distinct warm 0 2s
measure "pimgate, distinct ids, audit to file" "http://$PIMGATE_ADDR/v1/evaluate" distinct file 0
AUDIT_LINES=$(wc -l <"$WORK/audit.jsonl")
AUDIT_BYTES=$(wc -c <"$WORK/audit.jsonl")
file_requests=$(field "${ROWS[5]#*|}" requests)
((AUDIT_LINES >= file_requests)) || die "only $AUDIT_LINES audit records for $file_requests answered requests"
LOADED_RSS_KB=$(ps -o rss= -p "$SERVER_PID" | tr -d ' ')
stop_server

# The same evaluations with the verified-token cache off: one RS256 verification per request.
start_pimgate off PIMGATE__AUTH__TOKEN_CACHE_CAPACITY=0
measure warmup "http://$PIMGATE_ADDR/v1/evaluate" distinct warm 0 2s
measure "pimgate, distinct ids, token cache off (RS256 each request)" "http://$PIMGATE_ADDR/v1/evaluate" distinct nocache 0
stop_server

# The same evaluations with a notification target selecting every decision: a signed webhook to a
# loopback receiver (python, on the load generator's core). The handler only enqueues (`try_send`);
# delivery runs on the `pimgate-notify` thread at nice 19, so at saturation this row should be within
# noise of "distinct ids, audit off" (notifications then wait, and drop when their queue is full: the
# metric line below counts them), and at ≈ 1,000 req/s (paced) every notification is sent.
cp "$ROOT/$CONFIG" "$WORK/notify.toml"
cat >>"$WORK/notify.toml" <<'TOML'

[[notify]]
name = "bench"
kind = "webhook"
url = { env = "BENCH_NOTIFY_URL" }
secret = { env = "BENCH_NOTIFY_SECRET" }
queue_capacity = 10000
TOML
"${PIN_LOAD[@]}" python3 -c '
import http.server, socketserver
class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", 18082), Receiver).serve_forever()
' &
RECEIVER_PID=$!
SAVED_CONFIG=$CONFIG
CONFIG="$WORK/notify.toml"
start_pimgate off BENCH_NOTIFY_URL=http://127.0.0.1:18082/hook BENCH_NOTIFY_SECRET=bench-notify-secret-0123456789
measure warmup "http://$PIMGATE_ADDR/v1/evaluate" distinct warm 0 2s
measure "pimgate, distinct ids, audit off, notifications on (every decision)" "http://$PIMGATE_ADDR/v1/evaluate" distinct notify 0
NOTIFY_METRIC=$(curl -sS "http://$ADMIN_ADDR/metrics" 2>/dev/null | grep '^pimgate_notifications_total' | tr '\n' ' ' || true)
stop_server
start_pimgate off BENCH_NOTIFY_URL=http://127.0.0.1:18082/hook BENCH_NOTIFY_SECRET=bench-notify-secret-0123456789
measure "pimgate, paced ~1,000 req/s, audit off, notifications on (every decision)" "http://$PIMGATE_ADDR/v1/evaluate" distinct notifypaced "$PACE_MS"
sleep 1 # the last few deliveries of the paced run
NOTIFY_PACED_METRIC=$(curl -sS "http://$ADMIN_ADDR/metrics" 2>/dev/null | grep '^pimgate_notifications_total' | tr '\n' ' ' || true)
stop_server
CONFIG=$SAVED_CONFIG
kill "$RECEIVER_PID" 2>/dev/null || true
RECEIVER_PID=""

# What a guard costs: five local checks, then the same five plus a guard repeating one of them.
start_pimgate off PIMGATE__RULES__PATH="$WORK/rules-five"
measure warmup "http://$PIMGATE_ADDR/v1/evaluate" distinct warm 0 2s
measure "pimgate, five local checks, audit off" "http://$PIMGATE_ADDR/v1/evaluate" distinct five 0
FIVE_ROW=$((${#ROWS[@]} - 1))
stop_server
start_pimgate off PIMGATE__RULES__PATH="$WORK/rules-guarded"
measure warmup "http://$PIMGATE_ADDR/v1/evaluate" distinct warm 0 2s
measure "pimgate, one guard + five local checks, audit off" "http://$PIMGATE_ADDR/v1/evaluate" distinct guarded 0
GUARDED_ROW=$((${#ROWS[@]} - 1))
stop_server
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# --- table -----------------------------------------------------------------------------------------
bare_rps=$(field "${ROWS[0]#*|}" rps)
printf '\n| run | requests/s | p50 ms | p99 ms | requests | vs bare (req/s) |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
for row in "${ROWS[@]}"; do
    label=${row%%|*}
    line=${row#*|}
    rps=$(field "$line" rps)
    ratio=$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN { printf "%.2f", a / b }')
    [[ $label == *paced* ]] && ratio="(paced)"
    printf '| %s | %.0f | %s | %s | %s | %s |\n' "$label" "$rps" "$(field "$line" p50_ms)" \
        "$(field "$line" p99_ms)" "$(field "$line" requests)" "$ratio"
done
pimgate_rps=$(field "${ROWS[2]#*|}" rps)
printf '\npimgate/bare requests/s (distinct ids, audit off): %s\n' \
    "$(awk -v a="$pimgate_rps" -v b="$bare_rps" 'BEGIN { printf "%.3f", a / b }')"
printf 'all responses 2xx; wrk -t%s -c%s -d%s --latency; servers 1 worker%s\n' "$THREADS" "$CONNECTIONS" \
    "$DURATION" "${PIN_SERVER:+, pinned to core 0, wrk to core 1}"
printf 'paced rows: each connection waits a random time (exponential, mean %s ms, wrk delay()) before each request:\n' "$PACE_MS"
printf 'closed loop with think time,'
printf ' not a constant-rate (coordinated-omission-corrected) run; wrk2 is not packaged in Debian\n'
printf 'audit file (warm-up + run): %s records, %s bytes (%s bytes/record)\n' "$AUDIT_LINES" "$AUDIT_BYTES" \
    "$((AUDIT_BYTES / (AUDIT_LINES > 0 ? AUDIT_LINES : 1)))"
printf 'pimgate RSS: %s KiB idle after start, %s KiB after the audit-to-file run\n' "$IDLE_RSS_KB" "$LOADED_RSS_KB"
printf 'pimgate binary: %s bytes (%s)\n' "$(stat -c %s "$PIMGATE")" "$PIMGATE"
printf 'notifications row: %s\n' "${NOTIFY_METRIC:-no pimgate_notifications_total read}"
printf 'notifications paced row: %s\n' "${NOTIFY_PACED_METRIC:-no pimgate_notifications_total read}"
five_rps=$(field "${ROWS[$FIVE_ROW]#*|}" rps)
guarded_rps=$(field "${ROWS[$GUARDED_ROW]#*|}" rps)
printf 'guard + five / five (req/s): %s (cost of the guard: rps(five) / rps(guarded); target <= 1.2)\n' \
    "$(awk -v a="$five_rps" -v b="$guarded_rps" 'BEGIN { printf "%.3f", a / b }')"
