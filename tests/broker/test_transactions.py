"""Transactions against a real broker: confluent-kafka, kafka-python and aiokafka
transactional producers; read_committed and read_uncommitted consumers read exact offsets and
values; the last stable offset holds back behind an open transaction; fencing by a new producer
of the same transactional id and by the transaction timeout; consume-transform-produce with
offsets committed in the transaction; and transactions and their offsets across kill -9 of
the broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

T = 30.0  # seconds: generous, this machine is shared
FAST = {
    "transaction.state.log.num.partitions": "3",
    "offsets.topic.num.partitions": "3",
    "group.initial.rebalance.delay.ms": "100",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
}


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    """One broker for the module: every test here uses topic and transactional ids of its own.
    Tests that restart it, or need other settings, take broker_factory."""
    return module_broker_factory()


def _create(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(T)


def _txn_producer(bootstrap: str, tid: str, **extra: Any) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, **extra})
    p.init_transactions(T)
    return p


def _read(
    bootstrap: str, topic: str, isolation: str, expected: int, partition: int = 0
) -> list[tuple[int, bytes]]:
    """(offset, value) of the records a consumer with ``isolation`` gets, once it has
    ``expected`` of them (or T passed)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    tp = TopicPartition(topic, partition, 0)
    c.assign([tp])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + T
    try:
        # Expecting nothing: wait for the first Fetch answer (it sets the cached watermark),
        # so an empty result means the broker sent nothing, not that nobody asked yet.
        while expected == 0 and c.get_watermark_offsets(tp, cached=True)[1] < 0:
            assert time.monotonic() < deadline, "the consumer never fetched"
            c.poll(0.1)
        while len(out) < expected and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.append((m.offset(), m.value()))
        # Anything beyond ``expected`` would be a bug too: give it a moment to show up.
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                out.append((m.offset(), m.value()))
    finally:
        c.close()
    return out


def _end_offset(bootstrap: str, topic: str, isolation: str) -> int:
    """ListOffsets(latest) with the isolation level: the LSO for read_committed."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation)
    try:
        tp = KTP(topic, 0)
        return int(c.end_offsets([tp])[tp])
    finally:
        c.close()


def test_commit_is_read_abort_is_skipped_at_exact_offsets(broker: Any) -> None:
    _create(broker.bootstrap, "t")
    p = _txn_producer(broker.bootstrap, "tx-commit-abort")
    p.begin_transaction()
    p.produce("t", b"a0")
    p.produce("t", b"a1")
    p.commit_transaction(T)  # offsets 0, 1; COMMIT marker at 2
    p.begin_transaction()
    p.produce("t", b"b0")
    p.produce("t", b"b1")
    p.flush(T)  # librdkafka drops unsent messages at an abort: make them reach the log
    p.abort_transaction(T)  # 3, 4; ABORT marker at 5
    p.begin_transaction()
    p.produce("t", b"c0")
    p.commit_transaction(T)  # 6; COMMIT marker at 7

    committed = _read(broker.bootstrap, "t", "read_committed", 3)
    assert committed == [(0, b"a0"), (1, b"a1"), (6, b"c0")]
    uncommitted = _read(broker.bootstrap, "t", "read_uncommitted", 5)
    assert uncommitted == [(0, b"a0"), (1, b"a1"), (3, b"b0"), (4, b"b1"), (6, b"c0")]
    assert _end_offset(broker.bootstrap, "t", "read_committed") == 8
    assert _end_offset(broker.bootstrap, "t", "read_uncommitted") == 8


def _lookup(bootstrap: str, topic: str, spec: OffsetSpec, committed: bool) -> tuple[int, int]:
    """ListOffsets (offset, timestamp) through the admin API, with an isolation level."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    (f,) = admin.list_offsets(
        {TopicPartition(topic, 0): spec}, isolation_level=level, request_timeout=T
    ).values()
    r = f.result(T)
    return r.offset, r.timestamp


