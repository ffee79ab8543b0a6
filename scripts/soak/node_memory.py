#!/usr/bin/env python3
"""Samples one node every second into a CSV until the process exits or SIGTERM: RssAnon and
RssFile (KiB, /proc/PID/status), jemalloc's figures and the search index's counters (from the
node's /metrics), and the number and size of the files in its search index directory.

    node_memory.py PID METRICS_PORT INDEX_DIR OUT.csv

Used by scripts/soak/index-step.sh (docs/reliability.md, "The step in five minutes").
"""

import os
import signal
import sys
import time
import urllib.request

NAMES = [
    "parley_allocator_allocated_bytes",
    "parley_allocator_active_bytes",
    "parley_allocator_resident_bytes",
    "parley_allocator_retained_bytes",
    "parley_allocator_metadata_bytes",
    "parley_search_indexed_events_total",
    "parley_search_index_commits_total",
]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        for name in NAMES:
            if line.startswith(name + " ") or line.startswith(name + "{"):
                values[name] = values.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return values


def index_files(directory):
    """(count, KiB) of the files under `directory`; files deleted meanwhile are skipped."""
    count, size = 0, 0
    for parent, _, names in os.walk(directory):
        for name in names:
            try:
                size += os.path.getsize(os.path.join(parent, name))
                count += 1
            except OSError:
                pass
    return count, size // 1024


def main():
    pid, port, index_dir, out = sys.argv[1:5]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    start = time.time()
    columns = ["t", "rss_anon_kib", "rss_file_kib"]
    columns += [name.removeprefix("parley_") for name in NAMES] + ["index_files", "index_kib"]
    with open(out, "w") as csv:
        csv.write(",".join(columns) + "\n")
        while os.path.exists(f"/proc/{pid}"):
            try:
                values = metrics(port)
                row = [f"{time.time() - start:.0f}"]
                row += [str(status_kib(pid, "RssAnon")), str(status_kib(pid, "RssFile"))]
                row += [f"{values.get(name, 0):.0f}" for name in NAMES]
                row += [str(value) for value in index_files(index_dir)]
                csv.write(",".join(row) + "\n")
                csv.flush()
            except (OSError, ValueError) as error:
                print(f"sample skipped: {error}", file=sys.stderr)
            time.sleep(1)


if __name__ == "__main__":
    main()
