"""A share group's offsets as an admin sees them (KIP-932): DescribeShareGroupOffsets with its
start offsets and lag, AlterShareGroupOffsets moving where the group reads, and
DeleteShareGroupOffsets and DeleteGroups dropping its state, over raw frames against a real
broker, through a kill -9."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kio.schema.alter_share_group_offsets.v0 import request as aso
from kio.schema.delete_groups.v2 import request as dg
from kio.schema.delete_share_group_offsets.v0 import request as dso
from kio.schema.describe_share_group_offsets.v1 import request as dsgo

from tests.broker.test_share_groups import (
    ACCEPT,
    GROUP_ID_NOT_FOUND,
    NONE,
    SHARE,
    T,
    _acquired,
    _Member,
    _partition,
    _produce,
    _set_group_configs,
    _topic,
    _values,
)
from tests.kafka_wire import WireConn

NON_EMPTY_GROUP, UNKNOWN_TOPIC_OR_PARTITION, FENCED_STATE_EPOCH = 68, 3, 124
# Members that heartbeat only when a test step says so stay members for a minute.
EARLIEST_AND_PATIENT = {"share.auto.offset.reset": "earliest", "share.session.timeout.ms": "60000"}


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    return module_broker_factory(SHARE)


def _describe(
    broker: Any, group: str, topics: dict[str, list[int]] | None, version: int = 1
) -> Any:
    with WireConn(broker.port, timeout=T) as conn:
        (g,) = conn.request(
            90,
            version,
            dsgo.DescribeShareGroupOffsetsRequest(
                groups=(
                    dsgo.DescribeShareGroupOffsetsRequestGroup(
                        group_id=group,
                        topics=None
                        if topics is None
                        else tuple(
                            dsgo.DescribeShareGroupOffsetsRequestTopic(
                                topic_name=name, partitions=tuple(parts)
                            )
                            for name, parts in topics.items()
                        ),
                    ),
                )
            ),
        ).groups
    return g


def _offsets(g: Any) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(topic, partition) -> (start offset, lag, error code)."""
    assert int(g.error_code) == NONE, g
    return {
        (t.topic_name, int(p.partition_index)): (int(p.start_offset), int(p.lag), int(p.error_code))
        for t in g.topics
        for p in t.partitions
    }


def _alter(broker: Any, group: str, offsets: dict[str, dict[int, int]]) -> Any:
    with WireConn(broker.port, timeout=T) as conn:
        return conn.request(
            91,
            0,
            aso.AlterShareGroupOffsetsRequest(
                group_id=group,
                topics=tuple(
                    aso.AlterShareGroupOffsetsRequestTopic(
                        topic_name=name,
                        partitions=tuple(
                            aso.AlterShareGroupOffsetsRequestPartition(
                                partition_index=i, start_offset=o
                            )
                            for i, o in parts.items()
                        ),
                    )
                    for name, parts in offsets.items()
                ),
            ),
        )


def _altered(r: Any) -> dict[tuple[str, int], int]:
    return {
        (t.topic_name, int(p.partition_index)): int(p.error_code)
        for t in r.responses
        for p in t.partitions
    }


def _delete_offsets(broker: Any, group: str, topics: list[str]) -> Any:
    with WireConn(broker.port, timeout=T) as conn:
        return conn.request(
            92,
            0,
            dso.DeleteShareGroupOffsetsRequest(
                group_id=group,
                topics=tuple(dso.DeleteShareGroupOffsetsRequestTopic(topic_name=n) for n in topics),
            ),
        )


def _delete_group(broker: Any, group: str) -> int:
    with WireConn(broker.port, timeout=T) as conn:
        (r,) = conn.request(42, 2, dg.DeleteGroupsRequest(groups_names=(group,))).results
    return int(r.error_code)


def _leave(m: _Member, topic_id: uuid.UUID, close_session: bool = True) -> None:
    assert int(m.heartbeat(epoch=-1).error_code) == NONE
    if close_session:
        assert int(m.acknowledge(topic_id, (), -1).error_code) == NONE
    m.conn.close()


