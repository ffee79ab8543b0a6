#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests in k8s/ (no cluster needed):
#   1. renders k8s/base, k8s/overlays/dev and k8s/overlays/production with `kubectl kustomize`;
#   2. validates every rendered object against the Kubernetes OpenAPI schemas with
#      kubernetes-validate in strict mode (unknown fields are errors), for each version in
#      K8S_SCHEMA_VERSIONS;
#   3. checks what schemas cannot: probes, security context, resources, the grace period versus
#      the drain settings of the rendered parley.toml, that every parley.toml key and every
#      PARLEY__SECTION__KEY variable is a real key of config/parley.toml, selectors and
#      references between objects, PDBs that cannot block drains, pinned images in overlays,
#      secrets from the Secret and never auth.allow_dev_secrets_on_public_bind;
#   4. if built binaries exist (target/release or target/debug), starts parley-server and
#      `ingest setup` against the rendered parley.toml on loopback only, to prove the real
#      config loader accepts it (skip with PARLEY_K8S_SKIP_BINARIES=1).
# Prints what it checked; exits non-zero on any problem. Idempotent: installs kubectl (apt) if
# missing and kubernetes-validate into ~/.cache/parley-tools, and is fast once installed.
#
# Usage: scripts/checks/k8s.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/checks/lib.sh
source "$ROOT/scripts/checks/lib.sh"
# Pinned: the newest release on PyPI when this was written; it bundles schemas 1.25..1.37.
KUBERNETES_VALIDATE_VERSION="1.37.0"
# 1.30: the oldest Kubernetes these manifests are meant for. The preStop `sleep` action they use
# is beta and on by default since 1.30 (alpha 1.29, GA 1.34); everything else is older (HPA
# autoscaling/v2 1.23, PDB policy/v1 1.21, topologySpreadConstraints.matchLabelKeys beta 1.27).
# 1.37: the newest schema the pinned kubernetes-validate bundles, to catch removed or renamed
# fields and API versions.
K8S_SCHEMA_VERSIONS="${K8S_SCHEMA_VERSIONS:-1.30.0 1.37.0}"
RENDERS=(base overlays/dev overlays/production)

log() { printf 'k8s-check: %s\n' "$*" >&2; }

install_kubectl() {
    command -v kubectl >/dev/null && return 0
    log "kubectl missing: installing Debian's kubectl (or kubernetes-client) with apt-get"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >&2 \
        || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >&2
    command -v kubectl >/dev/null || { log "kubectl still missing"; return 1; }
}

VENV="$PARLEY_TOOLS/k8s-validate-$KUBERNETES_VALIDATE_VERSION"
install_validator() {
    pip_tools "$VENV" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" 'tomli; python_version < "3.11"'
}

install_kubectl
install_validator

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log "$(kubectl version --client 2>/dev/null | tr '\n' ' ')"
render_args=()
for dir in "${RENDERS[@]}"; do
    out="$WORK/$(echo "$dir" | tr / _).yaml"
    if ! kubectl kustomize "$ROOT/k8s/$dir" >"$out" 2>"$out.err"; then
        log "FAIL kubectl kustomize k8s/$dir:"; cat "$out.err" >&2; exit 1
    fi
    render_args+=("$dir=$out")
done

bin_dir=""
if [ "${PARLEY_K8S_SKIP_BINARIES:-0}" != 1 ]; then
    # Debug first: scripts/test.sh runs this after the test build, so those are current; a
    # release build may be older than the checkout.
    target="${CARGO_TARGET_DIR:-$ROOT/target}"
    for candidate in "$target/debug" "$target/release"; do
        if [ -x "$candidate/parley-server" ] && [ -x "$candidate/ingest" ]; then
            bin_dir="$candidate"; break
        fi
    done
fi

