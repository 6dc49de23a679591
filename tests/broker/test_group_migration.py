"""KIP-848's online migration against a real broker: a group with members changes protocol
while it consumes. A classic group that a consumer-protocol member joins becomes a consumer
group whose classic members carry on through JoinGroup, SyncGroup and Heartbeat; a consumer
group left with classic members only becomes classic again. librdkafka's consumers on both
protocols run the rolling upgrade and the rollback; raw frames pin the exact epochs,
generations, assignments and error codes.
"""

from __future__ import annotations

import datetime
import queue
import struct
import threading
import time
from typing import Any

import pytest

from tests.broker.test_consumer_group_protocol import (
    FAST,
    GROUP_ID_NOT_FOUND,
    ILLEGAL_GENERATION,
    INCONSISTENT_GROUP_PROTOCOL,
    NONE,
    UNKNOWN_MEMBER_ID,
    Member,
    _assert_ok,
    _describe,
    _loaded,
    _topic,
)
from tests.broker.test_groups import RawMember, _assignment, _subscription, wait_for
from tests.kafka_wire import WireConn

T = 20.0
REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID, GROUP_MAX_SIZE_REACHED = 27, 82, 81
CLASSIC, CONSUMER = 0, 1  # ConsumerGroupDescribe's MemberType


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    return module_broker_factory(FAST)


def _describe_classic(broker: Any, group: str) -> Any:
    from kio.schema.describe_groups.v5 import request as dg

    with WireConn(broker.port, timeout=T) as conn:
        (d,) = conn.request(
            15, 5, dg.DescribeGroupsRequest(groups=(group,), include_authorized_operations=False)
        ).groups
    return d


def _group_type(broker: Any, group: str) -> str | None:
    from kio.schema.list_groups.v5 import request as lg

    with WireConn(broker.port, timeout=T) as conn:
        r = conn.request(16, 5, lg.ListGroupsRequest(states_filter=(), types_filter=()))
    return next((g.group_type for g in r.groups if g.group_id == group), None)


def _members(broker: Any, group: str) -> dict[str, tuple[int, int, set[int]]]:
    """Member id -> (member type, member epoch, assigned partitions of the group's topic)."""
    d = _describe(broker, group)
    assert int(d.error_code) == NONE, d.error_message
    return {
        m.member_id: (
            int(m.member_type),
            int(m.member_epoch),
            {int(p) for t in m.assignment.topic_partitions for p in t.partitions},
        )
        for m in d.members
    }


def _owning(topic: str, partitions: list[int]) -> bytes:
    """ConsumerProtocolSubscription v1 of ``topic``, owning ``partitions`` (a cooperative
    consumer's)."""
    out = bytearray(struct.pack(">hi", 1, 1))
    out += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(">i", -1)
    out += struct.pack(">ih", 1, len(topic)) + topic.encode()
    out += struct.pack(f">i{len(partitions)}i", len(partitions), *partitions)
    return bytes(out)


def _assert_all_read(broker: Any, group: str, got: list[bytes], sent: int) -> None:
    missing = sorted({str(i).encode() for i in range(sent)} - set(got), key=int)
    if missing:
        d = _describe_classic(broker, group)
        raise AssertionError(
            f"{len(missing)} record(s) never read ({missing[:10]}...); the group is "
            f"{_group_type(broker, group)}, DescribeGroups: {d.group_state}, "
            f"{[(m.member_id, bytes(m.member_assignment)) for m in d.members]}; "
            f"ConsumerGroupDescribe: {_describe(broker, group)}"
        )


def _assert_disjoint(broker: Any, group: str) -> None:
    """No partition is assigned to two members of a consumer group at once."""
    held = [p for _, _, ps in _members(broker, group).values() for p in ps]
    assert len(held) == len(set(held)), held


def _partitions(assignment: bytes) -> set[tuple[str, int]]:
    from artesian.coordinator.group.consumer_protocol import parse_assignment

    return set(parse_assignment(assignment).partitions)


# --- raw frames ------------------------------------------------------------------------------


