#!/usr/bin/env bash
# A private Tansu (Kafka-protocol broker) for tests and local clusters (see ../shared/SERVICES.md).
#
#   tansu.sh install           install the tansu binary with cargo if it is missing (cached in
#                              ~/.cargo/bin; the first build takes 15-20 min on 2 cores)
#   tansu.sh start DIR PORT    start a broker on 127.0.0.1:PORT (in-memory storage), pid/log in DIR
#   tansu.sh stop DIR          stop the broker started in DIR
#   tansu.sh status DIR        say whether the broker in DIR runs (exit 1 when it does not)
#
# Topics are not auto-created: Parley creates its topics explicitly (KafkaLog::ensure_topics).
# The memory:// engine forgets everything when the broker stops.
set -euo pipefail

SERVICE=tansu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

TANSU_VERSION=0.6.0

usage() {
  echo "usage: $0 install | start DIR PORT | stop DIR | status DIR" >&2
  exit 2
}

tansu_bin() {
  if command -v tansu >/dev/null 2>&1; then
    command -v tansu
  elif [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
  else
    return 1
  fi
}

install() {
  if tansu_bin >/dev/null; then
    return 0
  fi
  echo "==> installing tansu $TANSU_VERSION with cargo (memory storage needs the dynostore feature)"
  echo "    this compiles ~600 crates: 15-20 min on 2 cores the first time, cached afterwards"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
  tansu_bin >/dev/null || { echo "tansu still missing after cargo install" >&2; exit 1; }
}

start() {
  local dir="$1" port="$2" bin pid
  bin="$(tansu_bin)" || { echo "tansu is not installed: run $0 install" >&2; exit 1; }
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
  # setsid + nohup: the broker outlives this script and the caller's terminal.
  env -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u CLUSTER_ID \
    setsid nohup "$bin" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/ \
      </dev/null >>"$dir/tansu.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/tansu.pid"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tansu exited at start; log:" >&2
      cat "$dir/tansu.log" >&2 || true
      rm -f "$dir/tansu.pid"
      exit 1
    fi
    if svc_accepts "$port"; then
      echo "tansu running on 127.0.0.1:$port (dir $dir)"
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
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; svc_stop "$2" ;;
  status) [ $# -eq 2 ] || usage; svc_status "$2" ;;
  *) usage ;;
esac
