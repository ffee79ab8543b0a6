"""Injecting and clearing the chaos run's faults on the dev cluster scripts/chaos.sh started:
kill -9 / SIGTERM of the processes scripts/dev-cluster.sh started (restarted by its `up`, which
starts only what is not running), commands to the fault-proxy in front of Redis, Kafka and
MongoDB, and poisoned records produced into the log."""

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

# The topic a poisoned record goes to: the one every send is logged on.
POISON_TOPIC = "message.sent"


class Cluster:
    def __init__(self, state, node_ports, ingest_ports, proxy_controls, kafka_brokers, log):
        self.state = state
        self.node_ports = node_ports
        self.ingest_ports = ingest_ports
        self.proxy_controls = proxy_controls
        self.kafka_brokers = kafka_brokers
        self.log = log
        self.poisoned = 0
        # Tansu 0.6's sqlite storage panics now and then ("more or less than one row",
        # tansu-storage lite.rs:503): the process lives on, every request fails. Such a broker
        # is killed and restarted (recorded: a defect of the test broker, not of Parley).
        self.broker_panics_seen = 0
        self.broker_restarts = []

    def pid_file(self, fault):
        if fault.kind in ("kill-node", "term-node"):
            return os.path.join(self.state, f"node-{fault.target}.pid")
        if fault.kind == "kill-ingest":
            name = "ingest" if fault.target == self.ingest_ports[0] else f"ingest-{fault.target}"
            return os.path.join(self.state, f"{name}.pid")
        service = {"kill-redis": ("redis", "redis"), "kill-broker": ("kafka", "tansu"),
                   "kill-db": ("mongo", "secantus")}[fault.kind]
        return os.path.join(self.state, service[0], f"{service[1]}.pid")

    def inject(self, fault):
        if fault.kind.startswith("kill-"):
            wait_gone(signal_process(self.pid_file(fault), signal.SIGKILL), 10)
        elif fault.kind == "term-node":
            pid = signal_process(self.pid_file(fault), signal.SIGTERM)
            wait_gone(pid, 30)
        elif fault.kind == "latency":
            self.proxy(fault.target, f"/latency?ms={fault.amount}")
        elif fault.kind == "stall":
            self.proxy(fault.target, "/stall")
        elif fault.kind == "drop":
            self.proxy(fault.target, "/drop")
        elif fault.kind == "poison":
            self.poison(fault.amount)

    def clear(self, fault):
        if fault.kind.startswith("kill-") or fault.kind == "term-node":
            self.restart()
        elif fault.kind in ("latency", "stall"):
            self.proxy(fault.target, "/pass")

    def restart(self):
        """`dev-cluster.sh up` starts what is not running and waits until it is ready."""
        started = subprocess.run(["scripts/dev-cluster.sh", "up"], stdout=self.log,
                                 stderr=subprocess.STDOUT, check=False)
        if started.returncode != 0:
            raise RuntimeError("scripts/dev-cluster.sh up failed (see cluster-up.log)")

    def proxy(self, service, path):
        request = urllib.request.Request(f"http://{self.proxy_controls[service]}{path}",
                                         method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()

    def poison(self, count):
        from confluent_kafka import Producer  # the chaos venv's

        def delivered(error, _record):
            if error is None:
                self.poisoned += 1

        # librdkafka's own log to errors only (the broker may just have been restarted).
        producer = Producer({"bootstrap.servers": self.kafka_brokers, "batch.num.messages": 1,
                             "log_level": 3})
        for number in range(count):
            payload = f"chaos poison {self.poisoned + number + 1}: not a log event".encode()
            producer.produce(POISON_TOPIC, key=f"chaos-poison-{time.time_ns()}", value=payload,
                             on_delivery=delivered)
            producer.poll(0)
        left = producer.flush(30)
        if left:
            raise RuntimeError(f"{left} poisoned record(s) not produced")

    def ready(self):
        ports = self.node_ports + self.ingest_ports
        return all(http_status(f"http://127.0.0.1:{port}/readyz") == 200 for port in ports)

    def wait_ready(self, timeout):
        """Seconds until every node and ingest answers /readyz 200, or None after timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.ready():
                return time.monotonic() - started
            self.heal_broker()
            time.sleep(0.2)
        return None

    def heal_broker(self):
        """Restarts a broker whose storage panicked since the last look; True if it did."""
        log_path = os.path.join(self.state, "kafka", "tansu.log")
        try:
            with open(log_path, errors="replace") as handle:
                panics = handle.read().count("panicked at")
        except OSError:
            return False
        if panics <= self.broker_panics_seen:
            return False
        self.broker_panics_seen = panics
        print("    the broker panicked (see its log; Tansu 0.6 lite.rs:503): restarting it", flush=True)
        self.broker_restarts.append(int(time.time() * 1000))
        try:
            pid = signal_process(os.path.join(self.state, "kafka", "tansu.pid"), signal.SIGKILL)
            wait_gone(pid, 10)
        except (OSError, ValueError):
            pass
        try:
            self.restart()
        except RuntimeError as error:
            # Looked at again on the next call: a broker that is not back counts as a panic.
            self.broker_panics_seen -= 1
            print(f"    restarting the broker failed: {error}", flush=True)
        return True

    def consumer_lag(self):
        """Sum of every ingest's parley_ingest_consumer_lag series, None if one does not answer."""
        total = 0
        for port in self.ingest_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    text = answer.read().decode()
            except OSError:
                return None
            for line in text.splitlines():
                if line.startswith("parley_ingest_consumer_lag{"):
                    total += float(line.rsplit(" ", 1)[1])
        return int(total)


def signal_process(pid_file, signum):
    with open(pid_file) as handle:
        pid = int(handle.read().strip())
    os.kill(pid, signum)
    return pid


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None
