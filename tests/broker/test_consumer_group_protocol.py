"""The consumer group protocol (KIP-848) over raw frames against a real broker:
ConsumerGroupHeartbeat's validation and error codes, the revoke-then-assign hand-over with
exact epochs and partitions, fencing, leaving, static members, session and rebalance
timeouts, offsets committed and fetched with member epochs, and how the other group APIs
(DescribeGroups, ListGroups, JoinGroup, ConsumerGroupDescribe) see such a group.

librdkafka's own consumer (``group.protocol=consumer``) runs in test_groups' rebalancing
scenario.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import time
import uuid
from typing import Any

import pytest
from kio.schema.consumer_group_heartbeat.v0 import request as hb0
from kio.schema.consumer_group_heartbeat.v1 import request as hb1

from tests.broker.test_groups import wait_for
from tests.kafka_wire import Closed, WireConn, create_topic

T = 20.0
HEARTBEAT_MS = 200
SESSION_MS = 2000
FAST = {
    "group.consumer.min.session.timeout.ms": "1000",
    "group.consumer.session.timeout.ms": str(SESSION_MS),
    "group.consumer.min.heartbeat.interval.ms": "100",
    "group.consumer.heartbeat.interval.ms": str(HEARTBEAT_MS),
    "offsets.topic.num.partitions": "4",
    "group.initial.rebalance.delay.ms": "100",
}

NONE, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID = 0, 22, 23, 25
UNSUPPORTED_VERSION, INVALID_REQUEST, GROUP_ID_NOT_FOUND = 35, 42, 69
FENCED_INSTANCE_ID, FENCED_MEMBER_EPOCH, UNRELEASED_INSTANCE_ID = 82, 110, 111
UNSUPPORTED_ASSIGNOR, STALE_MEMBER_EPOCH, INVALID_REGULAR_EXPRESSION = 112, 113, 128
GROUP_SUBSCRIBED_TO_TOPIC = 86
UNCHANGED: Any = object()


class Member:
    """One consumer-protocol member on its own connection, speaking ConsumerGroupHeartbeat v1
    with a member id it made itself (as librdkafka does)."""

    def __init__(
        self, broker: Any, group: str, topic_ids: dict[str, uuid.UUID], instance: str | None = None
    ) -> None:
        self.conn = WireConn(broker.port, timeout=T)
        self.group = group
        self.names = {v: k for k, v in topic_ids.items()}
        self.ids = topic_ids
        self.member_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        self.instance = instance
        self.epoch = 0
        self.assigned: set[tuple[str, int]] = set()

    def close(self) -> None:
        self.conn.close()

    def heartbeat(
        self,
        *,
        epoch: int | None = None,
        topics: tuple[str, ...] | None = None,
        regex: str | None = None,
        owned: Any = UNCHANGED,
        rebalance_ms: int = -1,
        assignor: str | None = None,
        member_id: str | None = None,
        instance: Any = UNCHANGED,
        version: int = 1,
    ) -> Any:
        """Send one heartbeat; on success, remember the epoch and any assignment."""
        if owned is UNCHANGED:
            owned = None
        hb: Any = hb1 if version == 1 else hb0
        extra = {"subscribed_topic_regex": regex} if version == 1 else {}
        parts = None
        if owned is not None:
            by_topic: dict[str, list[int]] = {}
            for name, index in sorted(owned):
                by_topic.setdefault(name, []).append(index)
            parts = tuple(
                hb.TopicPartitions(topic_id=self.ids[n], partitions=tuple(ps))
                for n, ps in by_topic.items()
            )
        request = hb.ConsumerGroupHeartbeatRequest(
            group_id=self.group,
            member_id=self.member_id if member_id is None else member_id,
            member_epoch=self.epoch if epoch is None else epoch,
            instance_id=self.instance if instance is UNCHANGED else instance,
            rack_id=None,
            rebalance_timeout=datetime.timedelta(milliseconds=rebalance_ms),
            subscribed_topic_names=topics,
            server_assignor=assignor,
            **extra,
            topic_partitions=parts,
        )
        r = self.conn.request(68, version, request)
        if int(r.error_code) == NONE:
            self.epoch = int(r.member_epoch)
            if r.member_id:
                self.member_id = r.member_id
            if r.assignment is not None:
                self.assigned = {
                    (self.names[t.topic_id], int(p))
                    for t in r.assignment.topic_partitions
                    for p in t.partitions
                }
        return r

    def join(self, *topics: str, rebalance_ms: int = 60_000, **kw: Any) -> Any:
        return self.heartbeat(epoch=0, topics=topics, owned=(), rebalance_ms=rebalance_ms, **kw)

    def ack(self) -> Any:
        """Heartbeat reporting exactly what it was last given (what librdkafka sends once it
        has revoked or taken up its partitions)."""
        return self.heartbeat(owned=set(self.assigned))


def _assert_ok(response: Any) -> Any:
    assert int(response.error_code) == NONE, (response.error_code, response.error_message)
    return response


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    return module_broker_factory(FAST)


def _topic(broker: Any, name: str, partitions: int) -> dict[str, uuid.UUID]:
    with WireConn(broker.port) as conn:
        return {name: create_topic(conn, name, partitions)}


def _describe(broker: Any, group: str) -> Any:
    from kio.schema.consumer_group_describe.v1 import request as cgd

    with WireConn(broker.port) as conn:
        r = conn.request(
            69,
            1,
            cgd.ConsumerGroupDescribeRequest(
                group_ids=(group,), include_authorized_operations=False
            ),
        )
    (described,) = r.groups
    return described


def _loaded(broker: Any, group: str) -> Any:
    """The group's description once its coordinator has loaded it."""

    def described() -> Any:
        d = _describe(broker, group)
        return d if int(d.error_code) == NONE else None

    return wait_for(described, what=f"group {group} loaded")