def test_open_transaction_holds_back_the_last_stable_offset(broker: Any) -> None:
    _create(broker.bootstrap, "lso")
    txn = _txn_producer(broker.bootstrap, "tx-lso")
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    ts = int(time.time() * 1000) - 60_000
    txn.begin_transaction()
    txn.produce("lso", b"x0", timestamp=ts)
    txn.flush(T)  # offset 0, open
    plain.produce("lso", b"y0", timestamp=ts + 1000)
    plain.flush(T)  # offset 1, not transactional

    assert _end_offset(broker.bootstrap, "lso", "read_committed") == 0
    assert _end_offset(broker.bootstrap, "lso", "read_uncommitted") == 2
    assert _read(broker.bootstrap, "lso", "read_committed", 0) == []
    # Lookups by time stop at what the isolation level may read, as Kafka's ReplicaManager:
    # no answer (-1) past the LSO for read_committed.
    at_ts, latest_ts = OffsetSpec.for_timestamp(ts), OffsetSpec.max_timestamp()
    assert _lookup(broker.bootstrap, "lso", at_ts, committed=True)[0] == -1
    assert _lookup(broker.bootstrap, "lso", latest_ts, committed=True)[0] == -1
    assert _lookup(broker.bootstrap, "lso", at_ts, committed=False) == (0, ts)
    assert _lookup(broker.bootstrap, "lso", latest_ts, committed=False) == (1, ts + 1000)

    txn.commit_transaction(T)  # COMMIT marker at 2
    assert _end_offset(broker.bootstrap, "lso", "read_committed") == 3
    assert _read(broker.bootstrap, "lso", "read_committed", 2) == [(0, b"x0"), (1, b"y0")]
    assert _lookup(broker.bootstrap, "lso", at_ts, committed=True) == (0, ts)
    assert _lookup(broker.bootstrap, "lso", OffsetSpec.for_timestamp(ts + 1), committed=True) == (
        1,
        ts + 1000,
    )
    # The COMMIT marker, written now, has the largest timestamp: Kafka counts control batches.
    assert _lookup(broker.bootstrap, "lso", latest_ts, committed=True)[0] == 2


def test_new_producer_of_the_same_id_fences_the_old_and_aborts_its_transaction(
    broker: Any,
) -> None:
    _create(broker.bootstrap, "fence")
    old = _txn_producer(broker.bootstrap, "tx-fence")
    old.begin_transaction()
    old.produce("fence", b"zombie")
    old.flush(T)  # offset 0

    new = _txn_producer(broker.bootstrap, "tx-fence")  # aborts offset 0: ABORT marker at 1
    with pytest.raises(KafkaException) as raised:
        old.commit_transaction(T)
    err = raised.value.args[0]
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED), err
    assert err.fatal()

    new.begin_transaction()
    new.produce("fence", b"alive")
    new.commit_transaction(T)  # offset 2, COMMIT marker at 3
    assert _read(broker.bootstrap, "fence", "read_committed", 1) == [(2, b"alive")]


def test_transaction_past_its_timeout_is_aborted_and_its_producer_fenced(
    broker_factory: Any,
) -> None:
    broker = broker_factory(FAST)
    _create(broker.bootstrap, "slow")
    p = _txn_producer(broker.bootstrap, "tx-slow", **{"transaction.timeout.ms": 1000})
    p.begin_transaction()
    p.produce("slow", b"late")
    p.flush(T)  # offset 0
    deadline = time.monotonic() + T
    while _end_offset(broker.bootstrap, "slow", "read_committed") != 2:
        assert time.monotonic() < deadline, "the coordinator never aborted the transaction"
        time.sleep(0.2)
    with pytest.raises(KafkaException) as raised:
        p.commit_transaction(T)
    assert raised.value.args[0].code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    )
    assert _read(broker.bootstrap, "slow", "read_committed", 0) == []
    assert _read(broker.bootstrap, "slow", "read_uncommitted", 1) == [(0, b"late")]


def _process(
    consumer: Consumer, producer: Producer, out_topic: str, count: int, commit: bool
) -> list[bytes]:
    """Read ``count`` records, write their upper-cased values, and commit or abort the lot
    together with the consumer's offsets."""
    got: list[bytes] = []
    producer.begin_transaction()
    deadline = time.monotonic() + T
    while len(got) < count and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m.value())
        producer.produce(out_topic, m.value().upper())
    assert len(got) == count
    producer.flush(T)  # so an abort has written records to abort
    producer.send_offsets_to_transaction(
        consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), T
    )
    if commit:
        producer.commit_transaction(T)
    else:
        producer.abort_transaction(T)
    return got


