#!/usr/bin/env bash
# The clients' checks and tests (clients/): installs the Node dev dependencies (npm ci, from
# clients/package-lock.json) and Debian's chromium, then lints and formats-checks (biome),
# type-checks and builds the SDK and the web chat (tsc, esbuild), and runs the SDK tests
# against real parley-server processes (a private Redis for the cluster test) and the web
# chat's browser test in headless Chromium. Screenshots: clients/artifacts/web-chat/.
# Needs the debug parley-server binary (built here when missing; after changing the server, run
# `cargo build -p server` or scripts/test.sh first).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services/redis.sh install
scripts/services/chromium.sh install
if ! command -v npm >/dev/null 2>&1; then
  echo "==> installing nodejs and npm (Debian packages)"
  if [ "$(id -u)" -eq 0 ]; then apt-get update && apt-get install -y nodejs npm; else sudo apt-get update && sudo apt-get install -y nodejs npm; fi
fi

# scripts/test.sh has just built it (cargo nextest builds every binary); building it here
# alone would select other features and rebuild half the workspace, so only when missing.
binary="${CARGO_TARGET_DIR:-target}/debug/parley-server"
if [ ! -x "$binary" ]; then
  echo "==> cargo build -p server (the binary the client tests start)"
  cargo build -q -p server --bin parley-server
fi

cd clients
echo "==> npm ci (clients/)"
npm ci --no-audit --no-fund --loglevel=error
echo "==> clients: lint, build, SDK tests, browser test"
npm test
