#!/usr/bin/env bash
# Offline checks of the Prometheus files in deploy/prometheus with promtool, the real parser:
#   1. `promtool check config --syntax-only` of prometheus.yml (the compose stack's; rule files
#      are container paths, so their content is checked separately below);
#   2. `promtool check rules` of alerts.yml (PromQL, templates, labels);
#   3. `promtool test rules` of alerts.test.yml: synthetic series under which given alerts must
#      fire, and must not fire yet.
# The dashboard and the alerts are checked against the metrics the binaries really export by
# server/tests/durable.rs (dashboard_and_alerts_use_only_live_metrics_...).
#
# promtool comes from Debian's `prometheus` package (2.42), unpacked into
# ~/.cache/parley-tools without installing the server; later runs take a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/checks/lib.sh
source "$ROOT/scripts/checks/lib.sh"
DIR="$PARLEY_TOOLS/promtool-deb12"
PROMTOOL="$DIR/usr/bin/promtool"

if [ ! -x "$PROMTOOL" ]; then
  echo "promtool missing: unpacking it from Debian's prometheus package into $DIR" >&2
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  if ! (cd "$download" && apt-get download prometheus >/dev/null 2>&1); then
    as_root apt-get update -qq >&2
    (cd "$download" && apt-get download prometheus >&2)
  fi
  mkdir -p "$DIR.partial"
  dpkg-deb -x "$download"/prometheus_*.deb "$DIR.partial"
  rm -rf "$DIR"
  mv "$DIR.partial" "$DIR"
fi
"$PROMTOOL" --version 2>&1 | head -1

cd "$ROOT/deploy/prometheus"
"$PROMTOOL" check config --syntax-only prometheus.yml
"$PROMTOOL" check rules alerts.yml
"$PROMTOOL" test rules alerts.test.yml
echo "prometheus check: ok"
