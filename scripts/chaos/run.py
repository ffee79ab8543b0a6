"""The chaos run's driver (started by scripts/chaos.sh on a running dev cluster): steady chat
load from parley-loadtest (its clients resend unacked sends with the same client_msg_id and
write a ledger), the seeded fault schedule meanwhile, then — load stopped, faults cleared, lag
drained — the checks against MongoDB and the dead-letter topic, and the figures per fault.
Exit status 1 on any violation."""

import argparse
import json
import os
import subprocess
import sys
import time

import faults
import schedule
import verify

# An ack slower than this (from its first attempt's due time) counts as "not answered normally".
SLOW_ACK_MS = 1000.0


def parse():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--faults", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--loadtest", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--node-ports", required=True)
    parser.add_argument("--ingest-ports", required=True)
    parser.add_argument("--proxy-controls", required=True, help="redis=ADDR,kafka=ADDR,mongo=ADDR")
    parser.add_argument("--kafka-brokers", required=True)
    parser.add_argument("--mongo-uri", required=True)
    parser.add_argument("--mongo-database", required=True)
    parser.add_argument("--dead-letter-topic", default="dead.letter")
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--rate", type=float, default=0.6)
    return parser.parse_args()


def start_load(args, node_ports):
    command = [args.loadtest, "--scenario", "loadtest/scenarios/chat.toml", "--quiet",
               "--api-key", args.api_key, "--connections", str(args.connections),
               "--rate", str(args.rate), "--duration", str(args.duration),
               "--set", "drain_secs=90", "--set", "weight_reconnect=0.2",
               "--report", os.path.join(args.out, "loadtest.json"),
               "--ledger", os.path.join(args.out, "ledger.json")]
    for port in node_ports:
        command += ["--url", f"ws://127.0.0.1:{port}/ws"]
    stdout = open(os.path.join(args.out, "loadtest.out"), "w")
    stderr = open(os.path.join(args.out, "loadtest.log"), "w")
    return subprocess.Popen(command, stdout=stdout, stderr=stderr)


def run_schedule(cluster, plan, launched, last_start, problems):
    """Injects and clears each fault in turn (a fault waits for the cluster to be ready after
    the one before); returns what happened to each. Faults that could only start after
    `last_start` (seconds after launch: the load must outlast them) are skipped."""
    done = []
    for fault in plan:
        while time.monotonic() < launched + fault.at:
            cluster.heal_broker()
            time.sleep(min(1.0, max(0.0, launched + fault.at - time.monotonic())))
        if time.monotonic() - launched > last_start:
            print(f"skipped (the load ends too soon after): {fault.describe()}", flush=True)
            continue
        record = {"fault": fault.describe(), **fault.as_dict(), "start_ms": now_ms()}
        print(f"[{time.monotonic() - launched:6.1f}s] {fault.describe()}", flush=True)
        clearing = time.monotonic()
        try:
            cluster.inject(fault)
            time.sleep(fault.hold)
            clearing = time.monotonic()
            cluster.clear(fault)
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            problems.append(f"{fault.describe()}: {error}")
            record["error"] = str(error)
        record["cleared_ms"] = now_ms()
        if cluster.wait_ready(90) is None:
            problems.append(f"{fault.describe()}: the cluster was not ready 90 s after")
            record["ready_after_clear_s"] = None
        else:
            # From the restart (or the proxy's pass) until every node and ingest is ready.
            record["ready_after_clear_s"] = time.monotonic() - clearing
        done.append(record)
    never = sorted({fault.kind for fault in plan} - {record["kind"] for record in done})
    if never:
        problems.append(f"no time left for these fault kinds: {', '.join(never)}")
    return done


def wait_load(load, cluster, timeout):
    """The load generator's exit status; the broker is healed meanwhile (its drain and last
    `sync`s need a working cluster)."""
    deadline = time.monotonic() + timeout
    while load.poll() is None and time.monotonic() < deadline:
        cluster.heal_broker()
        time.sleep(1)
    return load.wait(timeout=max(1.0, deadline - time.monotonic()))


def wait_lag_zero(cluster, timeout):
    """The final consumer lag: polled until 0 three times in a row, or the last value."""
    deadline = time.monotonic() + timeout
    zeros, lag = 0, None
    while time.monotonic() < deadline and zeros < 3:
        cluster.heal_broker()
        lag = cluster.consumer_lag()
        zeros = zeros + 1 if lag == 0 else 0
        time.sleep(1)
    return lag


def load_checks(path):
    """The load generator's own checks (its exit status is 1 on any of them, `missed_live`
    included: an acked message a connected client only got from its final `sync`; reported
    here, not a violation of the chaos run, whose promise is the store's view after `sync`)."""
    with open(path) as handle:
        phase = json.load(handle)["phases"][0]
    correctness = phase["correctness"]
    return {
        "sends": phase["sends"],
        "resends": phase["resends"],
        "repeated_acks": phase["repeated_acks"],
        "live_duplicates": correctness["duplicates"],
        "live_out_of_order": correctness["out_of_order"],
        "acked_missing_after_sync": correctness["missing"],
        "ack_changed": correctness["ack_changed"],
        "missed_live_recovered_by_sync": correctness["missed_live"],
        "load_errors": phase["errors"],
    }


