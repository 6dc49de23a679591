#!/usr/bin/env python3
"""Consumer group rebalances: the classic protocol against the consumer protocol (KIP-848).

    python bench/group_rebalance.py [--rounds 2]

One broker on its defaults, a topic of 6 partitions, a producer writing 1000 records/s across
them. For each way of grouping (classic with librdkafka's default eager assignors, classic
cooperative-sticky, and ``group.protocol=consumer``), ROUNDS times on a fresh group:

- ``first_record_s``: from one consumer's subscribe() to its first record (the group forms);
- ``join_s``: a second consumer joins; from its subscribe() to its first record;
- ``pause_s``: the longest gap in the first consumer's records while the second one joins
  (an eager rebalance stops everyone; the others only move what changes hands).

Client and broker settings are their defaults (heartbeats every 3 s classic, 5 s consumer
protocol; group.initial.rebalance.delay.ms 3 s). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from scale import Broker

MODES = {
    "classic-eager": {},
    "classic-cooperative": {"partition.assignment.strategy": "cooperative-sticky"},
    "consumer": {"group.protocol": "consumer"},
}
TOPIC = "rebalance"


class Steady(threading.Thread):
    """1000 records/s round-robin over the partitions until stopped."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.stop_event = threading.Event()

    def run(self) -> None:
        start, n = time.monotonic(), 0
        while not self.stop_event.is_set():
            self.producer.produce(TOPIC, b"x" * 100, partition=n % 6)
            self.producer.poll(0)
            n += 1
            ahead = n / 1000 - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        self.producer.flush(10)


class Reader(threading.Thread):
    """A group member that notes when each record arrives."""

    def __init__(self, bootstrap: str, group: str, mode: dict[str, str]) -> None:
        super().__init__(daemon=True)
        conf = {"bootstrap.servers": bootstrap, "group.id": group, **mode}
        conf["auto.offset.reset"] = "latest"
        self.consumer = Consumer(conf)
        self.arrivals: list[float] = []
        self.stop_event = threading.Event()
        self.started = 0.0

    def run(self) -> None:
        self.started = time.monotonic()
        self.consumer.subscribe([TOPIC])
        while not self.stop_event.is_set():
            m = self.consumer.poll(0.05)
            if m is not None and not m.error():
                self.arrivals.append(time.monotonic())
        self.consumer.close()

    def first_after(self, t: float) -> float | None:
        return next((a for a in self.arrivals if a >= t), None)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(30)


def wait_first(reader: Reader, since: float, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = reader.first_after(since)
        if first is not None:
            return first
        time.sleep(0.01)
    raise TimeoutError("no record")


def one_round(bootstrap: str, group: str, mode: dict[str, str]) -> dict[str, float]:
    a = Reader(bootstrap, group, mode)
    a.start()
    first = wait_first(a, 0)
    time.sleep(2)  # settled
    b = Reader(bootstrap, group, mode)
    b.start()
    while not b.started:
        time.sleep(0.001)
    joined = wait_first(b, 0)
    time.sleep(1)
    window = [t for t in a.arrivals if b.started <= t <= joined + 1]
    gaps = [y - x for x, y in zip([b.started, *window], [*window, joined + 1], strict=True)]
    result = {
        "first_record_s": first - a.started,
        "join_s": joined - b.started,
        "pause_s": max(gaps),
    }
    b.stop()
    a.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    broker = Broker()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(TOPIC, 6, 1)])[TOPIC].result(30)
        producer = Steady(broker.bootstrap)
        producer.start()
        results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for r in range(args.rounds):
            for name, mode in MODES.items():
                results[name].append(one_round(broker.bootstrap, f"{name}-{r}", mode))
        producer.stop_event.set()
        producer.join(30)
    finally:
        broker.stop()
    summary: dict[str, Any] = {
        name: {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}
        for name, rounds in results.items()
    }
    print(f"{'mode':<22}{'first record s':>16}{'join s':>10}{'pause s':>10}")
    for name, s in summary.items():
        print(f"{name:<22}{s['first_record_s']:>16.2f}{s['join_s']:>10.2f}{s['pause_s']:>10.2f}")
    print(json.dumps({"rounds": args.rounds, "median": summary, "all": results}))


if __name__ == "__main__":
    main()
