#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (cargo-nextest), then checks
# formatting and lints and runs every test (unit, port contract suites, end-to-end tests against
# the real parley-server binary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services/redis.sh install

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
