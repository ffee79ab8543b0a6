#!/usr/bin/env bash
# Offline validation of everything that deploys Parley (no Docker engine or cluster needed):
# the Dockerfile (hadolint + COPY sources + bin targets), docker-compose.yml (Compose
# Specification schema + healthchecks, ordering, mounts, config keys) and every kustomize
# rendering under k8s/ (Kubernetes schemas of a pinned version + probes, security context,
# grace period, config keys, selectors) and the Prometheus config, alert rules and their unit
# tests (promtool). Each check installs its tools into
# ~/.cache/parley-tools the first time. Part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for check in dockerfile compose k8s prometheus; do
  echo "==> deploy check: $check"
  if ! "scripts/checks/$check.sh"; then
    echo "deploy check $check FAILED" >&2
    status=1
  fi
done
exit "$status"
