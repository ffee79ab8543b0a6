#!/usr/bin/env bash
# Soak: steady, moderate chat load on the durable cluster (scripts/dev-cluster.sh on private
# ports: Redis, Tansu, SecantusDB, SeaweedFS, one ingest, two release-built nodes) for a long
# time, sampled every 10 s (scripts/soak/sample.py: RSS and open descriptors of the nodes and
# ingest, ingest's consumer lag, send -> ack p99 per interval), then plotted and judged flat
# or not (scripts/soak/report.py; exit 1 when RSS or descriptors grew over 10 %).
#
#   scripts/soak.sh [--minutes 60] [--connections 400] [--rate 0.5]
#                   [--broker postgres|sqlite|memory] [--out DIR]
#
# --rate is actions per user per second of loadtest/scenarios/chat.toml (sends are about half
# of them). The report (samples.csv, soak.png, loadtest.json, the load generator's log and the
# cluster's logs) goes to --out (default tmp/soak-<UTC time>). Not part of scripts/test.sh: a
# run takes as long as --minutes; results go to docs/reliability.md. --broker is where Tansu
# keeps its log: postgres (the default: a private PostgreSQL, scripts/services/postgres.sh; the
# first run builds Tansu with that engine, about 7 minutes), sqlite or memory (Tansu 0.6's
# sqlite storage panics after 9-10 minutes of this load, its memory storage fences producers
# after 18; see docs/reliability.md "Soak").
#
# Ports: 34000-34999 (Redis 34391, Tansu 34092, PostgreSQL 34432, SecantusDB 34017, ingest 34191,
# nodes 34181 and 34182) and SeaweedFS's 14060-14063 and, for its gRPC, 24060-24063 (below the
# kernel's range for outgoing connections, 32768-60999, where another program's connection can
# take one first: it did, 44435), so a soak runs beside the tests and a developer's dev cluster.
# Binaries: $CARGO_TARGET_DIR/release (default target/release), built with `nice` (the soak is
# meant to run on a machine doing other work).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=60 connections=400 rate=0.5 broker=postgres out="" port_base=34000 binaries=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --broker) broker="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --port-base) port_base="$2"; shift 2 ;;
    --binaries) binaries="$2"; shift 2 ;;
    *) echo "usage: scripts/soak.sh [--minutes N] [--connections N] [--rate R] [--broker postgres|sqlite|memory] [--port-base N] [--binaries DIR] [--out DIR]" >&2; exit 2 ;;
  esac
done
out="${out:-tmp/soak-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# Private ports (--port-base, default 34000, + 17..432, and SeaweedFS's base - 19940..-19937 and
# base - 9940..-9937) and state, so a soak runs beside the tests, a developer's dev cluster and
# another soak.
b=$port_base
export PARLEY_DEV_DIR="$out/cluster"
export PARLEY_DEV_REDIS_PORT=$((b + 391)) PARLEY_DEV_KAFKA_PORT=$((b + 92)) PARLEY_DEV_MONGO_PORT=$((b + 17))
export PARLEY_DEV_BROKER_STORAGE="$broker" PARLEY_DEV_POSTGRES_PORT=$((b + 432))
export PARLEY_DEV_INGEST_PORT=$((b + 191)) PARLEY_DEV_S3_PORT=$((b - 19940))
export PARLEY_DEV_PORTS="$((b + 181)) $((b + 182))"
# --binaries DIR: parley-server, ingest and parley-loadtest already built there (no build).
release="${binaries:-${CARGO_TARGET_DIR:-target}/release}"
export PARLEY_SERVER_BIN="$release/parley-server" PARLEY_INGEST_BIN="$release/ingest"

# shellcheck source=scripts/services/lib.sh
. scripts/services/lib.sh
venv="$HOME/.cache/parley-tools/soak-venv"
svc_pip_venv "$venv" "matplotlib-3.9.2" "$venv/bin/python" "soak plots" matplotlib==3.9.2

# The commit the binaries are built from (the checkout may move on during a long run).
if [ -n "$binaries" ]; then
  commit="prebuilt in $binaries"
else
  commit="$(git rev-parse --short HEAD)"
  echo "==> building release binaries"
  nice -n 10 cargo build --release -p server -p ingest -p loadtest
fi
scripts/dev-cluster.sh up
stop_all() {
  [ -n "${sampler:-}" ] && kill -TERM "$sampler" 2>/dev/null && wait "$sampler" || true
  scripts/dev-cluster.sh down || true
}
trap stop_all EXIT
# shellcheck disable=SC1091
set -a; . "$PARLEY_DEV_DIR/credentials"; set +a

python3 scripts/soak/sample.py --state "$PARLEY_DEV_DIR" --node-ports "$PARLEY_DEV_PORTS" \
  --ingest-port "$PARLEY_DEV_INGEST_PORT" --every 10 --out "$out/samples.csv" &
sampler=$!

echo "==> $minutes min of chat load: $connections users, $rate actions/s each (report in $out)"
urls=()
for port in $PARLEY_DEV_PORTS; do urls+=(--url "ws://127.0.0.1:$port/ws"); done
"$release/parley-loadtest" --scenario loadtest/scenarios/chat.toml "${urls[@]}" \
  --api-key "$PARLEY__AUTH__API_KEY" --connections "$connections" --rate "$rate" \
  --duration "$((minutes * 60))" --report "$out/loadtest.json" 2> "$out/loadtest.log" \
  || echo "parley-loadtest exited $? (see $out/loadtest.log)"
tail -n 25 "$out/loadtest.log"

kill -TERM "$sampler"; wait "$sampler" || true; sampler=""
{
  echo "commit $commit, $(nproc) cores, ended $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "scripts/soak.sh --minutes $minutes --connections $connections --rate $rate --broker $broker"
  env | grep '^PARLEY__' | grep -v -e SECRET -e API_KEY -e PASSWORD | sort || true
} > "$out/run.txt"
"$venv/bin/python" scripts/soak/report.py "$out/samples.csv" --png "$out/soak.png" \
  --title "Parley soak: $minutes min, $connections users x $rate actions/s, --broker $broker, $commit" \
  | tee "$out/verdict.txt"
