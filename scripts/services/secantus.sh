#!/usr/bin/env bash
# A private MongoDB-wire server for tests and local clusters: SecantusDB, a pinned beta from PyPI
# in a cached virtualenv (see ../shared/SERVICES.md). Production runs MongoDB.
#
#   secantus.sh install           create the venv and install SecantusDB (fast when present)
#   secantus.sh start DIR PORT    start a private instance on 127.0.0.1:PORT, data/pid/log in DIR
#   secantus.sh stop DIR          stop the instance started in DIR
#   secantus.sh status DIR        say whether the instance in DIR runs (exit 1 when it does not)
#   secantus.sh bin               print the path of secantusd-py (after install)
#
# Environment:
#   PARLEY_TOOLS_DIR         cache root (default ~/.cache/parley); the venv is $PARLEY_TOOLS_DIR/secantus-venv
#   SECANTUS_STORAGE=memory  keep data in memory instead of DIR/data (lost on stop)
set -euo pipefail

SERVICE=secantus
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

VERSION=0.7.0b3
TOOLS_DIR="${PARLEY_TOOLS_DIR:-$HOME/.cache/parley}"
VENV="$TOOLS_DIR/secantus-venv"
BIN="$VENV/bin/secantusd-py"

usage() {
  echo "usage: $0 install | start DIR PORT | stop DIR | status DIR | bin" >&2
  exit 2
}

install() {
  svc_pip_venv "$VENV" "$VERSION" "$BIN" "first time ≈15 s" --pre "secantusdb==$VERSION"
}

start() {
  local dir="$1" port="$2" storage
  [ -x "$BIN" ] || { echo "secantusd-py missing: run $0 install" >&2; exit 1; }
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if svc_running "$dir"; then
    echo "secantus already running in $dir (pid $(svc_pid_of "$dir"))"
    return 0
  fi
  if [ "${SECANTUS_STORAGE:-}" = memory ]; then
    storage=":memory:"
  else
    storage="$dir/data"
    mkdir -p "$storage"
  fi
  nohup "$BIN" --host 127.0.0.1 --port "$port" --storage-path "$storage" \
    >>"$dir/secantus.log" 2>&1 </dev/null &
  echo $! >"$dir/secantus.pid"
  for _ in $(seq 1 150); do
    if ! svc_running "$dir"; then
      echo "secantus exited; log:" >&2
      cat "$dir/secantus.log" >&2 || true
      exit 1
    fi
    if svc_accepts "$port"; then
      echo "secantus running on 127.0.0.1:$port (dir $dir, storage $storage)"
      return 0
    fi
    sleep 0.1
  done
  echo "secantus did not accept connections on port $port; log:" >&2
  cat "$dir/secantus.log" >&2 || true
  exit 1
}

case "${1:-}" in
  install) [ $# -eq 1 ] || usage; install ;;
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; svc_stop "$2" ;;
  status) [ $# -eq 2 ] || usage; svc_status "$2" ;;
  bin) [ $# -eq 1 ] || usage; echo "$BIN" ;;
  *) usage ;;
esac
