"""ListOffsets (earliest, latest, by timestamp, max timestamp) as clients see it, and the
things that move the log start offset: DeleteRecords and time/size retention.

Each record below is sent in its own batch (flush after each) where exact offsets by timestamp
matter: Artesian answers timestamp lookups at batch granularity (see Log.fetch_offset_by_timestamp).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

T = 20.0
BASE_TS = 1_700_000_000_000  # explicit CreateTime timestamps, well in the past

RETENTION_SETTINGS = {
    "log.retention.check.interval.ms": "200",
    "log.segment.delete.delay.ms": "0",
}


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    """One broker for the module: every test here uses topic names of its own."""
    return module_broker_factory()


def create(
    broker: Any, name: str, partitions: int = 1, config: dict[str, str] | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (f,) = admin.create_topics(
        [NewTopic(name, partitions, 1, config=config or {})], request_timeout=T
    ).values()
    f.result(T)


def produce_each(
    broker: Any, topic: str, values: list[bytes], timestamps: list[int] | None = None
) -> list[int]:
    """One batch per record (flush after each); returns the acknowledged offsets."""
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.type": "none",
            "linger.ms": 0,
            "message.max.bytes": 2_000_000,
        }
    )
    offsets: list[int] = []
    for i, v in enumerate(values):
        ts = timestamps[i] if timestamps else 0
        p.produce(
            topic,
            v,
            partition=0,
            timestamp=ts,
            on_delivery=lambda e, m: offsets.append(-1 if e else m.offset()),
        )
        assert p.flush(T) == 0
    assert offsets == list(range(offsets[0], offsets[0] + len(values)))
    return offsets


def consumer(broker: Any, **extra: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            **extra,
        }
    )


def watermarks(broker: Any, topic: str, partition: int = 0) -> tuple[int, int]:
    c = consumer(broker)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=T)  # type: ignore[no-any-return]
    finally:
        c.close()


def segment_bases(broker: Any, topic: str, partition: int = 0) -> list[int]:
    d = Path(broker.data_dir) / "logs" / f"{topic}-{partition}"
    return sorted(int(f.name.split(".")[0]) for f in d.glob("*.log"))


def segment_sizes(broker: Any, topic: str, partition: int = 0) -> dict[int, int]:
    d = Path(broker.data_dir) / "logs" / f"{topic}-{partition}"
    return {int(f.name.split(".")[0]): f.stat().st_size for f in d.glob("*.log")}


def wait_for_low(broker: Any, topic: str, expected: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    low = -1
    while time.monotonic() < deadline:
        low, _ = watermarks(broker, topic)
        if low == expected:
            return low
        time.sleep(0.2)
    return low


# --- ListOffsets --------------------------------------------------------------------------------


def test_watermarks_and_offsets_for_times(broker: Any) -> None:
    create(broker, "ts")
    assert watermarks(broker, "ts") == (0, 0)
    stamps = [BASE_TS + 1000 * i for i in range(10)]
    produce_each(broker, "ts", [b"v%d" % i for i in range(10)], stamps)
    assert watermarks(broker, "ts") == (0, 10)

    c = consumer(broker)
    try:
        queries = [
            (BASE_TS - 5, 0),  # before everything: the first record
            (BASE_TS, 0),  # exactly the first
            (BASE_TS + 1, 1),  # just after: the next record
            (BASE_TS + 4000, 4),
            (BASE_TS + 4999, 5),
            (BASE_TS + 9000, 9),
            (BASE_TS + 9001, -1),  # after the last: OFFSET_END (-1)
        ]
        # One partition per request: a request may not name a partition twice.
        for ts, offset in queries:
            (tp,) = c.offsets_for_times([TopicPartition("ts", 0, ts)], timeout=T)
            assert (tp.offset, tp.error) == (offset, None), ts
    finally:
        c.close()


def test_max_timestamp_and_admin_list_offsets(broker: Any) -> None:
    create(broker, "maxts")
    # The largest timestamp is not the last record's.
    stamps = [BASE_TS + 10, BASE_TS + 50, BASE_TS + 90_000, BASE_TS + 20, BASE_TS + 30]
    produce_each(broker, "maxts", [b"a", b"b", b"c", b"d", b"e"], stamps)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition("maxts", 0)

    def lookup(spec: OffsetSpec) -> tuple[int, int]:
        (f,) = admin.list_offsets({tp: spec}, request_timeout=T).values()
        r = f.result(T)
        return r.offset, r.timestamp

    assert lookup(OffsetSpec.max_timestamp()) == (2, BASE_TS + 90_000)
    assert lookup(OffsetSpec.earliest())[0] == 0
    assert lookup(OffsetSpec.latest())[0] == 5
    assert lookup(OffsetSpec.for_timestamp(BASE_TS + 40)) == (1, BASE_TS + 50)
    assert lookup(OffsetSpec.for_timestamp(BASE_TS + 60)) == (2, BASE_TS + 90_000)


def test_kafka_python_offsets(broker: Any) -> None:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    create(broker, "kpo")
    stamps = [BASE_TS + 100 * i for i in range(6)]
    produce_each(broker, "kpo", [b"x%d" % i for i in range(6)], stamps)
    tp = KTP("kpo", 0)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 6}
        found = c.offsets_for_times({tp: BASE_TS + 250})[tp]
        assert (found.offset, found.timestamp) == (3, BASE_TS + 300)
        found = c.offsets_for_times({tp: BASE_TS})[tp]
        assert (found.offset, found.timestamp) == (0, BASE_TS)
        assert c.offsets_for_times({tp: BASE_TS + 501})[tp] is None
    finally:
        c.close()


# --- DeleteRecords ------------------------------------------------------------------------------


def test_delete_records_moves_earliest(broker: Any) -> None:
    create(broker, "dr")
    produce_each(broker, "dr", [b"r%d" % i for i in range(10)])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (f,) = admin.delete_records([TopicPartition("dr", 0, 4)], request_timeout=T).values()
    assert f.result(T).low_watermark == 4
    assert watermarks(broker, "dr") == (4, 10)
    # Lower than the current start: nothing moves back.
    (f,) = admin.delete_records([TopicPartition("dr", 0, 2)], request_timeout=T).values()
    assert f.result(T).low_watermark == 4
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    (f,) = admin.delete_records([TopicPartition("dr", 0, 11)], request_timeout=T).values()
    assert f.exception(T).args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert watermarks(broker, "dr") == (4, 10)

    # Fetching below the start with auto.offset.reset=earliest lands on the new start.
    c = consumer(broker, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition("dr", 0, 1)])
        msgs: list[Any] = []
        deadline = time.monotonic() + T
        while len(msgs) < 6 and time.monotonic() < deadline:
            msgs += [m for m in c.consume(10, 0.5) if m.error() is None]
        assert [(m.offset(), m.value()) for m in msgs] == [(i, b"r%d" % i) for i in range(4, 10)]
    finally:
        c.close()

    # ... and with auto.offset.reset=error the client reports the out-of-range fetch.
    c = consumer(broker, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition("dr", 0, 1)])
        err = None
        deadline = time.monotonic() + T
        while err is None and time.monotonic() < deadline:
            for m in c.consume(10, 0.5):
                assert m.error() is not None, (m.offset(), m.value())
                err = m.error()
        assert err is not None
        assert err.code() == KafkaError._AUTO_OFFSET_RESET
        assert "Offset out of range" in err.str()
    finally:
        c.close()

    # -1: delete everything up to the high watermark.
    (f,) = admin.delete_records([TopicPartition("dr", 0, -1)], request_timeout=T).values()
    assert f.result(T).low_watermark == 10
    assert watermarks(broker, "dr") == (10, 10)
    assert produce_each(broker, "dr", [b"next"]) == [10]


def test_delete_records_kafka_python_out_of_range(broker: Any) -> None:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.errors import OffsetOutOfRangeError

    create(broker, "drkp")
    produce_each(broker, "drkp", [b"r%d" % i for i in range(5)])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (f,) = admin.delete_records([TopicPartition("drkp", 0, 3)], request_timeout=T).values()
    assert f.result(T).low_watermark == 3
    tp = KTP("drkp", 0)
    c = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
    )
    try:
        c.assign([tp])
        c.seek(tp, 1)
        with pytest.raises(OffsetOutOfRangeError):
            deadline = time.monotonic() + T
            while time.monotonic() < deadline:
                c.poll(timeout_ms=500)
        assert c.beginning_offsets([tp]) == {tp: 3}
    finally:
        c.close()


def test_delete_records_survives_restart(broker_factory: Any) -> None:
    broker = broker_factory()  # its own: it restarts it
    create(broker, "drr")
    produce_each(broker, "drr", [b"r%d" % i for i in range(6)])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (f,) = admin.delete_records([TopicPartition("drr", 0, 5)], request_timeout=T).values()
    assert f.result(T).low_watermark == 5
    broker.restart()
    assert watermarks(broker, "drr") == (5, 6)


# --- retention ----------------------------------------------------------------------------------

# 1 MiB is the floor for segment.bytes (Kafka 4); 100 KiB records give ten per segment.
SEGMENT = 1024 * 1024
RECORD = 100 * 1024


def _fill(broker: Any, topic: str, n: int, timestamps: list[int] | None = None) -> list[int]:
    return produce_each(broker, topic, [os.urandom(RECORD) for _ in range(n)], timestamps)


def test_retention_bytes_deletes_oldest_segments(module_broker_factory: Any) -> None:
    broker = module_broker_factory(RETENTION_SETTINGS)
    create(broker, "rb", config={"segment.bytes": str(SEGMENT)})
    _fill(broker, "rb", 35)
    bases = segment_bases(broker, "rb")
    assert len(bases) == 4 and bases[0] == 0
    sizes = segment_sizes(broker, "rb")
    assert watermarks(broker, "rb") == (0, 35)

    # Kafka deletes the oldest segments while (size - segment size) >= retention.bytes: with
    # the limit at the last two segments' size, exactly the first two go.
    limit = sizes[bases[2]] + sizes[bases[3]]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(
        ResourceType.TOPIC,
        "rb",
        incremental_configs=[
            ConfigEntry("retention.bytes", str(limit), incremental_operation=AlterConfigOpType.SET)
        ],
    )
    (f,) = admin.incremental_alter_configs([res], request_timeout=T).values()
    f.result(T)
    # The earliest offset moves to a segment boundary, not to an arbitrary record.
    assert wait_for_low(broker, "rb", bases[2]) == bases[2]
    assert segment_bases(broker, "rb") == bases[2:]
    assert watermarks(broker, "rb") == (bases[2], 35)
    c = consumer(broker, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition("rb", 0, 0)])
        first = None
        deadline = time.monotonic() + T
        while first is None and time.monotonic() < deadline:
            first = c.poll(0.5)
        assert first is not None and first.error() is None
        assert first.offset() == bases[2]
    finally:
        c.close()


def test_retention_ms_deletes_old_segments(module_broker_factory: Any) -> None:
    broker = module_broker_factory(RETENTION_SETTINGS)
    # retention.ms is set only once the segments are written: the retention task runs every
    # 200 ms and would otherwise delete them while we write.
    create(broker, "rt", config={"segment.bytes": str(SEGMENT)})
    now = int(time.time() * 1000)
    old = now - 2 * 3600_000  # two hours ago: older than retention.ms
    # 25 old records (segments [0..9], [10..19] fully old; [20..29] mixes old and new).
    stamps = [old + i for i in range(25)] + [now + i for i in range(10)]
    _fill(broker, "rt", 35, stamps)
    bases = segment_bases(broker, "rt")
    assert bases == [0, 10, 20, 30], bases
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(
        ResourceType.TOPIC,
        "rt",
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    (f,) = admin.incremental_alter_configs([res], request_timeout=T).values()
    f.result(T)
    # Segments whose newest record is older than retention.ms go, oldest first; the first
    # segment holding a recent record stops the deletion.
    assert wait_for_low(broker, "rt", 20) == 20
    assert segment_bases(broker, "rt") == [20, 30]
    assert watermarks(broker, "rt") == (20, 35)
    # Appends continue at the log end offset.
    assert _fill(broker, "rt", 1) == [35]


def test_retention_ms_can_empty_the_log(module_broker_factory: Any) -> None:
    broker = module_broker_factory(RETENTION_SETTINGS)
    create(broker, "rall", config={"segment.bytes": str(SEGMENT), "retention.ms": "1000"})
    old = int(time.time() * 1000) - 60_000
    _fill(broker, "rall", 12, [old + i for i in range(12)])
    # Every segment, the active one too, is past retention: the log keeps an empty segment
    # that starts at the log end offset.
    assert wait_for_low(broker, "rall", 12) == 12
    assert watermarks(broker, "rall") == (12, 12)
    assert segment_bases(broker, "rall") == [12]
    assert _fill(broker, "rall", 1, [int(time.time() * 1000)]) == [12]
