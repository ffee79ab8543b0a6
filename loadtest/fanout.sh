#!/usr/bin/env bash
# The `fanout` scenario (loadtest/scenarios/fanout.toml) from a fresh clone: builds in release, raises
# the open-files limit, starts a standalone parley-server on a free port with a temporary data
# dir and raised rate limits, starts ws-ceiling and runs the same load against
# it first (the summary prints the ratio), then writes the report to loadtest/reports/.
#
#   loadtest/fanout.sh [--url ws://HOST:PORT/ws ... [--server-pid PID]] [parley-loadtest options]
#
# With --url the script targets that running server instead of starting one (its rate limits
# must be raised by whoever started it). Other options go to parley-loadtest, e.g.
# `--connections 2000`, `--rate 50`, `--duration 30`, `--set key=value`, `--source-addrs 16`.
set -euo pipefail
# shellcheck source=loadtest/lib.sh
source "$(dirname "$0")/lib.sh"
# CEILING=0 skips the ceiling run; CEILING_LOG=1 runs the durable ceiling (each frame fdatasync'd
# before it is broadcast, loadtest/src/ceiling_log.rs) instead of the bare one.
run_scenario fanout "$@"
