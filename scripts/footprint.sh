#!/usr/bin/env bash
# Footprint of the release binary, against the bare actix-web handler (examples/bare_handler.rs):
#   - ready time: from spawning the process to the first 200 from /readyz (pimgate: with Entra-style
#     discovery and signing keys served from a loopback stand-in and dev mode off, so readiness really
#     waits for the key fetch; bare: first answer from its route). FOOTPRINT_RUNS starts each (default 10).
#   - RSS idle (after ready) and peak RSS (VmHWM) after FOOTPRINT_LOAD of distinct-id load with wrk.
#   - release binary sizes.
# Loopback only, bounded; every process it starts is killed on exit.
#
#   scripts/footprint.sh                      # ~1 min after the release build
#   FOOTPRINT_RUNS=20 FOOTPRINT_LOAD=30s scripts/footprint.sh
set -euo pipefail

RUNS=${FOOTPRINT_RUNS:-10}
LOAD=${FOOTPRINT_LOAD:-10s}
PIMGATE_ADDR=127.0.0.1:18090
BARE_ADDR=127.0.0.1:18091
IDP_PORT=18092
CONFIG=config/example.toml
FIXTURE=tests/fixtures/requests/group-activation.json

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pimgate-footprint.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() {
    echo "footprint: $*" >&2
    exit 1
}
command -v python3 >/dev/null || die "python3 is needed (loopback key server and the start-up clock)"
command -v openssl >/dev/null || die "openssl is needed to turn the dev public key into a JWKS"

echo "building (release)..." >&2
cargo build --release --locked --bin pimgate --example bare_handler >&2
PIMGATE="$ROOT/target/release/pimgate"
BARE="$ROOT/target/release/examples/bare_handler"

# --- a loopback OpenID provider: discovery document + JWKS holding the dev public key --------------
mkdir -p "$WORK/idp/.well-known"
modulus=$(openssl rsa -pubin -in src/auth/dev_key.pub.pem -noout -modulus | cut -d= -f2)
python3 - "$modulus" "$IDP_PORT" "$WORK/idp" <<'PY'
import base64, json, sys
modulus, port, root = sys.argv[1], sys.argv[2], sys.argv[3]
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
jwk = {"kty": "RSA", "use": "sig", "kid": "footprint", "n": b64(bytes.fromhex(modulus)), "e": "AQAB"}
json.dump({"keys": [jwk]}, open(f"{root}/keys.json", "w"))
json.dump({"issuer": "https://login.microsoftonline.com/t/v2.0",
           "jwks_uri": f"http://127.0.0.1:{port}/keys.json"},
          open(f"{root}/.well-known/openid-configuration", "w"))
PY
python3 -m http.server "$IDP_PORT" --bind 127.0.0.1 --directory "$WORK/idp" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$IDP_PORT/keys.json" 2>/dev/null && break
    sleep 0.1
done

# Starts CMD..., polls URL until 200 (1 ms apart, raw sockets: no curl start-up in the figure), prints
# "<ms to ready> <pid>" and leaves the process running.
cat >"$WORK/ready.py" <<'PY'
import os, socket, subprocess, sys, time
url_host, url_port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
method, cmd = sys.argv[4], sys.argv[5:]
request = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: 2\r\nConnection: close\r\n\r\n{{}}").encode()
started = time.perf_counter()
process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.environ["ERR"], "w"))
deadline = started + 10
while time.perf_counter() < deadline:
    if process.poll() is not None:
        sys.exit(f"exited during start-up with {process.returncode}")
    try:
        with socket.create_connection((url_host, url_port), timeout=1) as conn:
            conn.sendall(request)
            if conn.recv(64).startswith(b"HTTP/1.1 200"):
                print(f"{(time.perf_counter() - started) * 1000:.1f} {process.pid}")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.001)
process.kill()
sys.exit("not ready within 10 s")
PY

pimgate_env=(PIMGATE__SERVER__LISTEN=$PIMGATE_ADDR PIMGATE__SERVER__WORKERS=1 PIMGATE__LOG__LEVEL=warn
    PIMGATE__AUDIT__SINK=off PIMGATE__AUTH__DEV_MODE=false
    PIMGATE__AUTH__METADATA_URL=http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration)

