"""DescribeTopicPartitions (KIP-966), what Java's Admin.describeTopics uses, over raw frames:
topics in name order, pages bounded by the request's and the broker's partition limits, and
the cursor that says where the next page starts."""

from __future__ import annotations

from typing import Any

from kio.schema.describe_topic_partitions.v0 import request as dtp

from tests.kafka_wire import WireConn, create_topic

NONE, UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC_EXCEPTION, INVALID_REQUEST = 0, 3, 17, 42
# READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS: every
# operation on a topic, which is what a broker without an authorizer allows.
ALL_TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))


def _describe(
    conn: WireConn, names: list[str], limit: int = 2000, cursor: tuple[str, int] | None = None
) -> Any:
    return conn.request(
        75,
        0,
        dtp.DescribeTopicPartitionsRequest(
            topics=tuple(dtp.TopicRequest(name=n) for n in names),
            response_partition_limit=limit,
            cursor=dtp.Cursor(topic_name=cursor[0], partition_index=cursor[1])
            if cursor is not None
            else None,
        ),
    )


def _page(r: Any) -> tuple[list[tuple[str, int, list[int]]], tuple[str, int] | None]:
    """([(topic, error code, partition indexes)], the next cursor)."""
    topics = [
        (t.name, int(t.error_code), [p.partition_index for p in t.partitions]) for t in r.topics
    ]
    c = r.next_cursor
    return topics, (c.topic_name, c.partition_index) if c is not None else None


def test_topics_and_partitions_as_kafka_describes_them(broker_factory: Any) -> None:
    broker = broker_factory({})
    with WireConn(broker.port) as conn:
        ids = {name: create_topic(conn, name, n) for name, n in (("a", 3), ("b", 2), ("c", 1))}
        create_topic(conn, "d", 1)

        r = _describe(conn, ["b", "a", "nope", "bad name!", "a"])
        assert _page(r) == (
            [
                ("a", NONE, [0, 1, 2]),
                ("b", NONE, [0, 1]),
                ("bad name!", INVALID_TOPIC_EXCEPTION, []),
                ("nope", UNKNOWN_TOPIC_OR_PARTITION, []),
            ],
            None,
        )
        a, b, bad, nope = r.topics
        assert (a.topic_id, b.topic_id, a.is_internal) == (ids["a"], ids["b"], False)
        assert (bad.topic_id, nope.topic_id) == (None, None)  # the zero id, as kio reads it
        assert a.topic_authorized_operations == ALL_TOPIC_OPERATIONS
        assert [
            (
                int(p.error_code),
                p.leader_id,
                p.leader_epoch,
                tuple(p.replica_nodes),
                tuple(p.isr_nodes),
                p.eligible_leader_replicas,
                p.last_known_elr,
                tuple(p.offline_replicas),
            )
            for p in a.partitions
        ] == [(NONE, 1, 0, (1,), (1,), (), (), ())] * 3

        # Every topic, two partitions a page: the cursor carries on inside a topic, and
        # points at the next topic's first partition when a page ends with one.
        pages = []
        cursor = None
        while True:
            topics, cursor = _page(_describe(conn, [], limit=2, cursor=cursor))
            pages.append(topics)
            if cursor is None:
                break
        assert pages == [
            [("a", NONE, [0, 1])],
            [("a", NONE, [2]), ("b", NONE, [0])],
            [("b", NONE, [1]), ("c", NONE, [0])],
            [("d", NONE, [0])],
        ]
        assert _page(_describe(conn, [], limit=2, cursor=("b", 1)))[1] == ("d", 0)

        # Named topics page the same way; the cursor's topic must be one of them.
        assert _page(_describe(conn, ["c", "a"], limit=2, cursor=("a", 2))) == (
            [("a", NONE, [2]), ("c", NONE, [0])],
            None,
        )
        assert _page(_describe(conn, ["c", "b"], cursor=("a", 0))) == (
            [("c", INVALID_REQUEST, []), ("b", INVALID_REQUEST, [])],
            None,
        )
        assert _page(_describe(conn, ["c", "a"], cursor=("a", -1))) == (
            [("c", INVALID_REQUEST, []), ("a", INVALID_REQUEST, [])],
            None,
        )
        # A limit below one is one, as Kafka has it: a page of none would hand its own
        # cursor back, and a client paging through would never end.
        for limit in (0, -1):
            assert _page(_describe(conn, ["a"], limit=limit)) == ([("a", NONE, [0])], ("a", 1))


def test_the_broker_caps_a_page(broker_factory: Any) -> None:
    broker = broker_factory({"max.request.partition.size.limit": "3"})
    with WireConn(broker.port) as conn:
        create_topic(conn, "wide", 5)
        assert _page(_describe(conn, ["wide"])) == ([("wide", NONE, [0, 1, 2])], ("wide", 3))
        assert _page(_describe(conn, ["wide"], cursor=("wide", 3))) == (
            [("wide", NONE, [3, 4])],
            None,
        )
