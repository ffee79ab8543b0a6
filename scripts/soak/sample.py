#!/usr/bin/env python3
"""Samples a running dev cluster every --every seconds into a CSV, until SIGTERM/SIGINT.

Per sample: RSS (KiB) and open file descriptors of every node and of ingest (from /proc, pids
from the cluster's state directory), ingest's total consumer lag (records), the p99 of
send -> ack (`parley_request_duration_seconds{op="message.send"}`, all nodes) over the
interval since the previous sample, computed from the histogram buckets' increase, and the
machine's 1-minute load average (the soak shares its machine: this tells which slow intervals
were the machine's), and each node's estimate of what its conversation windows hold
(`parley_conversation_window_bytes`, KiB: a bounded cache that fills as conversations get
messages, see docs/reliability.md "Soak"), and jemalloc's own figures of each node
(`parley_allocator_allocated_bytes`, `_active_bytes` and `_resident_bytes`, KiB: what the
program holds in live allocations, the pages those sit in, and what the allocator keeps in memory;
resident less active is freed pages not yet returned to the system), and the CPU of every
process of the cluster over the interval (% of one core; nodes, ingest and each test server,
a server's children included: PostgreSQL's backends, say), so that a slowing p99 can be put
on the process whose work grew.
"""

import argparse
import csv
import os
import signal
import sys
import time
import urllib.request


def status_kib(pid, field):
    """A `/proc/PID/status` figure in KiB (`VmRSS`, `RssAnon`, `RssFile`)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    return status_kib(pid, "VmRSS")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The test servers' pid files in the dev cluster's state directory (those present are sampled).
SERVERS = {
    "redis": "redis/redis.pid",
    "tansu": "kafka/tansu.pid",
    "postgres": "postgres/postgres.pid",
    "secantus": "mongo/secantus.pid",
    "seaweedfs": "s3/seaweedfs.pid",
}


def stat_fields(pid):
    """`/proc/PID/stat` after the command name (which may hold spaces): field 3 onwards."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()


def cpu_seconds(pids):
    """CPU seconds of each process in `pids`, with its children that ended (cutime, cstime) and
    those alive (one pass over /proc for all of them)."""
    ticks = {}
    for pid in pids:
        fields = stat_fields(pid)
        ticks[pid] = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            child = stat_fields(entry)
        except OSError:
            continue
        parent = int(child[1])  # field 4, ppid
        if parent in ticks:
            ticks[parent] += int(child[11]) + int(child[12])
    return [ticks[pid] / CLOCK_TICKS for pid in pids]


def load_average():
    with open("/proc/loadavg") as loadavg:
        return float(loadavg.read().split()[0])


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


def series(text, name, label_filter=""):
    """(labels, value) of every sample of `name` whose labels contain `label_filter`."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        labels = head[len(name):]
        if label_filter in labels:
            yield labels, float(value)


def send_buckets(texts):
    """Cumulative send->ack bucket counts by upper bound, summed over the nodes."""
    buckets = {}
    for text in texts:
        for labels, value in series(text, "parley_request_duration_seconds_bucket", 'op="message.send"'):
            bound = labels.split('le="')[1].split('"')[0]
            bound = float("inf") if bound == "+Inf" else float(bound)
            buckets[bound] = buckets.get(bound, 0.0) + value
    return buckets


def p99_ms(now, before):
    """The p99 (upper bucket bound, ms) of the observations between two bucket snapshots."""
    bounds = sorted(now)
    increase = [now[b] - before.get(b, 0.0) for b in bounds]
    total = increase[-1] if increase else 0.0
    if total <= 0:
        return ""
    for bound, count in zip(bounds, increase):
        if count >= 0.99 * total:
            return "" if bound == float("inf") else round(bound * 1000, 3)
    return ""


def gauge_kib(text, name):
    """A byte gauge of the node in KiB; empty when the node exports none."""
    values = [value for labels, value in series(text, name) if not labels]
    return int(values[0] / 1024) if values else ""


# Byte gauges of each node, sampled as `node<port>_<column>`.
NODE_GAUGES = {
    "window_kib": "parley_conversation_window_bytes",
    "allocated_kib": "parley_allocator_allocated_bytes",
    "allocator_active_kib": "parley_allocator_active_bytes",
    "allocator_resident_kib": "parley_allocator_resident_bytes",
}


def cpu_percents(before, now):
    """Each process's CPU between two readings, in % of one core (empty for the first)."""
    if before is None:
        return ["" for _ in now[1]]
    wall = now[0] - before[0]
    return [round(100 * (after - earlier) / wall, 1) for earlier, after in zip(before[1], now[1])]


def pid_of(state, name):
    with open(os.path.join(state, f"{name}.pid")) as pidfile:
        return int(pidfile.read().strip())


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", required=True, help="the dev cluster's state directory")
    parser.add_argument("--node-ports", required=True, help="space-separated node HTTP ports")
    parser.add_argument("--ingest-port", required=True)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    nodes = args.node_ports.split()
    processes = {f"node{port}": pid_of(args.state, f"node-{port}") for port in nodes}
    processes["ingest"] = pid_of(args.state, "ingest")
    servers = {
        name: pid_of(args.state, path[: -len(".pid")])
        for name, path in SERVERS.items()
        if os.path.exists(os.path.join(args.state, path))
    }
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    columns = ["seconds"]
    for name in processes:
        columns += [f"{name}_rss_kib", f"{name}_fds"]
    columns += ["ingest_lag_records", "send_ack_p99_ms", "load_average_1m"]
    for column in NODE_GAUGES:
        columns += [f"node{port}_{column}" for port in nodes]
    # The RSS split: anonymous pages (heap, stacks) and file-backed ones (the binary's code,
    # the search index's memory-mapped segments: page cache the kernel can take back).
    for name in processes:
        columns += [f"{name}_rss_anon_kib", f"{name}_rss_file_kib"]
    cpu_processes = {**processes, **servers}
    columns += [f"{name}_cpu_percent" for name in cpu_processes]
    started = time.monotonic()
    previous = {}
    cpu_before = None
    with open(args.out, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        while not stopping:
            row = [round(time.monotonic() - started, 1)]
            try:
                for pid in processes.values():
                    row += [rss_kib(pid), open_fds(pid)]
                # No series at all means ingest could not measure (e.g. the broker refused its
                # offset requests): an empty cell, not a lag of 0.
                lags = [value for _, value in series(metrics(args.ingest_port), "parley_ingest_consumer_lag{")]
                texts = [metrics(port) for port in nodes]
                buckets = send_buckets(texts)
            except (OSError, ValueError) as error:
                print(f"sample skipped: {error}", file=sys.stderr, flush=True)
            else:
                row += [int(sum(lags)) if lags else "", p99_ms(buckets, previous) if previous else "", load_average()]
                for name in NODE_GAUGES.values():
                    row += [gauge_kib(text, name) for text in texts]
                for pid in processes.values():
                    row += [status_kib(pid, "RssAnon"), status_kib(pid, "RssFile")]
                cpu_now = (time.monotonic(), cpu_seconds(list(cpu_processes.values())))
                row += cpu_percents(cpu_before, cpu_now)
                cpu_before = cpu_now
                previous = buckets
                writer.writerow(row)
                out.flush()
            deadline = time.monotonic() + args.every
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)


if __name__ == "__main__":
    main()
