#!/usr/bin/env bash
# The test broker's lost-ack race, reproduced on its own (docs/reliability.md "A broker that
# keeps its acks", ADR 0010): PostgreSQL, Tansu on it and a fault-proxy in front of Tansu on
# private ports, then scripts/chaos/broker_race.py produces numbered records through the proxy
# and stalls it --cycles times, and checks every acknowledged record is stored exactly once.
#
#   scripts/broker-race.sh [--cycles 10] [--tansu-root DIR] [--out DIR]
#
# --tansu-root: a Tansu build with the postgres feature to test (default: the patched build
# `scripts/services/tansu.sh install-postgres` makes). Ports BROKER_RACE_PORT_BASE (28000) + 1..4.
# Exit 1 when an acked record is missing or stored twice. Not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

cycles=10 tansu_root="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cycles) cycles="$2"; shift 2 ;;
    --tansu-root) tansu_root="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: scripts/broker-race.sh [--cycles N] [--tansu-root DIR] [--out DIR]" >&2; exit 2 ;;
  esac
done
base="${BROKER_RACE_PORT_BASE:-28000}"
pg_port=$((base + 1)) kafka_port=$((base + 2)) proxy_port=$((base + 3)) control_port=$((base + 4))
out="${out:-tmp/broker-race-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# shellcheck source=scripts/services/lib.sh
. scripts/services/lib.sh
venv="$HOME/.cache/parley-tools/chaos-venv"
svc_pip_venv "$venv" "pymongo-4.20.0+confluent-kafka-2.16.1" "$venv/bin/python" "chaos checks" \
  pymongo==4.20.0 confluent-kafka==2.16.1
scripts/services/postgres.sh install
if [ -n "$tansu_root" ]; then
  export TANSU_PG_ROOT="$tansu_root"
else
  scripts/services/tansu.sh install-postgres
fi
cargo build --release -p loadtest --bin fault-proxy
proxy_bin="${CARGO_TARGET_DIR:-target}/release/fault-proxy"

proxy_pid=""
cleanup() {
  if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; fi
  scripts/services/tansu.sh stop "$out/tansu" >/dev/null 2>&1 || true
  scripts/services/postgres.sh stop "$out/postgres" >/dev/null 2>&1 || true
}
trap cleanup EXIT

scripts/services/postgres.sh start "$out/postgres" "$pg_port"
TANSU_ADVERTISED_PORT="$proxy_port" \
  scripts/services/tansu.sh start "$out/tansu" "$kafka_port" --postgres "$pg_port"
"$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$kafka_port" \
  --control "127.0.0.1:$control_port" >"$out/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 1 50); do grep -q "^fault-proxy listening" "$out/proxy.log" && break; sleep 0.1; done

echo "==> $cycles stalls of the broker's connections while producing (tansu: ${TANSU_PG_ROOT:-the patched build})"
set +e
"$venv/bin/python" scripts/chaos/broker_race.py --bootstrap "127.0.0.1:$proxy_port" \
  --control "http://127.0.0.1:$control_port" --cycles "$cycles" | tee "$out/result.txt"
status=${PIPESTATUS[0]}
set -e
echo "DuplicateSequenceNumber answers in the broker's log: $(grep -c DuplicateSequenceNumber "$out/tansu/tansu.log" || true)"
exit "$status"
