#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): banned crates, licenses, sources. Runs
# `cargo deny check bans licenses sources` when cargo-deny is installed (`cargo install cargo-deny --locked`),
# else says so and exits 0. Not part of .ci/run: compiling cargo-deny on a fresh CI machine costs minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deny --version >/dev/null 2>&1; then
  echo "scripts/deny.sh: cargo-deny is not installed (cargo install cargo-deny --locked); nothing checked" >&2
  exit 0
fi
exec cargo deny --locked check bans licenses sources "$@"
