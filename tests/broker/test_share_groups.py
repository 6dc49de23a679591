"""Share groups (KIP-932, queues for Kafka) against a real broker: librdkafka's ShareConsumer
reading a topic between several consumers, each record handed to one of them; released,
rejected and timed-out records and the delivery limit; acknowledgements surviving a kill -9;
and ShareGroupHeartbeat, ShareFetch and ShareAcknowledge over raw frames for the exact
offsets, delivery counts and error codes.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from kio.schema.share_acknowledge.v1 import request as sa
from kio.schema.share_fetch.v1 import request as sf
from kio.schema.share_group_heartbeat.v1 import request as sh

from artesian.protocol.record_codec import decode_records
from artesian.protocol.records import iter_batches
from tests.broker.test_groups import wait_for
from tests.kafka_wire import WireConn, create_topic, sample_request

T = 20.0
SHARE = {
    "group.share.enable": "true",
    "offsets.topic.num.partitions": "4",
    "share.coordinator.state.topic.num.partitions": "4",
    "group.share.min.heartbeat.interval.ms": "100",
    "group.share.heartbeat.interval.ms": "300",
    "group.share.min.session.timeout.ms": "2000",
    "group.share.session.timeout.ms": "4000",
    "group.share.min.record.lock.duration.ms": "1000",
}
NONE, INVALID_REQUEST, UNKNOWN_MEMBER_ID, GROUP_ID_NOT_FOUND = 0, 42, 25, 69
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_RECORD_STATE, SHARE_SESSION_NOT_FOUND, INVALID_SHARE_SESSION_EPOCH = 121, 122, 123
FENCED_MEMBER_EPOCH, UNKNOWN_TOPIC_ID, SHARE_SESSION_LIMIT_REACHED = 110, 100, 133
ACCEPT, RELEASE, REJECT = 1, 2, 3


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    return module_broker_factory(SHARE)


def _topic(broker: Any, name: str, partitions: int) -> uuid.UUID:
    with WireConn(broker.port, timeout=T) as conn:
        return create_topic(conn, name, partitions)


def _produce(broker: Any, topic: str, values: list[str], partitions: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i, value in enumerate(values):
        producer.produce(topic, value.encode(), partition=i % partitions)
    assert producer.flush(T) == 0


def _set_group_configs(broker: Any, group: str, configs: dict[str, str]) -> None:
    r = _alter_group_configs(broker, group, configs)
    assert [int(x.error_code) for x in r.responses] == [NONE], r


def _alter_group_configs(broker: Any, group: str, configs: dict[str, str]) -> Any:
    """IncrementalAlterConfigs SET of a GROUP resource's configs: the response."""
    from kio.schema.incremental_alter_configs.v1 import request as iac

    with WireConn(broker.port, timeout=T) as conn:
        return conn.request(
            44,
            1,
            iac.IncrementalAlterConfigsRequest(
                resources=(
                    iac.AlterConfigsResource(
                        resource_type=32,
                        resource_name=group,
                        configs=tuple(
                            iac.AlterableConfig(name=k, config_operation=0, value=v)
                            for k, v in configs.items()
                        ),
                    ),
                ),
                validate_only=False,
            ),
        )


def _share_consumer(broker: Any, group: str, topic: str, **extra: Any) -> Any:
    from confluent_kafka import ShareConsumer

    consumer = ShareConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group, **extra})
    consumer.subscribe([topic])
    return consumer


def _poll(consumer: Any, seconds: float) -> list[Any]:
    got = []
    for m in consumer.poll(seconds):
        assert m.error() is None, m.error()
        got.append(m)
    return got


def _describe(broker: Any, group: str) -> Any:
    from kio.schema.share_group_describe.v1 import request as sgd

    with WireConn(broker.port, timeout=T) as conn:
        (d,) = conn.request(
            77,
            1,
            sgd.ShareGroupDescribeRequest(group_ids=(group,), include_authorized_operations=False),
        ).groups
    return d


# --- librdkafka's ShareConsumer ---------------------------------------------------------------


