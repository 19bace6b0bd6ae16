#!/usr/bin/env bash
# A short fuzz pass: builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS (default 20)
# against its named seeds (fuzz/seeds/) and its corpus (fuzz/corpus/, where new inputs are written).
# Fails on any crash, panic, timeout or out-of-memory; libFuzzer leaves the input in fuzz/artifacts/.
#
#   scripts/fuzz.sh            # 20 s per target (CI)
#   scripts/fuzz.sh 300        # a longer local run
#   FUZZ_TARGETS=token_parse scripts/fuzz.sh 60
#
# cargo-fuzz needs unstable compiler flags: with a nightly toolchain it uses it, otherwise it uses the
# stable one with RUSTC_BOOTSTRAP=1 (CI machines have stable only and cannot fetch another toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
targets="${FUZZ_TARGETS:-payload_decode token_parse rules_load connector_responses}"
cargo_fuzz_version="0.13.2"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $cargo_fuzz_version"
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

if cargo +nightly --version >/dev/null 2>&1; then
    cargo=(cargo +nightly)
    echo "== fuzzing with $(cargo +nightly --version)"
else
    cargo=(cargo)
    export RUSTC_BOOTSTRAP=1
    echo "== fuzzing with $(cargo --version) and RUSTC_BOOTSTRAP=1 (no nightly toolchain)"
fi

# Longest input per target: a token must be able to exceed MAX_TOKEN_BYTES (16 KiB).
max_len() {
    case "$1" in
        token_parse) echo 20000 ;;
        *) echo 8192 ;;
    esac
}

# No AddressSanitizer: pimgate forbids `unsafe`, so what this pass looks for is panics, hangs and
# runaway memory, which libFuzzer catches on its own; the only C on these paths (aws-lc) is fuzzed
# upstream. Without ASan the instrumented build of every dependency takes a fraction of the time
# (CI has 2 cores) and each target runs several times faster. FUZZ_SANITIZER=address for a deeper run.
sanitizer="${FUZZ_SANITIZER:-none}"
"${cargo[@]}" fuzz build --sanitizer "$sanitizer"
for target in $targets; do
    mkdir -p "fuzz/corpus/$target"
    echo "== fuzz $target for ${seconds}s"
    # -timeout: one input taking longer is a hang and fails the run; one process, no -jobs (2 cores).
    "${cargo[@]}" fuzz run --sanitizer "$sanitizer" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$target")" -print_final_stats=1
done
echo "== fuzz: no crash in $targets"
