#!/usr/bin/env bash
# Instructions per evaluation, counted by callgrind: a figure that does not move with the VM's mood.
#
# On this project's shared 2-core VM, requests/s of the same binary vary by ±15 % from one minute to the
# next, which hides a 5–10 % change. Callgrind counts the instructions the server executes (user space
# only; no syscalls, no cache misses), so two binaries compare within ≈ 2 % run to run. It is a
# cost model, not a time: valgrind's CPU has no SHA extensions, so sha2 runs its portable code here
# (≈ 35 % of the count) while on real x86-64 with SHA-NI it is ≈ 3 % of the time.
#
#   scripts/bench-instructions.sh [BINARY ...]     # default: target/release/pimgate (built if missing)
#   BENCH_AUDIT=file scripts/bench-instructions.sh /tmp/pimgate-before target/release/pimgate
#   BENCH_MODE=fixed scripts/bench-instructions.sh ...   # replays: the fixture unchanged every time
#
# Loopback only, bounded: per binary a 3 s warm-up and a 10 s measured wrk run (-t1 -c4, distinct ids
# unless BENCH_MODE=fixed).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
FIXTURE=tests/fixtures/requests/group-activation.json
CONFIG=config/example.toml
PIMGATE_ADDR=127.0.0.1:18080
ADMIN_ADDR=127.0.0.1:18083
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pimgate-instr.XXXXXX")
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() {
    echo "bench-instructions: $*" >&2
    exit 1
}

for tool in valgrind callgrind_control wrk curl; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y valgrind wrk curl)"
done
BINARIES=("$@")
if [[ ${#BINARIES[@]} -eq 0 ]]; then
    cargo build --release --locked --bin pimgate >&2
    BINARIES=("$ROOT/target/release/pimgate")
fi

cat >"$WORK/distinct.lua" <<'LUA'
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local template = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local first, last = template:find('"id"%s*:%s*"[^"]*"')
local head = template:sub(1, first - 1) .. '"id": "'
local tail = '"' .. template:sub(last + 1)
local counter = 0
local fixed = os.getenv("BENCH_MODE") == "fixed"
function request()
  if fixed then
    return wrk.format(nil, nil, nil, template)
  end
  counter = counter + 1
  return wrk.format(nil, nil, nil, head .. "instr-" .. counter .. tail)
end
LUA
MODE=${BENCH_MODE:-distinct}
[[ $MODE == distinct || $MODE == fixed ]] || die "BENCH_MODE is distinct or fixed, not $MODE"

printf '| binary | ids | audit | requests | instructions/request |\n|---|---|---|---:|---:|\n'
for binary in "${BINARIES[@]}"; do
    token=$("$binary" dev token --config "$CONFIG")
    rm -f "$WORK"/callgrind.*
    PIMGATE__SERVER__LISTEN=$PIMGATE_ADDR PIMGATE__ADMIN__LISTEN=$ADMIN_ADDR \
        PIMGATE__AUDIT__SINK=${BENCH_AUDIT:-off} PIMGATE__AUDIT__PATH="$WORK/audit.jsonl" \
        PIMGATE__LOG__LEVEL=warn PIMGATE__SERVER__WORKERS=1 \
        PIMGATE__AUTH__METADATA_URL=http://127.0.0.1:9/.well-known/openid-configuration \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.%p" \
        "$binary" serve --config "$CONFIG" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        curl -fsS -o /dev/null "http://$ADMIN_ADDR/readyz" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "$binary exited"; }
        sleep 0.2
    done
    load() { # duration
        BENCH_MODE=$MODE BENCH_BODY="$ROOT/$FIXTURE" BENCH_TOKEN=$token wrk -t1 -c4 -d"$1" -s "$WORK/distinct.lua" \
            "http://$PIMGATE_ADDR/v1/evaluate"
    }
    load 3s >/dev/null
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    out=$(load 10s)
    callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
    sleep 1
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    grep -q 'Non-2xx' <<<"$out" && die "$binary: some answers were not 2xx: $out"
    dump=$(ls -t "$WORK"/callgrind.*.1 2>/dev/null | head -n1)
    [[ -n "$dump" ]] || die "no callgrind dump for $binary"
    instructions=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    printf '| %s | %s | %s | %s | %s |\n' "$binary" "$MODE" "${BENCH_AUDIT:-off}" "$requests" \
        "$(awk -v i="$instructions" -v n="$requests" 'BEGIN { printf "%.0f", i / n }')"
done