def test_share_consumers_split_a_topic_each_record_once(broker: Any) -> None:
    """Three consumers on two partitions (so they share them): every record goes to exactly
    one consumer once, from the start of the topic (share.auto.offset.reset=earliest)."""
    _topic(broker, "sq-t", 2)
    _set_group_configs(broker, "sq-g", {"share.auto.offset.reset": "earliest"})
    values = [str(i) for i in range(300)]
    _produce(broker, "sq-t", values, 2)
    consumers = [_share_consumer(broker, "sq-g", "sq-t") for _ in range(3)]
    seen: Counter[bytes] = Counter()
    by_consumer: Counter[int] = Counter()
    deadline = time.monotonic() + 30
    while len(seen) < 300 and time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            for m in _poll(c, 0.1):
                seen[m.value()] += 1
                by_consumer[i] += 1
    assert set(seen) == {v.encode() for v in values}
    assert max(seen.values()) == 1, [v for v, n in seen.items() if n > 1]
    d = _describe(broker, "sq-g")
    assert (int(d.error_code), d.group_state, d.assignor_name) == (NONE, "Stable", "simple")
    assigned = [
        {(t.topic_name, p) for t in m.assignment.topic_partitions for p in t.partitions}
        for m in d.members
    ]
    assert len(assigned) == 3 and all(assigned)  # every member has a partition to share
    assert set().union(*assigned) == {("sq-t", 0), ("sq-t", 1)}
    from kio.schema.list_groups.v5 import request as lg

    with WireConn(broker.port, timeout=T) as conn:
        listed = conn.request(
            16, 5, lg.ListGroupsRequest(states_filter=(), types_filter=("share",))
        )
    assert [(g.group_id, g.group_type, g.protocol_type) for g in listed.groups] == [
        ("sq-g", "share", "share")
    ]
    for c in consumers:
        c.close()
    wait_for(lambda: _describe(broker, "sq-g").group_state == "Empty", what="members gone")


def test_released_and_rejected_records_and_the_delivery_limit(broker: Any) -> None:
    """Explicit acknowledgement: a released record comes back with its delivery count one
    higher, a rejected one never; after five deliveries a record is archived."""
    from confluent_kafka import AcknowledgeType

    _topic(broker, "rr-t", 1)
    _set_group_configs(broker, "rr-g", {"share.auto.offset.reset": "earliest"})
    _produce(broker, "rr-t", ["a", "b", "c", "d"], 1)
    c = _share_consumer(broker, "rr-g", "rr-t", **{"share.acknowledgement.mode": "explicit"})

    def poll_all(n: int, seconds: float = T) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + seconds
        while len(got) < n and time.monotonic() < deadline:
            got.extend(_poll(c, 0.2))
        return got

    first = poll_all(4)
    assert [(m.value(), m.offset(), m.delivery_count()) for m in first] == [
        (b"a", 0, 1),
        (b"b", 1, 1),
        (b"c", 2, 1),
        (b"d", 3, 1),
    ]
    kinds = {b"a": AcknowledgeType.ACCEPT, b"b": AcknowledgeType.RELEASE}
    kinds |= {b"c": AcknowledgeType.REJECT, b"d": AcknowledgeType.RELEASE}
    for m in first:
        c.acknowledge(m, kinds[m.value()])
    c.commit_sync()
    again = poll_all(2)
    assert [(m.value(), m.delivery_count()) for m in again] == [(b"b", 2), (b"d", 2)]
    c.acknowledge(again[0], AcknowledgeType.ACCEPT)
    c.acknowledge(again[1], AcknowledgeType.RELEASE)
    c.commit_sync()
    for delivery in (3, 4, 5):
        (m,) = poll_all(1)
        assert (m.value(), m.delivery_count()) == (b"d", delivery)
        c.acknowledge(m, AcknowledgeType.RELEASE)
        c.commit_sync()
    # Released a fifth time: archived (group.share.delivery.count.limit 5).
    assert poll_all(1, 1.5) == []
    # A run released together goes as one batch with one type: each record comes back.
    _produce(broker, "rr-t", ["e", "f", "g"], 1)
    run = poll_all(3)
    assert [(m.value(), m.offset(), m.delivery_count()) for m in run] == [
        (b"e", 4, 1),
        (b"f", 5, 1),
        (b"g", 6, 1),
    ]
    for m in run:
        c.acknowledge(m, AcknowledgeType.RELEASE)
    c.commit_sync()
    assert [(m.value(), m.delivery_count()) for m in poll_all(3)] == [
        (b"e", 2),
        (b"f", 2),
        (b"g", 2),
    ]
    c.close()


