#!/usr/bin/env bash
# Soak test of `POST /v1/evaluate`: SOAK_SECONDS (default 60) of sustained mixed traffic against the
# release binary, then three verdicts:
#   1. no valid request got anything but 200, no invalid one got 200, no socket errors;
#   2. one audit record per decision: the audit contract is "one record per answered evaluation"
#      (src/audit.rs); refusals (401/400/413/415) make no decision and write none;
#   3. memory is flat: RSS at the end within SOAK_RSS_GROWTH_PERCENT (default 10) of RSS at 20 s.
#
# Loopback only, bounded (SOAK_SECONDS + start-up), kills the server it started on any exit.
#
#   scripts/soak.sh                       # 60 s, wrk -t1 -c16, 1 server worker
#   SOAK_SECONDS=20 SOAK_CONNECTIONS=32 scripts/soak.sh
#
# The mix (by a per-thread counter, so it is exact): 70 % valid with a distinct PIM id, 10 % a token
# with a tampered signature (401), 10 % malformed JSON (400), 5 % text/plain (415), 5 % a body over
# max_body_bytes (413). wrk's response() cannot tell which request a response answers, so each class
# is checked by counting: answers with a class's status must equal the requests of that class sent,
# less at most the requests still in flight when wrk stopped (one per connection).
#
# The replay cache grows with distinct ids until `server.idempotency_capacity` is reached; the soak
# sets it to 2000 (full after about a second) so the RSS comparison sees the steady state, not the
# cache filling up.
set -euo pipefail

SECONDS_TOTAL=${SOAK_SECONDS:-60}
CONNECTIONS=${SOAK_CONNECTIONS:-16}
THREADS=${SOAK_THREADS:-1}
GROWTH_PERCENT=${SOAK_RSS_GROWTH_PERCENT:-10}
ADDR=127.0.0.1:18090
FIXTURE=tests/fixtures/requests/group-activation.json
CONFIG=config/example.toml

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pimgate-soak.XXXXXX")
SERVER_PID=""
SAMPLER_PID=""

cleanup() {
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "soak: $*" >&2
    exit 1
}

((SECONDS_TOTAL >= 25)) || die "SOAK_SECONDS must be at least 25 (RSS is compared from 20 s on)"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install -y wrk)"
command -v curl >/dev/null || die "curl is needed for the readiness check"
PIN_SERVER=()
PIN_LOAD=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
    PIN_SERVER=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
fi

echo "building (release)..." >&2
cargo build --release --locked --bin pimgate >&2
PIMGATE="$ROOT/target/release/pimgate"
TOKEN=$("$PIMGATE" dev token --config "$CONFIG")
[[ -n "$TOKEN" ]] || die "pimgate dev token printed nothing"

# --- the wrk script --------------------------------------------------------------------------------
cat >"$WORK/soak.lua" <<'LUA'
local token = os.getenv("SOAK_TOKEN")
local file = assert(io.open(os.getenv("SOAK_BODY"), "rb"))
local template = file:read("*a")
file:close()
local first, last = template:find('"id"%s*:%s*"[^"]*"')
assert(first, "the request body has no \"id\" to vary")
local head = template:sub(1, first - 1) .. '"id": "'
local tail = '"' .. template:sub(last + 1)
-- A changed signature: the token parses but fails verification, the full path of a forged token.
local forged = token:sub(1, -5) .. (token:sub(-4) == "AAAA" and "BBBB" or "AAAA")
local oversized = '{"id": "' .. string.rep("x", 70000) .. '"}'

local classes = { "valid", "bad_token", "malformed", "wrong_type", "oversized" }
-- Out of 20: 14 valid, 2 bad token, 2 malformed, 1 wrong content type, 1 oversized.
local plan = { 1,1,1,1,1,1,1,1,1,1,1,1,1,1, 2,2, 3,3, 4, 5 }

local threads = {}
function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

local counter = 0
sent = { 0, 0, 0, 0, 0 }
statuses = {}

