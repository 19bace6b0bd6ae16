#!/usr/bin/env bash
# The test suite, as README.md promises it on a fresh machine: `cargo test --locked`: the unit tests and
# three test binaries, `api` (the service in process over HTTP), `engine` (the library: rules, decision,
# checks, connectors against wiremock, tokens, payloads, the fuzz corpus) and `process` (the built binary:
# CLI, the shipped rules' own cases, reload, shutdown, the console in headless Chromium; slow clients
# and a short soak). Extra arguments go
# to cargo test, e.g. `scripts/test.sh --test engine rules_engine::`.
# The offline deployment linters (tests/deploy.rs, tests/image_context/) need tools from outside cargo and
# are not part of it: scripts/lint-deploy.sh runs them (CI runs both).
set -euo pipefail
cd "$(dirname "$0")/.."

# The console's browser test (tests/process/console_browser.rs) drives Debian's headless Chromium
# through chromedriver. Installed here when missing, as CI's fresh machine needs (root, Debian's
# package registry); elsewhere, install `chromium` and `chromium-driver` yourself.
if ! command -v "${CHROMEDRIVER:-chromedriver}" >/dev/null 2>&1 || ! [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing chromium and chromium-driver (Debian) for the console's browser test"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    else
        echo "scripts/test.sh: the browser test needs chromium and chromium-driver: apt-get install chromium chromium-driver" >&2
    fi
fi
exec cargo test --locked "$@"