def test_consume_transform_produce_commits_offsets_with_the_output(broker_factory: Any) -> None:
    broker = broker_factory(FAST)
    bs = broker.bootstrap
    _create(bs, "in")
    _create(bs, "out")
    plain = Producer({"bootstrap.servers": bs})
    for i in range(8):
        plain.produce("in", f"v{i}".encode())
    plain.flush(T)
    consumer = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": "ctp",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["in"])
    producer = _txn_producer(bs, "tx-ctp")
    try:
        assert _process(consumer, producer, "out", 5, commit=True) == [
            f"v{i}".encode() for i in range(5)
        ]
        committed = consumer.committed([TopicPartition("in", 0)], T)
        assert committed[0].offset == 5
        # The next transaction reads 5..7 and aborts: its offsets must not stick.
        assert _process(consumer, producer, "out", 3, commit=False) == [b"v5", b"v6", b"v7"]
        committed = consumer.committed([TopicPartition("in", 0)], T)
        assert committed[0].offset == 5
    finally:
        consumer.close()
    # out: V0..V4 at 0..4, COMMIT at 5, V5..V7 at 6..8 (aborted), ABORT at 9.
    assert _read(bs, "out", "read_committed", 5) == [(i, f"V{i}".encode()) for i in range(5)]
    assert [o for o, _ in _read(bs, "out", "read_uncommitted", 8)] == [0, 1, 2, 3, 4, 6, 7, 8]

    # Replayed from __consumer_offsets after kill -9: the committed transaction's offset
    # stands, the aborted one's (8, written in its transactional batch) does not.
    broker.kill9()
    broker.restart()
    again = Consumer({"bootstrap.servers": bs, "group.id": "ctp"})
    try:
        assert again.committed([TopicPartition("in", 0)], T)[0].offset == 5
    finally:
        again.close()


def test_committed_aborted_and_open_transactions_survive_kill_9(broker_factory: Any) -> None:
    broker = broker_factory(FAST)
    bs = broker.bootstrap
    _create(bs, "durable")
    p = _txn_producer(bs, "tx-durable")
    p.begin_transaction()
    p.produce("durable", b"kept")
    p.commit_transaction(T)  # 0, COMMIT at 1
    p.begin_transaction()
    p.produce("durable", b"dropped")
    p.flush(T)
    p.abort_transaction(T)  # 2, ABORT at 3
    p.begin_transaction()
    p.produce("durable", b"open")
    p.flush(T)  # 4, open when the broker dies
    broker.kill9()
    broker.restart()

    # The aborted transaction is still skipped (its index survived); the open one still
    # holds back the LSO (producer state survived) until a new producer of the id aborts it.
    assert _end_offset(bs, "durable", "read_committed") == 4
    assert _read(bs, "durable", "read_committed", 1) == [(0, b"kept")]
    again = _txn_producer(bs, "tx-durable")  # ABORT of offset 4 at 5
    again.begin_transaction()
    again.produce("durable", b"after")
    again.commit_transaction(T)  # 6, COMMIT at 7
    assert _read(bs, "durable", "read_committed", 2) == [(0, b"kept"), (6, b"after")]
    assert _end_offset(bs, "durable", "read_committed") == 8


def test_kafka_python_transactional_producer(broker: Any) -> None:
    from kafka import KafkaProducer

    _create(broker.bootstrap, "kp")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-kafka-python")
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send("kp", b"k0")
        p.send("kp", b"k1")
        p.commit_transaction()
        p.begin_transaction()
        p.send("kp", b"gone")
        p.flush()
        p.abort_transaction()
    finally:
        p.close()
    assert _read(broker.bootstrap, "kp", "read_committed", 2) == [(0, b"k0"), (1, b"k1")]


def test_aiokafka_transactional_producer(broker: Any) -> None:
    from aiokafka import AIOKafkaProducer

    _create(broker.bootstrap, "ak")

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-aiokafka")
        await p.start()
        try:
            async with p.transaction():
                await p.send_and_wait("ak", b"a0")
            await p.begin_transaction()
            await p.send_and_wait("ak", b"gone")
            await p.abort_transaction()
            async with p.transaction():
                await p.send_and_wait("ak", b"a1")
        finally:
            await p.stop()

    asyncio.run(run())
    # a0 at 0, COMMIT 1, gone 2, ABORT 3, a1 4, COMMIT 5
    assert _read(broker.bootstrap, "ak", "read_committed", 2) == [(0, b"a0"), (4, b"a1")]
