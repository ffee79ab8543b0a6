"""Reproduces the test broker's idempotence defects: an idempotent producer whose requests a
stall holds until they time out and are sent again, then every acknowledged record looked for.

Run by scripts/broker-race.sh (which starts the broker's storage, Tansu and a fault-proxy in
front of it). Produces numbered records to one partition every `interval` seconds, the way a
node does (idempotent, acks=all, request timeout 2 s, one record per batch); `cycles` times it
stalls the proxy for `stall` seconds and lets the held bytes through, then produces `tail`
seconds more. With a `message-timeout` shorter than the stall, the records held by a stall fail
and librdkafka bumps the producer's epoch itself (KIP-360) before it sends the next ones.
Then it reads the partition back and prints: acked records not in it (lost), records stored
more than once, records produced once the broker was reachable again (`settle` seconds after
the last stall) that were never acknowledged; the broker's `DuplicateSequenceNumber` answers
are visible in its log. Exit 1 when any of the three is not empty.
"""

import argparse
import sys
import time
import urllib.request

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def control(url: str, command: str) -> None:
    request = urllib.request.Request(f"{url}/{command}", method="POST")
    urllib.request.urlopen(request, timeout=5).read()


def produce(args: argparse.Namespace) -> tuple:
    """Every record's number → whether the broker acknowledged it, and the first record
    produced `settle` seconds after the last stall ended."""
    acked: dict = {}
    sent_at: dict = {}

    def delivered(error, message) -> None:
        acked[int(message.value())] = error is None

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "request.timeout.ms": 2000,
            "socket.timeout.ms": 2000,
            "message.timeout.ms": args.message_timeout,
            "linger.ms": 0,
            "batch.num.messages": 1,
            "log_level": 3,
        }
    )

    def send(number: int) -> None:
        sent_at[number] = time.monotonic()
        producer.produce(
            args.topic, value=str(number).encode(), partition=0, on_delivery=delivered
        )
        producer.poll(args.interval)

    number = 0
    last_pass = 0.0
    started = time.monotonic()
    stall_at = [started + args.warmup + i * args.period for i in range(args.cycles)]
    end = started + args.warmup + args.cycles * args.period + args.tail
    while time.monotonic() < end:
        now = time.monotonic()
        if stall_at and now >= stall_at[0]:
            stall_at.pop(0)
            control(args.control, "stall")
            stall_end = now + args.stall
            while time.monotonic() < stall_end:
                number += 1
                send(number)
            control(args.control, "pass")
            last_pass = time.monotonic()
            continue
        number += 1
        send(number)
    producer.flush(60)
    recovered = [n for n, at in sent_at.items() if at >= last_pass + args.settle]
    return acked, min(recovered, default=number + 1)


def stored(args: argparse.Namespace) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "broker-race-check",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_uncommitted",
        }
    )
    low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, 0), timeout=10)
    consumer.assign([TopicPartition(args.topic, 0, low)])
    values = []
    while len(values) < high - low:
        message = consumer.poll(5)
        if message is None:
            break
        if message.error():
            raise KafkaException(message.error())
        values.append(int(message.value()))
    consumer.close()
    return values


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--control", required=True, help="the fault-proxy's control URL")
    parser.add_argument("--topic", default="race")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--stall", type=float, default=3.0)
    parser.add_argument("--period", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--tail", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument(
        "--message-timeout",
        type=int,
        default=30000,
        help="ms; shorter than the stall, the stalled records fail and the epoch is bumped",
    )
    args = parser.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(args.topic, num_partitions=1, replication_factor=1)])[
        args.topic
    ].result(30)
    acked, recovered_from = produce(args)
    unacked = sorted(n for n in acked if n >= recovered_from and not acked[n])
    print(
        f"produced {len(acked)}, acked {sum(acked.values())};"
        f" not acked after the broker was reachable again (from record {recovered_from}):"
        f" {len(unacked)} {unacked[:10]}"
    )
    try:
        values = stored(args)
    except KafkaException as error:
        print(f"the partition could not be read back: {error}")
        return 1
    counts: dict = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    ok = [number for number, delivered in acked.items() if delivered]
    lost = sorted(number for number in ok if number not in counts)
    twice = sorted(number for number, count in counts.items() if count > 1)
    print(
        f"stored {len(values)} records ({len(counts)} distinct);"
        f" acked but not stored: {len(lost)} {lost[:10]};"
        f" stored more than once: {len(twice)} {twice[:10]}"
    )
    return 1 if lost or twice or unacked else 0


if __name__ == "__main__":
    sys.exit(main())
