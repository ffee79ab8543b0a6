#!/usr/bin/env bash
# A local Parley cluster, the whole system: a private Redis, a Kafka-protocol broker (Tansu,
# sqlite storage), a MongoDB-wire server (SecantusDB), S3 object storage for attachments
# (SeaweedFS, bucket `parley`), one `ingest` and two parley-server nodes on
# 127.0.0.1:8081 and 127.0.0.1:8082 sharing one JWT secret and API key (printed by `status`).
#
#   scripts/dev-cluster.sh up       install/build if needed, start everything, create the Kafka
#                                   topics and MongoDB indexes (`ingest setup`), wait until ready
#   scripts/dev-cluster.sh down     stop the nodes (graceful drain), ingest and the services
#   scripts/dev-cluster.sh status   what runs, where, and the credentials to use
#
# PARLEY_DEV_MODE=redis starts the Redis-only cluster instead (embedded log and store per node,
# no Kafka, MongoDB or ingest), e.g. to compare with the benchmarks measured that way.
# PARLEY_DEV_BROKER_STORAGE chooses where the broker keeps its log: sqlite (the default, a
# database file), memory (lost when the broker restarts) or postgres (a private PostgreSQL,
# scripts/services/postgres.sh, on PARLEY_DEV_POSTGRES_PORT, default 15432; the broker build
# with that engine is installed on first use). Tansu 0.6's sqlite storage panics and its memory
# storage fences producers after minutes of steady load; postgres is the one that lasts an hour
# (docs/reliability.md "Soak").
#
# State (data, logs, pids, credentials) lives in ./tmp/dev-cluster; `down` keeps it, remove the
# directory to start afresh. Ports: PARLEY_DEV_REDIS_PORT (6390), PARLEY_DEV_KAFKA_PORT (19092),
# PARLEY_DEV_MONGO_PORT (27018), PARLEY_DEV_INGEST_PORT (9091), PARLEY_DEV_PORTS ("8081 8082"),
# PARLEY_DEV_S3_PORT (18333; SeaweedFS also takes the next three ports and those 10000 above).
# PARLEY_DEV_INGEST_PORTS ("9091 9092") runs one ingest per port (one group); the first is
# `ingest`, the others `ingest-PORT` (pid/log names). PARLEY_DEV_VIA_REDIS_PORT,
# PARLEY_DEV_VIA_KAFKA_PORT, PARLEY_DEV_VIA_MONGO_PORT: the ports the nodes and ingest connect to
# instead of the services' own, where a fault-proxy forwards to them (scripts/chaos.sh; Tansu
# then advertises the Kafka one).
#
# `up` starts only what is not running, so after a process died (or was killed) it restarts
# just that one (appending to its log).
set -euo pipefail
cd "$(dirname "$0")/.."

state="${PARLEY_DEV_DIR:-$PWD/tmp/dev-cluster}"
redis_port="${PARLEY_DEV_REDIS_PORT:-6390}"
kafka_port="${PARLEY_DEV_KAFKA_PORT:-19092}"
mongo_port="${PARLEY_DEV_MONGO_PORT:-27018}"
ingest_port="${PARLEY_DEV_INGEST_PORT:-9091}"
read -r -a ingest_ports <<< "${PARLEY_DEV_INGEST_PORTS:-$ingest_port}"
s3_port="${PARLEY_DEV_S3_PORT:-18333}"
read -r -a ports <<< "${PARLEY_DEV_PORTS:-8081 8082}"
binary="${PARLEY_SERVER_BIN:-$PWD/target/release/parley-server}"
ingest_binary="${PARLEY_INGEST_BIN:-$PWD/target/release/ingest}"

mode="${PARLEY_DEV_MODE:-durable}"
case "$mode" in
  durable|redis) ;;
  *) echo "PARLEY_DEV_MODE must be durable or redis, not $mode" >&2; exit 2 ;;
esac
broker_storage="${PARLEY_DEV_BROKER_STORAGE:-sqlite}"
postgres_port="${PARLEY_DEV_POSTGRES_PORT:-15432}"
case "$broker_storage" in
  sqlite|memory|postgres) ;;
  *) echo "PARLEY_DEV_BROKER_STORAGE must be sqlite, memory or postgres, not $broker_storage" >&2; exit 2 ;;
esac

