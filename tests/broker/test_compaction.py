"""Log compaction end to end: a compacted topic written by confluent-kafka is read back from the
beginning with exactly the latest value of each key, at the offsets they were written at.

Segments roll by time (segment.ms) since segment.bytes cannot go below 1 MiB; the cleaner runs
every log.cleaner.backoff.ms in the broker."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from tests.broker_process import free_port
from tests.metrics import scrape

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


def _write_rounds(bootstrap: str, topic: str, pad: int = 0) -> list[tuple[int, bytes, bytes]]:
    """ROUNDS of KEYS keys in segments of their own (values padded to ``pad`` bytes), then
    one record that rolls the last; returns what was written."""

    def value(r: int, i: int) -> bytes:
        return f"r{r}-{i}".encode().ljust(pad, b".")

    admin = AdminClient({"bootstrap.servers": bootstrap})
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
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for r in range(ROUNDS):
        for i in range(KEYS):
            producer.produce(topic, key=f"k{i}".encode(), value=value(r, i))
        assert producer.flush(T) == 0
        time.sleep(0.3)  # older than segment.ms: the next append rolls a new segment
    # The last round must leave the active segment to be cleanable: one more record rolls it.
    producer.produce(topic, key=b"end", value=b"marker")
    assert producer.flush(T) == 0
    return [
        (r * KEYS + i, f"k{i}".encode(), value(r, i)) for r in range(ROUNDS) for i in range(KEYS)
    ] + [(ROUNDS * KEYS, b"end", b"marker")]


def _read_until(bootstrap: str, topic: str, expected: list[Any], seconds: float) -> list[Any]:
    deadline = time.monotonic() + seconds
    got: list[Any] = []
    while time.monotonic() < deadline:
        got = _read_all(bootstrap, topic)
        if got == expected:
            break
        time.sleep(0.5)
    return got


def test_compacted_topic_reads_back_latest_value_per_key(broker_factory: Any) -> None:
    broker = broker_factory({"log.cleaner.backoff.ms": "100"})
    topic = "compacted"
    written = _write_rounds(broker.bootstrap, topic)
    # The cleaner may already be at work here, so the full log is not read back first: what is
    # read must be a subsequence of what was written, ending in the latest value of each key.
    first = _read_all(broker.bootstrap, topic)
    assert all(record in written for record in first)
    expected = written[(ROUNDS - 1) * KEYS :]
    assert _read_until(broker.bootstrap, topic, expected, 30.0) == expected


def _set_cleaner_rate(bootstrap: str, rate: str) -> int:
    entry = ConfigEntry(
        "log.cleaner.io.max.bytes.per.second", rate, incremental_operation=AlterConfigOpType.SET
    )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.incremental_alter_configs(
        [ConfigResource(ResourceType.BROKER, "1", incremental_configs=[entry])],
        request_timeout=T,
    )
    (f,) = futures.values()
    exc = f.exception(T)
    return 0 if exc is None else int(exc.args[0].code())


def test_the_cleaner_keeps_to_its_io_throttle(broker_factory: Any) -> None:
    """log.cleaner.io.max.bytes.per.second holds the cleaner back (it naps, which the metrics
    count as they go), and a dynamic change ends a nap at once: at 1000 B/s the cleaning
    would read and write about 300 KB, five minutes."""
    metrics = free_port()
    broker = broker_factory(
        {
            "log.cleaner.backoff.ms": "100",
            "log.cleaner.io.max.bytes.per.second": "1000",
            "artesian.metrics.port": str(metrics),
        }
    )
    napped = "artesian_log_cleaner_throttled_seconds_total"
    topic = "throttled"
    written = _write_rounds(broker.bootstrap, topic, pad=4096)
    expected = written[(ROUNDS - 1) * KEYS :]
    deadline = time.monotonic() + 30.0
    while scrape(metrics, napped) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert scrape(metrics, napped) > 0  # a nap of 40 s or more, counted as it goes
    # Not a positive rate: refused (Kafka takes it and its cleaner never wakes again).
    assert _set_cleaner_rate(broker.bootstrap, "0") == 40  # INVALID_CONFIG
    assert _set_cleaner_rate(broker.bootstrap, "1e12") == 0
    at_raise = scrape(metrics, napped)
    assert _read_until(broker.bootstrap, topic, expected, 20.0) == expected
    # The nap ended at the new rate (within the metadata poll and a slice), not 40 s later.
    assert scrape(metrics, napped) < at_raise + 5
    assert scrape(metrics, "kafka_utils_throttler_cleaner_io_bytes_total") > 0