function request()
  counter = counter + 1
  local class = plan[(counter - 1) % #plan + 1]
  sent[class] = sent[class] + 1
  local id = string.format("soak-%d-%d", thread_index or 0, counter)
  local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
  local body = head .. id .. tail
  if class == 2 then
    headers["Authorization"] = "Bearer " .. forged
  elseif class == 3 then
    body = '{"id": "' .. id .. '", "data": {'
  elseif class == 4 then
    headers["Content-Type"] = "text/plain"
  elseif class == 5 then
    body = oversized
  end
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total_sent = { 0, 0, 0, 0, 0 }
  local total_status = {}
  for _, thread in ipairs(threads) do
    local thread_sent = thread:get("sent")
    for i = 1, 5 do total_sent[i] = total_sent[i] + thread_sent[i] end
    for status, count in pairs(thread:get("statuses")) do
      total_status[status] = (total_status[status] or 0) + count
    end
  end
  local e = summary.errors
  io.write(string.format("SOAK requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f socket_errors=%d timeouts=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, e.connect + e.read + e.write, e.timeout))
  for i, class in ipairs(classes) do
    io.write(string.format("SENT %s %d\n", class, total_sent[i]))
  end
  for status, count in pairs(total_status) do
    io.write(string.format("STATUS %d %d\n", status, count))
  end
end
LUA

# --- server ----------------------------------------------------------------------------------------
env PIMGATE__SERVER__LISTEN=$ADDR PIMGATE__SERVER__WORKERS=1 PIMGATE__LOG__LEVEL=warn \
    PIMGATE__SERVER__IDEMPOTENCY_CAPACITY=2000 \
    PIMGATE__AUDIT__SINK=file PIMGATE__AUDIT__PATH="$WORK/audit.jsonl" \
    PIMGATE__AUTH__METADATA_URL=http://127.0.0.1:9/.well-known/openid-configuration \
    "${PIN_SERVER[@]}" "$PIMGATE" serve --config "$CONFIG" >"$WORK/pimgate.out" 2>"$WORK/pimgate.err" &
SERVER_PID=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://$ADDR/readyz" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/pimgate.err" >&2; die "the server exited during start-up"; }
    sleep 0.1
done
curl -fsS -o /dev/null "http://$ADDR/readyz" || die "the server did not become ready within 10 s"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
echo "0 $(rss_kib)" >"$WORK/rss.txt"
(
    for ((t = 5; t <= SECONDS_TOTAL; t += 5)); do
        sleep 5
        echo "$t $(rss_kib)" >>"$WORK/rss.txt"
    done
) &
SAMPLER_PID=$!

# --- load ------------------------------------------------------------------------------------------
echo "soaking: wrk -t$THREADS -c$CONNECTIONS -d${SECONDS_TOTAL}s, mixed traffic, 1 server worker" >&2
SOAK_TOKEN=$TOKEN SOAK_BODY="$ROOT/$FIXTURE" "${PIN_LOAD[@]}" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_TOTAL}s" --timeout 10s --latency -s "$WORK/soak.lua" \
    "http://$ADDR/v1/evaluate" >"$WORK/wrk.txt" 2>&1 || { cat "$WORK/wrk.txt" >&2; die "wrk failed"; }
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/pimgate.err" >&2; die "the server died during the soak"; }
sleep 1 # requests in flight when wrk stopped are answered and audited
AUDIT=$(wc -l <"$WORK/audit.jsonl")

# --- verdicts --------------------------------------------------------------------------------------
summary=$(grep '^SOAK ' "$WORK/wrk.txt") || { cat "$WORK/wrk.txt" >&2; die "wrk printed no summary"; }
sent() { awk -v c="$1" '$1 == "SENT" && $2 == c { print $3 }' "$WORK/wrk.txt"; }
status() { awk -v s="$1" '$1 == "STATUS" && $2 == s { n = $3 } END { print n + 0 }' "$WORK/wrk.txt"; }
field() { sed -E "s/.* $1=([0-9.]+).*/\1/" <<<"$summary"; }

FAILED=0
fail() {
    echo "FAIL: $*" >&2
    FAILED=1
}
socket=$(field socket_errors)
timeouts=$(field timeouts)
[[ $socket == 0 && $timeouts == 0 ]] || fail "$socket socket errors, $timeouts timeouts"
others=$(awk '$1 == "STATUS" && $2 !~ /^(200|400|401|413|415)$/ { n += $3 } END { print n + 0 }' "$WORK/wrk.txt")
((others == 0)) || fail "$others answers with an unexpected status: $(grep '^STATUS' "$WORK/wrk.txt" | tr '\n' ' ')"
# Per class: answers with its status == requests sent, less those in flight at the stop.
check_class() { # class, status
    local sent_count answered
    sent_count=$(sent "$1")
    answered=$(status "$2")
    if ((answered > sent_count || answered < sent_count - CONNECTIONS)); then
        fail "$1: $sent_count sent but $answered answered $2 (a wrong status for some)"
    fi
    printf '  %-10s sent %7d, answered %s %7d\n' "$1" "$sent_count" "$2" "$answered" >&2
}
check_class valid 200
check_class bad_token 401
check_class malformed 400
check_class wrong_type 415
check_class oversized 413
DECISIONS=$(status 200)
# wrk counts only answers it read: a decision answered after wrk stopped reading is audited but not
# counted, so at most one more record per connection.
if ((AUDIT < DECISIONS || AUDIT > DECISIONS + CONNECTIONS)); then
    fail "$AUDIT audit records for $DECISIONS decisions answered"
fi

RSS_20=$(awk '$1 == 20 { print $2 }' "$WORK/rss.txt")
RSS_END=$(tail -n1 "$WORK/rss.txt" | cut -d' ' -f2)
if ((RSS_END * 100 > RSS_20 * (100 + GROWTH_PERCENT))); then
    fail "RSS grew from $RSS_20 KiB at 20 s to $RSS_END KiB at the end (> $GROWTH_PERCENT %)"
fi

echo >&2
echo "$summary" | sed 's/^SOAK /wrk: /'
echo "decisions (200) answered: $DECISIONS; audit records: $AUDIT (one per decision; refusals write none)"
echo "RSS KiB by second: $(tr '\n' ' ' <"$WORK/rss.txt" | sed -E 's/([0-9]+) ([0-9]+) /\1s=\2 /g')"
echo "RSS at 20 s: $RSS_20 KiB, at the end: $RSS_END KiB (bound: +$GROWTH_PERCENT %)"
((FAILED == 0)) || die "the soak failed (see above)"
echo "soak passed: 0 errors on valid requests, one audit record per decision, memory flat"
