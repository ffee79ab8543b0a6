#!/usr/bin/env bash
# A private PostgreSQL for local clusters and the soak (Debian's postgresql; Tansu's durable
# `--broker postgres` storage keeps the broker's log in it, see tansu.sh).
#
#   postgres.sh install           install postgresql if it is missing (never starts the system
#                                 service or creates its cluster)
#   postgres.sh start DIR PORT    start a private server on 127.0.0.1:PORT: initdb into DIR/data
#                                 the first time (superuser `postgres`, trust authentication, so
#                                 only for 127.0.0.1 test data), socket, pid and log in DIR;
#                                 stop + start on the same DIR keeps the databases
#   postgres.sh stop DIR          stop the server started in DIR (fast shutdown: clients cut off)
#   postgres.sh status DIR        say whether the server in DIR runs (exit 1 when it does not)
#   postgres.sh psql PORT ARGS... run psql as `postgres` against the server on PORT
#
# initdb refuses to run as root: as root the data directory belongs to the `postgres` system
# user (created by the package) and the server runs as that user.
set -euo pipefail

SERVICE=postgres
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  echo "usage: $0 install | start DIR PORT | stop DIR | status DIR | psql PORT ARGS..." >&2
  exit 2
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The newest installed server's bin directory (Debian keeps initdb and pg_ctl off PATH).
bin_dir() {
  local dir
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

# Runs a server program as the data directory's owner: `postgres` when we are root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  if bin_dir >/dev/null; then
    return 0
  fi
  echo "==> installing postgresql (Debian package)"
  # policy-rc.d 101 keeps the package's postinst from starting the system service.
  local policy=/usr/sbin/policy-rc.d created_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    created_policy=yes
  fi
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
  if [ "$created_policy" = yes ]; then as_root rm -f "$policy"; fi
  bin_dir >/dev/null || { echo "postgresql still missing after apt-get install" >&2; exit 1; }
}

start() {
  local dir="$1" port="$2" bin
  bin="$(bin_dir)" || { echo "postgresql is not installed: run $0 install" >&2; exit 1; }
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if svc_running "$dir"; then
    echo "postgres already running in $dir (pid $(svc_pid_of "$dir"))"
    return 0
  fi
  if svc_accepts "$port"; then
    echo "port $port is already taken" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bin/initdb" --pgdata "$dir/data" --username postgres --auth trust \
      --encoding UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  as_owner "$bin/pg_ctl" start --pgdata "$dir/data" --log "$dir/postgres.log" --wait \
    --options "-c listen_addresses=127.0.0.1 -p $port -k $dir" >/dev/null \
    || { echo "postgres did not start; log:" >&2; cat "$dir/postgres.log" >&2; exit 1; }
  head -n 1 "$dir/data/postmaster.pid" >"$dir/postgres.pid"
  echo "postgres running on 127.0.0.1:$port (dir $dir)"
}

stop() {
  local dir="$1" bin
  if ! svc_running "$dir"; then
    echo "postgres not running in $dir"
    rm -f "$dir/postgres.pid"
    return 0
  fi
  bin="$(bin_dir)"
  as_owner "$bin/pg_ctl" stop --pgdata "$dir/data" --mode fast --wait >/dev/null
  rm -f "$dir/postgres.pid"
  echo "postgres stopped"
}

case "${1:-}" in
  install) [ $# -eq 1 ] || usage; install ;;
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  status) [ $# -eq 2 ] || usage; svc_status "$2" ;;
  psql)
    [ $# -ge 2 ] || usage
    port="$2"
    shift 2
    psql --no-psqlrc --quiet --host 127.0.0.1 --port "$port" --username postgres "$@"
    ;;
  *) usage ;;
esac
