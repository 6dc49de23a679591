"""Incremental fetch sessions (KIP-227), frame by frame, and kafka-python using them."""

from __future__ import annotations

import datetime
import importlib
import uuid
from typing import Any

import pytest

from tests.broker_process import BrokerProcess
from tests.kafka_wire import (
    WireConn,
    create_topic,
    fetch_request,
    parse_response,
    request_frame,
    sample_request,
    session_fetch,
)
from tests.storage.batches import make_batch

PRODUCE, FETCH = 0, 1
FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH, FETCH_SESSION_TOPIC_ID_ERROR = 70, 71, 106
UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_LEADER_EPOCH, INCONSISTENT_TOPIC_ID = 3, 75, 103


@pytest.fixture
def broker(module_broker_factory: Any) -> BrokerProcess:
    """One broker for the module: every test here uses a topic of its own."""
    return module_broker_factory()  # type: ignore[no-any-return]


def produce(conn: WireConn, topic: str, partition: int, n: int) -> None:
    req = sample_request(PRODUCE, 9, topic, batch=bytes(make_batch(n=n)), index=partition)
    resp = conn.request(PRODUCE, 9, req)
    assert int(resp.responses[0].partition_responses[0].error_code) == 0


def fetch(
    conn: WireConn, version: int, session_id: int, epoch: int, partitions: dict[int, int], **kw: Any
) -> Any:
    return session_fetch(conn, version, session_id, epoch, partitions, **{"topic": "s", **kw})


def fetch_topics(
    conn: WireConn,
    session_id: int,
    epoch: int,
    topics: dict[uuid.UUID, dict[int, int | tuple[int, int]]],
    forget: dict[uuid.UUID, tuple[int, ...]] | None = None,
    max_wait_ms: int = 0,
    version: int = 13,
    send_only: bool = False,
) -> Any:
    """One Fetch (v13+, by topic id) naming ``topics``: topic id -> partition -> fetch
    offset, or (fetch offset, current leader epoch). ``send_only``: send it and return its
    correlation id."""
    m = importlib.import_module(f"kio.schema.fetch.v{version}.request")

    def partition(p: int, at: int | tuple[int, int]) -> Any:
        offset, leader_epoch = at if isinstance(at, tuple) else (at, -1)
        return m.FetchPartition(
            partition=p,
            fetch_offset=offset,
            partition_max_bytes=1 << 20,
            current_leader_epoch=leader_epoch,
        )

    req = fetch_request(
        m,
        session_id,
        epoch,
        tuple(
            m.FetchTopic(topic_id=t, partitions=tuple(partition(p, at) for p, at in ps.items()))
            for t, ps in topics.items()
        ),
        tuple(m.ForgottenTopic(topic_id=t, partitions=ps) for t, ps in (forget or {}).items()),
        max_wait_ms,
    )
    if send_only:
        corr = conn.next_corr()
        conn.send(request_frame(FETCH, version, corr, req))
        return corr
    return conn.request(FETCH, version, req)


def by_topic(resp: Any) -> dict[tuple[uuid.UUID, int], tuple[int, int, int]]:
    """(topic id, partition) -> (error code, high watermark, record bytes), every partition
    in the response."""
    return {
        (t.topic_id, p.partition_index): (
            int(p.error_code),
            p.high_watermark,
            len(p.records or b""),
        )
        for t in resp.responses
        for p in t.partitions
    }


def seen(resp: Any) -> dict[int, tuple[int, int]]:
    """partition -> (high watermark, record bytes) of every partition in the response."""
    return {
        p.partition_index: (p.high_watermark, len(p.records or b""))
        for t in resp.responses
        for p in t.partitions
    }


