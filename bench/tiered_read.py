#!/usr/bin/env python3
"""Tiered storage: how fast do consumers read history from the object store?

    python bench/tiered_read.py [--rounds 2] [--messages 500000] [--size 1024]

One broker with tiered storage on (the embedded local-directory store). Two topics get the same
MESSAGES x SIZE records (acks=all, 1 partition, 16 MiB segments): ``local`` keeps them on disk;
``tiered`` copies its rolled segments to the store and keeps only the active one locally
(local.retention.bytes=1). Then a fresh confluent-kafka consumer reads each topic from offset 0,
alternating, ROUNDS times: MB/s and broker CPU seconds per read, and the ratio tiered / local.

The consumers set fetch.queue.backoff.ms=20: with librdkafka's 1 s default the figure would
measure how often its queue fills (see fetch_backoff.py), not the broker. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from scale import Broker

SEGMENT_BYTES = 16 << 20


def create_and_fill(broker: Broker, topic: str, tiered: bool, messages: int, size: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    config = {"segment.bytes": str(SEGMENT_BYTES)}
    if tiered:
        config |= {"remote.storage.enable": "true", "local.retention.bytes": "1"}
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    value = b"x" * size
    for _ in range(messages):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(120)


def wait_tiered(broker: Broker, topic: str, timeout: float = 300) -> int:
    """Until local retention left only the active segment; returns the segments in the store."""
    local = Path(broker.dir) / "logs" / f"{topic}-0"
    deadline = time.monotonic() + timeout
    while len(list(local.glob("*.log"))) > 1:
        if time.monotonic() > deadline:
            raise TimeoutError("segments were not tiered")
        time.sleep(0.2)
    return len(list((Path(broker.dir) / "remote-storage").rglob("*.metadata.json")))


def consume(broker: Broker, topic: str, messages: int) -> tuple[float, float]:
    """(MB/s, broker CPU seconds) of reading every record from offset 0."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"bench-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 20,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    cpu0 = broker.cpu_seconds()
    start = time.perf_counter()
    n = nbytes = 0
    while n < messages:
        for msg in c.consume(10000, 1.0):
            if not msg.error():
                n += 1
                nbytes += len(msg.value())
    elapsed = time.perf_counter() - start
    cpu = broker.cpu_seconds() - cpu0
    c.close()
    return nbytes / elapsed / 1e6, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    broker = Broker(
        {
            "remote.log.storage.system.enable": "true",
            "remote.log.manager.task.interval.ms": "500",
            "log.retention.check.interval.ms": "500",
        }
    )
    try:
        create_and_fill(broker, "local", False, args.messages, args.size)
        create_and_fill(broker, "tiered", True, args.messages, args.size)
        segments = wait_tiered(broker, "tiered")
        runs: dict[str, list[tuple[float, float]]] = {"local": [], "tiered": []}
        for _ in range(args.rounds):
            for topic in ("local", "tiered"):
                runs[topic].append(consume(broker, topic, args.messages))
    finally:
        broker.stop()
    med = {t: statistics.median(mb for mb, _ in r) for t, r in runs.items()}
    cpu = {t: statistics.median(c for _, c in r) for t, r in runs.items()}
    print(
        json.dumps(
            {
                "messages": args.messages,
                "size": args.size,
                "remote_segments": segments,
                "consume_MB_per_s": {t: round(v, 1) for t, v in med.items()},
                "broker_cpu_s": {t: round(v, 2) for t, v in cpu.items()},
                "ratio_tiered_to_local": round(med["tiered"] / med["local"], 2),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
