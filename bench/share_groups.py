#!/usr/bin/env python3
"""Share groups (KIP-932): how fast librdkafka's ShareConsumer drains a backlog, against a
classic consumer group reading the same records.

    python bench/share_groups.py [--records 200000] [--consumers 1,2] [--rounds 2]

One broker (share groups on), a topic of 4 partitions holding RECORDS records of 100 B. For
each number of consumers, ROUNDS times with a fresh group starting at the earliest offset:

- ``share``: ShareConsumers (implicit acknowledgement: each poll's records are accepted at
  the next poll);
- ``classic``: classic consumers in one group (librdkafka's defaults).

``first_record_s`` is the time from subscribe() to the first record (a classic group waits
for group.initial.rebalance.delay.ms; a share group's members take records at once);
``records_per_s`` is RECORDS over the time from the first record to the last;
``duplicates`` counts records handed out more than once (0 expected: no consumer fails).
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

from confluent_kafka import Consumer, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic
from scale import Broker

TOPIC = "share-bench"
PARTITIONS = 4


def produce(bootstrap: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        producer.produce(TOPIC, str(i).encode().ljust(100, b"."), partition=i % PARTITIONS)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)


def set_earliest(bootstrap: str, group: str) -> None:
    """share.auto.offset.reset=earliest on the group, with the CLI's request."""
    from artesian.cli.wire import WireClient, alter_configs
    from artesian.metadata.image import GROUP_RESOURCE

    with WireClient(bootstrap, 15.0) as client:
        alter_configs(
            client, GROUP_RESOURCE, group, {"share.auto.offset.reset": "earliest"}, [], ""
        )


def drain(make: Any, consumers: int, total: int) -> tuple[float, float, int]:
    """(seconds to the first record, from it to the last of ``total`` distinct records,
    records read more than once)."""
    seen: set[bytes] = set()
    duplicates = 0
    first: list[float] = []
    lock = threading.Lock()
    done = threading.Event()
    started = time.monotonic()

    def run() -> None:
        nonlocal duplicates
        consumer = make()
        try:
            while not done.is_set():
                for m in (
                    consumer.poll(0.5)
                    if isinstance(consumer, ShareConsumer)
                    else [consumer.poll(0.5)]
                ):
                    if m is None or m.error():
                        continue
                    with lock:
                        if not first:
                            first.append(time.monotonic())
                        if m.value() in seen:
                            duplicates += 1
                        seen.add(m.value())
                        if len(seen) >= total:
                            done.set()
        finally:
            if isinstance(consumer, ShareConsumer):
                consumer.commit_sync()
            consumer.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(consumers)]
    for t in threads:
        t.start()
    done.wait(600)
    ended = time.monotonic()
    for t in threads:
        t.join(30)
    begun = first[0] if first else ended
    return begun - started, ended - begun, duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--consumers", default="1,2")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    counts = [int(c) for c in args.consumers.split(",")]
    broker = Broker({"group.share.enable": "true"})
    results: dict[str, list[dict[str, float]]] = {}
    try:
        bootstrap = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(30)
        produce(bootstrap, args.records)
        for r in range(args.rounds):
            for n in counts:
                group = f"share-{n}-{r}"
                set_earliest(bootstrap, group)

                def share(group: str = group) -> Any:
                    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group})
                    c.subscribe([TOPIC])
                    return c

                def classic(group: str = f"classic-{n}-{r}") -> Any:
                    c = Consumer(
                        {
                            "bootstrap.servers": bootstrap,
                            "group.id": group,
                            "auto.offset.reset": "earliest",
                        }
                    )
                    c.subscribe([TOPIC])
                    return c

                for kind, make in (("share", share), ("classic", classic)):
                    to_first, reading, duplicates = drain(make, n, args.records)
                    results.setdefault(f"{kind}-{n}", []).append(
                        {
                            "first_record_s": round(to_first, 3),
                            "records_per_s": round(args.records / max(reading, 1e-6)),
                            "duplicates": duplicates,
                        }
                    )
    finally:
        broker.stop()
    summary = {
        name: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for name, rounds in results.items()
    }
    print(f"{'group':<14}{'first record s':>16}{'records/s':>12}{'duplicates':>12}")
    for name, s in summary.items():
        print(
            f"{name:<14}{s['first_record_s']:>16.2f}{s['records_per_s']:>12.0f}"
            f"{s['duplicates']:>12.0f}"
        )
    print(json.dumps({"records": args.records, "median": summary, "all": results}))


if __name__ == "__main__":
    main()
