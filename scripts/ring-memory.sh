#!/usr/bin/env bash
# Memory of the console's ring of recent decisions (`admin.recent_decisions`): the release binary on the
# example config, COUNT distinct decisions answered, then VmRSS, once per ring size (0 = no ring).
# The difference over the ring's size is what one kept decision costs. Loopback only, bounded.
#
#   scripts/ring-memory.sh            # sizes 0, 200, 10000; 12000 decisions each (~1 min after the build)
#   RING_COUNT=3000 RING_SIZES="0 200" scripts/ring-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${RING_COUNT:-12000}
SIZES=${RING_SIZES:-0 200 10000}
cargo build --release --locked --bin pimgate >&2
BIN=target/release/pimgate
TOKEN=$("$BIN" dev token --config config/example.toml)
for size in $SIZES; do
    PIMGATE__SERVER__LISTEN=127.0.0.1:18190 PIMGATE__ADMIN__LISTEN=127.0.0.1:18191 \
        PIMGATE__ADMIN__RECENT_DECISIONS="$size" PIMGATE__AUDIT__SINK=off \
        "$BIN" serve --config config/example.toml 2>/dev/null &
    pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
        curl -fsS http://127.0.0.1:18191/readyz >/dev/null 2>&1 && break
        sleep 0.1
    done
    TOKEN="$TOKEN" COUNT="$COUNT" python3 - <<'PY'
import http.client, json, os, uuid
body = json.load(open("tests/fixtures/requests/entra-role-activation.json"))
connection = http.client.HTTPConnection("127.0.0.1", 18190, timeout=10)
headers = {"Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"}
for _ in range(int(os.environ["COUNT"])):
    body["id"] = str(uuid.uuid4())
    connection.request("POST", "/v1/evaluate", json.dumps(body), headers)
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    echo "recent_decisions=$size decisions=$COUNT VmRSS=${rss} kB"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
