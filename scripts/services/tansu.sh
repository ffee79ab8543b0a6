#!/usr/bin/env bash
# A private Tansu (Kafka-protocol broker) for tests and local clusters (see ../shared/SERVICES.md).
#
#   tansu.sh install                  install tansu with cargo if it is missing: a build with the
#                                     sqlite (libsql) and memory (dynostore) engines, cached in
#                                     $TANSU_ROOT (the first build takes 20-25 min on 2 cores)
#   tansu.sh start DIR PORT [--durable]
#                                     start a broker on 127.0.0.1:PORT, pid/log in DIR; in-memory
#                                     storage, or with --durable a sqlite database DIR/tansu.db:
#                                     stop + start on the same DIR keeps topics, records and
#                                     committed group offsets
#   tansu.sh stop DIR                 stop the broker started in DIR
#   tansu.sh status DIR               say whether the broker in DIR runs (exit 1 when it does not)
#   tansu.sh bin                      print the path of the tansu binary start uses
#
# Environment:
#   TANSU_ROOT   where `install` puts the build (default ~/.cache/parley-tools/tansu-0.6.0-libsql;
#                the binary is $TANSU_ROOT/bin/tansu)
#   TANSU_ADVERTISED_PORT
#                the port the broker tells clients to connect to (default PORT): a fault-proxy's
#                port in front of it, so that clients' traffic goes through the proxy (Kafka
#                clients connect to the advertised address after the bootstrap)
#
# Topics are not auto-created: Parley creates its topics explicitly (`ingest setup`).
# The memory:// engine forgets everything when the broker stops. A tansu found on PATH or in
# ~/.cargo/bin (an older memory-only build) is used when $TANSU_ROOT has none, but only without
# --durable.
set -euo pipefail

SERVICE=tansu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

TANSU_VERSION=0.6.0
TANSU_ROOT="${TANSU_ROOT:-$HOME/.cache/parley-tools/tansu-$TANSU_VERSION-libsql}"
TANSU_BUILD_DIR="$HOME/.cache/parley-tools/tansu-build"

usage() {
  echo "usage: $0 install | start DIR PORT [--durable] | stop DIR | status DIR | bin" >&2
  exit 2
}

# The build with the sqlite engine, which install provides.
durable_bin() {
  [ -x "$TANSU_ROOT/bin/tansu" ] && echo "$TANSU_ROOT/bin/tansu"
}

tansu_bin() {
  if durable_bin; then
    return 0
  elif command -v tansu >/dev/null 2>&1; then
    command -v tansu
  elif [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
  else
    return 1
  fi
}

install() {
  if durable_bin >/dev/null; then
    return 0
  fi
  echo "==> installing tansu $TANSU_VERSION into $TANSU_ROOT with cargo"
  echo "    (features: dynostore for memory://, libsql for sqlite:// durable storage)"
  echo "    this compiles ~650 crates: 20-25 min on 2 cores the first time, cached afterwards"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql \
    --root "$TANSU_ROOT" --target-dir "$TANSU_BUILD_DIR"
  durable_bin >/dev/null || { echo "tansu still missing after cargo install" >&2; exit 1; }
}

start() {
  local dir="$1" port="$2" durable="$3" bin pid storage
  if [ "$durable" = yes ]; then
    bin="$(durable_bin)" || {
      echo "no tansu with the sqlite engine in $TANSU_ROOT: run $0 install" >&2
      exit 1
    }
  else
    bin="$(tansu_bin)" || { echo "tansu is not installed: run $0 install" >&2; exit 1; }
  fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if svc_running "$dir"; then
    echo "tansu already running in $dir (pid $(svc_pid_of "$dir"))"
    return 0
  fi
  if svc_accepts "$port"; then
    echo "port $port is already taken" >&2
    exit 1
  fi
  # Tansu resolves a sqlite:// URL against its working directory (an absolute path cannot be
  # given), so the broker runs in DIR and keeps its database there.
  if [ "$durable" = yes ]; then
    storage="sqlite://tansu.db"
  else
    storage="memory://tansu/"
  fi
  # setsid + nohup: the broker outlives this script and the caller's terminal.
  (
    cd "$dir"
    env -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u CLUSTER_ID \
      setsid nohup "$bin" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:${TANSU_ADVERTISED_PORT:-$port}" \
        --storage-engine "$storage" \
        </dev/null >>"$dir/tansu.log" 2>&1 &
    echo $! >"$dir/tansu.pid"
  )
  pid="$(svc_pid_of "$dir")"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tansu exited at start; log:" >&2
      cat "$dir/tansu.log" >&2 || true
      rm -f "$dir/tansu.pid"
      exit 1
    fi
    if svc_accepts "$port"; then
      echo "tansu running on 127.0.0.1:$port (dir $dir, storage $storage)"
      return 0
    fi
    sleep 0.1
  done
  echo "tansu did not accept connections on port $port; log:" >&2
  cat "$dir/tansu.log" >&2 || true
  kill "$pid" 2>/dev/null || true
  exit 1
}

case "${1:-}" in
  install) [ $# -eq 1 ] || usage; install ;;
  start)
    if [ $# -eq 3 ]; then
      start "$2" "$3" no
    elif [ $# -eq 4 ] && [ "$4" = --durable ]; then
      start "$2" "$3" yes
    else
      usage
    fi
    ;;
  stop) [ $# -eq 2 ] || usage; svc_stop "$2" ;;
  status) [ $# -eq 2 ] || usage; svc_status "$2" ;;
  bin) [ $# -eq 1 ] || usage; tansu_bin ;;
  *) usage ;;
esac
