#!/usr/bin/env bash
# A private Tansu (Kafka-protocol broker) for tests and local clusters (see ../shared/SERVICES.md).
#
#   tansu.sh install                  install tansu with cargo if it is missing: a build with the
#                                     sqlite (libsql) and memory (dynostore) engines and the
#                                     patches in tansu-patches/, cached in $TANSU_ROOT (the first
#                                     build takes 20-25 min on 2 cores)
#   tansu.sh install-postgres         the same for a build with the PostgreSQL engine, cached in
#                                     $TANSU_PG_ROOT (7 min when `install` ran before: the
#                                     two share their build directory)
#   tansu.sh start DIR PORT [--durable | --postgres PGPORT]
#                                     start a broker on 127.0.0.1:PORT, pid/log in DIR; in-memory
#                                     storage, or with --durable a sqlite database DIR/tansu.db,
#                                     or with --postgres the database `tansu` of the PostgreSQL on
#                                     127.0.0.1:PGPORT (postgres.sh; created with the tables of
#                                     tansu-postgres.sql when missing): stop + start on the same
#                                     DIR (or database) keeps topics, records and committed group
#                                     offsets
#   tansu.sh stop DIR                 stop the broker started in DIR
#   tansu.sh status DIR               say whether the broker in DIR runs (exit 1 when it does not)
#   tansu.sh bin                      print the path of the tansu binary start uses
#
# Environment:
#   TANSU_ROOT   where `install` puts the build (default
#                ~/.cache/parley-tools/tansu-0.6.0-libsql-<patches>, <patches> the first 12 hex
#                digits of the patches' SHA-256, so that a changed patch builds afresh; the
#                binary is $TANSU_ROOT/bin/tansu)
#   TANSU_PG_ROOT
#                where `install-postgres` puts its build (default
#                ~/.cache/parley-tools/tansu-0.6.0-postgres-<patches>)
#   TANSU_ADVERTISED_PORT
#                the port the broker tells clients to connect to (default PORT): a fault-proxy's
#                port in front of it, so that clients' traffic goes through the proxy (Kafka
#                clients connect to the advertised address after the bootstrap)
#
# Topics are not auto-created: Parley creates its topics explicitly (`ingest setup`).
# The memory:// engine forgets everything when the broker stops. A tansu found on PATH or in
# ~/.cargo/bin (an older memory-only build) is used when $TANSU_ROOT has none, but only without
# --durable or --postgres.
#
# Which engine lasts (docs/reliability.md "Soak"): under an hour of steady produce and fetch,
# Tansu 0.6's sqlite engine panicked ("more or less than one row", lite.rs:503: a producer's
# own epoch bump, which the patches now accept, ADR 0011) after 9-10 minutes and slowed down as
# its database grew, and its memory engine slowed down and then fenced every new producer
# after 18; the PostgreSQL engine is the one the soak uses. Tansu 0.6 does not create its
# PostgreSQL tables (upstream applies a schema from its repository with Docker's initdb.d,
# which the crate does not ship): tansu-postgres.sql, next to this script, has them.
set -euo pipefail

SERVICE=tansu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

TANSU_VERSION=0.6.0
HERE="$(cd "$(dirname "$0")" && pwd)"
# The crates' checksums (crates.io's index) for the patched builds.
TANSU_SHA256=4fdd85473ec265140488cf8d55e82b844f5c051c8916fabdd4a71156ac053f6d
TANSU_STORAGE_SHA256=720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d
PATCHES_ID="$(cat "$HERE"/tansu-patches/*.patch | sha256sum | cut -c1-12)"
TANSU_ROOT="${TANSU_ROOT:-$HOME/.cache/parley-tools/tansu-$TANSU_VERSION-libsql-$PATCHES_ID}"
TANSU_PG_ROOT="${TANSU_PG_ROOT:-$HOME/.cache/parley-tools/tansu-$TANSU_VERSION-postgres-$PATCHES_ID}"
TANSU_BUILD_DIR="$HOME/.cache/parley-tools/tansu-build"

