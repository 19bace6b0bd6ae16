#!/usr/bin/env bash
# Builds the container image and checks it as it would run: started hardened (read-only root
# filesystem, no capabilities, no privilege escalation) with the configuration and rules baked into it
# (config/production.toml), it must answer /healthz, run as a non-root user, and weigh less than the
# goal (40 MB unpacked, `image inspect`'s Size). Where no container engine is available it says so and
# exits 77; tests/image_context replays the build without one.
#
#   scripts/image.sh                          # docker, else podman, with a daemon that answers
#   PIMGATE_ENGINE=podman scripts/image.sh
#   PIMGATE_IMAGE=pimgate:dev PIMGATE_IMAGE_MAX_BYTES=45000000 scripts/image.sh
#
# Exit codes: 0 every check passed; 1 a check failed (or the build did); 77 no container engine.
# Ports are published on 127.0.0.1 only; the container is removed on exit.
set -euo pipefail

NO_ENGINE=77
IMAGE=${PIMGATE_IMAGE:-pimgate:image-check}
MAX_BYTES=${PIMGATE_IMAGE_MAX_BYTES:-40000000}
HEALTH_SECONDS=${PIMGATE_HEALTH_SECONDS:-30}

cd "$(dirname "$0")/.."

say() { echo "image: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

# A container engine whose daemon (or, for podman, runtime) answers.
engine_ready() { command -v "$1" >/dev/null && "$1" info >/dev/null 2>&1; }
ENGINE=${PIMGATE_ENGINE:-}
if [[ -z $ENGINE ]]; then
    for candidate in docker podman; do
        if engine_ready "$candidate"; then
            ENGINE=$candidate
            break
        fi
    done
fi
if [[ -z $ENGINE ]] || ! engine_ready "$ENGINE"; then
    for candidate in ${ENGINE:-docker podman}; do
        if command -v "$candidate" >/dev/null; then
            say "$candidate is installed but \`$candidate info\` fails (no daemon answers)"
        fi
    done
    say "SKIPPED: no container engine is available, so the image cannot be built or run here."
    say "The build itself is replayed without one by: cargo test --test image_context"
    exit "$NO_ENGINE"
fi
command -v curl >/dev/null || fail "curl is needed to ask /healthz"

say "building $IMAGE with $ENGINE"
"$ENGINE" build -t "$IMAGE" . || fail "the image does not build"

CID=
cleanup() {
    if [[ -n $CID ]]; then
        "$ENGINE" rm -f "$CID" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Non-root, as the image declares it.
user=$("$ENGINE" image inspect -f '{{.Config.User}}' "$IMAGE")
uid=${user%%:*}
case $uid in
    "" | root | 0) fail "the image runs as root (USER is \`$user\`)" ;;
esac
say "USER $user"

# 2. Size, unpacked.
size=$("$ENGINE" image inspect -f '{{.Size}}' "$IMAGE")
say "size $size bytes ($((size / 1000000)) MB); goal < $MAX_BYTES bytes"
((size < MAX_BYTES)) || fail "the image is $size bytes, over the goal of $MAX_BYTES"

# 3. Started as production starts it. Every port the image exposes, and every port a `listen` key of
#    the baked-in config names (health may move to an admin listener), is published on loopback.
# shellcheck disable=SC2016 # a Go template, not shell
ports=$("$ENGINE" image inspect -f '{{range $port, $_ := .Config.ExposedPorts}}{{$port}} {{end}}' "$IMAGE")
ports="$ports $(sed -n 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*"[^"]*:\([0-9][0-9]*\)".*/\1/p' config/production.toml)"
publish=()
declare -A seen=()
for port in $ports; do
    port=${port%/tcp}
    [[ -n ${seen[$port]:-} ]] && continue
    seen[$port]=1
    publish+=(-p "127.0.0.1::$port")
done
((${#publish[@]} > 0)) || fail "the image exposes no port and its config names none"
CID=$("$ENGINE" run -d --read-only --cap-drop=ALL --security-opt=no-new-privileges "${publish[@]}" "$IMAGE")

healthy=
deadline=$((SECONDS + HEALTH_SECONDS))
while [[ -z $healthy ]] && ((SECONDS < deadline)); do
    running=$("$ENGINE" inspect -f '{{.State.Running}}' "$CID")
    if [[ $running != true ]]; then
        "$ENGINE" logs "$CID" >&2 || true
        fail "the container stopped"
    fi
    for port in "${!seen[@]}"; do
        host=$("$ENGINE" port "$CID" "$port/tcp" 2>/dev/null | head -n 1) || continue
        [[ -n $host ]] || continue
        host=${host/0.0.0.0/127.0.0.1}
        if curl --silent --fail --max-time 2 "http://$host/healthz" >/dev/null; then
            healthy="$host (container port $port)"
            break
        fi
    done
    [[ -n $healthy ]] || sleep 1
done
if [[ -z $healthy ]]; then
    "$ENGINE" logs "$CID" >&2 || true
    fail "/healthz did not answer 200 within ${HEALTH_SECONDS}s on any published port"
fi
say "/healthz answers on $healthy"

# 4. The running process is not root either.
if [[ $ENGINE == podman ]]; then
    users=$(podman top "$CID" user | tail -n +2)
else
    users=$(docker top "$CID" -o pid,uid | awk 'NR > 1 { print $2 }')
fi
[[ -n $users ]] || fail "cannot read the container's process users"
for process_user in $users; do
    case $process_user in
        root | 0) fail "a process of the container runs as root" ;;
    esac
done
say "processes run as: $(echo "$users" | sort -u | tr '\n' ' ')"

say "OK: $IMAGE builds, answers /healthz, runs as $user, $size bytes"
