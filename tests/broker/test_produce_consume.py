"""Produce and consume round trips through real clients: exact bytes, keys, headers and
timestamps, every codec, every acks level, and every producer/consumer pairing of
confluent-kafka, kafka-python and aiokafka.

Consumers use assign(): consumer groups do not exist yet. kafka-python's producer is not
idempotent here (no InitProducerId yet).
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from tests.broker_process import BrokerProcess

T = 20.0  # seconds: generous timeouts, this machine is shared
PARTITIONS = 3
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
CLIENTS = ["confluent", "kafka-python", "aiokafka"]


@dataclass(frozen=True, slots=True)
class Rec:
    """One record as a consumer sees it, in a client-neutral form."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    log_append_time: bool
    timestamp: int


# One broker for the module: every test uses its own topics.
@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("pc") / "broker").start()
    yield proc
    code = proc.stop()
    assert code == 0, proc.log_tail()


@pytest.fixture
def sb(shared_broker: BrokerProcess, request: pytest.FixtureRequest) -> BrokerProcess:
    request.node._brokers = [shared_broker]  # log tail on failure (see conftest)
    assert shared_broker.alive(), shared_broker.log_tail()
    return shared_broker


def new_topic(
    broker: BrokerProcess, partitions: int = PARTITIONS, config: dict[str, str] | None = None
) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (f,) = admin.create_topics(
        [NewTopic(name, partitions, 1, config=config or {})], request_timeout=T
    ).values()
    f.result(T)
    return name


def sample(n: int, partitions: int = PARTITIONS, base_ts: int | None = None) -> list[Rec]:
    """Varied records with explicit partitions and CreateTime timestamps; offsets are the ones
    the broker must assign when they are sent in this order."""
    base_ts = base_ts if base_ts is not None else int(time.time() * 1000) - 60_000
    next_offset = [0] * partitions
    out = []
    for i in range(n):
        p = i % partitions
        key = None if i % 4 == 0 else b"key-%d" % i
        value: bytes | None
        if i % 7 == 3:
            value = b""
        elif i % 11 == 5:
            value = None  # a tombstone-style null value
            key = b"tomb-%d" % i  # kafka-python refuses a record with neither
        elif i % 5 == 1:
            value = bytes(range(256)) * 3  # every byte value
        else:
            value = b"value-%d-" % i + b"x" * (i * 13 % 300)
        headers: tuple[tuple[str, bytes], ...] = ()
        if i % 3 == 1:
            headers = (("dup", b"first"), ("dup", b"second"), ("empty", b""), ("bin", b"\x00\xff"))
        elif i % 3 == 2:
            headers = (("h", b"%d" % i),)
        out.append(Rec(p, next_offset[p], key, value, headers, False, base_ts + i * 17))
        next_offset[p] += 1
    return out


def by_partition(recs: list[Rec]) -> list[Rec]:
    return sorted(recs, key=lambda r: (r.partition, r.offset))


# --- producers: send records in order, one call per record, explicit partition and timestamp --


def produce_confluent(
    broker: BrokerProcess, topic: str, recs: list[Rec], codec: str = "none", acks: int = -1
) -> list[tuple[int, int]]:
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.type": codec,
            "acks": acks,
            "linger.ms": 5,
            "message.max.bytes": 4_000_000,
        }
    )
    reports: list[tuple[int, int]] = []
    errors: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            reports.append((msg.partition(), msg.offset()))

    for r in recs:
        p.produce(
            topic,
            value=r.value,
            key=r.key,
            partition=r.partition,
            headers=list(r.headers) or None,
            timestamp=r.timestamp,
            on_delivery=on_delivery,
        )
    assert p.flush(T) == 0
    assert errors == []
    return reports


def produce_kafka_python(
    broker: BrokerProcess, topic: str, recs: list[Rec], codec: str = "none", acks: int = -1
) -> list[tuple[int, int]]:
    from kafka import KafkaProducer

    p = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        enable_idempotence=False,
        compression_type=None if codec == "none" else codec,
        acks="all" if acks == -1 else acks,
        linger_ms=5,
        max_request_size=4_000_000,
    )
    try:
        futures = [
            p.send(
                topic,
                value=r.value,
                key=r.key,
                partition=r.partition,
                headers=list(r.headers),
                timestamp_ms=r.timestamp,
            )
            for r in recs
        ]
        p.flush(T)
        metas = [f.get(T) for f in futures]
    finally:
        p.close(T)
    return [(m.partition, m.offset) for m in metas]


