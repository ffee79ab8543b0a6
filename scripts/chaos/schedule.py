"""The chaos run's fault schedule: seeded, so a seed always gives the same faults, in the same
order, on the same targets, with the same lengths (the moments they start at follow the load's
clock, and a fault waits for the cluster to be ready again after the one before)."""

import random
from dataclasses import asdict, dataclass

KINDS = ("kill-node", "kill-ingest", "kill-redis", "kill-broker", "kill-db", "term-node",
         "latency", "stall", "drop", "poison")
PROXIED = ("redis", "kafka", "mongo")

# The load runs this long before the first fault, and the last fault must be cleared this long
# before the load ends (seconds).
WARMUP_SECS = 12.0
TAIL_SECS = 12.0
# Shortest slot one fault gets (inject, hold, clear, ready again).
MIN_SLOT_SECS = 7.0


@dataclass
class Fault:
    kind: str
    # Seconds after the load started.
    at: float
    # How long the fault is held before it is cleared (a process stays down, the proxy keeps
    # the latency or stall); 0 for drop and poison.
    hold: float
    # node port, ingest port, or proxied service; "" when the kind has a single target.
    target: str = ""
    # latency: milliseconds added to each chunk; poison: records produced.
    amount: int = 0

    def describe(self):
        parts = [self.kind]
        if self.target:
            parts.append(self.target)
        if self.kind == "latency":
            parts.append(f"{self.amount} ms")
        if self.kind == "poison":
            parts.append(f"{self.amount} record(s)")
        if self.hold:
            parts.append(f"for {self.hold:.1f} s")
        return " ".join(parts)

    def as_dict(self):
        return asdict(self)


def parse_kinds(text):
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"--faults takes a list of {','.join(KINDS)}; not {','.join(unknown)}")
    return kinds


def build(seed, duration, kinds, node_ports, ingest_ports):
    """Every kind once, in a seeded order, then again (reshuffled) while the load leaves room."""
    rng = random.Random(seed)
    room = duration - WARMUP_SECS - TAIL_SECS
    count = max(len(kinds), int(room // (MIN_SLOT_SECS * 2)))
    if room < MIN_SLOT_SECS * len(kinds):
        raise ValueError(f"--duration {duration} leaves no room for {len(kinds)} faults "
                         f"(needs {WARMUP_SECS + TAIL_SECS + MIN_SLOT_SECS * len(kinds):.0f} s)")
    order = []
    while len(order) < count:
        rounds = list(kinds)
        rng.shuffle(rounds)
        order.extend(rounds)
    order = order[:count]
    slot = room / count
    faults = []
    for index, kind in enumerate(order):
        at = WARMUP_SECS + index * slot + rng.uniform(0, slot * 0.1)
        faults.append(make(rng, kind, at, min(slot * 0.4, 8.0), node_ports, ingest_ports))
    return faults


def make(rng, kind, at, longest_hold, node_ports, ingest_ports):
    hold = round(rng.uniform(longest_hold / 2, longest_hold), 1)
    if kind in ("kill-node", "term-node"):
        return Fault(kind, at, hold, target=rng.choice(node_ports))
    if kind == "kill-ingest":
        return Fault(kind, at, hold, target=rng.choice(ingest_ports))
    if kind in ("kill-redis", "kill-broker", "kill-db"):
        return Fault(kind, at, hold)
    if kind == "latency":
        return Fault(kind, at, hold, target=rng.choice(PROXIED), amount=rng.choice((200, 500, 1000)))
    if kind == "stall":
        return Fault(kind, at, hold, target=rng.choice(PROXIED))
    if kind == "drop":
        return Fault(kind, at, 0.0, target=rng.choice(PROXIED))
    return Fault(kind, at, 0.0, amount=rng.randint(1, 3))
