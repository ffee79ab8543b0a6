#!/usr/bin/env bash
# A private Redis for tests and local clusters (Debian's redis-server; see ../shared/SERVICES.md).
#
#   redis.sh install           install redis-server if it is missing (never starts the system service)
#   redis.sh start DIR PORT    start a private instance on 127.0.0.1:PORT, data/pid/log in DIR
#   redis.sh stop DIR          stop the instance started in DIR
#   redis.sh status DIR        say whether the instance in DIR runs (exit 1 when it does not)
set -euo pipefail

SERVICE=redis
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  echo "usage: $0 install | start DIR PORT | stop DIR | status DIR" >&2
  exit 2
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install() {
  if command -v redis-server >/dev/null 2>&1; then
    return 0
  fi
  echo "==> installing redis-server (Debian package)"
  # policy-rc.d 101 keeps the package's postinst from starting the system service.
  local policy=/usr/sbin/policy-rc.d created_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    created_policy=yes
  fi
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server
  if [ "$created_policy" = yes ]; then as_root rm -f "$policy"; fi
  command -v redis-server >/dev/null 2>&1 || { echo "redis-server still missing" >&2; exit 1; }
}

start() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if svc_running "$dir"; then
    echo "redis already running in $dir (pid $(svc_pid_of "$dir"))"
    return 0
  fi
  # AOF keeps sequences and conversation state across a restart (outage tests, dev clusters).
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  for _ in $(seq 1 100); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
      echo "redis running on 127.0.0.1:$port (dir $dir)"
      return 0
    fi
    sleep 0.1
  done
  echo "redis did not answer PING on port $port; log:" >&2
  cat "$dir/redis.log" >&2 || true
  exit 1
}

case "${1:-}" in
  install) [ $# -eq 1 ] || usage; install ;;
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; svc_stop "$2" ;;
  status) [ $# -eq 2 ] || usage; svc_status "$2" ;;
  *) usage ;;
esac