def test_records_a_consumer_holds_come_back_when_its_lock_expires(broker: Any) -> None:
    """A consumer that takes records and neither acknowledges them nor polls again: after
    share.record.lock.duration.ms they go to another consumer, delivered a second time."""
    _topic(broker, "lx-t", 1)
    from tests.cli.test_admin_cli import cli_json

    shown = cli_json(
        broker,
        "groups",
        "config",
        "lx-g",
        "--set",
        "share.auto.offset.reset=earliest",
        "--set",
        "share.record.lock.duration.ms=1000",
    )
    configs = {c["name"]: (c["value"], c["source"]) for c in shown["configs"]}
    assert configs["share.record.lock.duration.ms"] == ("1000", "GROUP_CONFIG")
    assert configs["share.auto.offset.reset"] == ("earliest", "GROUP_CONFIG")
    _produce(broker, "lx-t", [f"v{i}" for i in range(5)], 1)
    # Another group holds the same records under the default 30 s lock: the broker's
    # expiry of this group's 1 s locks must not wait for that one.
    _set_group_configs(broker, "lx-other", {"share.auto.offset.reset": "earliest"})
    holder = _share_consumer(
        broker, "lx-other", "lx-t", **{"share.acknowledgement.mode": "explicit"}
    )
    held: list[Any] = []
    deadline = time.monotonic() + T
    while len(held) < 5 and time.monotonic() < deadline:
        held.extend(_poll(holder, 0.2))
    assert len(held) == 5
    stuck = _share_consumer(broker, "lx-g", "lx-t", **{"share.acknowledgement.mode": "explicit"})
    taken: list[Any] = []
    deadline = time.monotonic() + T
    while len(taken) < 5 and time.monotonic() < deadline:
        taken.extend(_poll(stuck, 0.2))
    assert [m.value() for m in taken] == [f"v{i}".encode() for i in range(5)]
    other = _share_consumer(broker, "lx-g", "lx-t")
    started = time.monotonic()
    again: list[Any] = []
    while len(again) < 5 and time.monotonic() < started + T:
        again.extend(_poll(other, 0.2))
    assert [(m.value(), m.delivery_count()) for m in again] == [
        (f"v{i}".encode(), 2) for i in range(5)
    ]
    assert time.monotonic() - started < 10
    other.close()
    stuck.close()
    holder.close()


def test_acknowledged_records_stay_acknowledged_through_a_kill_9(broker_factory: Any) -> None:
    """The share partition's state is in __share_group_state: after a kill -9 a consumer
    gets exactly the records not acknowledged before it, none of those that were."""
    broker = broker_factory(SHARE)
    _topic(broker, "kd-t", 1)
    _set_group_configs(broker, "kd-g", {"share.auto.offset.reset": "earliest"})
    _produce(broker, "kd-t", [str(i) for i in range(20)], 1)
    c = _share_consumer(broker, "kd-g", "kd-t", **{"share.acknowledgement.mode": "explicit"})
    from confluent_kafka import AcknowledgeType

    got: list[Any] = []
    deadline = time.monotonic() + T
    while len(got) < 20 and time.monotonic() < deadline:
        batch = _poll(c, 0.2)
        for m in batch:
            # The even ones are done; the odd ones go back.
            kind = AcknowledgeType.ACCEPT if int(m.value()) % 2 == 0 else AcknowledgeType.RELEASE
            c.acknowledge(m, kind)
            if kind == AcknowledgeType.ACCEPT:
                got.append(m)
        if batch:
            c.commit_sync()
        if len(got) == 10:
            break
    assert sorted(int(m.value()) for m in got) == list(range(0, 20, 2))
    broker.kill9()
    broker.restart()
    fresh = _share_consumer(broker, "kd-g", "kd-t")
    after: list[Any] = []
    deadline = time.monotonic() + 30
    while len(after) < 10 and time.monotonic() < deadline:
        after.extend(_poll(fresh, 0.2))
    assert sorted(int(m.value()) for m in after) == list(range(1, 20, 2))
    # Released (once, or again if one came back before the kill), then delivered again.
    assert min(m.delivery_count() for m in after) >= 2
    assert _poll(fresh, 1.0) == []
    fresh.close()
    c.close()


