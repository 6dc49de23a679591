"""Log compaction end to end: a compacted topic written by confluent-kafka is read back from the
beginning with exactly the latest value of each key, at the offsets they were written at.

Segments roll by time (segment.ms) since segment.bytes cannot go below 1 MiB; the cleaner runs
every log.cleaner.backoff.ms in the broker."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

T = 20.0  # seconds: generous timeouts, this machine is shared
KEYS = 10
ROUNDS = 3


def _read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "compaction-check",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=T)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if out and out[-1][0] >= high - 1:
                    break
                continue
            out.append((msg.offset(), msg.key(), msg.value()))
            if msg.offset() >= high - 1:
                break
        return out
    finally:
        consumer.close()


def test_compacted_topic_reads_back_latest_value_per_key(broker_factory: Any) -> None:
    broker = broker_factory({"log.cleaner.backoff.ms": "100"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "compacted"
    futures = admin.create_topics(
        [
            NewTopic(
                topic,
                1,
                1,
                config={
                    "cleanup.policy": "compact",
                    "segment.ms": "100",
                    "min.cleanable.dirty.ratio": "0.01",
                    "delete.retention.ms": "86400000",
                },
            )
        ],
        request_timeout=T,
    )
    assert futures[topic].result(T) is None
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for r in range(ROUNDS):
        for i in range(KEYS):
            producer.produce(topic, key=f"k{i}".encode(), value=f"r{r}-{i}".encode())
        assert producer.flush(T) == 0
        time.sleep(0.3)  # older than segment.ms: the next append rolls a new segment
    # The last round must leave the active segment to be cleanable: one more record rolls it.
    producer.produce(topic, key=b"end", value=b"marker")
    assert producer.flush(T) == 0

    written = [
        (r * KEYS + i, f"k{i}".encode(), f"r{r}-{i}".encode())
        for r in range(ROUNDS)
        for i in range(KEYS)
    ] + [(ROUNDS * KEYS, b"end", b"marker")]
    # The cleaner may already be at work here, so the full log is not read back first: what is
    # read must be a subsequence of what was written, ending in the latest value of each key.
    first = _read_all(broker.bootstrap, topic)
    assert all(record in written for record in first)
    expected = written[(ROUNDS - 1) * KEYS :]

    deadline = time.monotonic() + 30.0
    got = None
    while time.monotonic() < deadline:
        got = _read_all(broker.bootstrap, topic)
        if got == expected:
            break
        time.sleep(0.5)
    assert got == expected