def test_heartbeat_validation(broker: Any) -> None:
    ids = _topic(broker, "kv-t", 2)
    m = Member(broker, "kv-g", ids)
    cases = [
        (dict(epoch=0, topics=("kv-t",), owned=()), INVALID_REQUEST, "RebalanceTimeoutMs must"),
        (
            dict(epoch=0, rebalance_ms=1000, owned=()),
            INVALID_REQUEST,
            "Either SubscribedTopicNames",
        ),
        (dict(epoch=0, topics=("kv-t",), rebalance_ms=1000), INVALID_REQUEST, "TopicPartitions"),
        (
            dict(epoch=0, topics=("kv-t",), rebalance_ms=1000, owned={("kv-t", 0)}),
            INVALID_REQUEST,
            "TopicPartitions must be empty",
        ),
        (
            dict(epoch=0, member_id="", topics=("kv-t",), rebalance_ms=1000, owned=()),
            INVALID_REQUEST,
            "MemberId",
        ),
        (dict(epoch=-3), INVALID_REQUEST, "MemberEpoch"),
        (dict(epoch=-2), INVALID_REQUEST, "InstanceId"),
        (
            dict(epoch=0, topics=("kv-t",), rebalance_ms=1000, owned=(), instance=""),
            INVALID_REQUEST,
            "InstanceId can't be empty",
        ),
        (
            dict(epoch=0, topics=("kv-t",), rebalance_ms=1000, owned=(), assignor="sticky"),
            UNSUPPORTED_ASSIGNOR,
            "Supported assignors: uniform, range",
        ),
        (
            dict(epoch=0, regex="kv-(", rebalance_ms=1000, owned=()),
            INVALID_REGULAR_EXPRESSION,
            "kv-(",
        ),
        (dict(epoch=3), GROUP_ID_NOT_FOUND, "kv-g not found"),
    ]
    for kwargs, code, message in cases:
        r = m.heartbeat(**kwargs)
        assert int(r.error_code) == code, (kwargs, r)
        assert message in (r.error_message or ""), (kwargs, r.error_message)
    # None of those created the group; v0 lets the coordinator name the member.
    assert int(_describe(broker, "kv-g").error_code) == GROUP_ID_NOT_FOUND
    r = _assert_ok(
        m.heartbeat(version=0, member_id="", epoch=0, topics=("kv-t",), owned=(), rebalance_ms=1000)
    )
    assert r.member_id and r.member_epoch == 1
    assert m.assigned == {("kv-t", 0), ("kv-t", 1)}
    m.close()


def test_revoke_then_assign_with_exact_epochs(broker: Any) -> None:
    ids = _topic(broker, "ra-t", 4)
    a, b = Member(broker, "ra-g", ids), Member(broker, "ra-g", ids)
    every = {("ra-t", p) for p in range(4)}

    r = _assert_ok(a.join("ra-t"))
    assert (r.member_epoch, a.assigned) == (1, every)
    assert r.heartbeat_interval == datetime.timedelta(milliseconds=HEARTBEAT_MS)
    _assert_ok(a.ack())
    assert _describe(broker, "ra-g").group_state == "Stable"

    # b joins: epoch 2, but all four partitions are still a's, so b gets none yet.
    r = _assert_ok(b.join("ra-t"))
    assert (r.member_epoch, b.assigned) == (2, set())
    d = _describe(broker, "ra-g")
    assert (d.group_state, d.group_epoch, d.assignment_epoch) == ("Reconciling", 2, 2)
    assert {m.client_host for m in d.members} == {"/127.0.0.1"}

    # a must give up two first: its epoch stays 1 until it confirms.
    r = _assert_ok(a.heartbeat())
    assert r.member_epoch == 1 and r.assignment is not None
    kept = set(a.assigned)
    assert len(kept) == 2 and kept < every
    # A heartbeat still claiming everything changes nothing: no new assignment.
    r = _assert_ok(a.heartbeat(owned=every))
    assert r.member_epoch == 1 and r.assignment is None
    # b still waits: the partitions are not released.
    r = _assert_ok(b.heartbeat())
    assert (r.member_epoch, b.assigned) == (2, set())

    r = _assert_ok(a.ack())  # revoked
    assert r.member_epoch == 2 and a.assigned == kept
    r = _assert_ok(b.heartbeat())
    assert (r.member_epoch, b.assigned) == (2, every - kept)
    _assert_ok(b.ack())
    d = _describe(broker, "ra-g")
    assert d.group_state == "Stable"
    described = {m.member_id: m for m in d.members}
    for member in (a, b):
        got = described[member.member_id]
        assert got.member_epoch == 2
        current = {("ra-t", int(p)) for t in got.assignment.topic_partitions for p in t.partitions}
        target = {
            ("ra-t", int(p)) for t in got.target_assignment.topic_partitions for p in t.partitions
        }
        assert current == target == member.assigned
        assert got.subscribed_topic_names == ("ra-t",)
    assert d.assignor_name == "uniform"

    # a leaves: b takes everything at epoch 3.
    r = _assert_ok(a.heartbeat(epoch=-1))
    assert r.member_epoch == -1
    r = _assert_ok(b.heartbeat())
    assert (r.member_epoch, b.assigned) == (3, every)
    a.close()
    b.close()


def test_fencing_and_lost_responses(broker: Any) -> None:
    ids = _topic(broker, "fe-t", 2)
    a, b = Member(broker, "fe-g", ids), Member(broker, "fe-g", ids)
    _assert_ok(a.join("fe-t"))
    _assert_ok(a.ack())
    for epoch in (2, 7):  # newer than the coordinator's
        r = a.heartbeat(epoch=epoch)
        assert int(r.error_code) == FENCED_MEMBER_EPOCH, r
    r = a.heartbeat(epoch=1, member_id="nobody")
    assert int(r.error_code) == UNKNOWN_MEMBER_ID and "nobody" in r.error_message

    _assert_ok(b.join("fe-t"))
    _assert_ok(a.heartbeat())  # revoking one, still epoch 1
    _assert_ok(a.ack())  # epoch 2 now
    assert a.epoch == 2
    # The answer that moved a to epoch 2 was lost: a heartbeat at the previous epoch that
    # owns no more than a holds is accepted, and told its epoch and partitions again.
    r = _assert_ok(a.heartbeat(epoch=1, owned=set(a.assigned)))
    assert r.member_epoch == 2 and r.assignment is not None
    # At the previous epoch but claiming more than it holds: fenced.
    r = a.heartbeat(epoch=1, owned={("fe-t", 0), ("fe-t", 1)})
    assert int(r.error_code) == FENCED_MEMBER_EPOCH
    # A fenced member rejoins with epoch 0 under its id and starts from nothing.
    r = _assert_ok(a.join("fe-t"))
    assert r.member_epoch == 2
    a.close()
    b.close()


