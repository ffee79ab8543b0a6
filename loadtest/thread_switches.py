#!/usr/bin/env python3
"""Per-thread CPU and context switches of a running process, over an interval.

    python3 loadtest/thread_switches.py PID [SECONDS]

Reads /proc/PID/task/*/status (voluntary and involuntary context switches) and
/proc/PID/task/*/stat (user + system ticks) at the start and the end of the interval and
prints, per thread name (threads of one name summed), switches per second and CPU as a
percentage of one core. Run it during a scenario's load phase, e.g. 10 s into
`loadtest/one-to-one.sh` with the server's pid. Threads that exit during the interval take
their counts with them (a pool that shrinks shows negative switches); CPU per tick is
1/SC_CLK_TCK s.
"""
import collections
import os
import sys
import time


def snapshot(pid):
    switches = collections.Counter()
    ticks = collections.Counter()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status_file:
                status = status_file.read().splitlines()
            with open(f"/proc/{pid}/task/{task}/stat") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue  # the thread exited meanwhile
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        name = fields["Name"].strip()
        switches[name] += int(fields["voluntary_ctxt_switches"]) + int(
            fields["nonvoluntary_ctxt_switches"]
        )
        after_name = stat.rsplit(")", 1)[1].split()
        ticks[name] += int(after_name[11]) + int(after_name[12])
    return switches, ticks


def main():
    pid = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    tick = os.sysconf("SC_CLK_TCK")
    switches_before, ticks_before = snapshot(pid)
    time.sleep(seconds)
    switches_after, ticks_after = snapshot(pid)
    for name in sorted(switches_after):
        per_second = (switches_after[name] - switches_before[name]) / seconds
        cpu = 100.0 * (ticks_after[name] - ticks_before[name]) / tick / seconds
        print(f"{name:20s} switches/s {per_second:9.0f}  cpu {cpu:6.1f}%")
    total = sum(switches_after.values()) - sum(switches_before.values())
    print(f"{'all threads':20s} switches/s {total / seconds:9.0f}")


if __name__ == "__main__":
    main()