exec "$VENV/bin/python" - "$ROOT" "$WORK" "$K8S_SCHEMA_VERSIONS" "$bin_dir" "${render_args[@]}" <<'PY'
"""Checks of the rendered manifests; see the header of scripts/checks/k8s.sh."""
import math
import os
import re
import signal
import subprocess
import sys
import time

import yaml
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, InvalidSchemaError, ValidationError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

ROOT, WORK, VERSIONS, BIN_DIR, *RENDER_ARGS = sys.argv[1:]
VERSIONS = VERSIONS.split()
CONFIG_MOUNT = "/etc/parley/parley.toml"
# parley-server exits within server.shutdown_timeout_ms of SIGTERM (drain included, enforced by
# a watchdog); the check asks for preStop + drain window + shutdown timeout + this slack for
# process and container teardown, so that SIGKILL never cuts a drain.
SERVER_EXIT_MARGIN_S = 5
# ingest: the health server's own stop (1 s) and closing the consumer.
INGEST_EXIT_MARGIN_S = 2
SECRET_KEYS = {"mongo.uri", "auth.jwt_secret", "auth.api_key"}
INGEST_SECTIONS = {"kafka", "mongo", "ingest", "search", "log"}
# Secrets that are created out of band (documented), not rendered by kustomize.
EXTERNAL_SECRETS = {"parley-secrets", "parley-tls"}

errors = []
checked = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def ok(message):
    checked.append(message)


with open(os.path.join(ROOT, "config/parley.toml"), "rb") as f:
    DEFAULTS = tomllib.load(f)
REAL_KEYS = {f"{s}.{k}": v for s, table in DEFAULTS.items() for k, v in table.items()}