def produce_aiokafka(
    broker: BrokerProcess, topic: str, recs: list[Rec], codec: str = "none", acks: int = -1
) -> list[tuple[int, int]]:
    from aiokafka import AIOKafkaProducer

    async def run() -> list[tuple[int, int]]:
        p = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            compression_type=None if codec == "none" else codec,
            acks="all" if acks == -1 else acks,
            linger_ms=5,
            max_request_size=4_000_000,
            request_timeout_ms=int(T * 1000),
        )
        await p.start()
        try:
            futures = [
                await p.send(
                    topic,
                    value=r.value,
                    key=r.key,
                    partition=r.partition,
                    headers=list(r.headers),
                    timestamp_ms=r.timestamp,
                )
                for r in recs
            ]
            metas = await asyncio.wait_for(asyncio.gather(*futures), T)
        finally:
            await p.stop()
        # acks=0: aiokafka resolves each send with None.
        return [(m.partition, m.offset) if m is not None else (-1, -1) for m in metas]

    return asyncio.run(run())


PRODUCERS: dict[str, Callable[..., list[tuple[int, int]]]] = {
    "confluent": produce_confluent,
    "kafka-python": produce_kafka_python,
    "aiokafka": produce_aiokafka,
}


# --- consumers: assign() every partition from offset 0 and read until `count` records ---------


def consume_confluent(
    broker: BrokerProcess, topic: str, count: int, partitions: int = PARTITIONS, **extra: Any
) -> list[Rec]:
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",  # required by the client; never joined
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **extra,
        }
    )
    out: list[Rec] = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + T
        while len(out) < count and time.monotonic() < deadline:
            for m in c.consume(num_messages=count - len(out), timeout=0.5):
                assert m.error() is None, m.error()
                ts_type, ts = m.timestamp()
                assert ts_type in (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME)
                out.append(
                    Rec(
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        tuple(m.headers() or ()),
                        ts_type == TIMESTAMP_LOG_APPEND_TIME,
                        ts,
                    )
                )
    finally:
        c.close()
    return out


def consume_kafka_python(
    broker: BrokerProcess, topic: str, count: int, partitions: int = PARTITIONS, **extra: Any
) -> list[Rec]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **extra,
    )
    out: list[Rec] = []
    try:
        tps = [KTP(topic, p) for p in range(partitions)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        deadline = time.monotonic() + T
        while len(out) < count and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=500).values():
                out.extend(_rec(m) for m in batch)
    finally:
        c.close()
    return out


def _rec(m: Any) -> Rec:
    """A kafka-python or aiokafka ConsumerRecord (the two share these fields)."""
    return Rec(
        m.partition,
        m.offset,
        m.key,
        m.value,
        tuple(m.headers or ()),
        m.timestamp_type == 1,
        m.timestamp,
    )


def consume_aiokafka(
    broker: BrokerProcess, topic: str, count: int, partitions: int = PARTITIONS, **extra: Any
) -> list[Rec]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    async def run() -> list[Rec]:
        c = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **extra,
        )
        await c.start()
        out: list[Rec] = []
        try:
            tps = [ATP(topic, p) for p in range(partitions)]
            c.assign(tps)
            for tp in tps:
                c.seek(tp, 0)
            deadline = time.monotonic() + T
            while len(out) < count and time.monotonic() < deadline:
                got = await c.getmany(timeout_ms=500)
                for batch in got.values():
                    out.extend(_rec(m) for m in batch)
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


CONSUMERS: dict[str, Callable[..., list[Rec]]] = {
    "confluent": consume_confluent,
    "kafka-python": consume_kafka_python,
    "aiokafka": consume_aiokafka,
}


def kafka_python_supports(codec: str) -> bool:
    from kafka import codec as kc

    return (
        codec == "none"
        or {
            "gzip": kc.has_gzip,
            "snappy": kc.has_snappy,
            "lz4": kc.has_lz4,
            "zstd": kc.has_zstd,
        }[codec]()
    )


def need_codec(client: str, codec: str) -> None:
    if client == "kafka-python" and not kafka_python_supports(codec):
        pytest.skip(f"kafka-python has no {codec} library installed in this environment")


