#!/usr/bin/env bash
# The soak's memory step in five minutes: a standalone node whose search index commits every
# 35 ms instead of 500 (so each commit holds as few messages as in the soak, ≈ 13) under the
# chat scenario at ≈ 370 sends/s, so its index reaches the ≈ 88 000 messages of the soak's
# 56th minute in about four. scripts/soak/node_memory.py samples it every second into
# OUT/samples.csv (docs/reliability.md, "The step in five minutes").
#
#   scripts/soak/index-step.sh [--out DIR] [--seconds 330] [NAME=VALUE ...]
#
# NAME=VALUE pairs go to the node's environment, e.g. `_RJEM_MALLOC_CONF=background_thread:true`
# or `PARLEY__STORAGE__CACHE_MB=1024`. The release build is loadtest/lib.sh's
# (CARGO_TARGET_DIR is honoured).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=loadtest/lib.sh
source loadtest/lib.sh
out="tmp/index-step"
seconds=330
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    *=*) export "${1?}"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
build
raise_limits
export PARLEY__SEARCH__COMMIT_INTERVAL_MS=35 PARLEY__LIMITS__RECENT_MESSAGES=16
start_parley
port="${PARLEY_URL#ws://*:}"; port="${port%%/*}"
python3 scripts/soak/node_memory.py "$SERVER_PID" "$port" "$WORK_DIR/data/search" \
  "$out/samples.csv" &
STARTED_PIDS+=($!)
"$BIN_DIR/parley-loadtest" --scenario loadtest/scenarios/chat.toml --url "$PARLEY_URL" \
  --connections 200 --rate 3.5 --duration "$seconds" > "$out/loadtest.log" 2>&1 \
  || echo "parley-loadtest exited $? (see $out/loadtest.log)"
sleep 30 # idle: what the node keeps once the load stops
tail -n 3 "$out/loadtest.log"
echo "==> samples in $out/samples.csv"