def test_offsets_with_member_epochs(broker: Any) -> None:
    from kio.schema.offset_commit.v9 import request as oc
    from kio.schema.offset_fetch.v9 import request as of

    ids = _topic(broker, "of-t", 1)
    a = Member(broker, "of-g", ids)
    _assert_ok(a.join("of-t"))
    _assert_ok(a.ack())

    def commit(version: int, epoch: int, member_id: str, offset: int = 5) -> set[int]:
        body = oc.OffsetCommitRequest(
            group_id="of-g",
            generation_id_or_member_epoch=epoch,
            member_id=member_id,
            group_instance_id=None,
            topics=(
                oc.OffsetCommitRequestTopic(
                    name="of-t",
                    partitions=(
                        oc.OffsetCommitRequestPartition(
                            partition_index=0,
                            committed_offset=offset,
                            committed_leader_epoch=-1,
                            committed_metadata="",
                        ),
                    ),
                ),
            ),
        )
        r = a.conn.request(8, version, body)
        return {int(p.error_code) for t in r.topics for p in t.partitions}

    def fetch(epoch: int, member_id: str | None) -> tuple[int, int]:
        body = of.OffsetFetchRequest(
            groups=(
                of.OffsetFetchRequestGroup(
                    group_id="of-g",
                    member_id=member_id,
                    member_epoch=epoch,
                    topics=(of.OffsetFetchRequestTopics(name="of-t", partition_indexes=(0,)),),
                ),
            ),
            require_stable=False,
        )
        (g,) = a.conn.request(9, 9, body).groups
        offset = g.topics[0].partitions[0].committed_offset if g.topics else -1
        return int(g.error_code), int(offset)

    assert commit(9, 2, a.member_id) == {STALE_MEMBER_EPOCH}
    assert commit(9, 1, "nobody") == {UNKNOWN_MEMBER_ID}
    assert commit(9, -1, "") == {UNKNOWN_MEMBER_ID}  # the group has members
    assert commit(8, 1, a.member_id) == {UNSUPPORTED_VERSION}
    assert commit(9, 1, a.member_id, offset=7) == {NONE}
    assert fetch(1, a.member_id) == (NONE, 7)
    assert fetch(-1, None) == (NONE, 7)  # admin tools
    assert fetch(0, a.member_id)[0] == STALE_MEMBER_EPOCH
    assert fetch(1, "nobody")[0] == UNKNOWN_MEMBER_ID

    _assert_ok(a.heartbeat(epoch=-1))
    # Empty now: anyone may commit without a member, as to a classic group.
    assert commit(9, -1, "", offset=9) == {NONE}
    assert fetch(-1, None) == (NONE, 9)
    a.close()


def test_a_commit_at_an_older_epoch_counts_for_what_the_member_still_holds(broker: Any) -> None:
    """KIP-1251: a member whose epoch moved on since it last heard (another member joined)
    commits at its older epoch; the partitions it has held since that epoch are taken, those
    it no longer holds, or got later, are STALE_MEMBER_EPOCH, and a newer epoch never is."""
    from kio.schema.offset_commit.v9 import request as oc

    ids = _topic(broker, "oe-t", 4)
    a, b = Member(broker, "oe-g", ids), Member(broker, "oe-g", ids)

    def commit(epoch: int, partitions: range) -> dict[int, int]:
        body = oc.OffsetCommitRequest(
            group_id="oe-g",
            generation_id_or_member_epoch=epoch,
            member_id=a.member_id,
            group_instance_id=None,
            topics=(
                oc.OffsetCommitRequestTopic(
                    name="oe-t",
                    partitions=tuple(
                        oc.OffsetCommitRequestPartition(
                            partition_index=p,
                            committed_offset=10 + p,
                            committed_leader_epoch=-1,
                            committed_metadata="",
                        )
                        for p in partitions
                    ),
                ),
            ),
        )
        r = a.conn.request(8, 9, body)
        return {int(p.partition_index): int(p.error_code) for t in r.topics for p in t.partitions}

    assert _assert_ok(a.join("oe-t")).member_epoch == 1
    _assert_ok(a.ack())
    _assert_ok(b.join("oe-t"))  # group epoch 2
    _assert_ok(a.heartbeat())  # revoking two, still at epoch 1
    kept = {p for _, p in a.assigned}
    _assert_ok(a.ack())
    assert a.epoch == 2
    # At epoch 1, as a client that has not heard of epoch 2 yet: what it kept is taken.
    got = commit(1, range(4))
    assert got == {p: NONE if p in kept else STALE_MEMBER_EPOCH for p in range(4)}
    assert commit(3, range(4)) == dict.fromkeys(range(4), STALE_MEMBER_EPOCH)
    assert commit(2, range(4)) == {p: NONE for p in range(4)}  # its epoch: as before
    a.close()
    b.close()


def test_other_group_apis_see_a_consumer_group(broker: Any) -> None:
    from kio.schema.describe_groups.v5 import request as dg5
    from kio.schema.describe_groups.v6 import request as dg
    from kio.schema.join_group.v9 import request as jg
    from kio.schema.list_groups.v5 import request as lg

    ids = _topic(broker, "oa-t", 2)
    a = Member(broker, "oa-g", ids)
    _assert_ok(a.join("oa-t"))
    conn = WireConn(broker.port, timeout=T)

    (d,) = conn.request(
        15, 6, dg.DescribeGroupsRequest(groups=("oa-g",), include_authorized_operations=False)
    ).groups
    assert int(d.error_code) == GROUP_ID_NOT_FOUND
    assert d.error_message == "Group oa-g is not a classic group." and d.group_state == "Dead"
    (d,) = conn.request(
        15, 5, dg5.DescribeGroupsRequest(groups=("oa-g",), include_authorized_operations=False)
    ).groups
    assert int(d.error_code) == NONE and d.group_state == "Dead"

    def listed(types: tuple[str, ...], states: tuple[str, ...] = ()) -> dict[str, Any]:
        r = conn.request(16, 5, lg.ListGroupsRequest(states_filter=states, types_filter=types))
        return {g.group_id: g for g in r.groups}

    g = listed(("consumer",))["oa-g"]
    assert (g.group_type, g.protocol_type, g.group_state) == ("consumer", "consumer", "Stable")
    assert "oa-g" not in listed(("classic",))
    a2 = Member(broker, "oa-g", ids)
    _assert_ok(a2.join("oa-t"))  # waits for a partition a holds
    assert "oa-g" in listed((), ("reconciling",)) and "oa-g" not in listed((), ("stable",))
    _assert_ok(a.heartbeat())
    _assert_ok(a.ack())
    _assert_ok(a2.heartbeat())
    assert listed(("Consumer",), ("Stable",))["oa-g"].group_state == "Stable"

    join = jg.JoinGroupRequest(
        group_id="oa-g",
        session_timeout=datetime.timedelta(seconds=10),
        rebalance_timeout=datetime.timedelta(seconds=10),
        member_id="",
        group_instance_id=None,
        protocol_type="consumer",
        protocols=(
            jg.JoinGroupRequestProtocol(name="range", metadata=b"\x00\x00\x00\x00\x00\x00"),
        ),
        reason=None,
    )
    # A consumer of another protocol type never fits (classic consumers do:
    # test_group_migration).
    connect = dataclasses.replace(join, protocol_type="connect")
    assert int(conn.request(11, 9, connect).error_code) == INCONSISTENT_GROUP_PROTOCOL

    # Only a join can move a classic group to the consumer protocol.
    from tests.broker.test_groups import RawMember

    classic = RawMember(broker, "oa-classic", session_ms=10_000)
    assert classic.join("oa-t") == NONE
    b = Member(broker, "oa-classic", ids)
    r = b.heartbeat(epoch=1)
    assert (int(r.error_code), r.error_message) == (
        GROUP_ID_NOT_FOUND,
        "Group oa-classic is not a consumer group.",
    )
    d = _describe(broker, "oa-classic")
    assert int(d.error_code) == GROUP_ID_NOT_FOUND and "not a consumer group" in d.error_message
    assert classic.leave() == NONE
    classic.close()
    r = _assert_ok(b.join("oa-t"))
    assert r.member_epoch == 1 and b.assigned == {("oa-t", 0), ("oa-t", 1)}
    conn.close()
    for m in (a, a2, b):
        m.close()


