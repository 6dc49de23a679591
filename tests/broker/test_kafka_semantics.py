"""Kafka rules that clients depend on: internal topics, acks=0 errors, topic ids, fetch limits,
and a client that stops reading its responses."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.broker_process import BrokerProcess
from tests.kafka_wire import (
    WireConn,
    create_topic,
    high_watermark,
    parse_response,
    request_frame,
    sample_request,
)
from tests.storage.batches import make_batch

PRODUCE, FETCH, METADATA, DELETE_RECORDS, FIND_COORDINATOR, API_VERSIONS = 0, 1, 3, 21, 10, 18
INVALID_TOPIC, POLICY_VIOLATION = 17, 44
UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID = 3, 100


@pytest.fixture
def broker(module_broker_factory: Callable[..., BrokerProcess]) -> BrokerProcess:
    """One broker for the module: every test here uses topic and group names of its own."""
    return module_broker_factory()


def produce(conn: WireConn, topic: str, batch: bytes, version: int = 9, **kw: Any) -> Any:
    resp = conn.request(
        PRODUCE, version, sample_request(PRODUCE, version, topic, batch=batch, **kw)
    )
    return resp.responses[0].partition_responses[0]


def test_clients_cannot_write_to_or_delete_from_internal_topics(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn:
        conn.request(FIND_COORDINATOR, 3, sample_request(FIND_COORDINATOR, 3, "", key="g"))
        p = produce(conn, "__consumer_offsets", bytes(make_batch(n=1)))
        assert int(p.error_code) == INVALID_TOPIC
        deleted = conn.request(
            DELETE_RECORDS,
            2,
            sample_request(DELETE_RECORDS, 2, "__consumer_offsets", offset=0),
        )
        assert int(deleted.topics[0].partitions[0].error_code) == INVALID_TOPIC


def test_delete_records_on_a_compact_only_topic_is_a_policy_violation(
    broker: BrokerProcess,
) -> None:
    with WireConn(broker.port) as conn:
        create_topic(conn, "compact-only", configs={"cleanup.policy": "compact"})
        produce(conn, "compact-only", bytes(make_batch(n=3)))
        deleted = conn.request(
            DELETE_RECORDS, 2, sample_request(DELETE_RECORDS, 2, "compact-only", offset=2)
        )
        assert int(deleted.topics[0].partitions[0].error_code) == POLICY_VIOLATION
        assert high_watermark(conn, "compact-only") == 3


def test_acks_zero_produce_error_closes_the_connection(broker: BrokerProcess) -> None:
    """The only way an acks=0 producer learns of an error is a closed connection (Kafka)."""
    mark = broker.log_mark()
    with WireConn(broker.port) as conn:
        create_topic(conn, "fine")
        req = sample_request(PRODUCE, 9, "fine", batch=bytes(make_batch(n=1)), acks=0)
        conn.send(request_frame(PRODUCE, 9, conn.next_corr(), req))
        conn.request(API_VERSIONS, 0, sample_request(API_VERSIONS, 0, ""))  # still open
        bad = sample_request(PRODUCE, 9, "no-such-topic", batch=bytes(make_batch(n=1)), acks=0)
        conn.send(request_frame(PRODUCE, 9, conn.next_corr(), bad))
        conn.expect_closed()
        assert high_watermark(WireConn(broker.port), "fine") == 1
    assert "acks=0 produce to no-such-topic-0 failed" in broker.log_tail(since=mark)


def test_topic_id_errors_distinguish_unknown_ids_from_unknown_partitions(
    broker: BrokerProcess,
) -> None:
    with WireConn(broker.port) as conn:
        topic_id = create_topic(conn, "by-id")
        for fetch_id, partition, expected in [
            (uuid.UUID(int=0), 0, UNKNOWN_TOPIC_ID),
            (uuid.uuid4(), 0, UNKNOWN_TOPIC_ID),
            (topic_id, 5, UNKNOWN_TOPIC_OR_PARTITION),
        ]:
            req = sample_request(
                FETCH, 13, "", fetch_id, partition=partition, max_wait=datetime.timedelta(0)
            )
            resp = conn.request(FETCH, 13, req)
            assert int(resp.error_code) == 0
            assert int(resp.responses[0].partitions[0].error_code) == expected
            p = produce(conn, "", bytes(make_batch(n=1)), 13, topic_id=fetch_id, index=partition)
            assert int(p.error_code) == expected


def test_offset_commit_and_fetch_v10_answer_unknown_topic_ids_under_their_ids(
    broker: BrokerProcess,
) -> None:
    """v10 names topics by id only: an unknown id (the zero one too) is UNKNOWN_TOPIC_ID for
    each of its partitions, answered under the id asked for, beside a known one."""
    from kio.schema.offset_commit.v10 import request as oc
    from kio.schema.offset_fetch.v10 import request as of

    with WireConn(broker.port) as conn:
        known = create_topic(conn, "by-id-offsets")
        stranger = uuid.uuid4()
        ids = (known, stranger, uuid.UUID(int=0))
        committed = conn.request(
            8,
            10,
            oc.OffsetCommitRequest(
                group_id="v10-group",
                generation_id_or_member_epoch=-1,
                member_id="",
                group_instance_id=None,
                topics=tuple(
                    oc.OffsetCommitRequestTopic(
                        topic_id=topic_id,
                        partitions=(
                            oc.OffsetCommitRequestPartition(
                                partition_index=0,
                                committed_offset=7,
                                committed_leader_epoch=-1,
                                committed_metadata="m",
                            ),
                        ),
                    )
                    for topic_id in ids
                ),
            ),
        )
        assert [
            (t.topic_id, [int(p.error_code) for p in t.partitions]) for t in committed.topics
        ] == [
            (known, [0]),
            (stranger, [UNKNOWN_TOPIC_ID]),
            (None, [UNKNOWN_TOPIC_ID]),
        ]
        fetched = conn.request(
            9,
            10,
            of.OffsetFetchRequest(
                groups=(
                    of.OffsetFetchRequestGroup(
                        group_id="v10-group",
                        member_id=None,
                        member_epoch=-1,
                        topics=tuple(
                            of.OffsetFetchRequestTopics(topic_id=topic_id, partition_indexes=(0,))
                            for topic_id in ids
                        ),
                    ),
                ),
                require_stable=False,
            ),
        )
        (group,) = fetched.groups
        answered = {
            t.topic_id: [(int(p.error_code), int(p.committed_offset)) for p in t.partitions]
            for t in group.topics
        }
        assert answered == {
            known: [(0, 7)],
            stranger: [(UNKNOWN_TOPIC_ID, -1)],
            None: [(UNKNOWN_TOPIC_ID, -1)],
        }


def test_leaving_or_describing_a_group_that_does_not_exist(broker: BrokerProcess) -> None:
    """LeaveGroup v3+: the request is fine, each member is UNKNOWN_MEMBER_ID (v0-2 have only
    the one code). DescribeGroups v6: GROUP_ID_NOT_FOUND, saying so."""
    from kio.schema.describe_groups.v6 import request as dg
    from kio.schema.leave_group.v1 import request as lg1
    from kio.schema.leave_group.v5 import request as lg5

    with WireConn(broker.port) as conn:
        left = conn.request(
            13,
            5,
            lg5.LeaveGroupRequest(
                group_id="no-such-group",
                members=(lg5.MemberIdentity(member_id="", group_instance_id="s1", reason=None),),
            ),
        )
        assert int(left.error_code) == 0
        assert [(m.group_instance_id, int(m.error_code)) for m in left.members] == [("s1", 25)]
        old = conn.request(13, 1, lg1.LeaveGroupRequest(group_id="no-such-group", member_id="m"))
        assert int(old.error_code) == 25
        (described,) = conn.request(
            15,
            6,
            dg.DescribeGroupsRequest(
                groups=("no-such-group",), include_authorized_operations=False
            ),
        ).groups
        assert (int(described.error_code), described.error_message) == (
            69,
            "Group no-such-group not found.",
        )


def test_fetch_max_bytes_caps_what_a_client_asks_for(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory({"fetch.max.bytes": "1048576"})
    with WireConn(broker.port) as conn:
        create_topic(conn, "capped")
        for _ in range(4):
            assert (
                int(produce(conn, "capped", bytes(make_batch(n=9, value_size=100_000))).error_code)
                == 0
            )
        req = sample_request(
            FETCH,
            12,
            "capped",
            max_wait=datetime.timedelta(0),
            max_bytes=64 << 20,
            partition_max_bytes=64 << 20,
            fetch_offset=0,
        )
        resp = conn.request(FETCH, 12, req)
        records = resp.responses[0].partitions[0].records
        # One whole ~900 KB batch fits; a second would pass the broker's 1 MiB cap.
        assert 900_000 < len(records) <= 1_048_576


def test_only_kafkas_internal_topics_are_marked_internal(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn:
        create_topic(conn, "__mine")
        conn.request(FIND_COORDINATOR, 3, sample_request(FIND_COORDINATOR, 3, "", key="g"))
        resp = conn.request(METADATA, 12, sample_request(METADATA, 12, "", topics=None))
    internal = {t.name: t.is_internal for t in resp.topics}
    assert internal["__mine"] is False
    assert internal["__consumer_offsets"] is True


def test_a_client_that_stops_reading_gets_every_answer_in_order_later(
    broker: BrokerProcess,
) -> None:
    """Write backpressure holds the client's requests in its socket; nothing is lost."""
    with WireConn(broker.port, timeout=30) as conn:
        create_topic(conn, "slow-reader")
        for _ in range(8):
            produce(conn, "slow-reader", bytes(make_batch(n=9, value_size=100_000)))
        corrs = []
        for _ in range(30):
            corr = conn.next_corr()
            corrs.append(corr)
            req = sample_request(
                FETCH,
                12,
                "slow-reader",
                fetch_offset=0,
                max_wait=datetime.timedelta(0),
                max_bytes=16 << 20,
                partition_max_bytes=16 << 20,
            )
            conn.send(request_frame(FETCH, 12, corr, req))
        time.sleep(1)  # the broker fills the socket and must hold the rest, not buffer it
        sizes = set()
        for corr in corrs:
            got, resp = parse_response(FETCH, 12, conn.recv_frame())
            assert got == corr
            sizes.add(len(resp.responses[0].partitions[0].records))
        assert len(sizes) == 1 and sizes.pop() > 7_000_000