usage() {
  echo "usage: $0 install | install-postgres | start DIR PORT [--durable | --postgres PGPORT]" \
    "| stop DIR | status DIR | bin" >&2
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

postgres_bin() {
  [ -x "$TANSU_PG_ROOT/bin/tansu" ] && echo "$TANSU_PG_ROOT/bin/tansu"
}

# Both builds are Tansu with the patches in tansu-patches/ applied to its crates' sources
# (docs/reliability.md "A broker that keeps its acks", ADR 0010): 0.6.0's PostgreSQL engine
# checked a producer's sequence before locking the partition (a produce retried after a stall
# could be written twice and the producer's next batch acknowledged unwritten), and neither
# engine took the epoch an idempotent producer bumps itself after a timed-out batch (the sqlite
# engine panicked, which stopped the broker answering produces).
# Usage: install_patched ROOT FEATURES NOTE
install_patched() {
  local root="$1" features="$2" note="$3" src="$TANSU_BUILD_DIR/src-patched"
  if [ -x "$root/bin/tansu" ]; then
    # A build directory left by an earlier install (1.7 GiB) only takes disk from the suite.
    rm -rf "$TANSU_BUILD_DIR"
    return 0
  fi
  rm -rf "$src"
  mkdir -p "$src"
  fetch_crate tansu "$TANSU_VERSION" "$TANSU_SHA256" "$src"
  fetch_crate tansu-storage "$TANSU_VERSION" "$TANSU_STORAGE_SHA256" "$src"
  local patch
  for patch in "$HERE"/tansu-patches/*.patch; do
    (cd "$src" && git apply -p0 "$patch")
  done
  printf '\n[patch.crates-io]\ntansu-storage = { path = "../tansu-storage-%s" }\n' \
    "$TANSU_VERSION" >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
  echo "==> installing tansu $TANSU_VERSION (patched: $(ls "$HERE/tansu-patches")) into $root"
  echo "    (features: $note)"
  echo "    this compiles ~650 crates: 20-25 min on 2 cores the first time, cached afterwards"
  # The package's Cargo.lock pins every crate; `cargo fetch` moves only tansu-storage to its
  # path source in it (`cargo install` without --locked would resolve every crate afresh:
  # newer deadpool versions than tansu-storage 0.6.0 compiles with).
  (cd "$src/tansu-$TANSU_VERSION" && cargo fetch --quiet)
  nice -n 10 cargo install --locked --path "$src/tansu-$TANSU_VERSION" --features "$features" \
    --root "$root" --target-dir "$TANSU_BUILD_DIR"
  [ -x "$root/bin/tansu" ] || { echo "tansu still missing after cargo install" >&2; exit 1; }
  # The binary is all the suite runs; its build (1.7 GiB of ~650 crates) would stay on a disk
  # the workspace's build and the tests' servers need.
  rm -rf "$TANSU_BUILD_DIR"
}

install() {
  install_patched "$TANSU_ROOT" dynostore,libsql \
    "dynostore for memory://, libsql for sqlite:// durable storage"
}

install_postgres() {
  install_patched "$TANSU_PG_ROOT" postgres "postgres for postgres:// durable storage"
}

# Usage: fetch_crate NAME VERSION SHA256 DIR   (unpacks NAME-VERSION/ into DIR)
fetch_crate() {
  local name="$1" version="$2" sha="$3" dir="$4"
  local url="https://static.crates.io/crates/$name/$version/download"
  if command -v curl >/dev/null 2>&1; then
    curl -sSfL --retry 3 -o "$dir/$name.crate" "$url"
  else # a fresh machine may lack curl; the suite needs python3 anyway
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "$url" "$dir/$name.crate"
  fi
  echo "$sha  $dir/$name.crate" | sha256sum --check --quiet
  tar xzf "$dir/$name.crate" -C "$dir"
}

# Creates the database `tansu` on the PostgreSQL at 127.0.0.1:PGPORT with Tansu's tables
# (idempotent) and prints the storage URL.
postgres_storage() {
  local pgport="$1" psql=("$HERE/postgres.sh" psql "$1")
  if [ -z "$("${psql[@]}" -tA -c "select 1 from pg_database where datname = 'tansu'")" ]; then
    "${psql[@]}" -c "create database tansu" >&2
  fi
  PGOPTIONS="-c client_min_messages=warning" \
    "${psql[@]}" -d tansu -v ON_ERROR_STOP=1 -f "$HERE/tansu-postgres.sql" >&2
  echo "postgres://postgres@127.0.0.1:$pgport/tansu"
}

# Sets `bin` and `storage` for an engine: memory, sqlite, or postgres (with its PGPORT).
choose_engine() {
  local engine="$1" pgport="${2:-}"
  case "$engine" in
    sqlite)
      bin="$(durable_bin)" || {
        echo "no tansu with the sqlite engine in $TANSU_ROOT: run $0 install" >&2
        exit 1
      }
      # Tansu resolves a sqlite:// URL against its working directory (an absolute path cannot
      # be given), so the broker runs in DIR and keeps its database there.
      storage="sqlite://tansu.db"
      ;;
    postgres)
      bin="$(postgres_bin)" || {
        echo "no tansu with the postgres engine in $TANSU_PG_ROOT: run $0 install-postgres" >&2
        exit 1
      }
      storage="$(postgres_storage "$pgport")"
      ;;
    *)
      bin="$(tansu_bin)" || { echo "tansu is not installed: run $0 install" >&2; exit 1; }
      storage="memory://tansu/"
      ;;
  esac
}

# Usage: start DIR PORT ENGINE [PGPORT]
start() {
  local dir="$1" port="$2" bin pid storage
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
  choose_engine "$3" "${4:-}"
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
  await_listening "$dir" "$port" "$pid"
  echo "tansu running on 127.0.0.1:$port (dir $dir, storage $storage)"
}

await_listening() {
  local dir="$1" port="$2" pid="$3"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tansu exited at start; log:" >&2
      cat "$dir/tansu.log" >&2 || true
      rm -f "$dir/tansu.pid"
      exit 1
    fi
    if svc_accepts "$port"; then
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
  install-postgres) [ $# -eq 1 ] || usage; install_postgres ;;
  start)
    if [ $# -eq 3 ]; then
      start "$2" "$3" memory
    elif [ $# -eq 4 ] && [ "$4" = --durable ]; then
      start "$2" "$3" sqlite
    elif [ $# -eq 5 ] && [ "$4" = --postgres ]; then
      start "$2" "$3" postgres "$5"
    else
      usage
    fi
    ;;
  stop) [ $# -eq 2 ] || usage; svc_stop "$2" ;;
  status) [ $# -eq 2 ] || usage; svc_status "$2" ;;
  bin) [ $# -eq 1 ] || usage; tansu_bin ;;
  *) usage ;;
esac