def test_static_members_and_timeouts(broker: Any) -> None:
    ids = _topic(broker, "st-t", 2)
    log_start = broker.log_mark()
    a = Member(broker, "st-g", ids, instance="i-a")
    b = Member(broker, "st-g", ids)
    _assert_ok(a.join("st-t"))
    _assert_ok(a.ack())
    _assert_ok(b.join("st-t"))
    _assert_ok(a.heartbeat())
    _assert_ok(a.ack())
    _assert_ok(b.heartbeat())
    _assert_ok(b.ack())
    held = set(a.assigned)
    assert len(held) == 1
    epoch = _describe(broker, "st-g").group_epoch

    # A second process with the same instance id while the first is in: refused.
    a2 = Member(broker, "st-g", ids, instance="i-a")
    r = a2.join("st-t")
    assert int(r.error_code) == UNRELEASED_INSTANCE_ID
    # The wrong member naming the instance is fenced.
    r = b.heartbeat(instance="i-a")
    assert int(r.error_code) == FENCED_INSTANCE_ID

    # a leaves for a restart (-2): its partition waits for it, the group epoch stays.
    r = _assert_ok(a.heartbeat(epoch=-2))
    assert r.member_epoch == -2
    d = _describe(broker, "st-g")
    assert d.group_epoch == epoch
    assert {m.member_id: m.member_epoch for m in d.members}[a.member_id] == -2
    r = _assert_ok(a2.join("st-t", rebalance_ms=800))
    assert a2.assigned == held and r.member_epoch == epoch
    assert _describe(broker, "st-g").group_epoch == epoch
    _assert_ok(a2.ack())

    # b stops heartbeating: the session timeout removes it and a2 gets both partitions.
    deadline = time.monotonic() + SESSION_MS / 1000 * 3
    while time.monotonic() < deadline and len(a2.assigned) < 2:
        _assert_ok(a2.heartbeat(owned=set(a2.assigned)))
        time.sleep(HEARTBEAT_MS / 1000)
    assert a2.assigned == {("st-t", 0), ("st-t", 1)}
    log = broker.log_tail(200, since=log_start)
    assert f"member {b.member_id} of consumer group st-g has failed" in log
    r = b.heartbeat()
    assert int(r.error_code) == UNKNOWN_MEMBER_ID

    # A member that does not revoke within its rebalance timeout is fenced.
    c = Member(broker, "st-g", ids)
    _assert_ok(c.join("st-t"))
    r = _assert_ok(a2.heartbeat())  # told to give one up; it never confirms
    assert len(a2.assigned) == 1 and r.member_epoch < c.epoch
    time.sleep(1.5)
    r = a2.heartbeat()
    assert int(r.error_code) == UNKNOWN_MEMBER_ID
    assert "did not revoke its partitions within its rebalance timeout" in broker.log_tail(
        200, since=log_start
    )
    for m in (a, a2, b, c):
        m.close()


def test_group_survives_a_broker_kill(broker_factory: Any) -> None:
    """Members, epochs and assignments are in __consumer_offsets (Kafka's records): after a
    kill -9 the members carry on at their epochs, without rejoining."""
    from tests.broker.test_metrics import scrape
    from tests.broker_process import free_port

    metrics_port = free_port()
    broker = broker_factory({**FAST, "artesian.metrics.port": str(metrics_port)})
    ids = _topic(broker, "ks-t", 4)
    a, b = Member(broker, "ks-g", ids), Member(broker, "ks-g", ids, instance="i-b")
    _assert_ok(a.join("ks-t", assignor="range"))
    _assert_ok(a.ack())
    _assert_ok(b.join("ks-t"))
    _assert_ok(a.heartbeat())
    _assert_ok(a.ack())
    _assert_ok(b.heartbeat())
    _assert_ok(b.ack())
    before = _describe(broker, "ks-g")
    assert before.group_state == "Stable" and before.assignor_name == "range"
    m = scrape(metrics_port)
    prefix = "kafka_server_group_coordinator_metrics_"
    assert m[(prefix + "group_count", (("protocol", "consumer"),))] == 1
    assert m[(prefix + "group_count", (("protocol", "classic"),))] == 0
    assert m[(prefix + "consumer_group_count", (("state", "Stable"),))] == 1
    assert m[(prefix + "consumer_group_count", (("state", "Reconciling"),))] == 0
    held = {m.member_id: set(m.assigned) for m in (a, b)}
    epochs = {m.member_id: m.epoch for m in (a, b)}
    a.close()
    b.close()

    broker.kill9()
    broker.restart()
    a.conn = WireConn(broker.port, timeout=T)
    b.conn = WireConn(broker.port, timeout=T)
    after = _loaded(broker, "ks-g")
    assert (after.group_epoch, after.assignment_epoch) == (before.group_epoch, 2)
    assert after.assignor_name == "range"
    got = {m.member_id: m for m in after.members}
    assert got.keys() == held.keys()
    assert got[b.member_id].instance_id == "i-b"
    for m in (a, b):
        assigned = {
            ("ks-t", int(p))
            for t in got[m.member_id].assignment.topic_partitions
            for p in t.partitions
        }
        assert assigned == held[m.member_id]
        assert got[m.member_id].member_epoch == epochs[m.member_id]
        assert got[m.member_id].subscribed_topic_names == ("ks-t",)
        r = _assert_ok(m.heartbeat(owned=held[m.member_id]))
        assert r.member_epoch == epochs[m.member_id] and m.assigned == held[m.member_id]
    assert _describe(broker, "ks-g").group_epoch == before.group_epoch  # no rebalance

    # A static leave, a removal and the group's deletion survive a restart too.
    _assert_ok(b.heartbeat(epoch=-2))
    _assert_ok(a.heartbeat(epoch=-1))
    a.close()
    b.close()
    broker.stop()
    broker.restart()
    d = _loaded(broker, "ks-g")
    assert [(m.member_id, m.member_epoch) for m in d.members] == [(b.member_id, -2)]
    assert d.group_epoch == before.group_epoch + 1
    # b's new incarnation takes over its partitions, and a's (a left); then leaves for good.
    b2 = Member(broker, "ks-g", ids, instance="i-b")
    r = _assert_ok(b2.join("ks-t"))
    assert b2.assigned == {("ks-t", p) for p in range(4)} and r.member_epoch == d.group_epoch
    assert _describe(broker, "ks-g").assignor_name == "uniform"  # nobody asks for range now
    _assert_ok(b2.heartbeat(epoch=-1))
    b2.close()
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_consumer_groups(["ks-g"], request_timeout=T)["ks-g"].result(T)
    broker.stop()
    broker.restart()
    assert int(_describe(broker, "ks-g").error_code) == GROUP_ID_NOT_FOUND