def now_ms():
    return int(time.time() * 1000)


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def per_fault_figures(done, answers, load_end_ms):
    """For each fault, over the time until the next one: `unavailable` answers, p99 of
    send -> ack of the sends first due in it, and how long until sends were answered normally
    again (the last refusal or ack slower than SLOW_ACK_MS, from the fault's start)."""
    for index, record in enumerate(done):
        start = record["start_ms"]
        end = done[index + 1]["start_ms"] if index + 1 < len(done) else load_end_ms
        inside = [answer for answer in answers if start <= answer["at_ms"] < end]
        latencies = [answer["latency_ms"] for answer in answers if answer["code"] == "ok"
                     and start <= answer["at_ms"] - answer["latency_ms"] < end]
        disturbed = [answer["at_ms"] for answer in inside
                     if not answer["code"].startswith("ok") or answer["latency_ms"] > SLOW_ACK_MS]
        record["unavailable_answers"] = sum(answer["code"] == "unavailable" for answer in inside)
        record["other_errors"] = sum(not answer["code"].startswith("ok")
                                     and answer["code"] != "unavailable" for answer in inside)
        record["acks"] = len(latencies)
        record["ack_p99_ms"] = percentile(latencies, 0.99)
        record["disturbed_for_s"] = (max(disturbed) - start) / 1000 if disturbed else 0.0


def print_table(done):
    print(f"{'fault':<34} {'ready after clear':>17} {'sends normal after':>18} "
          f"{'unavailable':>11} {'other errors':>12} {'acks':>5} {'ack p99':>9}")
    for record in done:
        ready = record["ready_after_clear_s"]
        p99 = record["ack_p99_ms"]
        print(f"{record['fault']:<34} {'never' if ready is None else f'{ready:.1f} s':>17} "
              f"{record['disturbed_for_s']:>16.1f} s {record['unavailable_answers']:>11} "
              f"{record['other_errors']:>12} {record['acks']:>5} "
              f"{'-' if p99 is None else f'{p99:.0f} ms':>9}")


def main():
    args = parse()
    node_ports = args.node_ports.split()
    ingest_ports = args.ingest_ports.split()
    plan = schedule.build(args.seed, args.duration, schedule.parse_kinds(args.faults),
                          node_ports, ingest_ports)
    controls = dict(item.split("=", 1) for item in args.proxy_controls.split(","))
    # Kept open to the end: the broker may need a restart while the lag drains.
    with open(os.path.join(args.out, "cluster-up.log"), "a") as up_log:
        return drive(args, plan, faults.Cluster(args.state, node_ports, ingest_ports, controls,
                                                args.kafka_brokers, up_log))


def drive(args, plan, cluster):
    """The load and the faults, then the checks; the exit status."""
    node_ports = args.node_ports.split()
    problems, fault_problems = [], []
    print(f"==> chaos: seed {args.seed}, {args.duration:.0f} s of load, {len(plan)} faults")
    launched = time.monotonic()
    load = start_load(args, node_ports)
    last_start = args.duration - schedule.TAIL_SECS
    done = run_schedule(cluster, plan, launched, last_start, fault_problems)
    load_status = wait_load(load, cluster, args.duration + 600)
    load_end_ms = now_ms()
    print(f"==> load finished (parley-loadtest exit {load_status}); waiting for the lag to drain")
    lag = wait_lag_zero(cluster, 240)
    with open(os.path.join(args.out, "ledger.json")) as handle:
        ledger = json.load(handle)
    import pymongo  # the chaos venv's

    database = pymongo.MongoClient(args.mongo_uri)[args.mongo_database]
    results = verify.check(ledger, database, problems)
    results["final_consumer_lag"] = lag
    results["broker_panics_restarted"] = len(cluster.broker_restarts)
    results["poisoned_injected"] = cluster.poisoned
    results["poisoned_in_dead_letter_topic"] = verify.dead_letters(
        args.kafka_brokers, args.dead_letter_topic, cluster.poisoned)
    results["loadtest_exit"] = load_status
    results.update(load_checks(os.path.join(args.out, "loadtest.json")))
    per_fault_figures(done, ledger["answers"], load_end_ms)
    print_table(done)
    violations = {
        "acked_lost": results["acked_lost"],
        "duplicates_in_store": results["duplicates_in_store"],
        "clients_diverging": results["clients_diverging"],
        "unexplained_seq_holes": results["unexplained_seq_holes"],
        "final_consumer_lag": 0 if lag == 0 else (lag if lag is not None else "unknown"),
        "dead_letters_missing": results["poisoned_injected"]
        - results["poisoned_in_dead_letter_topic"],
        "live_duplicates_or_reordering": results["live_duplicates"] + results["live_out_of_order"],
        "acked_missing_after_sync": results["acked_missing_after_sync"],
        "resend_acked_as_another_message": results["ack_changed"],
        "fault_problems": len(fault_problems),
    }
    failed = {name: value for name, value in violations.items() if value}
    for name, value in results.items():
        print(f"{name:<32} {value}")
    for problem in fault_problems + problems[:40]:
        print(f"problem: {problem}")
    report = {"seed": args.seed, "duration": args.duration, "faults": done, "results": results,
              "violations": failed, "problems": fault_problems + problems}
    with open(os.path.join(args.out, "chaos-report.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"result: {'FAIL ' + json.dumps(failed) if failed else 'PASS'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
