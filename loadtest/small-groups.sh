#!/usr/bin/env bash
# The `small-groups` scenario (loadtest/scenarios/small-groups.toml, issue #14) from a fresh clone, like
# loadtest/fanout.sh: a release build, a standalone parley-server and ws-ceiling started here,
# the same open-loop load against each, and the CPU time of each over the measured window
# (per send and per delivery, from /proc), then the report in loadtest/reports/.
#
#   loadtest/small-groups.sh [--url ws://HOST:PORT/ws ... [--server-pid PID]] [parley-loadtest options]
#
# Against a running cluster, pass `--cpu-pid PID` for every server process (nodes, Redis,
# ingest) to get the cluster's CPU per message.
set -euo pipefail
# shellcheck source=loadtest/lib.sh
source "$(dirname "$0")/lib.sh"
# CEILING=0 skips the ceiling run; CEILING_LOG=1 runs the durable ceiling (each frame fdatasync'd
# before it is broadcast, loadtest/src/ceiling_log.rs) instead of the bare one.
run_scenario small-groups "$@"
