"""Reading a partition's records back with a real client, for tests that assert exact offsets
and bytes."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition


def read_range(
    bootstrap: str,
    topic: str,
    start: int,
    end: int,
    partition: int = 0,
    timeout: float = 30.0,
    **extra: Any,
) -> list[tuple[int, bytes]]:
    """Records [start, end) of one partition as (offset, value), read by a fresh
    confluent-kafka consumer; what it got by ``timeout`` if fewer."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-range-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            **extra,
        }
    )
    try:
        c.assign([TopicPartition(topic, partition, start)])
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (not out or out[-1][0] < end - 1):
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                out.append((msg.offset(), msg.value()))
        return out
    finally:
        c.close()