def stored_codecs(broker: BrokerProcess, topic: str, partition: int) -> set[int]:
    """The compression codec ids of the batches on disk (attributes & 7), read from the
    segment files: what the broker stored, not what a client decoded."""
    found: set[int] = set()
    for seg in sorted((broker.data_dir / "logs" / f"{topic}-{partition}").glob("*.log")):
        data = Path(seg).read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            (length,) = struct.unpack_from(">i", data, pos + 8)
            if length == 0:
                break  # preallocated tail
            (attributes,) = struct.unpack_from(">h", data, pos + 21)
            found.add(attributes & 7)
            pos += 12 + length
    return found


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("client", CLIENTS)
def test_round_trip_every_codec(sb: BrokerProcess, client: str, codec: str) -> None:
    need_codec(client, codec)
    topic = new_topic(sb)
    recs = sample(40)
    reports = PRODUCERS[client](sb, topic, recs, codec=codec, acks=-1)
    assert sorted(reports) == sorted((r.partition, r.offset) for r in recs)
    got = CONSUMERS[client](sb, topic, len(recs))
    assert by_partition(got) == by_partition(recs)
    # compression.type=producer (the default): batches are stored as the producer sent them.
    # librdkafka sends a batch uncompressed when compressing would grow it, which a small batch
    # (a linger.ms window that caught one short record) can do; the others always compress.
    allowed = {CODEC_ID[codec], 0} if client == "confluent" else {CODEC_ID[codec]}
    stored = [stored_codecs(sb, topic, p) for p in range(PARTITIONS)]
    assert all(codecs and codecs <= allowed for codecs in stored), stored
    assert CODEC_ID[codec] in set().union(*stored), stored


@pytest.mark.parametrize("consumer", CLIENTS)
@pytest.mark.parametrize("producer", CLIENTS)
def test_cross_client(sb: BrokerProcess, producer: str, consumer: str) -> None:
    topic = new_topic(sb)
    recs = sample(25)
    PRODUCERS[producer](sb, topic, recs, codec="gzip", acks=1)
    got = CONSUMERS[consumer](sb, topic, len(recs))
    assert by_partition(got) == by_partition(recs)


@pytest.mark.parametrize("acks", [0, 1, -1])
@pytest.mark.parametrize("client", CLIENTS)
def test_acks(sb: BrokerProcess, client: str, acks: int) -> None:
    topic = new_topic(sb)
    recs = sample(30)
    reports = PRODUCERS[client](sb, topic, recs, acks=acks)
    assert len(reports) == len(recs)
    if acks != 0:  # acks=0: no response, so each client reports its own placeholder
        assert sorted(reports) == sorted((r.partition, r.offset) for r in recs)
    # Even without a response, every message is stored, in order.
    got = consume_confluent(sb, topic, len(recs))
    assert by_partition(got) == by_partition(recs)


def test_compression_type_topic_recompresses(sb: BrokerProcess) -> None:
    """compression.type=gzip on the topic: a zstd producer's batches are stored as gzip, and
    every client reads the same values."""
    topic = new_topic(sb, config={"compression.type": "gzip"})
    recs = sample(30)
    produce_confluent(sb, topic, recs, codec="zstd")
    for p in range(PARTITIONS):
        assert stored_codecs(sb, topic, p) == {CODEC_ID["gzip"]}
    for client in CLIENTS:
        assert by_partition(CONSUMERS[client](sb, topic, len(recs))) == by_partition(recs), client


def test_compression_type_uncompressed_topic(sb: BrokerProcess) -> None:
    topic = new_topic(sb, partitions=1, config={"compression.type": "uncompressed"})
    recs = sample(20, partitions=1)
    produce_aiokafka(sb, topic, recs, codec="lz4")
    assert stored_codecs(sb, topic, 0) == {0}
    assert consume_kafka_python(sb, topic, len(recs), partitions=1) == recs


def test_log_append_time(sb: BrokerProcess) -> None:
    topic = new_topic(sb, config={"message.timestamp.type": "LogAppendTime"})
    # The producer's timestamps (a minute ago) must be replaced by the broker's clock.
    recs = sample(12)
    before = int(time.time() * 1000)
    produce_confluent(sb, topic, recs, codec="lz4")
    after = int(time.time() * 1000)
    for client in ("confluent", "aiokafka"):  # kafka-python: see the next test (no lz4 here)
        got = by_partition(CONSUMERS[client](sb, topic, len(recs)))
        assert len(got) == len(recs), client
        for g, r in zip(got, by_partition(recs), strict=True):
            assert (g.partition, g.offset, g.key, g.value, g.headers) == (
                r.partition,
                r.offset,
                r.key,
                r.value,
                r.headers,
            )
            assert g.log_append_time, client
            # Some slack for clocks read in different processes.
            assert before - 1000 <= g.timestamp <= after + 1000, (client, g.timestamp)


