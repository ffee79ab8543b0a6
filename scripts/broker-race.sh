#!/usr/bin/env bash
# The test broker's idempotence defects, reproduced on their own (docs/reliability.md "A broker
# that keeps its acks", ADR 0010): Tansu on PostgreSQL (or sqlite) and a fault-proxy in front of
# it on private ports, then scripts/chaos/broker_race.py produces numbered records through the
# proxy and stalls it --cycles times, and checks every acknowledged record is stored exactly
# once and the broker acknowledges again after the stalls.
#
#   scripts/broker-race.sh [--engine postgres|sqlite] [--cycles 10] [--epoch-bump]
#                          [--tansu-root DIR] [--out DIR]
#
# --epoch-bump: a message timeout (2.5 s) shorter than the stalls (3 s), so that the stalled
# records fail and librdkafka bumps the producer's epoch before the next ones (KIP-360).
# --tansu-root: a Tansu build with the engine's feature to test (default: the patched build
# `scripts/services/tansu.sh install` or `install-postgres` makes). Ports BROKER_RACE_PORT_BASE
# (28000) + 1..4. Exit 1 when a check fails. Not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=postgres cycles=10 message_timeout=30000 tansu_root="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine="$2"; shift 2 ;;
    --cycles) cycles="$2"; shift 2 ;;
    --epoch-bump) message_timeout=2500; shift ;;
    --tansu-root) tansu_root="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: scripts/broker-race.sh [--engine postgres|sqlite] [--cycles N] [--epoch-bump] [--tansu-root DIR] [--out DIR]" >&2; exit 2 ;;
  esac
done
case "$engine" in
  postgres | sqlite) ;;
  *) echo "--engine: postgres or sqlite" >&2; exit 2 ;;
esac
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
if [ "$engine" = postgres ]; then
  scripts/services/postgres.sh install
  if [ -n "$tansu_root" ]; then export TANSU_PG_ROOT="$tansu_root"; else scripts/services/tansu.sh install-postgres; fi
elif [ -n "$tansu_root" ]; then
  export TANSU_ROOT="$tansu_root"
else
  scripts/services/tansu.sh install
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

if [ "$engine" = postgres ]; then
  scripts/services/postgres.sh start "$out/postgres" "$pg_port"
  storage=(--postgres "$pg_port")
else
  storage=(--durable)
fi
TANSU_ADVERTISED_PORT="$proxy_port" \
  scripts/services/tansu.sh start "$out/tansu" "$kafka_port" "${storage[@]}"
"$proxy_bin" --listen "127.0.0.1:$proxy_port" --target "127.0.0.1:$kafka_port" \
  --control "127.0.0.1:$control_port" >"$out/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 1 50); do grep -q "^fault-proxy listening" "$out/proxy.log" && break; sleep 0.1; done

echo "==> $cycles stalls of the broker's connections while producing (tansu on $engine: ${tansu_root:-the patched build})"
set +e
"$venv/bin/python" scripts/chaos/broker_race.py --bootstrap "127.0.0.1:$proxy_port" \
  --control "http://127.0.0.1:$control_port" --cycles "$cycles" \
  --message-timeout "$message_timeout" | tee "$out/result.txt"
status=${PIPESTATUS[0]}
set -e
echo "DuplicateSequenceNumber answers in the broker's log: $(grep -c DuplicateSequenceNumber "$out/tansu/tansu.log" || true)"
echo "panics in the broker's log: $(grep -c panicked "$out/tansu/tansu.log" || true)"
exit "$status"