# Settings every Parley process of this cluster shares (docs/operations.md "The local broker").
# Tansu 0.6 needs one record per produce batch (it cannot fetch from inside a batch). It spends
# a few milliseconds per record on every fetch (its sqlite has no index for the lookup), so a
# backlog fetched 1 MiB at a time took longer than a 6 s session and its consumers were dropped
# from their groups again and again (issue #20): fetch 64 KiB per partition, and give sessions
# 15 s. A group that still stops moving is re-joined after 30 s.
export PARLEY__REDIS__URL="redis://127.0.0.1:${PARLEY_DEV_VIA_REDIS_PORT:-$redis_port}/0"
# Attachments in both modes: the nodes share one S3 bucket (local files would be per node).
export PARLEY__ATTACHMENTS__STORE=s3
export PARLEY__ATTACHMENTS__S3_ENDPOINT="http://127.0.0.1:$s3_port"
export PARLEY__ATTACHMENTS__S3_BUCKET=parley
export PARLEY__ATTACHMENTS__S3_ACCESS_KEY=parley
export PARLEY__ATTACHMENTS__S3_SECRET_KEY=parley-secret
if [ "$mode" = durable ]; then
  export PARLEY__KAFKA__BROKERS="127.0.0.1:${PARLEY_DEV_VIA_KAFKA_PORT:-$kafka_port}"
  export PARLEY__KAFKA__MAX_BATCH_RECORDS=1
  export PARLEY__KAFKA__SESSION_TIMEOUT_MS=15000
  export PARLEY__KAFKA__MAX_PARTITION_FETCH_BYTES=65536
  export PARLEY__KAFKA__STALL_TIMEOUT_MS=30000
  export PARLEY__MONGO__URI="mongodb://127.0.0.1:${PARLEY_DEV_VIA_MONGO_PORT:-$mongo_port}/"
  export PARLEY__MONGO__DATABASE=parley_dev
fi

credentials() {
  mkdir -p "$state"
  if [ ! -f "$state/credentials" ]; then
    # The secrets file only is private (a umask left set here made the tools installed
    # after it unreadable to the users the services run as).
    (
      umask 077
      {
        echo "PARLEY__AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        echo "PARLEY__AUTH__API_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      } > "$state/credentials"
    )
  fi
  # shellcheck disable=SC1091
  set -a; . "$state/credentials"; set +a
}

running() {
  local pidfile="$state/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

node_running() {
  running "node-$1"
}

# wait_ready NAME PORT: until http://127.0.0.1:PORT/readyz answers 200 (60 s).
wait_ready() {
  local name="$1" port="$2"
  for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$name on $port did not become ready ($(curl -sS "http://127.0.0.1:$port/readyz" 2>&1)); log: $state/$name.log" >&2
  tail -20 "$state/$name.log" >&2 || true
  return 1
}

# stop_process NAME: SIGTERM (graceful drain), SIGKILL after 15 s.
stop_process() {
  local name="$1" pid
  if running "$name"; then
    pid="$(cat "$state/$name.pid")"
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "$name stopped"
  fi
  rm -f "$state/$name.pid"
}

up() {
  scripts/services/redis.sh install
  if [ ! -x "$binary" ]; then
    echo "==> building parley-server (release)"
    cargo build --release -p server --bin parley-server
  fi
  credentials
  scripts/services/redis.sh start "$state/redis" "$redis_port"
  scripts/services/seaweedfs.sh install
  S3_ACCESS_KEY="$PARLEY__ATTACHMENTS__S3_ACCESS_KEY" S3_SECRET_KEY="$PARLEY__ATTACHMENTS__S3_SECRET_KEY" \
    S3_BUCKET="$PARLEY__ATTACHMENTS__S3_BUCKET" scripts/services/seaweedfs.sh start "$state/s3" "$s3_port"
  if [ "$mode" = durable ]; then
    start_pipeline
  fi
  for port in "${ports[@]}"; do
    if node_running "$port"; then
      echo "node on $port already running (pid $(cat "$state/node-$port.pid"))"
      continue
    fi
    PARLEY__SERVER__BIND="127.0.0.1:$port" \
    PARLEY__SERVER__NODE_ID="dev-node-$port" \
    PARLEY__STORAGE__DATA_DIR="$state/node-$port" \
      nohup "$binary" >>"$state/node-$port.out" 2>>"$state/node-$port.log" &
    echo $! > "$state/node-$port.pid"
  done
  if [ "$mode" = durable ]; then
    for port in "${ingest_ports[@]}"; do wait_ready "$(ingest_name "$port")" "$port"; done
  fi
  for port in "${ports[@]}"; do wait_ready "node-$port" "$port"; done
  status
}

# Kafka (Tansu), MongoDB (SecantusDB), the setup step and one ingest.
start_pipeline() {
  scripts/services/secantus.sh install
  if [ ! -x "$ingest_binary" ]; then
    echo "==> building ingest (release)"
    cargo build --release -p ingest
  fi
  start_broker
  scripts/services/secantus.sh start "$state/mongo" "$mongo_port"
  echo "==> ingest setup (Kafka topics, MongoDB indexes)"
  "$ingest_binary" setup >"$state/ingest-setup.log" 2>&1 \
    || { echo "ingest setup failed; log: $state/ingest-setup.log" >&2; tail -20 "$state/ingest-setup.log" >&2; exit 1; }
  local port name
  for port in "${ingest_ports[@]}"; do
    name="$(ingest_name "$port")"
    if running "$name"; then
      echo "$name already running (pid $(cat "$state/$name.pid"))"
      continue
    fi
    PARLEY__INGEST__BIND="127.0.0.1:$port" \
      nohup "$ingest_binary" run >>"$state/$name.out" 2>>"$state/$name.log" &
    echo $! > "$state/$name.pid"
  done
}

# Tansu with the storage PARLEY_DEV_BROKER_STORAGE names (and its PostgreSQL for postgres).
start_broker() {
  local storage=()
  case "$broker_storage" in
    sqlite) scripts/services/tansu.sh install; storage=(--durable) ;;
    memory) scripts/services/tansu.sh install ;;
    postgres)
      scripts/services/postgres.sh install
      scripts/services/tansu.sh install-postgres
      scripts/services/postgres.sh start "$state/postgres" "$postgres_port"
      storage=(--postgres "$postgres_port")
      ;;
  esac
  TANSU_ADVERTISED_PORT="${PARLEY_DEV_VIA_KAFKA_PORT:-$kafka_port}" \
    scripts/services/tansu.sh start "$state/kafka" "$kafka_port" "${storage[@]}"
}