def toml_type(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def env_key(name):
    """PARLEY__SECTION__KEY -> section.key (None if not of that shape)."""
    parts = name.split("__")
    if len(parts) != 3 or parts[0] != "PARLEY" or not parts[1] or not parts[2]:
        return None
    return f"{parts[1].lower()}.{parts[2].lower()}"


def check_env_value(where, key, value):
    """A literal environment value must parse as the type of the default."""
    kind = toml_type(REAL_KEYS[key])
    if kind == "int" and not re.fullmatch(r"-?\d+", value):
        fail(where, f"{key} must be an integer, got {value!r}")
    elif kind == "float" and not re.fullmatch(r"-?\d+(\.\d+)?", value):
        fail(where, f"{key} must be a number, got {value!r}")
    elif kind == "bool" and value.lower() not in ("true", "false"):
        fail(where, f"{key} must be true or false, got {value!r}")


def labels_match(selector, labels):
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        have = labels.get(expr["key"])
        op = expr["operator"]
        values = expr.get("values") or []
        if op == "In" and have not in values:
            return False
        if op == "NotIn" and have in values:
            return False
        if op == "Exists" and expr["key"] not in labels:
            return False
        if op == "DoesNotExist" and expr["key"] in labels:
            return False
    return True


def ceil_s(ms):
    return math.ceil(ms / 1000)


# ---------------------------------------------------------------- the secret template
secret_example_path = os.path.join(ROOT, "k8s/base/secret.example.yaml")
with open(secret_example_path) as f:
    SECRET_EXAMPLE = yaml.safe_load(f)
SECRET_NAME = SECRET_EXAMPLE["metadata"]["name"]
SECRET_EXAMPLE_KEYS = set((SECRET_EXAMPLE.get("stringData") or {}).keys()) | set(
    (SECRET_EXAMPLE.get("data") or {}).keys())
for name in sorted(SECRET_EXAMPLE_KEYS):
    key = env_key(name)
    if key is None or key not in REAL_KEYS:
        fail("k8s/base/secret.example.yaml", f"key {name} is not PARLEY__SECTION__KEY of a real key")
for doc_version in VERSIONS:
    try:
        kubernetes_validate.validate(SECRET_EXAMPLE, doc_version, strict=True)
    except (ValidationError, SchemaNotFoundError) as e:
        fail("k8s/base/secret.example.yaml", f"schema {doc_version}: {e}")
ok(f"secret.example.yaml: {len(SECRET_EXAMPLE_KEYS)} keys, all real PARLEY__SECTION__KEY keys")


# ---------------------------------------------------------------- per render
def effective_config(where, spec, container, objects):
    """(defaults <- mounted parley.toml <- literal env) for one container, plus the env keys."""
    config = {k: v for k, v in REAL_KEYS.items()}
    args = (container.get("command") or []) + (container.get("args") or [])
    path = None
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            path = args[i + 1]
    file_keys = {}
    if path is None:
        fail(where, "no --config argument: the pod would run on built-in defaults")
    else:
        toml_text = mounted_file(where, spec, container, path, objects)
        if toml_text is not None:
            try:
                parsed = tomllib.loads(toml_text)
            except tomllib.TOMLDecodeError as e:
                fail(where, f"{path} is not valid TOML: {e}")
                parsed = {}
            for section, table in parsed.items():
                if not isinstance(table, dict):
                    fail(where, f"{path}: top-level key {section!r} is not a [section]")
                    continue
                for key, value in table.items():
                    file_keys[f"{section}.{key}"] = value
    for full, value in file_keys.items():
        if full not in REAL_KEYS:
            fail(where, f"parley.toml key {full} does not exist in config/parley.toml (unknown keys stop the process)")
            continue
        if toml_type(value) != toml_type(REAL_KEYS[full]):
            fail(where, f"parley.toml key {full} is a {toml_type(value)}, config/parley.toml has a {toml_type(REAL_KEYS[full])}")
            continue
        if full in SECRET_KEYS and value != "":
            fail(where, f"parley.toml sets the secret {full}: put it in the Secret, not the ConfigMap")
        if full.startswith("redis.") and full.endswith("url") and re.search(r"://[^/]*@", value):
            fail(where, f"parley.toml {full} carries credentials: use PARLEY__REDIS__... in the Secret")
        config[full] = value
    env_literal, env_from_secret = {}, set()
    for env in container.get("env") or []:
        name = env["name"]
        if not name.startswith("PARLEY__"):
            continue
        key = env_key(name)
        if key is None or key not in REAL_KEYS:
            fail(where, f"env {name} does not map to a key of config/parley.toml")
            continue
        if "value" in env:
            check_env_value(where, key, env["value"])
            env_literal[key] = env["value"]
            if toml_type(REAL_KEYS[key]) == "int" and re.fullmatch(r"-?\d+", env["value"]):
                config[key] = int(env["value"])
            else:
                config[key] = env["value"]
        else:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                if ref.get("name") != SECRET_NAME or ref.get("key") not in SECRET_EXAMPLE_KEYS:
                    fail(where, f"env {name} reads secret {ref.get('name')}/{ref.get('key')}, "
                                f"which secret.example.yaml ({SECRET_NAME}) does not define")
                env_from_secret.add(key)
    for source in container.get("envFrom") or []:
        ref = source.get("secretRef")
        if ref:
            if ref.get("name") != SECRET_NAME:
                fail(where, f"envFrom secret {ref.get('name')} is not {SECRET_NAME} (secret.example.yaml)")
            env_from_secret |= {env_key(k) for k in SECRET_EXAMPLE_KEYS}
        if source.get("configMapRef") or source.get("prefix"):
            fail(where, "envFrom of a ConfigMap or with a prefix cannot be checked: list the variables")
    return config, file_keys, env_literal, env_from_secret


def mounted_file(where, spec, container, path, objects):
    """The text of `path` inside the container, from a ConfigMap volume."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        mount_path = mount["mountPath"].rstrip("/")
        if mount.get("subPath"):
            if mount_path != path:
                continue
            rel = mount["subPath"]
        elif path.startswith(mount_path + "/"):
            rel = path[len(mount_path) + 1:]
        else:
            continue
        volume = volumes.get(mount["name"])
        if not volume or "configMap" not in volume:
            fail(where, f"{path} is mounted from volume {mount['name']}, which is not a ConfigMap")
            return None
        cm_name = volume["configMap"]["name"]
        key = rel
        items = volume["configMap"].get("items")
        if items:
            key = next((i["key"] for i in items if i["path"] == rel), None)
            if key is None:
                fail(where, f"ConfigMap volume {mount['name']} has no item at {rel}")
                return None
        cm = objects.get(("ConfigMap", cm_name))
        if cm is None:
            fail(where, f"ConfigMap {cm_name} is not rendered (generator name reference broken?)")
            return None
        if key not in (cm.get("data") or {}):
            fail(where, f"ConfigMap {cm_name} has no key {key}")
            return None
        if not mount.get("readOnly"):
            fail(where, f"config mount {mount['mountPath']} should be readOnly")
        return cm["data"][key]
    fail(where, f"{path} (the --config file) is not mounted from a ConfigMap")
    return None


def port_of(container, port):
    """containerPort number for a probe/target port (name or number), or None."""
    for p in container.get("ports") or []:
        if port == p.get("name") or port == p.get("containerPort"):
            return p["containerPort"]
    return None


def check_security(where, spec, container):
    pod = spec.get("securityContext") or {}
    ctr = container.get("securityContext") or {}
    merged = {**pod, **ctr}
    if merged.get("runAsNonRoot") is not True:
        fail(where, "securityContext.runAsNonRoot must be true")
    if merged.get("runAsUser") in (None, 0):
        fail(where, "securityContext.runAsUser must be set and non-zero (the image's 10001)")
    if ctr.get("readOnlyRootFilesystem") is not True:
        fail(where, "securityContext.readOnlyRootFilesystem must be true")
    if ctr.get("allowPrivilegeEscalation") is not False:
        fail(where, "securityContext.allowPrivilegeEscalation must be false")
    if "ALL" not in ((ctr.get("capabilities") or {}).get("drop") or []):
        fail(where, "securityContext.capabilities.drop must contain ALL")
    if (merged.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail(where, "seccompProfile.type must be RuntimeDefault")
    if ctr.get("privileged"):
        fail(where, "privileged container")
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken must be false (Parley never calls the API)")


def check_resources(where, container):
    res = container.get("resources") or {}
    for part, names in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
        for name in names:
            if name not in (res.get(part) or {}):
                fail(where, f"resources.{part}.{name} missing")


def prestop_seconds(where, container):
    pre = (container.get("lifecycle") or {}).get("preStop")
    if not pre:
        return None
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    command = (pre.get("exec") or {}).get("command") or []
    if command and command[0].endswith("sleep") and len(command) == 2 and command[1].isdigit():
        return int(command[1])
    fail(where, f"preStop hook {pre} is neither a sleep action nor `sleep N`: cannot bound it")
    return 0


def check_render(name, path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    where0 = name
    objects = {}
    for doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        if key in objects:
            fail(where0, f"duplicate {key}")
        objects[key] = doc

    # 1. schemas (strict: unknown fields are errors; an unknown kind/apiVersion is an error too)
    for doc_version in VERSIONS:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, doc_version, strict=True)
            except ValidationError as e:
                loc = ".".join(str(p) for p in e.path)
                fail(f"{where0} {doc['kind']}/{doc['metadata']['name']}",
                     f"schema {e.version} (strict): {loc}: {e.message}")
            except (SchemaNotFoundError, InvalidSchemaError) as e:
                fail(f"{where0} {doc['kind']}/{doc['metadata']['name']}",
                     f"no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {doc_version}: {e}")
    ok(f"{name}: {len(docs)} objects valid against the Kubernetes {', '.join(VERSIONS)} schemas (strict)")

    deployments = {n: d for (k, n), d in objects.items() if k == "Deployment"}
    workloads = {(k, n): d for (k, n), d in objects.items() if k in ("Deployment", "Job")}
    hpas = [d for (k, _), d in objects.items() if k == "HorizontalPodAutoscaler"]
    hpa_target = {h["spec"]["scaleTargetRef"]["name"]: h for h in hpas}
    if not any(d for d in deployments.values()):
        fail(where0, "no Deployment rendered")

    roles = {}
    effective = {}
    # 2. workloads: security, resources, config, env, probes, grace period
    for (kind, wname), obj in workloads.items():
        spec = obj["spec"]["template"]["spec"]
        pod_labels = obj["spec"]["template"]["metadata"].get("labels") or {}
        if kind == "Deployment" and not labels_match(obj["spec"]["selector"], pod_labels):
            fail(f"{where0} {kind}/{wname}", "selector does not match the pod template labels")
        for tsc in spec.get("topologySpreadConstraints") or []:
            if not labels_match(tsc.get("labelSelector"), pod_labels):
                fail(f"{where0} {kind}/{wname}", f"topologySpreadConstraint on {tsc['topologyKey']} does not select its own pods")
        for container in spec.get("containers") or []:
            where = f"{where0} {kind}/{wname} container {container['name']}"
            check_security(where, spec, container)
            check_resources(where, container)
            command = (container.get("command") or [])
            binary = "ingest" if command[:1] == ["ingest"] else "parley-server"
            roles[(kind, wname)] = binary
            config, file_keys, env_literal, env_secret = effective_config(where, spec, container, objects)
            effective[(kind, wname)] = (config, env_literal, container)
            if binary == "ingest":
                for key in list(env_literal) + sorted(env_secret):
                    if key.split(".")[0] not in INGEST_SECTIONS:
                        fail(where, f"env for {key}: ingest reads only [{'], ['.join(sorted(INGEST_SECTIONS))}]")
            durable = config["kafka.brokers"] != "" or "kafka.brokers" in env_secret
            if durable:
                if "mongo.uri" not in env_secret:
                    fail(where, "durable mode (kafka.brokers set) needs PARLEY__MONGO__URI from the Secret")
                if binary == "parley-server" and not config["redis.url"] and "redis.url" not in env_secret:
                    fail(where, "durable mode needs redis.url")
            if binary == "parley-server":
                for secret in ("auth.jwt_secret", "auth.api_key"):
                    if secret not in env_secret:
                        fail(where, f"{secret} does not come from the Secret: the node would use the public development default")
                if str(config.get("auth.allow_dev_secrets_on_public_bind", False)).lower() == "true":
                    fail(where, "auth.allow_dev_secrets_on_public_bind is on: a deployment never runs with the public development secrets")
                if config["server.drain_window_ms"] >= config["server.shutdown_timeout_ms"]:
                    fail(where, "server.drain_window_ms must be less than server.shutdown_timeout_ms")
            if kind != "Deployment":
                continue
            # probes
            # The search role (`ingest search`) listens on search.bind, ingest on ingest.bind.
            if binary == "ingest":
                bind_key = "search.bind" if "search" in (container.get("args") or []) else "ingest.bind"
            else:
                bind_key = "server.bind"
            bind = config[bind_key]
            bind_port = int(bind.rsplit(":", 1)[1])
            if not bind.startswith("0.0.0.0:") and not bind.startswith("[::]:"):
                fail(where, f"{bind_key} = {bind} is not reachable from outside the pod")
            for probe_name, want in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                probe = container.get(probe_name)
                if not probe or "httpGet" not in probe:
                    fail(where, f"{probe_name} (httpGet {want}) missing")
                    continue
                if probe["httpGet"].get("path") != want:
                    fail(where, f"{probe_name} path is {probe['httpGet'].get('path')}, want {want}"
                         + (" (/readyz fails during MongoDB/Kafka outages: liveness would kill healthy pods)" if want == "/healthz" else ""))
                number = port_of(container, probe["httpGet"].get("port"))
                if number is None:
                    fail(where, f"{probe_name} port {probe['httpGet'].get('port')} is not a container port")
                elif number != bind_port:
                    fail(where, f"{probe_name} port {number} is not the bind port {bind_port}")
            startup = container.get("startupProbe")
            if startup and (startup.get("httpGet") or {}).get("path") == "/readyz":
                fail(where, "startupProbe on /readyz would kill pods that wait for Kafka/MongoDB")
            # grace period
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if binary == "parley-server":
                pre = prestop_seconds(where, container)
                if pre is None:
                    fail(where, "no preStop hook: the ingress may still route to a draining node")
                    pre = 0
                drain = ceil_s(config["server.drain_window_ms"])
                shut = ceil_s(config["server.shutdown_timeout_ms"])
                need = pre + drain + shut + SERVER_EXIT_MARGIN_S
                detail = (f"preStop {pre} s + drain_window {drain} s + shutdown_timeout {shut} s"
                          f" + exit margin {SERVER_EXIT_MARGIN_S} s = {need} s")
            else:
                shut = ceil_s(config["ingest.shutdown_timeout_ms"])
                need = shut + INGEST_EXIT_MARGIN_S
                detail = f"ingest.shutdown_timeout {shut} s + exit margin {INGEST_EXIT_MARGIN_S} s = {need} s"
            if grace < need:
                fail(where, f"terminationGracePeriodSeconds {grace} < {detail}")
            else:
                ok(f"{name}: Deployment/{wname}: grace {grace} s >= {detail}")

    # 3. references and selectors
    def selected(selector):
        return [n for n, d in deployments.items()
                if labels_match(selector, d["spec"]["template"]["metadata"].get("labels") or {})]

    for (kind, oname), obj in objects.items():
        where = f"{where0} {kind}/{oname}"
        if kind == "Service":
            sel = obj["spec"].get("selector") or {}
            targets = selected({"matchLabels": sel})
            if not targets:
                fail(where, f"selector {sel} matches no Deployment's pods")
            for port in obj["spec"].get("ports") or []:
                tp = port.get("targetPort", port["port"])
                for t in targets:
                    ctrs = deployments[t]["spec"]["template"]["spec"]["containers"]
                    if not any(port_of(c, tp) for c in ctrs):
                        fail(where, f"targetPort {tp} is not a container port of Deployment/{t}")
        elif kind == "PodDisruptionBudget":
            targets = selected(obj["spec"]["selector"])
            if len(targets) != 1:
                fail(where, f"selector matches {len(targets)} Deployments ({targets}), want exactly 1")
                continue
            dep = deployments[targets[0]]
            hpa = hpa_target.get(targets[0])
            replicas = hpa["spec"].get("minReplicas", 1) if hpa else dep["spec"].get("replicas", 1)
            if "maxUnavailable" in obj["spec"]:
                mu = obj["spec"]["maxUnavailable"]
                allowed = math.ceil(replicas * int(mu[:-1]) / 100) if isinstance(mu, str) else mu
            else:
                ma = obj["spec"]["minAvailable"]
                ma = math.ceil(replicas * int(ma[:-1]) / 100) if isinstance(ma, str) else ma
                allowed = replicas - ma
            if allowed < 1:
                fail(where, f"allows no disruption with {replicas} replica(s): it would block node drains")
        elif kind == "HorizontalPodAutoscaler":
            ref = obj["spec"]["scaleTargetRef"]
            if ref["kind"] != "Deployment" or ref["name"] not in deployments:
                fail(where, f"scaleTargetRef {ref['kind']}/{ref['name']} is not a rendered Deployment")
            elif "replicas" in deployments[ref["name"]]["spec"]:
                fail(where, f"Deployment/{ref['name']} sets spec.replicas although the HPA owns it "
                            "(every apply would reset it and drain pods)")
            lo, hi = obj["spec"].get("minReplicas", 1), obj["spec"]["maxReplicas"]
            if lo < 2 or hi < lo:
                fail(where, f"minReplicas {lo} / maxReplicas {hi}: want 2 <= min <= max")
            if name.endswith("production") and lo < 3:
                fail(where, f"production minReplicas {lo} < 3")
        elif kind == "NetworkPolicy":
            pods = [n for n, d in workloads.items()
                    if labels_match(obj["spec"]["podSelector"], d["spec"]["template"]["metadata"].get("labels") or {})]
            if not pods:
                fail(where, "podSelector matches no workload")
        elif kind == "Ingress":
            rules = obj["spec"].get("rules") or []
            for rule in rules:
                for p in (rule.get("http") or {}).get("paths") or []:
                    svc = p["backend"]["service"]
                    target = objects.get(("Service", svc["name"]))
                    if target is None:
                        fail(where, f"backend Service {svc['name']} is not rendered")
                        continue
                    want = svc["port"]
                    if not any(want.get("name") == sp.get("name") or want.get("number") == sp["port"]
                               for sp in target["spec"]["ports"]):
                        fail(where, f"backend port {want} is not a port of Service {svc['name']}")
                    if p["path"] in ("/", "/metrics") and p.get("pathType") == "Prefix":
                        fail(where, f"path {p['path']} exposes /metrics publicly")
            ann = obj["metadata"].get("annotations") or {}
            for a in ("proxy-read-timeout", "proxy-send-timeout"):
                v = ann.get(f"nginx.ingress.kubernetes.io/{a}")
                if v is None or int(v) < 3600:
                    fail(where, f"annotation nginx.ingress.kubernetes.io/{a} should be >= 3600 (WebSocket)")
            if name.endswith("production"):
                hosts = {h for t in obj["spec"].get("tls") or [] for h in t.get("hosts") or []}
                if not rules or any(r.get("host") not in hosts for r in rules):
                    fail(where, "production: every rule needs a host covered by spec.tls")

    # 4. every referenced ConfigMap/Secret/ServiceAccount exists (or is an external secret)
    for (kind, wname), obj in workloads.items():
        where = f"{where0} {kind}/{wname}"
        spec = obj["spec"]["template"]["spec"]
        sa = spec.get("serviceAccountName")
        if sa and ("ServiceAccount", sa) not in objects:
            fail(where, f"ServiceAccount {sa} is not rendered")
        elif sa and objects[("ServiceAccount", sa)].get("automountServiceAccountToken") is not False:
            fail(where, f"ServiceAccount {sa} should set automountServiceAccountToken: false")
        for vol in spec.get("volumes") or []:
            if "secret" in vol and vol["secret"]["secretName"] not in EXTERNAL_SECRETS \
                    and ("Secret", vol["secret"]["secretName"]) not in objects:
                fail(where, f"Secret {vol['secret']['secretName']} is neither rendered nor documented")
        # images: overlays pin a tag (or a digest)
        if name != "base":
            for c in spec["containers"]:
                image = c["image"]
                last = image.rsplit("/", 1)[-1]
                if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
                    fail(where, f"image {image} is not pinned to a tag or digest")
    n_env = sum(1 for (_, env_literal, c) in effective.values()
                for e in c.get("env") or [] if e["name"].startswith("PARLEY__"))
    ok(f"{name}: {len(workloads)} workloads (probes, security context, resources, grace), "
       f"{n_env} PARLEY__ env vars and the mounted parley.toml against config/parley.toml, "
       f"secret refs, selectors of {sum(1 for k, _ in objects if k in ('Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'Ingress'))} "
       f"Services/PDBs/HPAs/NetworkPolicies/Ingresses, PDB drain safety, images")
    return objects, effective, roles


renders = {}
for arg in RENDER_ARGS:
    name, path = arg.split("=", 1)
    renders[name] = check_render(name, path)

# A Deployment whose pods are in the dev render must have 1 replica, production >= 3 nodes.
dev_objects = renders.get("overlays/dev", ({}, {}, {}))[0]
for (kind, oname), obj in dev_objects.items():
    if kind == "Deployment" and obj["spec"].get("replicas") != 1:
        fail(f"overlays/dev Deployment/{oname}", f"replicas {obj['spec'].get('replicas')}, want 1")
    if kind == "HorizontalPodAutoscaler":
        fail(f"overlays/dev {kind}/{oname}", "dev has no HPA (one replica)")


# 5. the real binaries accept the rendered config (loopback addresses only)
def run_binaries():
    if not BIN_DIR:
        ok("binaries: none built (target/release or target/debug): real-loader check skipped")
        return
    loopback = {
        "PARLEY__KAFKA__BROKERS": "127.0.0.1:1",
        "PARLEY__REDIS__URL": "redis://127.0.0.1:1/0",
        "PARLEY__MONGO__URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200",
        "PARLEY__AUTH__JWT_SECRET": "k8s-check-secret-k8s-check-secret-0123",
        "PARLEY__AUTH__API_KEY": "k8s-check-api-key-0123",
        "PARLEY__SERVER__BIND": "127.0.0.1:0",
        "PARLEY__INGEST__BIND": "127.0.0.1:0",
    }
    already_run = {}
    for name, (objects, effective, roles) in renders.items():
        for wkey, (config, env_literal, container) in effective.items():
            binary = roles[wkey]
            toml = None
            spec = objects[wkey]["spec"]["template"]["spec"]
            args = (container.get("command") or []) + (container.get("args") or [])
            if "--config" in args:
                toml = mounted_file(f"{name} {wkey}", spec, container, args[args.index("--config") + 1], objects)
            if toml is None:
                continue
            conf_path = os.path.join(WORK, "check-parley.toml")
            with open(conf_path, "w") as f:
                f.write(toml)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY__")}
            env["HOSTNAME"] = "k8s-check"
            for e in container.get("env") or []:
                if e["name"].startswith("PARLEY__") and "value" in e:
                    env[e["name"]] = e["value"]
            env.update(loopback)
            where = f"{name} {wkey[0]}/{wkey[1]} ({binary})"
            run_key = (binary, toml, tuple(sorted((k, v) for k, v in env.items() if k.startswith("PARLEY__"))))
            if run_key in already_run:
                ok(f"{name}: {wkey[0]}/{wkey[1]}: same config and env as {already_run[run_key]}, already run")
                continue
            already_run[run_key] = f"{name} {wkey[0]}/{wkey[1]}"
            if binary == "ingest":
                cmd = [os.path.join(BIN_DIR, "ingest"), "--config", conf_path, "setup", "--timeout-secs", "1"]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
                if proc.returncode == 2:
                    fail(where, f"ingest rejected the configuration: {proc.stderr.strip()[-400:]}")
                else:
                    ok(f"{name}: {wkey[0]}/{wkey[1]}: {os.path.relpath(cmd[0], ROOT)} accepts the rendered config (setup exit {proc.returncode}: no services here)")
            else:
                cmd = [os.path.join(BIN_DIR, "parley-server"), "--config", conf_path]
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                deadline = time.monotonic() + 10
                line = ""
                while time.monotonic() < deadline and proc.poll() is None:
                    line = proc.stdout.readline()
                    if "listening on" in line:
                        break
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    if "listening on" in line:
                        ok(f"{name}: {wkey[0]}/{wkey[1]}: {os.path.relpath(cmd[0], ROOT)} accepts the rendered config")
                    else:
                        fail(where, "parley-server did not print its listening line within 10 s")
                else:
                    fail(where, f"parley-server exited {proc.returncode}: {proc.stderr.read().strip()[-400:]}")


run_binaries()

for line in checked:
    print(f"ok    {line}")
for line in errors:
    print(f"FAIL  {line}")
print(f"k8s: {len(checked)} passed, {len(errors)} failed")
sys.exit(1 if errors else 0)
PY