def test_share_group_offsets_described_altered_and_deleted(broker_factory: Any) -> None:
    broker = broker_factory(SHARE)
    topic_id = _topic(broker, "so-t", 1)
    _set_group_configs(broker, "so-g", EARLIEST_AND_PATIENT)
    _produce(broker, "so-t", [f"v{i}" for i in range(10)], 1)

    # Before the group has state: no error, no state (-1), and an unknown topic alike.
    assert _offsets(_describe(broker, "so-g", None)) == {}
    g = _describe(broker, "so-g", {"so-t": [0, 5], "nope": [0]})
    assert _offsets(g) == {
        ("so-t", 0): (-1, -1, NONE),
        ("so-t", 5): (-1, -1, NONE),
        ("nope", 0): (-1, -1, NONE),
    }
    assert {t.topic_name: t.topic_id for t in g.topics} == {"so-t": topic_id, "nope": None}

    m = _Member(broker, "so-g")
    assert int(m.heartbeat(("so-t",)).error_code) == NONE
    assert _acquired(_partition(m.fetch(topic_id))) == [(0, 9, 1)]
    # 0-3 done (the start offset moves to 4), 6-7 done past it; the rest are in flight.
    r = m.fetch(topic_id, acks=((0, 3, (ACCEPT,)), (6, 7, (ACCEPT,))), wait_ms=10)
    assert int(_partition(r).acknowledge_error_code) == NONE
    # Lag: the 10 records past 4, less the 2 done (in-flight ones count).
    assert _offsets(_describe(broker, "so-g", None)) == {("so-t", 0): (4, 4, NONE)}
    g0 = _describe(broker, "so-g", {"so-t": [0]}, version=0)
    assert [(int(p.start_offset), int(p.error_code)) for p in g0.topics[0].partitions] == [
        (4, NONE)
    ]

    # A group with members cannot be moved or emptied.
    r = _alter(broker, "so-g", {"so-t": {0: 2}})
    assert int(r.error_code) == NON_EMPTY_GROUP
    assert _altered(r) == {("so-t", 0): NON_EMPTY_GROUP}
    assert int(_delete_offsets(broker, "so-g", ["so-t"]).error_code) == NON_EMPTY_GROUP
    assert _delete_group(broker, "so-g") == NON_EMPTY_GROUP

    # The member leaves the group but keeps its share session: the leader still caches the
    # partition. The alter fences that cache; the member's late acknowledgement is refused.
    assert int(m.heartbeat(epoch=-1).error_code) == NONE
    r = _alter(broker, "so-g", {"so-t": {0: 2, 7: 0}, "nope": {0: 1}})
    assert int(r.error_code) == NONE
    assert _altered(r) == {
        ("so-t", 0): NONE,
        ("so-t", 7): UNKNOWN_TOPIC_OR_PARTITION,
        ("nope", 0): UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert _offsets(_describe(broker, "so-g", None)) == {("so-t", 0): (2, 8, NONE)}
    r = m.acknowledge(topic_id, ((4, 5, (ACCEPT,)),), m.session_epoch)
    assert int(_partition(r).error_code) == FENCED_STATE_EPOCH
    m.conn.close()

    # A new member reads from the altered start, every record fresh.
    n = _Member(broker, "so-g")
    assert int(n.heartbeat(("so-t",)).error_code) == NONE
    p = _partition(n.fetch(topic_id))
    assert _acquired(p) == [(2, 9, 1)]
    assert [v for o, v in _values(p) if o >= 2] == [f"v{i}".encode() for i in range(2, 10)]
    r = n.fetch(topic_id, acks=((2, 9, (ACCEPT,)),), wait_ms=10)
    assert int(_partition(r).acknowledge_error_code) == NONE
    _leave(n, topic_id)

    # The state is in __share_group_state and the group in __consumer_offsets: a kill -9
    # keeps both, and the group can be described and its offsets deleted after it.
    broker.kill9()
    broker.start()
    assert _offsets(_describe(broker, "so-g", None)) == {("so-t", 0): (10, 0, NONE)}
    r = _delete_offsets(broker, "so-g", ["so-t", "nope"])
    assert int(r.error_code) == NONE
    assert [(t.topic_name, t.topic_id, int(t.error_code)) for t in r.responses] == [
        ("so-t", topic_id, NONE),
        ("nope", None, UNKNOWN_TOPIC_OR_PARTITION),
    ]
    assert _offsets(_describe(broker, "so-g", None)) == {}
    r = _delete_offsets(broker, "so-g", ["so-t"])
    assert int(r.error_code) == NONE  # the group stays without state
    assert [(t.topic_name, int(t.error_code), t.error_message) for t in r.responses] == [
        ("so-t", UNKNOWN_TOPIC_OR_PARTITION, "There is no offset information to delete.")
    ]

    # With its offsets gone the group starts over where share.auto.offset.reset says.
    again = _Member(broker, "so-g")
    assert int(again.heartbeat(("so-t",)).error_code) == NONE
    assert _acquired(_partition(again.fetch(topic_id))) == [(0, 9, 1)]
    r = _delete_offsets(broker, "so-g", ["so-t", "nope"])
    assert int(r.error_code) == NON_EMPTY_GROUP
    _leave(again, topic_id)
    # Its last session closed, the leader forgot the partition: an alter now takes effect
    # at the next fetch, without waiting for a write to be fenced.
    assert _altered(_alter(broker, "so-g", {"so-t": {0: 5}})) == {("so-t", 0): NONE}
    again = _Member(broker, "so-g")
    assert int(again.heartbeat(("so-t",)).error_code) == NONE
    assert _acquired(_partition(again.fetch(topic_id))) == [(5, 9, 1)]
    _leave(again, topic_id)
    assert _altered(_alter(broker, "so-g", {"so-t": {0: 0}})) == {("so-t", 0): NONE}
    r = _delete_offsets(broker, "so-g", ["nope"])
    assert [(t.topic_name, int(t.error_code)) for t in r.responses] == [
        ("nope", UNKNOWN_TOPIC_OR_PARTITION)
    ]

    # DeleteGroups takes the state with the group.
    assert _offsets(_describe(broker, "so-g", None)) == {("so-t", 0): (0, 10, NONE)}
    assert _delete_group(broker, "so-g") == NONE
    assert _offsets(_describe(broker, "so-g", None)) == {}
    assert _delete_group(broker, "so-g") == GROUP_ID_NOT_FOUND


def test_a_leader_caching_deleted_state_cannot_write_over_a_new_start(broker: Any) -> None:
    """Deleted state keeps its state epoch: started again by an admin, it is not written
    over by a leader that still caches what was there before the delete."""
    topic_id = _topic(broker, "dd-t", 1)
    _set_group_configs(broker, "dd-g", EARLIEST_AND_PATIENT)
    _produce(broker, "dd-t", [f"v{i}" for i in range(6)], 1)
    m = _Member(broker, "dd-g")
    assert int(m.heartbeat(("dd-t",)).error_code) == NONE
    assert _acquired(_partition(m.fetch(topic_id))) == [(0, 5, 1)]
    assert int(m.heartbeat(epoch=-1).error_code) == NONE  # its share session stays open
    r = _delete_offsets(broker, "dd-g", ["dd-t"])
    assert [(t.topic_name, int(t.error_code)) for t in r.responses] == [("dd-t", NONE)]
    assert _altered(_alter(broker, "dd-g", {"dd-t": {0: 4}})) == {("dd-t", 0): NONE}
    r = m.acknowledge(topic_id, ((0, 5, (ACCEPT,)),), m.session_epoch)
    assert int(_partition(r).error_code) == FENCED_STATE_EPOCH
    m.conn.close()
    assert _offsets(_describe(broker, "dd-g", None)) == {("dd-t", 0): (4, 2, NONE)}
    n = _Member(broker, "dd-g")
    assert int(n.heartbeat(("dd-t",)).error_code) == NONE
    assert _acquired(_partition(n.fetch(topic_id))) == [(4, 5, 1)]
    _leave(n, topic_id)


def test_share_group_offsets_refuse_other_groups(broker: Any) -> None:
    """A classic group's id is not a share group's: altering it is refused, and deleting
    it deletes the classic group."""
    from confluent_kafka import Consumer

    _topic(broker, "cl-t", 1)
    _produce(broker, "cl-t", ["x"], 1)
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "cl-g", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(["cl-t"])
    msg = None
    for _ in range(100):
        msg = consumer.poll(0.2)
        if msg is not None:
            break
    assert msg is not None and msg.value() == b"x"
    consumer.commit(asynchronous=False)
    consumer.close()
    r = _alter(broker, "cl-g", {"cl-t": {0: 0}})
    assert (int(r.error_code), r.error_message) == (
        GROUP_ID_NOT_FOUND,
        "Group cl-g is not a share group.",
    )
    assert _delete_group(broker, "cl-g") == NONE