def test_incremental_fetches_carry_only_what_changed(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn, WireConn(broker.port) as writer:
        create_topic(conn, "s", partitions=2)
        produce(writer, "s", 0, 3)

        full = fetch(conn, 12, 0, 0, {0: 0, 1: 0})
        assert int(full.error_code) == 0
        sid = full.session_id
        assert sid != 0
        assert {k: v[0] for k, v in seen(full).items()} == {0: 3, 1: 0}
        assert seen(full)[0][1] > 0

        # The client moved partition 0 to offset 3; nothing new anywhere: an empty answer.
        empty = fetch(conn, 12, sid, 1, {0: 3})
        assert (int(empty.error_code), empty.session_id, seen(empty)) == (0, sid, {})

        # New records on partition 1 come back although the request does not name it.
        produce(writer, "s", 1, 2)
        news = fetch(conn, 12, sid, 2, {})
        assert list(seen(news)) == [1]
        hw, size = seen(news)[1]
        assert hw == 2 and size > 0

        # The same position again: the records are sent again, the client has not moved.
        assert list(seen(fetch(conn, 12, sid, 3, {}))) == [1]
        assert seen(fetch(conn, 12, sid, 4, {1: 2})) == {}

        # A forgotten partition is no longer read.
        fetch(conn, 12, sid, 5, {}, forget=(0,))
        produce(writer, "s", 0, 1)
        assert seen(fetch(conn, 12, sid, 6, {})) == {}

        # Out of step and unknown sessions get the session errors, with no session id.
        wrong = fetch(conn, 12, sid, 99, {})
        assert (int(wrong.error_code), wrong.session_id, seen(wrong)) == (
            INVALID_FETCH_SESSION_EPOCH,
            0,
            {},
        )
        unknown = fetch(conn, 12, sid + 1 if sid < 0x7FFFFFFF else 1, 1, {})
        assert int(unknown.error_code) == FETCH_SESSION_ID_NOT_FOUND

        # Epoch -1 closes the session and is a plain full fetch.
        closing = fetch(conn, 12, sid, -1, {0: 3})
        assert (int(closing.error_code), closing.session_id) == (0, 0)
        assert seen(closing)[0] == (4, seen(closing)[0][1])
        assert int(fetch(conn, 12, sid, 7, {}).error_code) == FETCH_SESSION_ID_NOT_FOUND


def test_an_incremental_fetch_waits_for_any_session_partition(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn, WireConn(broker.port) as writer:
        create_topic(conn, "s-wait", partitions=2)
        sid = fetch(conn, 12, 0, 0, {0: 0, 1: 0}, topic="s-wait").session_id
        corr = conn.next_corr()
        m = importlib.import_module("kio.schema.fetch.v12.request")
        req = m.FetchRequest(
            max_wait=datetime.timedelta(seconds=5),
            min_bytes=1,
            max_bytes=1 << 20,
            session_id=sid,
            session_epoch=1,
            topics=(),
            forgotten_topics_data=(),
        )
        conn.send(request_frame(FETCH, 12, corr, req))
        produce(writer, "s-wait", 1, 4)  # wakes the parked fetch
        got, resp = parse_response(FETCH, 12, conn.recv_frame())
        assert got == corr
        assert list(seen(resp)) == [1]
        assert seen(resp)[1][0] == 4


def test_sessions_by_topic_id_and_a_version_switch(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn:
        topic_id = create_topic(conn, "s-by-id", partitions=1)
        produce(conn, "s-by-id", 0, 2)
        full = fetch(conn, 13, 0, 0, {0: 0}, topic_id=topic_id)
        assert full.responses[0].topic_id == topic_id
        assert seen(full)[0][0] == 2
        sid = full.session_id
        assert seen(fetch(conn, 13, sid, 1, {0: 2}, topic_id=topic_id)) == {}
        # A session opened by topic id cannot go on by name.
        assert int(fetch(conn, 12, sid, 2, {}).error_code) == FETCH_SESSION_TOPIC_ID_ERROR


def test_kafka_python_reads_through_a_session(broker: BrokerProcess) -> None:
    from kafka import KafkaConsumer, TopicPartition

    with WireConn(broker.port) as conn:
        create_topic(conn, "kp", partitions=3)
        for p in range(3):
            produce(conn, "kp", p, 5 + p)
    tps = [TopicPartition("kp", p) for p in range(3)]
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        c.assign(tps)
        c.seek_to_beginning()
        got: dict[int, list[int]] = {0: [], 1: [], 2: []}
        while sum(map(len, got.values())) < 18:
            for tp, records in c.poll(timeout_ms=5000).items():
                got[tp.partition] += [r.offset for r in records]
        assert got == {0: list(range(5)), 1: list(range(6)), 2: list(range(7))}
        # The client holds an open session with the broker (kafka-python's own state).
        handlers = c._fetcher._session_handlers
        assert any(h.next_metadata.session_id for h in handlers.values())
    finally:
        c.close()


def delete_topic(conn: WireConn, name: str) -> None:
    from kio.schema.delete_topics.v6 import request as dt

    req = dt.DeleteTopicsRequest(
        topics=(dt.DeleteTopicState(name=name, topic_id=None),),
        timeout=datetime.timedelta(seconds=10),
    )
    (result,) = conn.request(20, 6, req).responses
    assert int(result.error_code) == 0


def test_a_deleted_topic_stays_in_the_session_with_kafkas_errors(broker: BrokerProcess) -> None:
    """Kafka's FetchSession keeps a partition, with the topic name it resolved, until the
    client forgets it: once its topic is deleted it answers UNKNOWN_TOPIC_OR_PARTITION on
    every fetch (without cutting the others' long poll short), and INCONSISTENT_TOPIC_ID once
    a topic of the same name is created again, whose records it never serves."""
    with WireConn(broker.port) as conn, WireConn(broker.port) as writer:
        gone = create_topic(conn, "s-gone")
        kept = create_topic(conn, "s-kept")
        produce(writer, "s-gone", 0, 2)
        produce(writer, "s-kept", 0, 1)
        full = fetch_topics(conn, 0, 0, {gone: {0: 0}, kept: {0: 0}})
        sid = full.session_id
        assert sid != 0
        assert {k: v[:2] for k, v in by_topic(full).items()} == {
            (gone, 0): (0, 2),
            (kept, 0): (0, 1),
        }
        assert by_topic(fetch_topics(conn, sid, 1, {gone: {0: 2}, kept: {0: 1}})) == {}

        delete_topic(writer, "s-gone")
        # The session still holds the partition and says what became of it, but waits for
        # the live partition as a long poll does: nothing comes back until kept has news.
        corr = fetch_topics(conn, sid, 2, {}, max_wait_ms=10_000, send_only=True)
        with pytest.raises(TimeoutError):
            conn.recv_frame(timeout=0.5)
        produce(writer, "s-kept", 0, 1)
        got, answer = parse_response(FETCH, 13, conn.recv_frame(timeout=10))
        assert (got, int(answer.error_code), answer.session_id) == (corr, 0, sid)
        news = by_topic(answer)
        assert news[(gone, 0)] == (UNKNOWN_TOPIC_OR_PARTITION, -1, 0)
        assert news[(kept, 0)][:2] == (0, 2)
        # Errors are sent on every fetch, while the client keeps the partition.
        assert by_topic(fetch_topics(conn, sid, 3, {kept: {0: 2}})) == {
            (gone, 0): (UNKNOWN_TOPIC_OR_PARTITION, -1, 0)
        }

        # A new topic of the same name: the session's partition is not it, and says so at
        # once; the client forgets the old id and adds the new one to the same session.
        again = create_topic(writer, "s-gone")
        assert again != gone
        produce(writer, "s-gone", 0, 3)
        corr = fetch_topics(conn, sid, 4, {}, max_wait_ms=10_000, send_only=True)
        got, answer = parse_response(FETCH, 13, conn.recv_frame(timeout=5))
        assert got == corr
        assert by_topic(answer) == {(gone, 0): (INCONSISTENT_TOPIC_ID, -1, 0)}
        moved = fetch_topics(conn, sid, 5, {again: {0: 0}}, forget={gone: (0,)})
        assert moved.session_id == sid
        assert {k: v[:2] for k, v in by_topic(moved).items()} == {(again, 0): (0, 3)}
        assert by_topic(fetch_topics(conn, sid, 6, {again: {0: 3}})) == {}

        # A partition answered with an error is sent again once the error clears, even
        # though its high watermark did not move (Kafka's CachedPartition forgets it).
        fenced = fetch_topics(conn, sid, 7, {kept: {0: (2, 99)}})
        assert by_topic(fenced)[(kept, 0)][0] == UNKNOWN_LEADER_EPOCH
        cleared = fetch_topics(conn, sid, 8, {kept: {0: (2, -1)}})
        assert by_topic(cleared) == {(kept, 0): (0, 2, 0)}


def test_a_session_by_name_answers_a_deleted_topic_unknown(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn:
        create_topic(conn, "s-gone-by-name")
        produce(conn, "s-gone-by-name", 0, 2)
        sid = fetch(conn, 12, 0, 0, {0: 0}, topic="s-gone-by-name").session_id
        delete_topic(conn, "s-gone-by-name")
        answer = fetch(conn, 12, sid, 1, {}, topic="s-gone-by-name")
        assert answer.session_id == sid
        assert [(p.partition_index, int(p.error_code)) for p in answer.responses[0].partitions] == [
            (0, UNKNOWN_TOPIC_OR_PARTITION)
        ]


def test_a_waiting_fetch_answers_when_a_topic_it_waits_on_is_deleted(
    broker: BrokerProcess,
) -> None:
    """As Kafka's DelayedFetch completes when a partition it waits on is gone."""
    with WireConn(broker.port) as conn, WireConn(broker.port) as writer:
        gone = create_topic(conn, "s-gone-waiting")
        kept = create_topic(conn, "s-kept-waiting")
        sid = fetch_topics(conn, 0, 0, {gone: {0: 0}, kept: {0: 0}}).session_id
        assert sid != 0
        corr = fetch_topics(conn, sid, 1, {}, max_wait_ms=30_000, send_only=True)
        with pytest.raises(TimeoutError):
            conn.recv_frame(timeout=0.5)  # parked: nothing to read anywhere
        delete_topic(writer, "s-gone-waiting")
        got, answer = parse_response(FETCH, 13, conn.recv_frame(timeout=10))
        assert got == corr
        assert by_topic(answer) == {(gone, 0): (UNKNOWN_TOPIC_OR_PARTITION, -1, 0)}