# ingest_name PORT: `ingest` for the first ingest port, `ingest-PORT` for the others.
ingest_name() {
  if [ "$1" = "${ingest_ports[0]}" ]; then echo ingest; else echo "ingest-$1"; fi
}

down() {
  for port in "${ports[@]}"; do stop_process "node-$port"; done
  for port in "${ingest_ports[@]}"; do stop_process "$(ingest_name "$port")"; done
  if [ -d "$state/redis" ]; then scripts/services/redis.sh stop "$state/redis"; fi
  if [ -d "$state/s3" ]; then scripts/services/seaweedfs.sh stop "$state/s3"; fi
  if [ -d "$state/kafka" ]; then scripts/services/tansu.sh stop "$state/kafka"; fi
  if [ -d "$state/postgres" ]; then scripts/services/postgres.sh stop "$state/postgres"; fi
  if [ -d "$state/mongo" ]; then scripts/services/secantus.sh stop "$state/mongo"; fi
}

status() {
  local any=0
  for port in "${ports[@]}"; do
    if node_running "$port"; then
      any=1
      local ready=no
      curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && ready=yes
      echo "node  http://127.0.0.1:$port  ws://127.0.0.1:$port/ws  pid $(cat "$state/node-$port.pid")  ready=$ready  log $state/node-$port.log"
    else
      echo "node  127.0.0.1:$port  not running"
    fi
  done
  if [ "$mode" = redis ]; then
    echo "mode    redis (embedded log and store per node)"
  else
    local name
    for port in "${ingest_ports[@]}"; do
      name="$(ingest_name "$port")"
      if running "$name"; then
        local ready=no
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && ready=yes
        echo "ingest  http://127.0.0.1:$port/metrics  pid $(cat "$state/$name.pid")  ready=$ready  log $state/$name.log"
      else
        echo "ingest  127.0.0.1:$port  not running"
      fi
    done
  fi
  scripts/services/redis.sh status "$state/redis" || true
  scripts/services/seaweedfs.sh status "$state/s3" || true
  echo "s3      $PARLEY__ATTACHMENTS__S3_ENDPOINT (bucket $PARLEY__ATTACHMENTS__S3_BUCKET)"
  if [ "$mode" = durable ]; then
    scripts/services/tansu.sh status "$state/kafka" || true
    if [ "$broker_storage" = postgres ]; then
      scripts/services/postgres.sh status "$state/postgres" || true
    fi
    scripts/services/secantus.sh status "$state/mongo" || true
    echo "kafka   $PARLEY__KAFKA__BROKERS   mongodb $PARLEY__MONGO__URI (database $PARLEY__MONGO__DATABASE)"
  fi
  if [ -f "$state/credentials" ]; then
    echo "credentials (shared by the nodes):"
    sed 's/^/  /' "$state/credentials"
  fi
  [ "$any" = 1 ]
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up | down | status" >&2; exit 2 ;;
esac