def test_librdkafka_consumer_carries_on_through_a_broker_kill(broker_factory: Any) -> None:
    """A confluent-kafka consumer on the consumer protocol, committing each record, reads
    every record exactly once across a kill -9 of its broker, without rejoining the group."""
    from confluent_kafka import Consumer, Producer

    broker = broker_factory(FAST)
    _topic(broker, "lk-t", 4)
    producer = Producer({"bootstrap.servers": broker.bootstrap})

    def produce(first: int, last: int) -> None:
        for i in range(first, last):
            producer.produce("lk-t", str(i).encode(), partition=i % 4)
        assert producer.flush(T) == 0

    produce(0, 400)
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "lk-g",
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["lk-t"])
    seen: list[tuple[int, int, bytes]] = []

    def consume_until(count: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while len(seen) < count and time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is None or m.error():
                continue
            seen.append((m.partition(), m.offset(), m.value()))
            consumer.commit(m, asynchronous=False)

    consume_until(200)
    epoch = _describe(broker, "lk-g").group_epoch
    broker.kill9()
    broker.restart()
    produce(400, 600)
    consume_until(600)
    consume_until(601, seconds=1.5)  # a duplicate would arrive now
    consumer.close()
    expected = sorted((i % 4, i // 4, str(i).encode()) for i in range(600))
    assert sorted(seen) == expected
    assert epoch == 1
    d = _describe(broker, "lk-g")
    # The member left on close (epoch 2); it never rejoined, which would have bumped it.
    assert (d.group_epoch, d.group_state, d.members) == (2, "Empty", ())


def test_static_member_returns_after_the_group_changed(broker: Any) -> None:
    """A static member leaving for a restart (-2) while it revokes lets go of what it was
    revoking at once; its next incarnation, back after its target moved on, has nothing to
    revoke (it holds nothing yet) and is given the target epoch, which its next heartbeat is
    accepted at. The range assignor and chosen member ids make the targets certain."""
    ids = _topic(broker, "sr-t", 4)
    a, b = Member(broker, "sr-g", ids, instance="i-a"), Member(broker, "sr-g", ids)
    a.member_id, b.member_id = "m-a", "m-b"
    _assert_ok(a.join("sr-t", assignor="range"))
    _assert_ok(a.ack())
    _assert_ok(b.join("sr-t", assignor="range"))
    _assert_ok(a.heartbeat())  # must give up 2 and 3
    assert a.assigned == {("sr-t", 0), ("sr-t", 1)}
    _assert_ok(a.heartbeat(epoch=-2))  # goes away without confirming
    _assert_ok(b.heartbeat())
    assert b.assigned == {("sr-t", 2), ("sr-t", 3)}

    # c sorts first: range gives it 0-1, a's place 2, b 3.
    c = Member(broker, "sr-g", ids)
    c.member_id = "m-0"
    _assert_ok(c.join("sr-t", assignor="range"))
    d = _describe(broker, "sr-g")
    targets = {
        m.member_id: {int(p) for t in m.target_assignment.topic_partitions for p in t.partitions}
        for m in d.members
    }
    assert targets == {"m-0": {0, 1}, "m-a": {2}, "m-b": {3}}
    a2 = Member(broker, "sr-g", ids, instance="i-a")
    a2.member_id = "m-a2"
    r = _assert_ok(a2.join("sr-t", assignor="range"))
    assert r.member_epoch == d.group_epoch and a2.assigned == set()  # 2 is still b's
    r = _assert_ok(a2.ack())
    assert r.member_epoch == d.group_epoch
    _assert_ok(b.heartbeat())  # b gives up 2
    _assert_ok(b.ack())
    _assert_ok(a2.heartbeat())
    assert a2.assigned == {("sr-t", 2)}
    for m in (a, a2, b, c):
        m.close()


def test_leave_errors(broker: Any) -> None:
    ids = _topic(broker, "le-t", 1)
    a = Member(broker, "le-g", ids, instance="i-a")
    r = a.heartbeat(epoch=-1)
    assert (int(r.error_code), r.error_message) == (
        GROUP_ID_NOT_FOUND,
        "Consumer group le-g not found.",
    )
    _assert_ok(a.join("le-t"))
    for kwargs, code in [
        (dict(epoch=-1, member_id=""), INVALID_REQUEST),
        (dict(epoch=-2, instance="i-other"), UNKNOWN_MEMBER_ID),
        (dict(epoch=-2, member_id="someone-else"), FENCED_INSTANCE_ID),
        (dict(epoch=-1, instance=None, member_id="nobody"), UNKNOWN_MEMBER_ID),
    ]:
        assert int(a.heartbeat(**kwargs).error_code) == code, kwargs
    r = _assert_ok(a.heartbeat(epoch=-1))
    assert r.member_epoch == -1
    a.close()


def test_offset_delete_refuses_subscribed_topics(broker: Any) -> None:
    from kio.schema.offset_delete.v0 import request as od

    ids = {**_topic(broker, "od-t", 1), **_topic(broker, "od-other", 1)}
    a = Member(broker, "od-g", ids)
    _assert_ok(a.join("od-t"))

    def delete(topic: str) -> tuple[int, int]:
        body = od.OffsetDeleteRequest(
            group_id="od-g",
            topics=(
                od.OffsetDeleteRequestTopic(
                    name=topic, partitions=(od.OffsetDeleteRequestPartition(partition_index=0),)
                ),
            ),
        )
        r = a.conn.request(47, 0, body)
        return int(r.error_code), int(r.topics[0].partitions[0].error_code)

    assert delete("od-t") == (NONE, GROUP_SUBSCRIBED_TO_TOPIC)
    assert delete("od-other") == (NONE, NONE)
    a.close()


def test_partitions_added_reach_the_group_live_and_across_a_restart(broker_factory: Any) -> None:
    from confluent_kafka.admin import AdminClient, NewPartitions

    broker = broker_factory(FAST)
    ids = _topic(broker, "pa-t", 2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def grow(total: int) -> None:
        admin.create_partitions([NewPartitions("pa-t", total)])["pa-t"].result(T)

    a = Member(broker, "pa-g", ids)
    _assert_ok(a.join("pa-t"))
    _assert_ok(a.ack())
    assert (a.epoch, a.assigned) == (1, {("pa-t", 0), ("pa-t", 1)})
    grow(3)
    _assert_ok(a.heartbeat())
    assert (a.epoch, a.assigned) == (2, {("pa-t", p) for p in range(3)})
    _assert_ok(a.ack())
    a.close()

    broker.kill9()
    broker.restart()
    _loaded(broker, "pa-g")
    grow(4)  # before the group's first heartbeat on the restarted coordinator
    a.conn = WireConn(broker.port, timeout=T)
    _assert_ok(a.heartbeat(owned=set(a.assigned)))
    assert (a.epoch, a.assigned) == (3, {("pa-t", p) for p in range(4)})
    a.close()


def test_offsets_of_a_classic_group_survive_its_move_to_the_consumer_protocol(
    broker_factory: Any,
) -> None:
    from tests.broker.test_groups import RawMember, _assignment

    broker = broker_factory(FAST)
    ids = _topic(broker, "cm-t", 1)
    classic = RawMember(broker, "cm-g", session_ms=10_000)
    assert classic.join("cm-t") == NONE
    assert classic.sync({classic.member_id: _assignment("cm-t", [0])})[0] == NONE
    assert classic.commit({0: 17}, topic="cm-t") == {NONE}
    assert classic.leave() == NONE
    classic.close()

    a = Member(broker, "cm-g", ids)
    _assert_ok(a.join("cm-t"))
    a.close()
    broker.kill9()
    broker.restart()
    assert _loaded(broker, "cm-g").group_epoch == 1
    committed = _committed_offset(broker, "cm-g", "cm-t")
    assert committed == 17


def _committed_offset(broker: Any, group: str, topic: str) -> int:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    (future,) = admin.list_consumer_group_offsets([req], request_timeout=T).values()
    return int(future.result(T).topic_partitions[0].offset)


def test_the_consumer_protocol_can_be_turned_off(broker_factory: Any) -> None:
    from kio.schema.api_versions.v3.request import ApiVersionsRequest

    from artesian.config.broker import BrokerConfig
    from artesian.config.definitions import InvalidConfigError

    with pytest.raises(InvalidConfigError, match="must include classic"):
        BrokerConfig({"group.coordinator.rebalance.protocols": "consumer"})
    with pytest.raises(InvalidConfigError, match=r"between group\.consumer\.min\.session"):
        BrokerConfig({"group.consumer.session.timeout.ms": "1000"})
    with pytest.raises(InvalidConfigError, match=r"less than group\.consumer\.session"):
        BrokerConfig(
            {
                "group.consumer.max.heartbeat.interval.ms": "50000",
                "group.consumer.heartbeat.interval.ms": "45000",
            }
        )

    broker = broker_factory({**FAST, "group.coordinator.rebalance.protocols": "classic"})
    ids = _topic(broker, "off-t", 1)
    with WireConn(broker.port) as conn:
        r = conn.request(
            18, 3, ApiVersionsRequest(client_software_name="t", client_software_version="1")
        )
        keys = {int(k.api_key) for k in r.api_keys}
    assert 11 in keys and not {68, 69} & keys
    m = Member(broker, "off-g", ids)
    with pytest.raises(Closed):  # not served: the broker closes the connection
        m.join("off-t")
    m.close()


def test_regex_subscription_follows_new_topics(broker: Any) -> None:
    ids = {**_topic(broker, "rx-a", 1), **_topic(broker, "rx-b", 2), **_topic(broker, "rxz", 1)}
    a = Member(broker, "rx-g", ids)
    r = _assert_ok(a.heartbeat(epoch=0, regex="rx-.*", owned=(), rebalance_ms=60_000))
    assert (r.member_epoch, a.assigned) == (1, {("rx-a", 0), ("rx-b", 0), ("rx-b", 1)})
    _assert_ok(a.ack())
    d = _describe(broker, "rx-g")
    assert (d.members[0].subscribed_topic_regex, d.members[0].subscribed_topic_names) == (
        "rx-.*",
        (),
    )
    a.ids.update(_topic(broker, "rx-c", 1))
    a.names = {v: k for k, v in a.ids.items()}
    r = _assert_ok(a.heartbeat())
    assert r.member_epoch == 2 and ("rx-c", 0) in a.assigned
    # A regex matches whole names only: "rx-" alone matches nothing, so a must give up
    # everything (still at epoch 2), then stands at epoch 3 with nothing.
    r = _assert_ok(a.heartbeat(regex="rx-"))
    assert (r.member_epoch, a.assigned) == (2, set())
    r = _assert_ok(a.ack())
    assert (r.member_epoch, a.assigned) == (3, set())
    a.close()


def test_a_regex_cannot_stall_the_broker(broker: Any) -> None:
    """RE2, as Kafka's RE2J: a pattern that makes a backtracking engine take exponential time
    over a long topic name is answered like any other (Python's `re` would take hours)."""
    name = "a" * 60
    ids = _topic(broker, name, 1)
    a = Member(broker, "redos-g", ids)
    r = _assert_ok(a.heartbeat(epoch=0, regex="(a+)+b", owned=(), rebalance_ms=60_000))
    assert (r.member_epoch, a.assigned) == (1, set())
    r = _assert_ok(a.heartbeat(regex="(a+)+"))
    assert (r.member_epoch, a.assigned) == (2, {(name, 0)})
    # RE2's syntax, not Python's: no lookbehind.
    r = a.heartbeat(regex="(?<=a)b")
    assert int(r.error_code) == INVALID_REGULAR_EXPRESSION
    assert r.error_message == (
        "SubscribedTopicRegex `(?<=a)b` is not a valid regular expression: "
        "invalid perl operator: (?<=."
    )
    a.close()


def test_exactly_once_copy_with_the_consumer_protocol(broker: Any) -> None:
    """consume-transform-produce: a transactional producer commits the offsets of a consumer
    on the consumer protocol (its member id and epoch are what TxnOffsetCommit checks)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    _topic(broker, "eo-in", 2)
    _topic(broker, "eo-out", 2)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        plain.produce("eo-in", str(i).encode(), partition=i % 2)
    assert plain.flush(T) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "eo-g",
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["eo-in"])
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "eo-tx"})
    producer.init_transactions(T)
    copied = 0
    deadline = time.monotonic() + 30
    while copied < 100 and time.monotonic() < deadline:
        batch = [m for m in consumer.consume(50, 0.5) if not m.error()]
        if not batch:
            continue
        producer.begin_transaction()
        for m in batch:
            producer.produce("eo-out", m.value(), partition=m.partition())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), T
        )
        producer.commit_transaction(T)
        copied += len(batch)
    committed = consumer.committed([TopicPartition("eo-in", p) for p in (0, 1)], T)
    from tests.cli.test_admin_cli import cli_json

    described = cli_json(broker, "groups", "describe", "eo-g")  # while the member is in
    assert (described["protocol"], described["assignor"]) == ("consumer", "uniform")
    (member,) = described["members"]
    assert sorted(map(tuple, member["partitions"])) == [("eo-in", 0), ("eo-in", 1)]
    assert [(r["partition"], r["committed_offset"], r["lag"]) for r in described["partitions"]] == [
        (0, 50, 0),
        (1, 50, 0),
    ]
    consumer.close()
    assert copied == 100 and [tp.offset for tp in committed] == [50, 50]
    reader = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "eo-reader",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    reader.subscribe(["eo-out"])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 100 and time.monotonic() < deadline:
        values.extend(m.value() for m in reader.consume(100, 0.5) if not m.error())
    reader.close()
    assert sorted(values, key=int) == [str(i).encode() for i in range(100)]


def test_a_recreated_topic_is_a_new_epoch(broker: Any) -> None:
    """Deleted and created again under its name, a topic is another topic: the members are
    told its new id (a new epoch), though the partition count is the same."""
    from confluent_kafka.admin import AdminClient

    ids = _topic(broker, "rc-t", 2)
    a = Member(broker, "rc-g", ids)
    _assert_ok(a.join("rc-t"))
    _assert_ok(a.ack())
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics(["rc-t"])["rc-t"].result(T)
    new_ids = wait_for(lambda: _recreate(broker, "rc-t"), what="rc-t created again")
    assert new_ids["rc-t"] != ids["rc-t"]
    a.names[new_ids["rc-t"]] = "rc-t"
    r = _assert_ok(a.heartbeat())
    assert r.member_epoch == 2 and r.assignment is not None
    assert {t.topic_id for t in r.assignment.topic_partitions} == {new_ids["rc-t"]}
    a.close()


def _recreate(broker: Any, name: str) -> dict[str, uuid.UUID] | None:
    try:
        return _topic(broker, name, 2)
    except AssertionError:  # the deletion is still under way
        return None


def test_a_group_has_its_own_session_timeout_and_heartbeat_interval(broker_factory: Any) -> None:
    """KIP-848's GROUP config resource, through kafka-python's admin client: the group's
    consumer.session.timeout.ms and consumer.heartbeat.interval.ms, within the broker's
    bounds, told to its members at their next heartbeat, kept across a restart."""
    from kafka.admin import KafkaAdminClient
    from kafka.admin._configs import ConfigResource, ConfigResourceType

    broker = broker_factory(
        {**FAST, "group.consumer.max.session.timeout.ms": "20000"}, name="group-configs"
    )
    ids = _topic(broker, "gc-t", 1)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)

    def described(group: str) -> dict[str, tuple[str, str]]:
        result = admin.describe_configs(
            [ConfigResource(ConfigResourceType.GROUP, group)], config_filter="all"
        )
        entries = result["group"][group]
        return {name: (e["value"], e["config_source"]) for name, e in entries.items()}

    def alter(group: str, name: str, value: Any) -> str:
        result = admin.alter_configs(
            [ConfigResource(ConfigResourceType.GROUP, group, configs={name: value})],
            incremental=True,
            raise_on_unknown=False,  # the broker's refusal is what is tested
        )
        return str(result["group"][group])

    # No override: the broker's values, as DEFAULT_CONFIG.
    def _ms(ms: Any) -> datetime.timedelta:
        return datetime.timedelta(milliseconds=int(ms))

    share_defaults = {  # a GROUP resource has share groups' configs too (KIP-932)
        "share.session.timeout.ms": ("45000", "DEFAULT_CONFIG"),
        "share.heartbeat.interval.ms": ("5000", "DEFAULT_CONFIG"),
        "share.record.lock.duration.ms": ("30000", "DEFAULT_CONFIG"),
        "share.auto.offset.reset": ("latest", "DEFAULT_CONFIG"),
        "share.isolation.level": ("read_uncommitted", "DEFAULT_CONFIG"),
    }
    defaults = {
        "consumer.session.timeout.ms": (str(SESSION_MS), "DEFAULT_CONFIG"),
        "consumer.heartbeat.interval.ms": (str(HEARTBEAT_MS), "DEFAULT_CONFIG"),
        **share_defaults,
    }
    assert described("gc-g") == defaults
    slow, fast = Member(broker, "gc-g", ids), Member(broker, "gc-g", ids)
    assert _assert_ok(slow.join("gc-t")).heartbeat_interval == _ms(HEARTBEAT_MS)
    assert alter("gc-g", "consumer.heartbeat.interval.ms", "300") == "OK"
    assert alter("gc-g", "consumer.session.timeout.ms", "4000") == "OK"
    assert described("gc-g") == {
        "consumer.session.timeout.ms": ("4000", "DYNAMIC_GROUP_CONFIG"),
        "consumer.heartbeat.interval.ms": ("300", "DYNAMIC_GROUP_CONFIG"),
        **share_defaults,
    }
    assert described("another-group") == defaults
    # The member learns the group's interval at its next heartbeat.
    assert _assert_ok(slow.ack()).heartbeat_interval == _ms(300)
    # The longer session: members silent for 3 s, over the broker's 2 s, are still in.
    _assert_ok(fast.join("gc-t"))
    time.sleep(3.0)
    assert int(slow.heartbeat().error_code) == NONE
    assert int(fast.heartbeat().error_code) == NONE

    refusals = {
        ("consumer.session.timeout.ms", "500"): (
            "consumer.session.timeout.ms must be greater than or equal to "
            "group.consumer.min.session.timeout.ms"
        ),
        ("consumer.session.timeout.ms", "30000"): (
            "consumer.session.timeout.ms must be less than or equal to "
            "group.consumer.max.session.timeout.ms"
        ),
        ("consumer.heartbeat.interval.ms", "5000"): (
            "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms"
        ),
        ("consumer.heartbeat.interval.ms", "soon"): (
            "Invalid value soon for configuration consumer.heartbeat.interval.ms: Not a number "
            "of type INT"
        ),
        ("streams.session.timeout.ms", "45000"): (
            "Unknown group config name: streams.session.timeout.ms"
        ),
        ("share.isolation.level", "READ_COMMITTED"): (
            "Invalid value READ_COMMITTED for configuration share.isolation.level: String "
            "must be one of: read_committed, read_uncommitted"
        ),
        ("share.auto.offset.reset", "by_duration:-PT1H"): (
            "Invalid value by_duration:-PT1H for configuration share.auto.offset.reset: "
            "Invalid value `by_duration:-PT1H` for configuration share.auto.offset.reset. The "
            "value must be either 'earliest', 'latest' or of the format "
            "'by_duration:<PnDTnHnMn.nS.>'."
        ),
    }
    for (name, value), message in refusals.items():
        assert alter("gc-g", name, value) == f"[Error 40] InvalidConfigurationError: {message}"
    assert described("gc-g")["consumer.session.timeout.ms"] == ("4000", "DYNAMIC_GROUP_CONFIG")
    # The CLI shows and sets the same (librdkafka has no GROUP config resource).
    from tests.cli.test_admin_cli import cli_json, fails

    shown = cli_json(
        broker, "groups", "config", "gc-g", "--set", "consumer.session.timeout.ms=5000"
    )
    assert shown == {
        "group": "gc-g",
        "configs": [
            {
                "name": "consumer.heartbeat.interval.ms",
                "value": "300",
                "source": "GROUP_CONFIG",
                "read_only": False,
            },
            {
                "name": "consumer.session.timeout.ms",
                "value": "5000",
                "source": "GROUP_CONFIG",
                "read_only": False,
            },
            *(
                {"name": name, "value": value, "source": "DEFAULT_CONFIG", "read_only": False}
                for name, (value, _) in sorted(share_defaults.items())
            ),
        ],
    }
    refused = fails(broker, "groups", "config", "gc-g", "--set", "consumer.session.timeout.ms=1")
    assert "INVALID_CONFIG: consumer.session.timeout.ms must be greater than or equal to" in (
        refused
    )

    # Kept in the metadata log: the same after a restart.
    admin.close()
    slow.close()
    fast.close()
    broker.stop()
    # Restarted with bounds the stored 5000 ms no longer fits: the broker's value applies.
    broker.settings["group.consumer.max.session.timeout.ms"] = "3000"
    mark = broker.log_mark()
    broker.start()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    assert described("gc-g")["consumer.heartbeat.interval.ms"] == ("300", "DYNAMIC_GROUP_CONFIG")
    assert described("gc-g")["consumer.session.timeout.ms"] == ("5000", "DYNAMIC_GROUP_CONFIG")
    member = Member(broker, "gc-g", ids)

    def joined() -> Any:
        r = member.join("gc-t")
        return r if int(r.error_code) == NONE else None

    assert wait_for(joined, what="joined after the restart").heartbeat_interval == _ms(300)
    assert (
        "a group's consumer.session.timeout.ms='5000' cannot apply (outside [1000, "
        "3000]): the broker's group.consumer.session.timeout.ms applies instead"
    ) in broker.log_tail(200, since=mark)
    # A change is checked against the group's whole configuration, as in Kafka: the stored
    # session timeout must go (or fit) first. Deleting returns to the broker's values.
    assert "must be less than or equal to group.consumer.max.session.timeout.ms" in alter(
        "gc-g", "consumer.heartbeat.interval.ms", ("DELETE", None)
    )
    assert alter("gc-g", "consumer.session.timeout.ms", ("DELETE", None)) == "OK"
    assert alter("gc-g", "consumer.heartbeat.interval.ms", ("DELETE", None)) == "OK"
    assert (
        described("gc-g")["consumer.heartbeat.interval.ms"]
        == defaults["consumer.heartbeat.interval.ms"]
    )
    assert _assert_ok(member.heartbeat()).heartbeat_interval == _ms(HEARTBEAT_MS)
    member.close()
    admin.close()


def test_the_cli_names_a_consumer_protocol_groups_state(module_broker_factory: Any) -> None:
    """librdkafka's admin API calls Assigning and Reconciling UNKNOWN; the CLI asks
    ConsumerGroupDescribe instead. A long session: the members wait while the CLI runs."""
    import json

    from tests.cli_run import artesian

    broker = module_broker_factory({**FAST, "group.consumer.session.timeout.ms": "60000"})
    ids = _topic(broker, "cs-t", 2)
    a, b = Member(broker, "cs-g", ids), Member(broker, "cs-g", ids)
    try:
        _assert_ok(a.join("cs-t"))
        _assert_ok(a.ack())
        _assert_ok(b.join("cs-t"))  # waits for a partition a holds
        listed = artesian("groups", "list", "--json", "-b", broker.bootstrap)
        assert {"group": "cs-g", "state": "Reconciling"} in json.loads(listed.stdout)
        described = artesian("groups", "describe", "cs-g", "--json", "-b", broker.bootstrap)
        desc = json.loads(described.stdout)
        assert (desc["state"], desc["protocol"]) == ("Reconciling", "consumer")
    finally:
        a.close()
        b.close()


def test_client_hosts_are_written_as_java_writes_addresses() -> None:
    """InetAddress.toString() as Kafka's coordinator records it: a slash, IPv6 written out
    with its zone, IPv4-mapped IPv6 as the IPv4 address."""
    from types import SimpleNamespace

    from artesian.broker.handlers._groups import client_host

    def host(peer: str) -> str:
        return client_host(SimpleNamespace(connection=SimpleNamespace(peer=peer)))

    assert host("127.0.0.1:50000") == "/127.0.0.1"
    assert host("::1:50000") == "/0:0:0:0:0:0:0:1"
    assert host("fe80::1%eth0:50000") == "/fe80:0:0:0:0:0:0:1%eth0"
    assert host("::ffff:10.0.0.7:50000") == "/10.0.0.7"
