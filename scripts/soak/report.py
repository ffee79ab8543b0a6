#!/usr/bin/env python3
"""Plots a soak's samples (sample.py's CSV) into a PNG and prints whether each series stayed
flat: the mean of the last tenth of the run against the mean of the second tenth (the first
is warm-up). Exit status 1 when RSS or file descriptors grew by more than --max-growth, the
send -> ack p99 by more than --max-latency-growth (the default, +100 %, is one bucket of the
histogram, whose bounds double), or ingest's consumer lag by more than --max-latency-growth
while its last tenth averages over --lag-floor records (a lag of a few records that doubles
is noise, not a backlog). The load average and each process's CPU are plotted, not judged;
the correlation of the p99 and the lag with the load average, and of the p99 with each
process's CPU, is printed."""

import argparse
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path) as source:
        rows = list(csv.DictReader(source))
    columns = {name: [] for name in rows[0]} if rows else {}
    for row in rows:
        for name, value in row.items():
            columns[name].append(float(value) if value not in ("", None) else None)
    return columns


def mean(values):
    values = [value for value in values if value is not None]
    return sum(values) / len(values) if values else None


def tenth(values, index):
    size = max(1, len(values) // 10)
    return values[index * size:(index + 1) * size] if index >= 0 else values[-size:]


def correlation(xs, ys):
    """Pearson's r over the samples where both series have a value (None when undefined)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    mx, my = mean([x for x, _ in pairs]), mean([y for _, y in pairs])
    sxy = sum((x - mx) * (y - my) for x, y in pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    syy = sum((y - my) ** 2 for _, y in pairs)
    return sxy / (sxx * syy) ** 0.5 if sxx and syy else None


def print_load_correlations(columns):
    """How far latency and lag follow the machine's load (the soak shares its machine)."""
    if "load_average_1m" not in columns:
        return
    for name in ("send_ack_p99_ms", "ingest_lag_records"):
        r = correlation(columns[name], columns["load_average_1m"])
        if r is not None:
            print(f"{name} against the load average: r = {r:+.2f}")
    for name in [n for n in columns if n.endswith("_cpu_percent")]:
        r = correlation(columns["send_ack_p99_ms"], columns[name])
        if r is not None:
            print(f"send_ack_p99_ms against {name}: r = {r:+.2f}")


def add_rss_less_window(columns):
    """Adds each node's RSS less its conversation windows (`nodeP_rss_less_window_kib`): the
    windows are a bounded cache (`limits.recent_messages` per active conversation) that fills
    for as long as conversations have fewer messages than that; what is left must not grow."""
    for name in [n for n in columns if n.endswith("_window_kib")]:
        node = name[: -len("_window_kib")]
        rss = columns.get(f"{node}_rss_kib")
        if rss is None or all(v is None for v in columns[name]):
            continue
        columns[f"{node}_rss_less_window_kib"] = [
            None if r is None or w is None else r - w for r, w in zip(rss, columns[name])
        ]


def too_much(name, early, late, args):
    """Whether a judged series grew beyond its limit between the two tenths."""
    change = (late - early) / early if early else 0.0
    if name.endswith(("_rss_kib", "_fds", "_rss_less_window_kib")):
        return change > args.max_growth
    if name == "send_ack_p99_ms":
        return change > args.max_latency_growth
    if name == "ingest_lag_records":
        return late > args.lag_floor and change > args.max_latency_growth
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("samples")
    parser.add_argument("--png", required=True)
    parser.add_argument("--title", default="Parley soak")
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--max-latency-growth", type=float, default=1.0)
    parser.add_argument("--lag-floor", type=float, default=100.0)
    args = parser.parse_args()
    columns = load(args.samples)
    minutes = [seconds / 60 for seconds in columns.pop("seconds")]
    add_rss_less_window(columns)
    groups = {
        "RSS (MiB)": [n for n in columns if n.endswith("_rss_kib")],
        "RSS split: anonymous (heap, stacks) and file-backed (code, mapped index) (MiB)": [
            n for n in columns if n.endswith(("_rss_anon_kib", "_rss_file_kib"))
        ],
        "conversation windows (MiB, the nodes' estimate) and RSS less them": [
            n for n in columns if n.endswith(("_window_kib", "_rss_less_window_kib"))
        ],
        "jemalloc: live allocations, their pages (active) and resident (MiB)": [
            n
            for n in columns
            if n.endswith(("_allocated_kib", "_allocator_active_kib", "_allocator_resident_kib"))
        ],
        "open file descriptors": [n for n in columns if n.endswith("_fds")],
        "ingest consumer lag (records)": ["ingest_lag_records"],
        "send -> ack p99 per 10 s (ms)": ["send_ack_p99_ms"],
        "machine load average, 1 min (2 cores, shared)": ["load_average_1m"],
        "CPU per process (% of one core; not judged)": [n for n in columns if n.endswith("_cpu_percent")],
    }
    # Samples from before a column existed (load average) plot without its panel.
    groups = {
        title: names
        for title, names in groups.items()
        if names and all(n in columns for n in names)
    }
    figure, axes = plt.subplots(len(groups), 1, figsize=(10, 2.6 * len(groups)), sharex=True)
    growing = []
    for axis, (title, names) in zip(axes, groups.items()):
        for name in names:
            values = columns[name]
            if name.endswith("_kib"):
                values = [None if v is None else v / 1024 for v in values]
            axis.plot(minutes, [float("nan") if v is None else v for v in values], label=name)
            early, late = mean(tenth(values, 1)), mean(tenth(values, -1))
            if early is None or late is None:
                print(f"{name:32} not enough samples")
                if early is not None and name in ("send_ack_p99_ms", "ingest_lag_records"):
                    growing.append(f"{name} has no value in the last tenth (over the top bucket?)")
                continue
            change = (late - early) / early if early else 0.0
            print(f"{name:32} second tenth {early:>10.1f} last tenth {late:>10.1f}  change {change:+.1%}")
            if too_much(name, early, late, args):
                growing.append(f"{name} grew {change:+.1%}")
        axis.set_title(title)
        # Processes' CPU climbs at the right (a slowing broker): its legend goes top left.
        axis.legend(fontsize="small", loc="upper left" if title.startswith("CPU") else "best")
        axis.grid(True, alpha=0.3)
    print_load_correlations(columns)
    axes[-1].set_xlabel("minutes")
    figure.suptitle(args.title)
    figure.tight_layout(rect=(0, 0, 1, 0.985))  # room for the title above the first panel
    figure.savefig(args.png, dpi=100)
    print(f"plot: {args.png}")
    if growing:
        print("NOT FLAT: " + "; ".join(growing))
        sys.exit(1)
    print(
        f"flat: no RSS or descriptor series grew by more than {args.max_growth:.0%}, "
        f"p99 and lag by no more than {args.max_latency_growth:.0%}"
    )


if __name__ == "__main__":
    main()
