#!/usr/bin/env bash
# Headless Chromium for the web chat's browser test (Debian's `chromium`; see ../shared/SERVICES.md).
# puppeteer-core drives it at /usr/bin/chromium; puppeteer's own browser download is not used.
#
#   chromium.sh install    install chromium if it is missing
set -euo pipefail

usage() {
  echo "usage: $0 install" >&2
  exit 2
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install() {
  if command -v chromium >/dev/null 2>&1; then
    return 0
  fi
  echo "==> installing chromium (Debian package)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  command -v chromium >/dev/null 2>&1 || { echo "chromium still missing" >&2; exit 1; }
}

case "${1:-}" in
  install) [ $# -eq 1 ] || usage; install ;;
  *) usage ;;
esac
