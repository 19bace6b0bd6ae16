#!/usr/bin/env bash
# The test suite, as README.md promises it on a fresh machine: `cargo test --locked`: the unit tests and
# three test binaries, `api` (the service in process over HTTP), `engine` (the library: rules, decision,
# checks, connectors against wiremock, tokens, payloads, the fuzz corpus) and `process` (the built binary:
# CLI, the shipped rules' own cases, reload, shutdown; slow clients and a short soak). Extra arguments go
# to cargo test, e.g. `scripts/test.sh --test engine rules_engine::`.
# The offline deployment linters (tests/deploy.rs, tests/image_context/) need tools from outside cargo and
# are not part of it: scripts/lint-deploy.sh runs them (CI runs both).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --locked "$@"
