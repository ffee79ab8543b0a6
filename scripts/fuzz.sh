#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer) on the nightly toolchain: what Parley decodes from
# clients, from the log and from its stores (targets in fuzz/fuzz_targets, corpora in
# fuzz/corpus, committed). Installs cargo-fuzz when it is missing.
#
#   scripts/fuzz.sh                      # every target, 10 s each (what scripts/test.sh runs)
#   scripts/fuzz.sh --seconds 600        # longer runs (docs/reliability.md lists their results)
#   scripts/fuzz.sh --seconds 60 log_event
#   scripts/fuzz.sh --seed 1             # libFuzzer's mutations from a fixed seed (test.sh's
#                                        # run: the same inputs on every machine, so the
#                                        # suite does not fail or pass by chance); without
#                                        # it each run draws a new seed and prints it
#
# A run starts from the committed corpus and writes what it finds into a scratch copy, so the
# committed corpus only changes when you minimise into it on purpose:
#   cargo +nightly fuzz cmin <target> fuzz/corpus/<target>   (run inside fuzz/)
# A crash stops the run with libFuzzer's report; the input is kept under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
seed=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_decode op_args log_event stored_record mongo_documents token_verify)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  # The machines reach only the package registries, not rustup's servers: a machine without a
  # preinstalled nightly cannot get one, so the fuzzing step is skipped there, loudly.
  echo "fuzz.sh: SKIPPED: no nightly Rust toolchain here (cargo-fuzz needs one: rustup toolchain install nightly)" >&2
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd fuzz
echo "==> building the fuzz targets (nightly, address sanitizer)"
for target in "${targets[@]}"; do
  cargo +nightly fuzz build "$target" 2>&1 | tail -n 1
done
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -seed="$seed" -print_final_stats=1 2>"$scratch/$target.log" || {
    tail -n 40 "$scratch/$target.log" >&2
    echo "fuzz.sh: $target failed ($(grep -o 'Seed: [0-9]*' "$scratch/$target.log" | head -n 1); input kept under fuzz/artifacts/$target)" >&2
    exit 1
  }
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$target.log" | grep -o '[0-9]*$')"
  used_seed="$(grep -o 'Seed: [0-9]*' "$scratch/$target.log" | head -n 1 | grep -o '[0-9]*$')"
  echo "fuzz $target: $runs runs in ${seconds} s (seed $used_seed), no crash"
done