start_ready() { # label, host, port, path, method, cmd...
    local label=$1
    shift
    local out
    out=$(ERR="$WORK/$label.err" python3 "$WORK/ready.py" "$@") || {
        cat "$WORK/$label.err" >&2
        die "$label did not become ready"
    }
    echo "$out"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "ready time, $RUNS starts each..." >&2
: >"$WORK/pimgate.ms"
: >"$WORK/bare.ms"
for _ in $(seq "$RUNS"); do
    read -r ms pid < <(start_ready pimgate 127.0.0.1 "${PIMGATE_ADDR#*:}" /readyz GET \
        env "${pimgate_env[@]}" "$PIMGATE" serve --config "$CONFIG")
    echo "$ms" >>"$WORK/pimgate.ms"
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    read -r ms pid < <(start_ready bare 127.0.0.1 "${BARE_ADDR#*:}" /v1/evaluate POST "$BARE" "$BARE_ADDR" 1)
    echo "$ms" >>"$WORK/bare.ms"
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
done
pimgate_ready=$(median <"$WORK/pimgate.ms")
pimgate_ready_max=$(sort -n "$WORK/pimgate.ms" | tail -n1)
bare_ready=$(median <"$WORK/bare.ms")
bare_ready_max=$(sort -n "$WORK/bare.ms" | tail -n1)

# --- RSS idle and under load ------------------------------------------------------------------------
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
have_wrk=false
command -v wrk >/dev/null && have_wrk=true
lua="$WORK/distinct.lua"
cat >"$lua" <<'LUA'
local file = assert(io.open(os.getenv("BODY"), "rb"))
local template = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "")
local first, last = template:find('"id"%s*:%s*"[^"]*"')
local head, tail = template:sub(1, first - 1) .. '"id": "', '"' .. template:sub(last + 1)
local counter = 0
function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, head .. "fp-" .. counter .. tail)
end
LUA

measure_rss() { # label, pid, url, token
    local label=$1 pid=$2 url=$3 token=$4
    sleep 1
    local idle
    idle=$(rss_kib "$pid")
    if $have_wrk; then
        BODY="$ROOT/$FIXTURE" TOKEN=$token wrk -t1 -c16 -d"$LOAD" -s "$lua" "$url" >"$WORK/$label.wrk" 2>&1 ||
            die "wrk failed against $label"
        grep -q "Non-2xx" "$WORK/$label.wrk" && die "$label answered non-2xx under load: $(cat "$WORK/$label.wrk")"
    fi
    echo "$idle $(rss_kib "$pid") $(hwm_kib "$pid") $(awk '/Requests\/sec/ { print $2 }' "$WORK/$label.wrk" 2>/dev/null)"
}

# Dev mode for the load so tokens need no Entra; the key fetch was measured above.
read -r _ pid < <(start_ready pimgate 127.0.0.1 "${PIMGATE_ADDR#*:}" /readyz GET \
    env PIMGATE__SERVER__LISTEN=$PIMGATE_ADDR PIMGATE__SERVER__WORKERS=1 PIMGATE__LOG__LEVEL=warn \
    PIMGATE__AUDIT__SINK=off \
    PIMGATE__AUTH__METADATA_URL=http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration \
    "$PIMGATE" serve --config "$CONFIG")
PIDS+=("$pid")
token=$("$PIMGATE" dev token --config "$CONFIG")
read -r p_idle p_after p_hwm p_rps < <(measure_rss pimgate "$pid" "http://$PIMGATE_ADDR/v1/evaluate" "$token")
kill "$pid"

read -r _ pid < <(start_ready bare 127.0.0.1 "${BARE_ADDR#*:}" /v1/evaluate POST "$BARE" "$BARE_ADDR" 1)
PIDS+=("$pid")
read -r b_idle b_after b_hwm b_rps < <(measure_rss bare "$pid" "http://$BARE_ADDR/v1/evaluate" "")
kill "$pid"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
p_size=$(stat -c %s "$PIMGATE")
b_size=$(stat -c %s "$BARE")
printf '\n| figure | pimgate | bare handler | ratio |\n|---|---:|---:|---:|\n'
printf '| ready after start, median of %s (ms) | %s | %s | %s |\n' "$RUNS" "$pimgate_ready" "$bare_ready" "$(ratio "$pimgate_ready" "$bare_ready")"
printf '| ready after start, max (ms) | %s | %s | %s |\n' "$pimgate_ready_max" "$bare_ready_max" "$(ratio "$pimgate_ready_max" "$bare_ready_max")"
printf '| RSS idle after ready (MiB) | %s | %s | %s |\n' "$(mib "$p_idle")" "$(mib "$b_idle")" "$(ratio "$p_idle" "$b_idle")"
if $have_wrk; then
    printf '| RSS after %s of load, distinct ids (MiB) | %s | %s | %s |\n' "$LOAD" "$(mib "$p_after")" "$(mib "$b_after")" "$(ratio "$p_after" "$b_after")"
    printf '| peak RSS, VmHWM (MiB) | %s | %s | %s |\n' "$(mib "$p_hwm")" "$(mib "$b_hwm")" "$(ratio "$p_hwm" "$b_hwm")"
    printf '| requests/s during that load (wrk -t1 -c16, unpinned) | %s | %s | %s |\n' "$p_rps" "$b_rps" "$(ratio "${p_rps:-0}" "${b_rps:-1}")"
fi
printf '| release binary (MB) | %s | %s | %s |\n' "$(awk -v s="$p_size" 'BEGIN { printf "%.1f", s / 1e6 }')" \
    "$(awk -v s="$b_size" 'BEGIN { printf "%.1f", s / 1e6 }')" "$(ratio "$p_size" "$b_size")"
printf 'pimgate: 1 worker, dev mode off for the ready-time runs (discovery + JWKS fetched from a loopback server);\n'
printf 'idle RSS sampled 1 s after ready; load: %s of distinct request ids (replay cache filling).\n' "$LOAD"