# --- raw frames ----------------------------------------------------------------------------


class _Member:
    """A share group member over raw frames: ShareGroupHeartbeat v1, ShareFetch v1 and
    ShareAcknowledge v1 on one connection."""

    def __init__(self, broker: Any, group: str) -> None:
        self.conn = WireConn(broker.port, timeout=T)
        self.group = group
        self.member_id = uuid.uuid4().hex
        self.epoch = 0
        self.session_epoch = 0

    def heartbeat(self, topics: tuple[str, ...] | None = None, epoch: int | None = None) -> Any:
        r = self.conn.request(
            76,
            1,
            sh.ShareGroupHeartbeatRequest(
                group_id=self.group,
                member_id=self.member_id,
                member_epoch=self.epoch if epoch is None else epoch,
                rack_id=None,
                subscribed_topic_names=topics,
            ),
        )
        if int(r.error_code) == NONE:
            self.epoch = int(r.member_epoch)
        return r

    def fetch(
        self,
        topic_id: uuid.UUID,
        partition: int = 0,
        acks: tuple[tuple[int, int, tuple[int, ...]], ...] = (),
        epoch: int | None = None,
        wait_ms: int = 200,
    ) -> Any:
        r = self.conn.request(
            78,
            1,
            sf.ShareFetchRequest(
                group_id=self.group,
                member_id=self.member_id,
                share_session_epoch=self.session_epoch if epoch is None else epoch,
                max_wait=datetime.timedelta(milliseconds=wait_ms),
                min_bytes=1,
                max_bytes=1 << 20,
                max_records=500,
                batch_size=500,
                topics=(
                    sf.FetchTopic(
                        topic_id=topic_id,
                        partitions=(
                            sf.FetchPartition(
                                partition_index=partition,
                                acknowledgement_batches=tuple(
                                    sf.AcknowledgementBatch(
                                        first_offset=a, last_offset=b, acknowledge_types=k
                                    )
                                    for a, b, k in acks
                                ),
                            ),
                        ),
                    ),
                ),
                forgotten_topics_data=(),
            ),
        )
        if int(r.error_code) == NONE and epoch is None:
            self.session_epoch = 1 if self.session_epoch == 0 else self.session_epoch + 1
        return r

    def acknowledge(
        self, topic_id: uuid.UUID, acks: tuple[tuple[int, int, tuple[int, ...]], ...], epoch: int
    ) -> Any:
        return self.conn.request(
            79,
            1,
            sa.ShareAcknowledgeRequest(
                group_id=self.group,
                member_id=self.member_id,
                share_session_epoch=epoch,
                topics=(
                    sa.AcknowledgeTopic(
                        topic_id=topic_id,
                        partitions=(
                            sa.AcknowledgePartition(
                                partition_index=0,
                                acknowledgement_batches=tuple(
                                    sa.AcknowledgementBatch(
                                        first_offset=a, last_offset=b, acknowledge_types=k
                                    )
                                    for a, b, k in acks
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        )


def _partition(r: Any) -> Any:
    ((p,),) = [t.partitions for t in r.responses]
    return p


def _acquired(p: Any) -> list[tuple[int, int, int]]:
    return [
        (int(a.first_offset), int(a.last_offset), int(a.delivery_count)) for a in p.acquired_records
    ]


def _values(p: Any) -> list[tuple[int, bytes]]:
    data = bytes(p.records)
    return [
        (rec.offset, rec.value)
        for pos, h in iter_batches(data)
        for rec in decode_records(data[pos : pos + h.size], h)
    ]


def test_share_fetch_and_acknowledge_over_raw_frames(broker: Any) -> None:
    topic_id = _topic(broker, "raw-t", 1)
    _set_group_configs(broker, "raw-g", {"share.auto.offset.reset": "earliest"})
    m = _Member(broker, "raw-g")

    # ShareGroupHeartbeat's checks, then a join that gets the partition.
    r = m.heartbeat(epoch=0)
    assert (int(r.error_code), r.error_message) == (
        INVALID_REQUEST,
        "SubscribedTopicNames must be set in first request.",
    )
    assert int(m.heartbeat(("raw-t",), epoch=-3).error_code) == INVALID_REQUEST
    assert int(m.heartbeat(("raw-t",), epoch=4).error_code) == GROUP_ID_NOT_FOUND  # no group yet
    r = m.heartbeat(("raw-t",))
    assert int(r.error_code) == NONE and r.member_epoch == 1
    assert [(t.topic_id, tuple(t.partitions)) for t in r.assignment.topic_partitions] == [
        (topic_id, (0,))
    ]
    assert int(m.heartbeat(epoch=7).error_code) == FENCED_MEMBER_EPOCH
    stranger = _Member(broker, "raw-g")
    assert int(stranger.heartbeat(epoch=4).error_code) == UNKNOWN_MEMBER_ID
    stranger.conn.close()

    _produce(broker, "raw-t", ["a", "b", "c"], 1)
    # Session rules: no session yet; acknowledgements cannot open one.
    assert int(m.fetch(topic_id, epoch=3).error_code) == SHARE_SESSION_NOT_FOUND
    r = m.fetch(topic_id, acks=((0, 0, (ACCEPT,)),), epoch=0)
    assert int(r.error_code) == INVALID_REQUEST
    assert int(m.acknowledge(topic_id, ((0, 0, (ACCEPT,)),), 0).error_code) == (
        INVALID_SHARE_SESSION_EPOCH
    )

    r = m.fetch(topic_id)
    assert (int(r.error_code), r.acquisition_lock_timeout) == (NONE, datetime.timedelta(seconds=30))
    p = _partition(r)
    assert _acquired(p) == [(0, 2, 1)]
    assert _values(p) == [(0, b"a"), (1, b"b"), (2, b"c")]
    assert int(m.fetch(topic_id, epoch=9).error_code) == INVALID_SHARE_SESSION_EPOCH

    # Acknowledging: offsets not acquired, malformed batches, then a release of b.
    r = m.fetch(topic_id, acks=((0, 5, (ACCEPT,)),))
    assert int(_partition(r).acknowledge_error_code) == INVALID_REQUEST
    r = m.fetch(topic_id, acks=((2, 1, (ACCEPT,)),))
    assert int(_partition(r).acknowledge_error_code) == INVALID_REQUEST
    r = m.fetch(topic_id, acks=((0, 2, (ACCEPT, RELEASE)),))  # two types for three offsets
    assert int(_partition(r).acknowledge_error_code) == INVALID_REQUEST
    r = m.fetch(topic_id, acks=((0, 2, (ACCEPT, RELEASE, ACCEPT)),))
    p = _partition(r)
    assert int(p.acknowledge_error_code) == NONE
    # b, a second time: the log batch holding it comes whole, the acquired range says which.
    assert _acquired(p) == [(1, 1, 2)] and (1, b"b") in _values(p)
    # a again: below the share-partition start offset now, so done already and skipped.
    r = m.fetch(topic_id, acks=((0, 0, (ACCEPT,)),))
    assert int(_partition(r).acknowledge_error_code) == NONE

    other = _Member(broker, "raw-g")
    assert int(other.heartbeat(("raw-t",)).error_code) == NONE
    r = other.fetch(topic_id, wait_ms=50)
    assert _partition(r).acquired_records == ()  # b is held by m
    r = other.fetch(topic_id, acks=((1, 1, (ACCEPT,)),))
    assert int(_partition(r).acknowledge_error_code) == INVALID_RECORD_STATE
    assert int(m.acknowledge(topic_id, ((1, 1, (REJECT,)),), m.session_epoch).error_code) == NONE
    m.session_epoch += 1

    # A long poll wakes on the next record, and hands it over at once.
    started = time.monotonic()
    _produce(broker, "raw-t", ["d"], 1)
    r = other.fetch(topic_id, wait_ms=5000)
    assert _acquired(_partition(r)) == [(3, 3, 1)] and time.monotonic() - started < 4
    # Closing the session (ShareAcknowledge at -1) releases what the member holds.
    assert int(other.acknowledge(topic_id, (), -1).error_code) == NONE
    r = m.fetch(topic_id)
    assert _acquired(_partition(r)) == [(3, 3, 1)]  # released, not counted as delivered
    m.conn.close()
    other.conn.close()


def test_share_groups_are_off_unless_enabled(module_broker_factory: Any) -> None:
    from kio.schema.api_versions.v3.request import ApiVersionsRequest

    plain = module_broker_factory({"offsets.topic.num.partitions": "4"})
    with WireConn(plain.port, timeout=T) as conn:
        keys = {
            int(k.api_key)
            for k in conn.request(
                18,
                3,
                ApiVersionsRequest(client_software_name="t", client_software_version="1"),
            ).api_keys
        }
    assert not keys & {76, 77, 78, 79, 84, 85}
    assert 68 in keys


def test_share_sessions_are_bounded(broker: Any) -> None:
    """A ShareFetch naming a topic id nobody knows gets UNKNOWN_TOPIC_ID for it (and the
    session does not keep it); one connection opens at most 16 sessions."""
    topic_id = _topic(broker, "sb-t", 1)
    m = _Member(broker, "sb-g")
    assert int(m.heartbeat(("sb-t",)).error_code) == NONE
    stranger = uuid.uuid4()
    r = m.fetch(stranger, wait_ms=0)
    assert int(r.error_code) == NONE
    assert [(t.topic_id, int(t.partitions[0].error_code)) for t in r.responses] == [
        (stranger, UNKNOWN_TOPIC_ID)
    ]
    codes = []
    for _ in range(17):
        m.member_id, m.session_epoch = uuid.uuid4().hex, 0
        codes.append(int(m.fetch(topic_id, epoch=0, wait_ms=0).error_code))
    assert codes == [NONE] * 15 + [SHARE_SESSION_LIMIT_REACHED] * 2  # the first made one
    m.conn.close()


def _list_share_groups(broker: Any) -> dict[str, str]:
    """ListGroups v5 of the share groups: group id -> state."""
    from kio.schema.list_groups.v5 import request as lg

    with WireConn(broker.port, timeout=T) as conn:
        r = conn.request(16, 5, lg.ListGroupsRequest(states_filter=(), types_filter=("Share",)))
    assert int(r.error_code) == NONE
    return {g.group_id: g.group_state for g in r.groups}


def _membership(d: Any) -> tuple[Any, ...]:
    """What ShareGroupDescribe says of a group and its members, sorted by member id."""
    return (
        int(d.error_code),
        d.group_state,
        int(d.group_epoch),
        int(d.assignment_epoch),
        sorted(
            (
                m.member_id,
                m.client_id,
                int(m.member_epoch),
                tuple(m.subscribed_topic_names),
                sorted((t.topic_id, tuple(t.partitions)) for t in m.assignment.topic_partitions),
            )
            for m in d.members
        ),
    )


def test_a_share_group_and_its_members_outlive_a_kill_9(broker_factory: Any) -> None:
    """A share group is in __consumer_offsets as Kafka keeps it: after a kill -9 its members
    carry on at their epochs, one that stopped heartbeating times out, the group outlives
    its members (it never expires), and DeleteGroups removes it for good."""
    broker = broker_factory({**SHARE, "offsets.retention.check.interval.ms": "100"})
    topic_id = _topic(broker, "pg-t", 2)
    _set_group_configs(broker, "pg-g", {"share.session.timeout.ms": "6000"})
    a, b = _Member(broker, "pg-g"), _Member(broker, "pg-g")
    assert int(a.heartbeat(("pg-t",)).error_code) == NONE
    assert int(b.heartbeat(("pg-t",)).error_code) == NONE
    assert int(a.heartbeat().error_code) == NONE
    assert (a.epoch, b.epoch) == (2, 2)
    described = _describe(broker, "pg-g")
    assert {m.client_host for m in described.members} == {"/127.0.0.1"}  # as Java writes it
    before = _membership(described)
    assert before[:4] == (NONE, "Stable", 2, 2)
    assert sorted(p for m in before[4] for _, parts in m[4] for p in parts) == [0, 1]

    broker.kill9()
    broker.restart()
    assert _membership(_describe(broker, "pg-g")) == before
    assert _list_share_groups(broker) == {"pg-g": "Stable"}
    # a carries on at its epoch, with no new one; b, silent, times out.
    a.conn = WireConn(broker.port, timeout=T)
    r = a.heartbeat()
    assert (int(r.error_code), int(r.member_epoch)) == (NONE, 2)

    def b_gone() -> Any:
        a.heartbeat()  # after b's removal, this one computes the new target
        d = _membership(_describe(broker, "pg-g"))
        return d if [m[0] for m in d[4]] == [a.member_id] and d[3] == d[2] else None

    after = wait_for(b_gone, what="the silent member's session to time out")
    assert after[:4] == (NONE, "Stable", 3, 3)
    assert after[4][0][4] == [(topic_id, (0, 1))]  # a has both partitions now

    # Without members the group stays, past offset expiry, and through a kill -9.
    a.heartbeat(epoch=-1)
    a.conn.close()
    time.sleep(0.5)  # five offset-expiry passes
    assert _list_share_groups(broker) == {"pg-g": "Empty"}
    empty = _membership(_describe(broker, "pg-g"))
    assert empty == (NONE, "Empty", 4, 3, [])  # a new target waits for a member, as in Kafka
    broker.kill9()
    broker.restart()
    assert _list_share_groups(broker) == {"pg-g": "Empty"}
    assert _membership(_describe(broker, "pg-g")) == empty
    # Empty, it is still a share group: classic members and offsets are refused, as in Kafka.
    with WireConn(broker.port, timeout=T) as conn:
        join = conn.request(
            11,
            9,
            sample_request(
                11,
                9,
                "pg-t",
                group_id="pg-g",
                protocol_type="consumer",
                session_timeout=datetime.timedelta(seconds=10),
                rebalance_timeout=datetime.timedelta(seconds=10),
            ),
        )
        assert int(join.error_code) == INCONSISTENT_GROUP_PROTOCOL
        commit = conn.request(
            8, 9, sample_request(8, 9, "pg-t", group_id="pg-g", generation_id_or_member_epoch=-1)
        )
        assert [int(p.error_code) for t in commit.topics for p in t.partitions] == [
            GROUP_ID_NOT_FOUND
        ]
        (fetched,) = conn.request(9, 9, sample_request(9, 9, "pg-t", group_id="pg-g")).groups
        assert int(fetched.error_code) == GROUP_ID_NOT_FOUND
        deleted = conn.request(47, 0, sample_request(47, 0, "pg-t", group_id="pg-g"))
        assert int(deleted.error_code) == GROUP_ID_NOT_FOUND
    c = _Member(broker, "pg-g")
    assert (int(c.heartbeat(("pg-t",)).error_code), c.epoch) == (NONE, 5)
    c.heartbeat(epoch=-1)
    c.conn.close()

    from kio.schema.delete_groups.v2 import request as dg

    with WireConn(broker.port, timeout=T) as conn:
        r = conn.request(42, 2, dg.DeleteGroupsRequest(groups_names=("pg-g",)))
    assert [(x.group_id, int(x.error_code)) for x in r.results] == [("pg-g", NONE)]
    broker.kill9()
    broker.restart()
    assert _list_share_groups(broker) == {}
    assert int(_describe(broker, "pg-g").error_code) == GROUP_ID_NOT_FOUND


def test_an_acknowledgement_that_cannot_be_stored_is_undone(broker_factory: Any) -> None:
    """An ACCEPT whose state the share coordinator cannot store (its topic below
    min.insync.replicas) is answered with the error, and the records are the member's again,
    as Kafka rolls them back: the member may acknowledge them once the store works, and the
    start offset moves only then."""
    broker = broker_factory({**SHARE, "share.coordinator.state.topic.num.partitions": "1"})
    topic_id = _topic(broker, "pf-t", 1)
    _set_group_configs(broker, "pf-g", {"share.auto.offset.reset": "earliest"})
    _produce(broker, "pf-t", ["a", "b", "c", "d"], 1)
    m = _Member(broker, "pf-g")
    assert int(m.heartbeat(("pf-t",)).error_code) == NONE
    assert _acquired(_partition(m.fetch(topic_id))) == [(0, 3, 1)]
    r = m.fetch(topic_id, acks=((0, 0, (ACCEPT,)),), wait_ms=0)
    assert int(_partition(r).acknowledge_error_code) == NONE

    _state_topic_min_isr(broker, "2")
    r = m.fetch(topic_id, acks=((1, 1, (ACCEPT,)),), wait_ms=0)
    assert int(_partition(r).acknowledge_error_code) != NONE
    _state_topic_min_isr(broker, None)
    # b is still m's, not done: released with the rest, it goes to the next member.
    r = m.acknowledge(topic_id, ((1, 3, (RELEASE,)),), m.session_epoch)
    assert int(_partition(r).error_code) == NONE
    other = _Member(broker, "pf-g")
    assert int(other.heartbeat(("pf-t",)).error_code) == NONE
    got: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + T
    while not got and time.monotonic() < deadline:  # once the group gives it the partition
        other.heartbeat()
        got = _acquired(_partition(other.fetch(topic_id, wait_ms=200)))
    assert got == [(1, 3, 2)]
    r = other.fetch(topic_id, acks=((1, 3, (ACCEPT,)),), wait_ms=0)
    assert int(_partition(r).acknowledge_error_code) == NONE
    other.conn.close()
    from tests.broker.test_share_group_offsets import _describe as describe_offsets
    from tests.broker.test_share_group_offsets import _offsets

    assert _offsets(describe_offsets(broker, "pf-g", None)) == {("pf-t", 0): (4, 0, NONE)}
    m.conn.close()


def test_locks_given_back_by_a_failed_acknowledgement_still_expire(broker_factory: Any) -> None:
    """Every record the member held was in an acknowledgement that could not be stored, so
    no lock was left to time the expiry by; given back, the locks run again and expire."""
    broker = broker_factory({**SHARE, "share.coordinator.state.topic.num.partitions": "1"})
    topic_id = _topic(broker, "px-t", 1)
    _set_group_configs(
        broker,
        "px-g",
        {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": "1000"},
    )
    _produce(broker, "px-t", ["a", "b"], 1)
    m = _Member(broker, "px-g")
    assert int(m.heartbeat(("px-t",)).error_code) == NONE
    assert _acquired(_partition(m.fetch(topic_id))) == [(0, 1, 1)]

    _state_topic_min_isr(broker, "2")
    r = m.acknowledge(topic_id, ((0, 1, (ACCEPT,)),), m.session_epoch)
    assert int(_partition(r).error_code) != NONE
    _state_topic_min_isr(broker, None)
    other = _Member(broker, "px-g")
    assert int(other.heartbeat(("px-t",)).error_code) == NONE
    got: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + T
    while not got and time.monotonic() < deadline:
        other.heartbeat()
        got = _acquired(_partition(other.fetch(topic_id, wait_ms=200)))
    assert got == [(0, 1, 2)]  # m's lock expired: delivered a second time
    m.conn.close()
    other.conn.close()


def _state_topic_min_isr(broker: Any, value: str | None) -> None:
    """Set (or with None reset) __share_group_state's min.insync.replicas: at 2 on one
    broker, the share coordinator cannot store a state."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    op = AlterConfigOpType.SET if value else AlterConfigOpType.DELETE
    entry = ConfigEntry("min.insync.replicas", value, incremental_operation=op)
    resource = ConfigResource("topic", "__share_group_state", incremental_configs=[entry])
    for f in admin.incremental_alter_configs([resource]).values():
        assert f.result(T) is None