def test_a_consumer_member_upgrades_a_classic_group_and_the_classic_members_follow(
    broker: Any,
) -> None:
    ids = _topic(broker, "up-t", 3)
    a = RawMember(broker, "up-g", session_ms=10_000)
    b = RawMember(broker, "up-g", session_ms=10_000)
    for m in (a, b):
        m.send_join("up-t")
    for m in (a, b):
        if m.recv_join() != NONE:
            m.send_join("up-t")
    assert [a.recv_join() if a._pending else NONE, b.recv_join() if b._pending else NONE] == [
        NONE,
        NONE,
    ]
    generation = a.generation
    leader, follower = (a, b) if a.member_id == a.leader else (b, a)
    plan = {
        leader.member_id: _assignment("up-t", [0]),
        follower.member_id: _assignment("up-t", [1, 2]),
    }
    follower.send_sync()
    assert leader.sync(plan) == (NONE, plan[leader.member_id])
    assert follower.recv_sync() == (NONE, plan[follower.member_id])
    assert leader.commit({0: 5}, topic="up-t") == {NONE}

    # The consumer-protocol member's join converts the group: the classic members keep their
    # partitions at an epoch of the generation; the new member waits for one of the
    # follower's.
    c = Member(broker, "up-g", ids)
    r = _assert_ok(c.join("up-t"))
    assert r.member_epoch == generation + 1 and c.assigned == set()
    assert _group_type(broker, "up-g") == "consumer"
    d = _describe(broker, "up-g")
    assert (d.group_epoch, d.assignment_epoch, d.group_state) == (
        generation + 1,
        generation + 1,
        "Reconciling",
    )
    members = _members(broker, "up-g")
    assert members[leader.member_id] == (CLASSIC, generation, {0})
    assert members[follower.member_id] == (CLASSIC, generation, {1, 2})
    assert members[c.member_id][:2] == (CONSUMER, generation + 1)
    classic = _describe_classic(broker, "up-g")
    assert classic.group_state == "Dead"  # DescribeGroups describes classic groups only

    # A classic member's generation is its member epoch: it commits at it, and a heartbeat
    # at it is told to rejoin; any other generation is stale.
    assert leader.commit({0: 6}, topic="up-t") == {NONE}
    assert leader.commit({0: 7}, topic="up-t", generation=generation + 1) == {ILLEGAL_GENERATION}
    assert leader.heartbeat(generation=generation + 1) == ILLEGAL_GENERATION
    assert leader.heartbeat(member_id="nobody") == UNKNOWN_MEMBER_ID
    assert leader.heartbeat() == REBALANCE_IN_PROGRESS
    assert follower.heartbeat() == REBALANCE_IN_PROGRESS

    # The follower rejoins as a cooperative consumer does, still owning both partitions: it
    # is answered at once, by the broker (no leader, no members, its own first protocol), at
    # its old generation, with only the partition it keeps.
    assert follower.join("up-t", metadata=_owning("up-t", [1, 2])) == NONE
    assert (follower.generation, follower.leader, follower.members) == (generation, "", [])
    code, assignment = follower.sync()
    assert code == NONE
    given_to_follower = _partitions(assignment)
    assert len(given_to_follower) == 1 and given_to_follower < {("up-t", 1), ("up-t", 2)}
    assert follower.heartbeat() == REBALANCE_IN_PROGRESS  # until it rejoins without it
    _assert_ok(c.heartbeat())
    assert c.assigned == set()  # not before the follower has let go
    kept = next(iter(given_to_follower))[1]
    assert follower.join("up-t", metadata=_owning("up-t", [kept])) == NONE
    assert follower.generation == generation + 1
    code, assignment = follower.sync()
    assert code == NONE and _partitions(assignment) == given_to_follower
    assert leader.join("up-t") == NONE and leader.generation == generation + 1
    code, assignment = leader.sync()
    assert code == NONE
    # An eager consumer (it gave everything up) moves to the new generation at once.
    assert _partitions(assignment) == {("up-t", 0)}  # the leader keeps its partition
    # The consumer member gets the partition the follower let go.
    _assert_ok(c.heartbeat())
    assert c.assigned == {("up-t", 1), ("up-t", 2)} - given_to_follower
    _assert_ok(c.ack())
    assert leader.heartbeat() == NONE and follower.heartbeat() == NONE
    assert _describe(broker, "up-g").group_state == "Stable"
    # The classic member's assignment is in the version its subscription was written in.
    assert struct.unpack(">h", assignment[:2])[0] == 0

    # Classic members leave: the consumer member takes everything; the group stays consumer.
    assert leader.leave() == NONE and follower.leave() == NONE
    _assert_ok(c.heartbeat())
    assert c.assigned == {("up-t", 0), ("up-t", 1), ("up-t", 2)}
    assert _group_type(broker, "up-g") == "consumer"
    from tests.broker.test_consumer_group_protocol import _committed_offset

    assert _committed_offset(broker, "up-g", "up-t") == 6
    for m in (a, b, c):
        m.close()


