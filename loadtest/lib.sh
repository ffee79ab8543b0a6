# Shared by the scenario scripts: build, raise limits, start/stop a standalone parley-server
# (or use --url to target a running one), and the ws-ceiling server.
# shellcheck shell=bash

LOADTEST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$LOADTEST_DIR/.." && pwd)"
BIN_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release"
# PARLEY_SERVER_BIN=path runs another parley-server build (an A/B against an older commit's).
SERVER_BIN="${PARLEY_SERVER_BIN:-$BIN_DIR/parley-server}"
REPORT_DIR="$LOADTEST_DIR/reports"
STARTED_PIDS=()
WORK_DIR=""

# Splits the script's arguments: `--url URL` (repeatable) targets a running server instead of
# starting one; `--server-pid PID` gives its pid (for RSS); everything else goes to
# parley-loadtest.
parse_args() {
  URL_ARGS=()
  EXTRA_ARGS=()
  SERVER_PID=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --url) URL_ARGS+=(--url "$2"); shift 2 ;;
      --server-pid) SERVER_PID="$2"; shift 2 ;;
      *) EXTRA_ARGS+=("$1"); shift ;;
    esac
  done
}

build() {
  echo "==> cargo build --release -p server -p loadtest" >&2
  # Each binary by name: `--bin` selects among every package's targets, so `-p loadtest` beside
  # `--bin parley-server` built none of the load tester's (a fresh clone had no parley-loadtest).
  (cd "$REPO_DIR" && cargo build --release -p server -p loadtest \
    --bin parley-server --bin parley-loadtest --bin ws-ceiling)
}

raise_limits() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
  echo "==> open files limit: $(ulimit -n)" >&2
}

cleanup() {
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$WORK_DIR" ]; then rm -rf "$WORK_DIR"; fi
}
trap cleanup EXIT

# Waits for "<name> listening on ADDR" in a log file; prints ADDR.
wait_for_address() {
  local log="$1" prefix="$2"
  for _ in $(seq 1 300); do
    if grep -q "^$prefix" "$log" 2>/dev/null; then
      sed -n "s/^$prefix //p" "$log" | head -n1
      return 0
    fi
    sleep 0.1
  done
  echo "error: no '$prefix' line in $log" >&2
  return 1
}

# Starts parley-server on a free port with a temporary data dir and raised rate limits.
# Sets PARLEY_URL and SERVER_PID.
start_parley() {
  WORK_DIR="${WORK_DIR:-$(mktemp -d)}"
  PARLEY__SERVER__BIND=127.0.0.1:0 \
  PARLEY__STORAGE__DATA_DIR="$WORK_DIR/data" \
  PARLEY__RATE_LIMIT__PER_SECOND=1000000 \
  PARLEY__RATE_LIMIT__BURST=1000000 \
  PARLEY__LIMITS__MAX_INFLIGHT_REQUESTS=4096 \
  PARLEY__LOG__LEVEL="${PARLEY_LOG_LEVEL:-warn}" \
    "$SERVER_BIN" >"$WORK_DIR/parley.out" 2>"$WORK_DIR/parley.err" &
  SERVER_PID=$!
  STARTED_PIDS+=("$SERVER_PID")
  local addr
  addr="$(wait_for_address "$WORK_DIR/parley.out" "parley-server listening on")"
  PARLEY_URL="ws://$addr/ws"
  for _ in $(seq 1 100); do
    curl -sf "http://$addr/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "==> parley-server pid $SERVER_PID on $PARLEY_URL (data in $WORK_DIR)" >&2
}

# Starts ws-ceiling on a free port. Sets CEILING_URL and CEILING_PID. CEILING_LOG=1 starts the
# durable ceiling: each frame is fdatasync'd to a file beside Parley's data before it is
# broadcast (loadtest/src/ceiling_log.rs).
start_ceiling() {
  WORK_DIR="${WORK_DIR:-$(mktemp -d)}"
  local log_args=()
  if [ "${CEILING_LOG:-0}" = 1 ]; then log_args=(--log "$WORK_DIR/ceiling.log"); fi
  "$BIN_DIR/ws-ceiling" --bind 127.0.0.1:0 "${log_args[@]}" >"$WORK_DIR/ceiling.out" 2>&1 &
  CEILING_PID=$!
  STARTED_PIDS+=("$CEILING_PID")
  local addr
  addr="$(wait_for_address "$WORK_DIR/ceiling.out" "ws-ceiling listening on")"
  CEILING_URL="ws://$addr/ws"
  echo "==> ws-ceiling${log_args[*]:+ (durable: ${log_args[*]})} on $CEILING_URL" >&2
}

# Runs one scenario: builds, raises limits, starts a server unless --url was given, and
# writes the report to loadtest/reports/<name>-<time>.json.
run_scenario() {
  local name="$1"
  shift
  parse_args "$@"
  build
  raise_limits
  if [ ${#URL_ARGS[@]} -eq 0 ]; then
    start_parley
    URL_ARGS=(--url "$PARLEY_URL")
  fi
  # The server's pid: RSS (idle) and CPU over the measured window (every scenario).
  local pid_args=()
  if [ -n "$SERVER_PID" ]; then pid_args=(--server-pid "$SERVER_PID" --cpu-pid "$SERVER_PID"); fi
  local ceiling_args=()
  case "$name" in
    fanout|one-to-one|small-groups)
      if [ "${CEILING:-1}" = 1 ]; then
        start_ceiling
        ceiling_args=(--target both --ceiling-url "$CEILING_URL" --ceiling-cpu-pid "$CEILING_PID")
      fi ;;
  esac
  mkdir -p "$REPORT_DIR"
  # A run against the durable ceiling says so in its report's name.
  local against=""
  if [ ${#ceiling_args[@]} -gt 0 ] && [ "${CEILING_LOG:-0}" = 1 ]; then against="-durable-ceiling"; fi
  REPORT="$REPORT_DIR/$name$against-$(date -u +%Y%m%dT%H%M%SZ).json"
  echo "==> parley-loadtest --scenario $LOADTEST_DIR/scenarios/$name.toml ${URL_ARGS[*]} ${pid_args[*]} ${ceiling_args[*]} ${EXTRA_ARGS[*]}" >&2
  "$BIN_DIR/parley-loadtest" --scenario "$LOADTEST_DIR/scenarios/$name.toml" \
    "${URL_ARGS[@]}" "${pid_args[@]}" "${ceiling_args[@]}" --report "$REPORT" "${EXTRA_ARGS[@]}"
}
