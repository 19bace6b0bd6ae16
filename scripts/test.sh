#!/usr/bin/env bash
# The test suite, as README.md promises it on a fresh machine: `cargo test --locked` (unit tests, the API
# tests, the CLI against the built binary, the shipped rules' own cases). Extra arguments go to cargo test.
# The offline deployment linters (tests/deploy.rs, tests/image_context/) need tools from outside cargo and
# are not part of it: scripts/lint-deploy.sh runs them (CI runs both).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --locked "$@"