def test_classic_members_of_a_consumer_group_follow_kafkas_rules(broker: Any) -> None:
    ids = _topic(broker, "cr-t", 2)
    c = Member(broker, "cr-g", ids)
    _assert_ok(c.join("cr-t"))
    assert c.assigned == {("cr-t", 0), ("cr-t", 1)}
    _assert_ok(c.ack())

    # Another protocol type, or no protocol in common with the classic members, never fits.
    k = RawMember(broker, "cr-g", session_ms=10_000, instance="k-1")
    assert k.join("cr-t") == NONE  # a static member joins without MEMBER_ID_REQUIRED
    assert k.generation == 2 and k.leader == ""
    code, assignment = k.sync()
    assert code == NONE and _partitions(assignment) == set()  # c still holds both
    assert k.heartbeat() == NONE  # waiting on partitions c still holds
    from kio.schema.join_group.v9 import request as jg
    from kio.schema.sync_group.v5 import request as sg

    with WireConn(broker.port, timeout=T) as conn:

        def join(protocol_type: str, name: str, metadata: bytes | None = None) -> int:
            r = conn.request(
                11,
                9,
                jg.JoinGroupRequest(
                    group_id="cr-g",
                    session_timeout=datetime.timedelta(seconds=10),
                    rebalance_timeout=datetime.timedelta(seconds=10),
                    member_id="x",
                    group_instance_id=None,
                    protocol_type=protocol_type,
                    protocols=(
                        jg.JoinGroupRequestProtocol(
                            name=name,
                            metadata=_subscription("cr-t") if metadata is None else metadata,
                        ),
                    ),
                    reason=None,
                ),
            )
            return int(r.error_code)

        assert join("connect", "range") == INCONSISTENT_GROUP_PROTOCOL
        assert join("consumer", "roundrobin") == INCONSISTENT_GROUP_PROTOCOL
        # A subscription the broker cannot read (it must, to assign): truncated, absurd
        # counts, a negative version. The group carries on.
        absurd = struct.pack(">hi", 0, 2**31 - 1) + b"\x7f\xff" * 8
        for bad in (b"", b"\x00", absurd, struct.pack(">hi", -3, 0) + b"\xff" * 4):
            assert join("consumer", "range", bad) == INCONSISTENT_GROUP_PROTOCOL

        def sync(protocol_name: str) -> int:
            r = conn.request(
                14,
                5,
                sg.SyncGroupRequest(
                    group_id="cr-g",
                    generation_id=k.generation,
                    member_id=k.member_id,
                    group_instance_id="k-1",
                    protocol_type="consumer",
                    protocol_name=protocol_name,
                    assignments=(),
                ),
            )
            return int(r.error_code)

        assert sync("roundrobin") == INCONSISTENT_GROUP_PROTOCOL
        assert sync("range") == NONE

    # The consumer member gives one partition up; the classic member is told to rejoin for it.
    _assert_ok(c.heartbeat())
    assert len(c.assigned) == 1
    _assert_ok(c.ack())
    assert k.heartbeat() == REBALANCE_IN_PROGRESS
    assert k.join("cr-t") == NONE and k.generation == 2
    code, assignment = k.sync()
    assert code == NONE and _partitions(assignment) == {("cr-t", 0), ("cr-t", 1)} - c.assigned
    assert k.heartbeat() == NONE

    # A static member's instance id names it: another member id with it is fenced.
    assert k.heartbeat(member_id="someone-else") == FENCED_INSTANCE_ID

    # The consumer member leaves: only a classic member is left, and the group goes back to
    # the classic protocol at a generation of its epoch, and rebalances.
    epoch = _describe(broker, "cr-g").group_epoch
    _assert_ok(c.heartbeat(epoch=-1))
    assert _group_type(broker, "cr-g") == "classic"
    d = _describe_classic(broker, "cr-g")
    assert (d.group_state, d.protocol_type) == ("PreparingRebalance", "consumer")
    assert [m.member_id for m in d.members] == [k.member_id]
    assert k.heartbeat() == REBALANCE_IN_PROGRESS
    assert k.join("cr-t") == NONE
    assert k.generation == epoch + 1 and k.leader == k.member_id  # it leads now
    plan = {k.member_id: _assignment("cr-t", [0, 1])}
    assert k.sync(plan) == (NONE, plan[k.member_id])
    assert k.heartbeat() == NONE
    d = _describe_classic(broker, "cr-g")
    assert (d.group_state, d.protocol_data) == ("Stable", "range")
    assert k.leave() == NONE
    k.close()
    c.close()


