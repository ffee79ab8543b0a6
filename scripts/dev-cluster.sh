#!/usr/bin/env bash
# A local Parley cluster: one private Redis and two parley-server nodes on 127.0.0.1:8081 and
# 127.0.0.1:8082, sharing one JWT secret and API key (printed by `status`).
#
#   scripts/dev-cluster.sh up       build if needed, start Redis and both nodes, wait until ready
#   scripts/dev-cluster.sh down     stop both nodes (graceful drain) and Redis
#   scripts/dev-cluster.sh status   what runs, where, and the credentials to use
#
# State (data, logs, pids, credentials) lives in ./tmp/dev-cluster; `down` keeps it, remove the
# directory to start afresh. Ports: PARLEY_DEV_REDIS_PORT (6390), PARLEY_DEV_PORTS ("8081 8082").
set -euo pipefail
cd "$(dirname "$0")/.."

state="${PARLEY_DEV_DIR:-$PWD/tmp/dev-cluster}"
redis_port="${PARLEY_DEV_REDIS_PORT:-6390}"
read -r -a ports <<< "${PARLEY_DEV_PORTS:-8081 8082}"
binary="${PARLEY_SERVER_BIN:-$PWD/target/release/parley-server}"

credentials() {
  mkdir -p "$state"
  if [ ! -f "$state/credentials" ]; then
    umask 077
    {
      echo "PARLEY__AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      echo "PARLEY__AUTH__API_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    } > "$state/credentials"
  fi
  # shellcheck disable=SC1091
  set -a; . "$state/credentials"; set +a
}

node_running() {
  local pidfile="$state/node-$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_ready() {
  local port="$1"
  for _ in $(seq 1 200); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "node on $port did not become ready; log: $state/node-$port.log" >&2
  tail -20 "$state/node-$port.log" >&2 || true
  return 1
}

up() {
  scripts/services/redis.sh install
  if [ ! -x "$binary" ]; then
    echo "==> building parley-server (release)"
    cargo build --release -p server --bin parley-server
  fi
  credentials
  scripts/services/redis.sh start "$state/redis" "$redis_port"
  for port in "${ports[@]}"; do
    if node_running "$port"; then
      echo "node on $port already running (pid $(cat "$state/node-$port.pid"))"
      continue
    fi
    PARLEY__SERVER__BIND="127.0.0.1:$port" \
    PARLEY__SERVER__NODE_ID="dev-node-$port" \
    PARLEY__STORAGE__DATA_DIR="$state/node-$port" \
    PARLEY__REDIS__URL="redis://127.0.0.1:$redis_port/0" \
      nohup "$binary" >"$state/node-$port.out" 2>"$state/node-$port.log" &
    echo $! > "$state/node-$port.pid"
  done
  for port in "${ports[@]}"; do wait_ready "$port"; done
  status
}

down() {
  for port in "${ports[@]}"; do
    if node_running "$port"; then
      local pid
      pid="$(cat "$state/node-$port.pid")"
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "node on $port stopped"
    fi
    rm -f "$state/node-$port.pid"
  done
  if [ -d "$state/redis" ]; then scripts/services/redis.sh stop "$state/redis"; fi
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
  scripts/services/redis.sh status "$state/redis" || true
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
