"""Admin requests that name a thing twice, or in two ways at once, change nothing and are
answered INVALID_REQUEST once per name, as Kafka's ControllerApis answers them; topics
cannot be named __cluster_metadata; a topic config resource's name is checked before the
topic is looked up. Raw frames: clients do not send such requests."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kio.schema.alter_configs.v2 import request as ac
from kio.schema.create_partitions.v3 import request as cp
from kio.schema.create_topics.v7 import request as ct
from kio.schema.delete_topics.v6 import request as dt
from kio.schema.incremental_alter_configs.v1 import request as iac

from tests.kafka_wire import WireConn, create_topic

NONE, UNKNOWN_TOPIC, INVALID_TOPIC, TOPIC_DENIED, INVALID_REQUEST = 0, 3, 17, 29, 42
TIMEOUT = datetime.timedelta(seconds=10)
TOPIC = 2


@pytest.fixture
def conn(module_broker_factory: Any) -> Any:
    broker = module_broker_factory()
    with WireConn(broker.port, timeout=20) as c:
        yield c


def _delete(conn: WireConn, *topics: tuple[str | None, Any]) -> list[tuple[Any, Any, int, Any]]:
    req = dt.DeleteTopicsRequest(
        topics=tuple(dt.DeleteTopicState(name=n, topic_id=i) for n, i in topics), timeout=TIMEOUT
    )
    return [
        (r.name, r.topic_id, int(r.error_code), r.error_message)
        for r in conn.request(20, 6, req).responses
    ]


def _create(name: str, validate_only: bool, times: int = 1) -> ct.CreateTopicsRequest:
    topic = ct.CreatableTopic(
        name=name, num_partitions=1, replication_factor=1, assignments=(), configs=()
    )
    return ct.CreateTopicsRequest(
        topics=(topic,) * times, timeout=TIMEOUT, validate_only=validate_only
    )


def _exists(conn: WireConn, name: str) -> bool:
    (r,) = conn.request(19, 7, _create(name, validate_only=True)).topics
    return int(r.error_code) == 36  # TOPIC_ALREADY_EXISTS


def test_delete_topics_refuses_ambiguous_entries_and_deletes_nothing(conn: WireConn) -> None:
    a = create_topic(conn, "amb-a")
    b = create_topic(conn, "amb-b")
    c = create_topic(conn, "amb-c")
    both = "You may not specify both topic name and topic id."
    assert _delete(conn, ("amb-a", a)) == [("amb-a", a, INVALID_REQUEST, both)]
    assert _delete(conn, (None, b), (None, b)) == [
        (None, b, INVALID_REQUEST, "Duplicate topic id.")
    ]
    assert _delete(conn, ("amb-c", None), ("amb-c", None), ("amb-c", None)) == [
        ("amb-c", None, INVALID_REQUEST, "Duplicate topic name.")
    ]
    # A name whose topic is also given by id: one answer, for the name.
    assert _delete(conn, (None, c), ("amb-c", None)) == [
        (
            "amb-c",
            c,
            INVALID_REQUEST,
            "The provided topic name maps to an ID that was already supplied.",
        )
    ]
    assert all(_exists(conn, t) for t in ("amb-a", "amb-b", "amb-c"))
    # The other entries of a request go ahead.
    assert _delete(conn, ("amb-a", None), (None, b), (None, b)) == [
        (None, b, INVALID_REQUEST, "Duplicate topic id."),
        ("amb-a", a, NONE, None),
    ]
    assert not _exists(conn, "amb-a") and _exists(conn, "amb-b")


def test_create_partitions_and_create_topics_answer_a_duplicate_once(conn: WireConn) -> None:
    create_topic(conn, "amb-grow")
    grow = cp.CreatePartitionsRequest(
        topics=(
            cp.CreatePartitionsTopic(name="amb-grow", count=2, assignments=None),
            cp.CreatePartitionsTopic(name="amb-grow", count=3, assignments=None),
        ),
        timeout=TIMEOUT,
        validate_only=False,
    )
    assert [
        (r.name, int(r.error_code), r.error_message) for r in conn.request(37, 3, grow).results
    ] == [("amb-grow", INVALID_REQUEST, "Duplicate topic name.")]
    # Still one partition: the validate_only create of two more says so.
    check = cp.CreatePartitionsRequest(
        topics=(cp.CreatePartitionsTopic(name="amb-grow", count=1, assignments=None),),
        timeout=TIMEOUT,
        validate_only=True,
    )
    assert int(conn.request(37, 3, check).results[0].error_code) == 37  # INVALID_PARTITIONS

    create = _create("amb-new", validate_only=False, times=3)
    assert [
        (r.name, int(r.error_code), r.error_message) for r in conn.request(19, 7, create).topics
    ] == [("amb-new", INVALID_REQUEST, "Duplicate topic name.")]
    assert not _exists(conn, "amb-new")


def test_kraft_metadata_topic_cannot_be_created(conn: WireConn) -> None:
    for validate_only in (True, False):
        (r,) = conn.request(19, 7, _create("__cluster_metadata", validate_only)).topics
        assert (int(r.error_code), r.error_message) == (TOPIC_DENIED, "Authorization failed.")
    assert not _exists(conn, "__cluster_metadata")


def test_config_alters_refuse_duplicate_resources_and_bad_topic_names(conn: WireConn) -> None:
    create_topic(conn, "amb-cfg")

    def incremental(*resources: tuple[int, str, str]) -> list[tuple[str, int, Any]]:
        req = iac.IncrementalAlterConfigsRequest(
            resources=tuple(
                iac.AlterConfigsResource(
                    resource_type=kind,
                    resource_name=name,
                    configs=(
                        iac.AlterableConfig(name="retention.ms", config_operation=0, value=v),
                    ),
                )
                for kind, name, v in resources
            ),
            validate_only=False,
        )
        return [
            (r.resource_name, int(r.error_code), r.error_message)
            for r in conn.request(44, 1, req).responses
        ]

    def legacy(*resources: tuple[int, str, str]) -> list[tuple[str, int, Any]]:
        req = ac.AlterConfigsRequest(
            resources=tuple(
                ac.AlterConfigsResource(
                    resource_type=kind,
                    resource_name=name,
                    configs=(ac.AlterableConfig(name="retention.ms", value=v),),
                )
                for kind, name, v in resources
            ),
            validate_only=False,
        )
        return [
            (r.resource_name, int(r.error_code), r.error_message)
            for r in conn.request(33, 2, req).responses
        ]

    duplicate = [("amb-cfg", INVALID_REQUEST, "Duplicate resource.")]
    assert incremental((TOPIC, "amb-cfg", "1000"), (TOPIC, "amb-cfg", "2000")) == duplicate
    assert legacy((TOPIC, "amb-cfg", "1000"), (TOPIC, "amb-cfg", "2000")) == duplicate
    assert incremental((TOPIC, "amb-cfg", "3000")) == [("amb-cfg", NONE, None)]
    for alter in (incremental, legacy):
        assert alter((TOPIC, "", "1")) == [
            ("", INVALID_REQUEST, "Default topic resources are not allowed.")
        ]
        assert [(n, code) for n, code, _ in alter((TOPIC, "bad name", "1"))] == [
            ("bad name", INVALID_TOPIC)
        ]
        assert [(n, code) for n, code, _ in alter((TOPIC, "amb-none", "1"))] == [
            ("amb-none", UNKNOWN_TOPIC)
        ]