def _classic_group(broker: Any, group: str, user_data: bytes = b"") -> RawMember:
    """A one-member classic group holding its topic's partition 0, its assignment carrying
    ``user_data`` (as a custom assignor's would)."""
    classic = RawMember(broker, group, session_ms=10_000)
    assert classic.join(f"{group}-t") == NONE
    payload = bytearray(_assignment(f"{group}-t", [0]))
    payload[-4:] = struct.pack(">i", len(user_data)) + user_data
    assert classic.sync({classic.member_id: bytes(payload)})[0] == NONE
    return classic


@pytest.mark.parametrize(
    ("policy", "user_data", "why"),
    [
        ("DOWNGRADE", b"", "the online upgrade is disabled"),
        (
            "bidirectional",
            b"sticky",
            "an unsupported custom assignor is in use. Please refer to the documentation or "
            "switch to a default assignor before re-attempting the upgrade",
        ),
    ],
)
def test_the_upgrade_is_refused_as_kafka_refuses_it(
    module_broker_factory: Any, policy: str, user_data: bytes, why: str
) -> None:
    """A policy without upgrades (group.consumer.migration.policy, case-insensitive), or a
    custom assignor's user data: GROUP_ID_NOT_FOUND with Kafka's reason, and the classic
    group carries on."""
    broker = module_broker_factory({**FAST, "group.consumer.migration.policy": policy})
    group = f"rf-{policy.lower()}"
    ids = _topic(broker, f"{group}-t", 1)
    classic = _classic_group(broker, group, user_data)
    m = Member(broker, group, ids)
    r = m.join(f"{group}-t")
    assert (int(r.error_code), r.error_message) == (
        GROUP_ID_NOT_FOUND,
        f"Cannot upgrade classic group {group} to consumer group because {why}.",
    )
    assert classic.heartbeat() == NONE and _group_type(broker, group) == "classic"
    assert f"Cannot upgrade classic group {group} to consumer group" in broker.log_tail(2000)
    m.close()
    classic.close()