def test_log_append_time_kafka_python(sb: BrokerProcess) -> None:
    topic = new_topic(sb, partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    recs = sample(10, partitions=1)
    before = int(time.time() * 1000)
    produce_kafka_python(sb, topic, recs)
    after = int(time.time() * 1000)
    got = consume_kafka_python(sb, topic, len(recs), partitions=1)
    assert [(g.offset, g.value) for g in got] == [(r.offset, r.value) for r in recs]
    for g in got:
        assert g.log_append_time
        assert before - 1000 <= g.timestamp <= after + 1000


def test_create_time_read_back_exactly(sb: BrokerProcess) -> None:
    """CreateTime is the producer's, to the millisecond, including ones far in the past."""
    topic = new_topic(sb, partitions=1)
    recs = [
        Rec(0, i, None, b"v%d" % i, (), False, ts)
        for i, ts in enumerate([1, 1_000_000_000_123, int(time.time() * 1000) - 3_600_000 + 7])
    ]
    produce_confluent(sb, topic, recs)
    for client in CLIENTS:
        assert CONSUMERS[client](sb, topic, len(recs), partitions=1) == recs, client


# --- sizes --------------------------------------------------------------------------------------


def test_large_message_near_max_message_bytes(sb: BrokerProcess) -> None:
    topic = new_topic(sb, partitions=1)  # max.message.bytes 1048588 (the default)
    # Batch overhead: 61 bytes of header, plus the record's own few bytes of framing.
    value = os.urandom(1048588 - 61 - 40)
    recs = [Rec(0, 0, b"k", value, (), False, int(time.time() * 1000) - 5)]
    assert produce_confluent(sb, topic, recs) == [(0, 0)]
    for client in CLIENTS:
        extra: dict[str, Any] = {}
        if client == "confluent":
            extra = {
                "fetch.max.bytes": 1024,
                "max.partition.fetch.bytes": 1024,
                "message.max.bytes": 1000,
            }
        elif client == "kafka-python":
            extra = {"max_partition_fetch_bytes": 1024, "fetch_max_bytes": 1024}
        else:
            extra = {"max_partition_fetch_bytes": 1024, "fetch_max_bytes": 1024}
        # Fetch limits below the batch size: the broker still returns the first batch whole.
        assert CONSUMERS[client](sb, topic, 1, partitions=1, **extra) == recs, client


def test_message_over_max_message_bytes_rejected(sb: BrokerProcess) -> None:
    topic = new_topic(sb, partitions=1, config={"max.message.bytes": "10000"})
    p = Producer({"bootstrap.servers": sb.bootstrap, "compression.type": "none"})
    results: list[Any] = []
    # Flush between them: in one batch, the big record would fail the whole batch, as in Kafka.
    p.produce(topic, os.urandom(20_000), partition=0, on_delivery=lambda e, m: results.append(e))
    p.flush(T)
    p.produce(topic, os.urandom(9_000), partition=0, on_delivery=lambda e, m: results.append(e))
    p.flush(T)
    assert [e.code() if e else None for e in results] == [KafkaError.MSG_SIZE_TOO_LARGE, None]
    got = consume_confluent(sb, topic, 1, partitions=1)
    assert [(g.offset, len(g.value or b"")) for g in got] == [(0, 9_000)]


# --- long poll ----------------------------------------------------------------------------------


def test_long_poll_wakes_on_produce(sb: BrokerProcess) -> None:
    """A fetch parked for up to 5 s is answered when a message arrives, not at the timeout.
    The bound is wide on purpose: it checks the wake-up, it is not a benchmark."""
    topic = new_topic(sb, partitions=1)
    c = Consumer(
        {
            "bootstrap.servers": sb.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5000,
            "fetch.min.bytes": 1,
        }
    )
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        # Let the consumer connect and park its first fetch.
        assert c.poll(1.0) is None
        producer = Producer({"bootstrap.servers": sb.bootstrap, "linger.ms": 0})

        def later() -> None:
            time.sleep(1.0)
            producer.produce(topic, b"wake up", partition=0)
            producer.flush(T)

        start = time.monotonic()
        thread = threading.Thread(target=later)
        thread.start()
        msg = None
        while msg is None and time.monotonic() - start < T:
            msg = c.poll(0.1)
        elapsed = time.monotonic() - start
        thread.join()
    finally:
        c.close()
    assert msg is not None and msg.error() is None
    assert (msg.offset(), msg.value()) == (0, b"wake up")
    assert elapsed < 3.0, f"parked fetch not woken by the append ({elapsed:.2f}s)"
