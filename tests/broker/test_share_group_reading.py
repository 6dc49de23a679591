"""Where and how a share group reads (KIP-932 group configs): share.auto.offset.reset's
by_duration: start, and share.isolation.level=read_committed handing out only committed
records, below the last stable offset, over raw frames against a real broker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.broker.test_share_group_offsets import EARLIEST_AND_PATIENT, _leave
from tests.broker.test_share_groups import (
    NONE,
    SHARE,
    T,
    _acquired,
    _alter_group_configs,
    _Member,
    _partition,
    _poll,
    _set_group_configs,
    _share_consumer,
    _topic,
    _values,
)

INVALID_CONFIG = 40


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    return module_broker_factory(SHARE)


def _first_fetch(broker: Any, group: str, topic: str, topic_id: Any) -> list[tuple[int, int, int]]:
    m = _Member(broker, group)
    try:
        assert int(m.heartbeat((topic,)).error_code) == NONE
        return _acquired(_partition(m.fetch(topic_id, wait_ms=10)))
    finally:
        m.conn.close()


def _alter_config(broker: Any, group: str, name: str, value: str) -> Any:
    (r,) = _alter_group_configs(broker, group, {name: value}).responses
    return int(r.error_code), r.error_message


def test_by_duration_starts_at_the_first_record_that_recent(broker: Any) -> None:
    topic_id = _topic(broker, "bd-t", 1)
    now = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    # Offsets 0-4 two hours old, 5-9 ten minutes old (CreateTime).
    for i in range(10):
        age = 2 * 3600_000 if i < 5 else 600_000
        producer.produce("bd-t", f"v{i}".encode(), partition=0, timestamp=now - age)
        producer.flush(T)  # one batch each: the time index finds each record's batch

    for group, reset, start in (
        ("bd-hour", "by_duration:PT1H", 5),
        ("bd-day", "by_duration:P1D", 0),
        ("bd-minute", "by_duration:PT1M", 10),  # nothing that recent: the high watermark
        ("bd-mixed", "by_duration:pt30m15.5s", 5),
        ("bd-aeons", "by_duration:P1000000000D", 0),  # Java takes it; beyond a timedelta
    ):
        _set_group_configs(broker, group, {"share.auto.offset.reset": reset})
        got = _first_fetch(broker, group, "bd-t", topic_id)
        assert got == ([(start, 9, 1)] if start < 10 else []), (group, got)

    for bad in ("by_duration:-PT1H", "by_duration:", "by_duration", "LATEST", "by_duration:1H"):
        code, message = _alter_config(broker, "bd-bad", "share.auto.offset.reset", bad)
        assert (code, message) == (
            INVALID_CONFIG,
            f"Invalid value {bad} for configuration share.auto.offset.reset: Invalid value "
            f"`{bad}` for configuration share.auto.offset.reset. The value must be either "
            "'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS.>'.",
        )
    code, message = _alter_config(broker, "bd-bad", "share.isolation.level", "READ_COMMITTED")
    assert (code, message) == (
        INVALID_CONFIG,
        "Invalid value READ_COMMITTED for configuration share.isolation.level: String must be "
        "one of: read_committed, read_uncommitted",
    )


def test_read_committed_hands_out_committed_records_only(broker: Any) -> None:
    topic_id = _topic(broker, "rc-t", 1)
    txn = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "rc-txn"})
    txn.init_transactions(T)
    for values, commit in ((("c1", "c2"), True), (("a1", "a2"), False), (("c3",), True)):
        txn.begin_transaction()
        for v in values:
            txn.produce("rc-t", v.encode(), partition=0)
        txn.flush(T)
        if commit:
            txn.commit_transaction(T)
        else:
            txn.abort_transaction(T)
    plain = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    plain.produce("rc-t", b"n1", partition=0)
    plain.flush(T)
    # Offsets: c1 0, c2 1, commit 2; a1 3, a2 4, abort 5; c3 6, commit 7; n1 8.
    _set_group_configs(
        broker, "rc-committed", {**EARLIEST_AND_PATIENT, "share.isolation.level": "read_committed"}
    )
    _set_group_configs(broker, "rc-all", EARLIEST_AND_PATIENT)

    m = _Member(broker, "rc-committed")
    assert int(m.heartbeat(("rc-t",)).error_code) == NONE
    p = _partition(m.fetch(topic_id))
    # The aborted records are done at once (never handed out); the markers stay in the
    # acquired ranges, for the client to acknowledge as gaps.
    assert _acquired(p) == [(0, 2, 1), (5, 8, 1)]
    got = dict(_values(p))
    assert [got[o] for o in (0, 1, 6, 8)] == [b"c1", b"c2", b"c3", b"n1"]
    every = _Member(broker, "rc-all")
    assert int(every.heartbeat(("rc-t",)).error_code) == NONE
    assert _acquired(_partition(every.fetch(topic_id))) == [(0, 8, 1)]
    _leave(every, topic_id)

    # An open transaction holds read_committed back at its first offset until it ends.
    txn.begin_transaction()
    txn.produce("rc-t", b"o1", partition=0)  # offset 9
    txn.flush(T)
    plain.produce("rc-t", b"n2", partition=0)  # offset 10, behind the open transaction
    plain.flush(T)
    r = m.fetch(topic_id, acks=((0, 2, (1,)), (5, 8, (1,))), wait_ms=300)
    assert int(_partition(r).acknowledge_error_code) == NONE
    assert (int(_partition(r).error_code), _acquired(_partition(r))) == (NONE, [])
    txn.commit_transaction(T)  # marker at 11
    assert _acquired(_partition(m.fetch(topic_id, wait_ms=2000))) == [(9, 11, 1)]
    _leave(m, topic_id)

    # librdkafka's ShareConsumer, acknowledging the markers as gaps, reads the committed
    # records and nothing else.
    _set_group_configs(
        broker, "rc-client", {**EARLIEST_AND_PATIENT, "share.isolation.level": "read_committed"}
    )
    consumer = _share_consumer(broker, "rc-client", "rc-t")
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + T
    while len(got) < 6 and time.monotonic() < deadline:
        got.extend((msg.offset(), msg.value()) for msg in _poll(consumer, 0.2))
    assert sorted(got) == [
        (0, b"c1"), (1, b"c2"), (6, b"c3"), (8, b"n1"), (9, b"o1"), (10, b"n2"),
    ]  # fmt: skip
    assert _poll(consumer, 1.0) == []
    consumer.commit_sync()
    consumer.close()


def test_read_committed_reads_past_a_long_aborted_transaction(broker: Any) -> None:
    """An aborted transaction larger than a fetch reads (eight reads of 256 KiB): the fetch
    reads on past it instead of waiting out its max wait, and hands out the record after."""
    topic_id = _topic(broker, "rc-long", 1)
    txn = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "transactional.id": "rc-long",
            "linger.ms": 5,
            "batch.size": 16384,  # batches smaller than a read: twelve reads to pass them
        }
    )
    txn.init_transactions(T)
    txn.begin_transaction()
    for _ in range(3000):  # about 3 MiB
        txn.produce("rc-long", b"x" * 1000, partition=0)
    txn.flush(T)
    txn.abort_transaction(T)
    txn.begin_transaction()
    txn.produce("rc-long", b"after", partition=0)
    txn.commit_transaction(T)  # after: offset 3001 (the abort marker is 3000)
    _set_group_configs(
        broker, "rc-long-g", {**EARLIEST_AND_PATIENT, "share.isolation.level": "read_committed"}
    )
    m = _Member(broker, "rc-long-g")
    assert int(m.heartbeat(("rc-long",)).error_code) == NONE
    p = _partition(m.fetch(topic_id, wait_ms=20_000))
    assert int(p.error_code) == NONE
    assert _acquired(p) == [(3000, 3002, 1)]  # the abort marker, after, the commit marker
    assert dict(_values(p))[3001] == b"after"
    _leave(m, topic_id)