def test_a_mixed_group_survives_a_kill_9(broker_factory: Any) -> None:
    """The classic members' metadata is in the consumer group's records: after a kill -9 the
    classic member heartbeats at its generation, and leaving still sends the group back."""
    broker = broker_factory(FAST)
    ids = _topic(broker, "mk-t", 2)
    classic = RawMember(broker, "mk-g", session_ms=30_000, rebalance_ms=30_000)
    assert classic.join("mk-t") == NONE
    plan = {classic.member_id: _assignment("mk-t", [0, 1])}
    assert classic.sync(plan) == (NONE, plan[classic.member_id])
    generation = classic.generation
    c = Member(broker, "mk-g", ids)
    _assert_ok(c.join("mk-t"))
    assert classic.heartbeat() == REBALANCE_IN_PROGRESS
    assert classic.join("mk-t") == NONE and classic.generation == generation + 1
    code, assignment = classic.sync()
    assert code == NONE and len(_partitions(assignment)) == 1
    _assert_ok(c.heartbeat())
    _assert_ok(c.ack())
    c.close()
    classic.close()

    broker.kill9()
    broker.restart()
    d = _loaded(broker, "mk-g")
    assert d.group_epoch == generation + 1
    members = _members(broker, "mk-g")
    assert members[classic.member_id] == (
        CLASSIC,
        generation + 1,
        {p for _, p in _partitions(assignment)},
    )
    again = RawMember(broker, "mk-g", session_ms=30_000)
    again.member_id, again.generation = classic.member_id, classic.generation
    assert again.heartbeat() == NONE
    assert again.commit({0: 3}, topic="mk-t") == {NONE}
    # Everyone leaves, the classic member first: the group is an empty consumer group, and
    # can be deleted (the classic state it had before the kill is gone with its tombstone).
    assert again.leave() == NONE
    c2 = Member(broker, "mk-g", ids)
    c2.member_id, c2.epoch = c.member_id, c.epoch
    _assert_ok(c2.heartbeat(epoch=-1))
    assert _group_type(broker, "mk-g") == "consumer"
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_consumer_groups(["mk-g"], request_timeout=T)["mk-g"].result(T)
    assert _group_type(broker, "mk-g") is None
    again.close()
    c2.close()


def test_a_static_member_moves_to_the_consumer_protocol_in_place(broker: Any) -> None:
    """A classic static member restarted on the consumer protocol with its instance id (a
    static member does not leave when it stops) takes its predecessor's place and
    partitions; the old incarnation is fenced."""
    ids = _topic(broker, "sm-t", 2)
    old = RawMember(broker, "sm-g", instance="sm-1", session_ms=30_000)
    other = RawMember(broker, "sm-g", instance="sm-2", session_ms=30_000)
    for m in (old, other):  # static members join without MEMBER_ID_REQUIRED
        m.send_join("sm-t")
    assert [m.recv_join() for m in (old, other)] == [NONE, NONE]
    leader, follower = (old, other) if old.member_id == old.leader else (other, old)
    plan = {old.member_id: _assignment("sm-t", [0]), other.member_id: _assignment("sm-t", [1])}
    follower.send_sync()
    assert leader.sync(plan)[0] == NONE and follower.recv_sync()[0] == NONE
    new = Member(broker, "sm-g", ids, instance="sm-1")
    r = _assert_ok(new.join("sm-t"))
    assert new.assigned == {("sm-t", 0)}  # its predecessor's partition, at once
    assert _group_type(broker, "sm-g") == "consumer"
    members = _members(broker, "sm-g")
    assert set(members) == {new.member_id, other.member_id}
    assert members[new.member_id] == (CONSUMER, r.member_epoch, {0})
    assert old.heartbeat() == FENCED_INSTANCE_ID
    assert other.heartbeat() == REBALANCE_IN_PROGRESS
    for m in (old, other, new):
        m.close()


def test_a_join_refused_after_the_conversion_leaves_the_group_classic(
    module_broker_factory: Any,
) -> None:
    """group.consumer.max.size reached by the classic members themselves: the member is
    refused, and the group stays classic, in memory and in the log."""
    broker = module_broker_factory({**FAST, "group.consumer.max.size": "1"})
    ids = _topic(broker, "mx-t", 1)
    classic = _classic_group(broker, "mx")
    m = Member(broker, "mx", ids)
    assert int(m.join("mx-t").error_code) == GROUP_MAX_SIZE_REACHED
    assert _group_type(broker, "mx") == "classic"
    assert classic.heartbeat() == NONE
    broker.kill9()
    broker.restart()
    assert wait_for(lambda: _group_type(broker, "mx"), what="mx loaded") == "classic"
    m.close()
    classic.close()


