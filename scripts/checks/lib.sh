# Shared by the offline deploy checks in this directory. Source it.

# Where the checks keep the tools they install (one folder per tool and version).
PARLEY_TOOLS="${PARLEY_TOOLS_DIR:-$HOME/.cache/parley-tools}"

# Runs a command as root (directly, or with sudo).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2
    return 1
  fi
}

# pip_tools VENV PACKAGE...: makes VENV a Python venv holding exactly these pinned packages,
# (re)creating it when the list differs from the one it was made with; fast when it matches.
# Returns non-zero, with the reason on stderr, when python3 or PyPI is missing.
pip_tools() {
  local venv="$1"
  shift
  local wanted="$*"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.parley-packages" 2>/dev/null)" = "$wanted" ]; then
    return 0
  fi
  command -v python3 >/dev/null || { echo "python3 is needed to install $wanted" >&2; return 1; }
  echo "==> installing $wanted into $venv (once)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || { echo "cannot create a venv in $venv (apt-get install python3-venv?)" >&2; return 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2 \
    || { echo "pip could not install $wanted (is PyPI reachable?)" >&2; return 1; }
  echo "$wanted" >"$venv/.parley-packages"
}

# finish_check NAME STATUS: prints the check's verdict ("NAME check: ok", or FAILED on stderr)
# and exits with STATUS.
finish_check() {
  if [ "$2" -eq 0 ]; then
    echo "$1 check: ok"
  else
    echo "$1 check: FAILED" >&2
  fi
  exit "$2"
}