def test_incremental_alter_configs_rejects_duplicates_and_null_values(
    broker: BrokerProcess,
) -> None:
    from kio.schema.incremental_alter_configs.v1 import request as iac

    def alter(*configs: tuple[str, int, str | None]) -> int:
        req = iac.IncrementalAlterConfigsRequest(
            resources=(
                iac.AlterConfigsResource(
                    resource_type=2,
                    resource_name="cfg",
                    configs=tuple(
                        iac.AlterableConfig(name=n, config_operation=op, value=v)
                        for n, op, v in configs
                    ),
                ),
            ),
            validate_only=False,
        )
        with WireConn(broker.port) as conn:
            return int(conn.request(44, 1, req).responses[0].error_code)

    with WireConn(broker.port) as conn:
        create_topic(conn, "cfg")
    assert alter(("retention.ms", 0, "1000"), ("retention.ms", 0, "2000")) == 42
    assert alter(("retention.ms", 0, None)) == 42
    assert alter(("retention.ms", 1, None)) == 0  # DELETE takes no value
    assert alter(("retention.ms", 0, "1000")) == 0


def test_offset_commit_to_an_unknown_group_by_version(broker: BrokerProcess) -> None:
    """A generation for a group that does not exist: ILLEGAL_GENERATION before v9,
    GROUP_ID_NOT_FOUND from v9 (Kafka 3.7+); a standalone commit (-1, no member) creates it."""
    with WireConn(broker.port) as conn:
        create_topic(conn, "oc")

        def commit(version: int, group: str, generation: int, member: str = "") -> int:
            req = sample_request(
                8,
                version,
                "oc",
                group_id=group,
                generation_id_or_member_epoch=generation,
                member_id=member,
                group_instance_id=None,
                committed_offset=5,
            )
            return int(conn.request(8, version, req).topics[0].partitions[0].error_code)

        assert commit(8, "ghost", 3, "m") == 22
        assert commit(9, "ghost", 3, "m") == 69
        assert commit(9, "solo", -1) == 0
        # The group is empty: generation -1 commits whatever member id it names (Kafka's
        # validateOffsetCommit returns before looking at the member).
        assert commit(9, "solo", -1, "someone") == 0