# --- librdkafka ------------------------------------------------------------------------------


def _drain(consumers: list[Any], got: list[bytes], until: int, seconds: float = 30) -> None:
    """Poll every consumer (at least once: polls run their rebalances) until ``until``
    distinct records have been read or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        for consumer in consumers:
            m = consumer.poll(0.05)
            if m is not None:
                assert not m.error(), m.error()
                got.append(m.value())
        if len(set(got)) >= until or time.monotonic() > deadline:
            return


def test_a_rolling_upgrade_and_rollback_with_librdkafka(broker: Any) -> None:
    """Classic consumers are replaced one by one with consumer-protocol ones and back: at
    every step every member keeps consuming, the newcomers get partitions while the others
    are still in, and every record is read."""
    from confluent_kafka import Consumer, Producer

    _topic(broker, "lr-t", 4)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    sent = 0

    def produce(n: int) -> None:
        nonlocal sent
        for i in range(sent, sent + n):
            producer.produce("lr-t", str(i).encode(), partition=i % 4)
        sent += n
        assert producer.flush(T) == 0

    base = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": "lr-g",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 100,
    }
    classic_conf = {
        **base,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 200,
    }
    consumer_conf = {**base, "group.protocol": "consumer"}

    def start(conf: dict[str, Any]) -> Any:
        consumer = Consumer(conf)
        consumer.subscribe(["lr-t"])
        return consumer

    got: list[bytes] = []
    old = [start(classic_conf), start(classic_conf)]
    produce(40)
    _drain(old, got, 40)
    assert set(got) == {str(i).encode() for i in range(40)}
    assert _group_type(broker, "lr-g") == "classic"

    # A consumer-protocol member joins: the group upgrades and it gets partitions while both
    # classic members are still in.
    new = [start(consumer_conf)]
    wait_for(
        lambda: _drain(old + new, got, sent, 0.2) or len(new[0].assignment()) > 0,
        what="the new member's partitions",
    )
    assert _group_type(broker, "lr-g") == "consumer"
    kinds = sorted(t for t, _, _ in _members(broker, "lr-g").values())
    assert kinds == [CLASSIC, CLASSIC, CONSUMER]
    _assert_disjoint(broker, "lr-g")
    produce(40)
    _drain(old + new, got, sent)
    assert set(got) == {str(i).encode() for i in range(sent)}

    # The classic members are replaced one by one.
    old.pop().close()
    new.append(start(consumer_conf))
    produce(40)
    _drain(old + new, got, sent)
    old.pop().close()
    produce(40)
    _drain(new, got, sent)
    assert set(got) == {str(i).encode() for i in range(sent)}
    wait_for(
        lambda: _drain(new, got, sent, 0.2) or sorted(len(c.assignment()) for c in new) == [2, 2],
        what="the consumer members sharing the partitions",
    )
    assert {t for t, _, _ in _members(broker, "lr-g").values()} == {CONSUMER}
    _assert_disjoint(broker, "lr-g")

    # And back: a classic member joins the consumer group; once the consumer-protocol
    # members have left, the group is classic again.
    old.append(start(classic_conf))
    wait_for(
        lambda: _drain(old + new, got, sent, 0.2) or len(old[0].assignment()) > 0,
        what="the classic member's partitions in the consumer group",
    )
    produce(40)
    _drain(old + new, got, sent)
    while new:
        new.pop().close()
    wait_for(
        lambda: _drain(old, got, sent, 0.2) or _group_type(broker, "lr-g") == "classic",
        what="the group back on the classic protocol",
    )
    old.append(start(classic_conf))
    produce(40)
    _drain(old, got, sent)
    wait_for(
        lambda: _drain(old, got, sent, 0.2) or sorted(len(c.assignment()) for c in old) == [2, 2],
        what="the classic members sharing the partitions",
    )
    assert set(got) == {str(i).encode() for i in range(sent)}
    d = _describe_classic(broker, "lr-g")
    assert d.group_state == "Stable" and len(d.members) == 2
    for consumer in old:
        consumer.close()


class _KafkaPythonConsumer:
    """kafka-python's classic consumer behind confluent-kafka's poll/assignment/close.

    It polls in a thread of its own, as applications run it. Polled in turn with the other
    members, a leader's rejoin could only finish after its poll had timed out (the others
    rejoin in their polls), and kafka-python 3.0.12 drops a join that completes between
    two polls and joins again: the group would rebalance forever."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=200,
            auto_commit_interval_ms=100,
        )
        self._records: queue.Queue[bytes] = queue.Queue()
        self._assigned: list[Any] = []
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=100).values():
                for record in records:
                    self._records.put(record.value)
            self._assigned = list(self._consumer.assignment())

    def poll(self, timeout: float) -> Any:
        try:
            return _Message(self._records.get(timeout=timeout))
        except queue.Empty:
            return None

    def assignment(self) -> list[Any]:
        return self._assigned

    def close(self) -> None:
        self._stop.set()
        self._poller.join()
        self._consumer.close()


