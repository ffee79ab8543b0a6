#!/usr/bin/env bash
# The chaos run: the durable dev cluster (scripts/dev-cluster.sh: two nodes, two ingests, Redis,
# Tansu with its sqlite storage, SecantusDB on disk, SeaweedFS) on private ports, the nodes and
# ingests reaching Redis, Kafka and MongoDB through one fault-proxy each, steady chat load from
# parley-loadtest (≈ 15 sends/s; its clients resend unacked sends with the same client_msg_id),
# and faults from a seeded, repeatable schedule (scripts/chaos/schedule.py). At the end (load
# stopped, faults cleared, lag drained) scripts/chaos/run.py checks MongoDB and the dead-letter
# topic against the load generator's ledger and prints the figures per fault; exit 1 on any
# violation (lost, duplicated or divergent message, seq hole, lag, missing dead letter).
#
#   scripts/chaos.sh [--seed N] [--duration SECS] [--faults LIST] [--out DIR] [--profile P]
#
# --faults: comma-separated, default every kind: kill-node,kill-ingest,kill-redis,kill-broker,
# kill-db,term-node,latency,stall,drop,poison. --duration is the load's length (each kind once,
# then again while there is room). --profile debug|release (default release) picks the binaries
# (built here if missing or stale). --broker sqlite|postgres (default sqlite) picks the test
# broker's storage (dev-cluster.sh). Ports: CHAOS_PORT_BASE (26000) + 0..63, and base - 9940..-9937
# for SeaweedFS's S3 (below). docs/reliability.md "The chaos run" has the fault matrix of a full
# run.
set -euo pipefail
cd "$(dirname "$0")/.."

seed=1 duration=600 faults="kill-node,kill-ingest,kill-redis,kill-broker,kill-db,term-node,latency,stall,drop,poison"
out="" profile=release broker=sqlite
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --faults) faults="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --broker) broker="$2"; shift 2 ;;
    *) echo "usage: scripts/chaos.sh [--seed N] [--duration SECS] [--faults LIST] [--out DIR] [--profile debug|release] [--broker sqlite|postgres]" >&2; exit 2 ;;
  esac
done
case "$profile" in
  debug) build_flags=() ;;
  release) build_flags=(--release) ;;
  *) echo "--profile must be debug or release" >&2; exit 2 ;;
esac
out="${out:-tmp/chaos-$(date -u +%Y%m%dT%H%M%SZ)}"
rm -rf "$out"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

base="${CHAOS_PORT_BASE:-26000}"
redis_port=$((base + 1)) kafka_port=$((base + 2)) mongo_port=$((base + 3))
via_redis=$((base + 11)) via_kafka=$((base + 12)) via_mongo=$((base + 13))
control_redis=$((base + 21)) control_kafka=$((base + 22)) control_mongo=$((base + 23))
export PARLEY_DEV_DIR="$out/cluster"
export PARLEY_DEV_REDIS_PORT=$redis_port PARLEY_DEV_KAFKA_PORT=$kafka_port PARLEY_DEV_MONGO_PORT=$mongo_port
export PARLEY_DEV_VIA_REDIS_PORT=$via_redis PARLEY_DEV_VIA_KAFKA_PORT=$via_kafka PARLEY_DEV_VIA_MONGO_PORT=$via_mongo
export PARLEY_DEV_INGEST_PORTS="$((base + 31)) $((base + 32))" PARLEY_DEV_PORTS="$((base + 41)) $((base + 42))"
# SeaweedFS takes its S3 port, the next three and the four 10000 above them (its gRPC ports):
# S3 on base - 9940, so that all of them (base - 9940..-9937, base + 60..63) stay below 32768,
# out of the kernel's range for outgoing connections (32768-60999), where a connection made on
# this machine can hold one of them first (it did: a soak's client beside the suite took one).
export PARLEY_DEV_S3_PORT=$((base - 9940))
# The broker's storage: Tansu's sqlite engine (the suite's), or its PostgreSQL one, which lasts
# long runs (docs/adr/0008-postgres-for-the-soak-broker.md; built on first use).
export PARLEY_DEV_BROKER_STORAGE="$broker" PARLEY_DEV_POSTGRES_PORT=$((base + 50))
target="${CARGO_TARGET_DIR:-target}/$profile"
export PARLEY_SERVER_BIN="$target/parley-server" PARLEY_INGEST_BIN="$target/ingest"

# shellcheck source=scripts/services/lib.sh
. scripts/services/lib.sh
venv="$HOME/.cache/parley-tools/chaos-venv"
svc_pip_venv "$venv" "pymongo-4.20.0+confluent-kafka-2.16.1" "$venv/bin/python" "chaos checks" \
  pymongo==4.20.0 confluent-kafka==2.16.1

echo "==> building ($profile): parley-server, ingest, parley-loadtest, fault-proxy"
cargo build "${build_flags[@]}" -p server -p ingest -p loadtest --bin parley-server --bin ingest \
  --bin parley-loadtest --bin fault-proxy

proxies=()
stop_all() {
  scripts/dev-cluster.sh down >>"$out/cluster-up.log" 2>&1 || true
  for pid in "${proxies[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
start_proxy() {
  local name="$1" listen="$2" to="$3" control="$4"
  "$target/fault-proxy" --listen "127.0.0.1:$listen" --target "127.0.0.1:$to" \
    --control "127.0.0.1:$control" >"$out/proxy-$name.log" 2>&1 &
  proxies+=("$!")
}
start_proxy redis "$via_redis" "$redis_port" "$control_redis"
start_proxy kafka "$via_kafka" "$kafka_port" "$control_kafka"
start_proxy mongo "$via_mongo" "$mongo_port" "$control_mongo"
for name in redis kafka mongo; do
  for _ in $(seq 1 50); do grep -q "^fault-proxy listening" "$out/proxy-$name.log" && break; sleep 0.1; done
  grep -q "^fault-proxy listening" "$out/proxy-$name.log" \
    || { echo "the $name fault-proxy did not start (a port of $base + 0..63 in use?):" >&2; head -3 "$out/proxy-$name.log" >&2; exit 1; }
done

echo "==> starting the cluster (state and logs in $PARLEY_DEV_DIR)"
scripts/dev-cluster.sh up >"$out/cluster-up.log" 2>&1 \
  || { tail -30 "$out/cluster-up.log" >&2; exit 1; }
# shellcheck disable=SC1091
set -a; . "$PARLEY_DEV_DIR/credentials"; set +a

{
  echo "commit $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%FT%TZ), $profile build"
  echo "scripts/chaos.sh --seed $seed --duration $duration --faults $faults"
} > "$out/run.txt"
status=0
PYTHONPATH=scripts/chaos "$venv/bin/python" scripts/chaos/run.py --seed "$seed" \
  --duration "$duration" --faults "$faults" --out "$out" --state "$PARLEY_DEV_DIR" \
  --loadtest "$target/parley-loadtest" --api-key "$PARLEY__AUTH__API_KEY" \
  --node-ports "$PARLEY_DEV_PORTS" --ingest-ports "$PARLEY_DEV_INGEST_PORTS" \
  --proxy-controls "redis=127.0.0.1:$control_redis,kafka=127.0.0.1:$control_kafka,mongo=127.0.0.1:$control_mongo" \
  --kafka-brokers "127.0.0.1:$via_kafka" --mongo-uri "mongodb://127.0.0.1:$mongo_port/" \
  --mongo-database parley_dev | tee "$out/chaos.txt" || status=$?
echo "report: $out/chaos-report.json (logs in $out)"
exit "$status"