class _Message:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value


@pytest.mark.parametrize("classic", ["librdkafka-cooperative", "kafka-python"])
def test_classic_clients_share_a_consumer_group_then_take_it_back(
    broker: Any, classic: str
) -> None:
    """Classic members join a group on the consumer protocol one after the other (a
    cooperative member gives partitions up by rejoining without them; kafka-python's eager
    members give everything up first), every record is read, and once the consumer-protocol
    member leaves the group is classic again and its members share all partitions."""
    from confluent_kafka import Consumer, Producer

    group, topic = f"cs-{classic}", f"cs-{classic}-t"
    _topic(broker, topic, 4)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    sent = 0

    def produce(n: int) -> None:
        nonlocal sent
        for i in range(sent, sent + n):
            producer.produce(topic, str(i).encode(), partition=i % 4)
        sent += n
        assert producer.flush(T) == 0

    def start_classic() -> Any:
        if classic == "kafka-python":
            return _KafkaPythonConsumer(broker.bootstrap, group, topic)
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "auto.commit.interval.ms": 100,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 200,
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )
        consumer.subscribe([topic])
        return consumer

    member = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "auto.commit.interval.ms": 100,
        }
    )
    member.subscribe([topic])
    got: list[bytes] = []
    produce(20)
    _drain([member], got, sent)
    classics = [start_classic()]
    wait_for(
        lambda: _drain([member, *classics], got, sent, 0.2) or len(classics[0].assignment()) == 2,
        what="the first classic member's partitions",
    )
    produce(20)
    _drain([member, *classics], got, sent)
    classics.append(start_classic())
    wait_for(
        lambda: (
            _drain([member, *classics], got, sent, 0.2)
            or sorted(len(c.assignment()) for c in [member, *classics]) == [1, 1, 2]
        ),
        what="three members sharing four partitions",
    )
    kinds = sorted(t for t, _, _ in _members(broker, group).values())
    assert kinds == [CLASSIC, CLASSIC, CONSUMER]
    _assert_disjoint(broker, group)
    produce(20)
    _drain([member, *classics], got, sent)
    _assert_all_read(broker, group, got, sent)

    member.close()
    wait_for(
        lambda: (
            _drain(classics, got, sent, 0.2)
            or (
                _group_type(broker, group) == "classic"
                and sorted(len(c.assignment()) for c in classics) == [2, 2]
            )
        ),
        # A downgrade's rebalance waits for every classic member to rejoin: on a loaded
        # machine kafka-python's can take a session timeout or two.
        timeout=60,
        what="the classic members sharing the partitions of a classic group",
    )
    produce(20)
    _drain(classics, got, sent)
    _assert_all_read(broker, group, got, sent)
    assert _describe_classic(broker, group).group_state == "Stable"
    for consumer in classics:
        consumer.close()
