"""Logical clusters on one real broker: SCRAM users bound to lkc-a and lkc-b each see a
Kafka cluster of their own through confluent-kafka, kafka-python and aiokafka, with the same
topic, group and transactional names as the other; the PLAINTEXT listener (no binding) sees
the shared cluster's physical names. Raw frames check what clients hide: error codes, topic
ids of another namespace, the refused APIs."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kio.schema.consumer_group_describe.v0 import request as group_describe
from kio.schema.create_acls.v3 import request as create_acls
from kio.schema.create_delegation_token.v3 import request as create_delegation_token
from kio.schema.create_topics.v7 import request as create_topics
from kio.schema.describe_configs.v4 import request as describe_configs
from kio.schema.describe_delegation_token.v3 import request as describe_delegation_token
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v15 import request as fetch
from kio.schema.find_coordinator.v0 import request as find_coordinator_v0
from kio.schema.metadata.v12 import request as metadata

from tests.broker.test_dynamic_broker_configs import DELETE, SET, _alter, _describe
from tests.broker_process import BrokerProcess, free_port
from tests.cli.test_admin_cli import cli
from tests.kafka_wire import Closed, WireConn, fetch_request, sample_request, scram_login
from tests.metrics import scrape
from tests.security.broker_pairs import start_pair, wait_for_both
from tests.storage.batches import make_batch

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
BINDINGS = {"alice": "lkc-a", "bob": "lkc-b", "carol": "lkc-a"}


class SharedBroker:
    def __init__(self, proc: BrokerProcess, sasl_port: int, metrics_port: int) -> None:
        self.proc = proc
        self.sasl_port = sasl_port
        self.metrics_port = metrics_port
        self.admin = AdminClient({"bootstrap.servers": proc.bootstrap})

    @property
    def bootstrap(self) -> str:
        """The PLAINTEXT listener, where the shared cluster's own principal works."""
        return self.proc.bootstrap

    def conf(self, user: str, **extra: Any) -> dict[str, Any]:
        return {
            "bootstrap.servers": f"127.0.0.1:{self.sasl_port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": PASSWORDS[user],
            **extra,
        }

    def login(self, user: str) -> WireConn:
        return scram_login(self.sasl_port, user, PASSWORDS[user])

    def physical_topics(self) -> set[str]:
        return set(self.admin.list_topics(timeout=10).topics)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedBroker]:
    proc = BrokerProcess(tmp_path_factory.mktemp("tenancy") / "broker")
    sasl_port, metrics_port = free_port(), free_port()
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "artesian.metrics.port": str(metrics_port),
        "group.initial.rebalance.delay.ms": "0",
        "transaction.state.log.num.partitions": "2",
        "offsets.topic.num.partitions": "2",
        "group.share.enable": "true",
        "share.coordinator.state.topic.num.partitions": "2",
    }
    proc.start()
    try:
        broker = SharedBroker(proc, sasl_port, metrics_port)
        upsertions = [
            UserScramCredentialUpsertion(
                user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password.encode()
            )
            for user, password in PASSWORDS.items()
        ]
        for future in broker.admin.alter_user_scram_credentials(upsertions).values():
            assert future.result(10) is None
        cli(broker, "logical-clusters", "bind", "lkc-a", "User:alice", "User:carol")
        cli(broker, "logical-clusters", "bind", "lkc-b", "User:bob")
        yield broker
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


def _create(conf: dict[str, Any], name: str, partitions: int = 1) -> None:
    admin = AdminClient(conf)
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(15)


def _produce(conf: dict[str, Any], topic: str, values: list[bytes], **extra: Any) -> None:
    producer = Producer({**conf, "acks": "all", **extra})
    for v in values:
        producer.produce(topic, v)
    assert producer.flush(15) == 0


def _consume(conf: dict[str, Any], topic: str, n: int, **extra: Any) -> list[tuple[int, bytes]]:
    consumer = Consumer(
        {**conf, "auto.offset.reset": "earliest", "enable.auto.commit": False, **extra}
    )
    try:
        consumer.subscribe([topic])
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append((msg.offset(), msg.value()))
        consumer.commit(asynchronous=False)
        return out
    finally:
        consumer.close()


def test_two_logical_clusters_share_names_and_never_see_each_other(shared: SharedBroker) -> None:
    alice, bob = shared.conf("alice"), shared.conf("bob")
    _create(alice, "orders", 2)
    _create(bob, "orders", 1)
    # The same name twice is no clash; a third time in one logical cluster is.
    with pytest.raises(KafkaException) as taken:
        _create(shared.conf("carol"), "orders")
    assert taken.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert {"lkc-a_orders", "lkc-b_orders"} <= shared.physical_topics()

    _produce(
        alice, "orders", [b"a0", b"a1", b"a2"], partitioner="murmur2_random", **{"linger.ms": 0}
    )
    _produce(bob, "orders", [b"b0", b"b1"])
    # Each reads exactly its own records, from offset 0.
    got = _consume(bob, "orders", 2, **{"group.id": "readers"})
    assert got == [(0, b"b0"), (1, b"b1")]
    alice_got = _consume(alice, "orders", 3, **{"group.id": "readers"})
    assert sorted(v for _, v in alice_got) == [b"a0", b"a1", b"a2"]

    # What each sees of the cluster: its own topic, the logical cluster's id, no internal
    # topic (its group and the offsets it committed live in __consumer_offsets).
    md_a = AdminClient(alice).list_topics(timeout=10)
    assert set(md_a.topics) == {"orders"}
    assert len(md_a.topics["orders"].partitions) == 2
    assert md_a.cluster_id == "lkc-a"
    md_b = AdminClient(bob).list_topics(timeout=10)
    assert set(md_b.topics) == {"orders"}
    assert len(md_b.topics["orders"].partitions) == 1
    # The shared cluster keeps both under their prefixes, and its own id.
    physical = shared.admin.list_topics(timeout=10)
    assert physical.cluster_id != "lkc-a"
    assert len(physical.topics["lkc-a_orders"].partitions) == 2
    assert "__consumer_offsets" in physical.topics

    # Groups: each sees its own "readers" with its own committed offsets.
    admin_a = AdminClient(alice)  # held: a dropped client cancels its futures
    groups_a = admin_a.list_consumer_groups().result(10)
    assert [g.group_id for g in groups_a.valid] == ["readers"]
    reader = Consumer({**bob, "group.id": "readers"})
    committed = reader.committed([TopicPartition("orders", 0)], timeout=10)
    reader.close()
    assert committed[0].offset == 2
    physical_groups = {g.group_id for g in shared.admin.list_consumer_groups().result(10).valid}
    assert {"lkc-a_readers", "lkc-b_readers"} <= physical_groups


def test_a_group_describes_its_members_in_logical_names(shared: SharedBroker) -> None:
    alice = shared.conf("alice")
    _create(alice, "clicks")
    consumer = Consumer({**alice, "group.id": "describe-me", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe(["clicks"])
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert [(tp.topic, tp.partition) for tp in consumer.assignment()] == [("clicks", 0)]
        admin = AdminClient(alice)
        group = admin.describe_consumer_groups(["describe-me"])["describe-me"].result(10)
        (member,) = group.members
        # The member's assignment came back through the embedded consumer protocol.
        assert [(tp.topic, tp.partition) for tp in member.assignment.topic_partitions] == [
            ("clicks", 0)
        ]
        physical = shared.admin.describe_consumer_groups(["lkc-a_describe-me"])
        (physical_member,) = physical["lkc-a_describe-me"].result(10).members
        assert [tp.topic for tp in physical_member.assignment.topic_partitions] == ["lkc-a_clicks"]
    finally:
        consumer.close()


def test_the_consumer_protocol_with_a_regex_stays_in_its_logical_cluster(
    shared: SharedBroker,
) -> None:
    alice, bob = shared.conf("alice"), shared.conf("bob")
    _create(alice, "metrics-cpu")
    _create(bob, "metrics-disk")
    _produce(alice, "metrics-cpu", [b"cpu"])
    _produce(bob, "metrics-disk", [b"disk"])
    consumer = Consumer(
        {
            **alice,
            "group.id": "regex",
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe(["^metrics-.*"])
        got: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not got:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.topic(), msg.value()))
        # A moment more: bob's topic must never arrive.
        end = time.monotonic() + 2
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                got.append((msg.topic(), msg.value()))
        assert got == [("metrics-cpu", b"cpu")]
        assert [(tp.topic, tp.partition) for tp in consumer.assignment()] == [("metrics-cpu", 0)]
        # What the coordinator assigned, seen from the shared cluster: alice's topic only.
        with WireConn(shared.proc.port) as admin:
            described = admin.request(
                69,
                0,
                group_describe.ConsumerGroupDescribeRequest(
                    group_ids=("lkc-a_regex",), include_authorized_operations=False
                ),
            )
        (member,) = described.groups[0].members
        assert member.subscribed_topic_regex == "(^metrics-.*)"  # as librdkafka sent it
        assert [t.topic_name for t in member.assignment.topic_partitions] == ["lkc-a_metrics-cpu"]
    finally:
        consumer.close()


def test_transactional_ids_are_per_logical_cluster(shared: SharedBroker) -> None:
    alice, bob = shared.conf("alice"), shared.conf("bob")
    _create(alice, "payments")
    _create(bob, "payments")
    producers = {}
    for name, conf in (("alice", alice), ("bob", bob)):
        p = Producer({**conf, "transactional.id": "tx-1"})
        p.init_transactions(15)
        producers[name] = p
    # Both hold "tx-1" at once: neither fenced the other.
    for name, p in producers.items():
        p.begin_transaction()
        p.produce("payments", name.encode())
        p.commit_transaction(15)
    for conf, value in ((alice, b"alice"), (bob, b"bob")):
        got = _consume(
            conf, "payments", 1, **{"group.id": "tx-reader", "isolation.level": "read_committed"}
        )
        assert got == [(0, value)]


def test_kafka_python_and_aiokafka_work_in_a_logical_cluster(shared: SharedBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    bob = {
        "bootstrap_servers": f"127.0.0.1:{shared.sasl_port}",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "bob",
        "sasl_plain_password": PASSWORDS["bob"],
    }
    _create(shared.conf("bob"), "py-events")
    producer = KafkaProducer(acks="all", **bob)
    for i in range(3):
        producer.send("py-events", f"kp{i}".encode())
    producer.flush(15)
    producer.close()
    consumer = KafkaConsumer(
        "py-events", group_id="py", auto_offset_reset="earliest", consumer_timeout_ms=5000, **bob
    )
    assert [(m.offset, m.value) for m in consumer] == [(0, b"kp0"), (1, b"kp1"), (2, b"kp2")]
    topics = consumer.topics()
    assert "py-events" in topics
    assert not [t for t in topics if t.startswith(("lkc-", "__"))], topics
    consumer.close()

    async def aio() -> list[tuple[int, bytes]]:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        conf = {k: v for k, v in bob.items()}
        p = AIOKafkaProducer(acks="all", **conf)
        await p.start()
        try:
            await p.send_and_wait("py-events", b"aio")
        finally:
            await p.stop()
        c = AIOKafkaConsumer("py-events", group_id="aio", auto_offset_reset="earliest", **conf)
        await c.start()
        try:
            out: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + 20
            while len(out) < 4 and time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500)
                out += [(m.offset, m.value) for msgs in batch.values() for m in msgs]
            return out
        finally:
            await c.stop()

    assert asyncio.run(aio()) == [(0, b"kp0"), (1, b"kp1"), (2, b"kp2"), (3, b"aio")]
    assert "lkc-b_py-events" in shared.physical_topics()


def _metadata_by(conn: WireConn, name: str | None, topic_id: uuid.UUID | None) -> Any:
    request = metadata.MetadataRequest(
        topics=(metadata.MetadataRequestTopic(name=name, topic_id=topic_id),),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    (entry,) = conn.request(3, 12, request).topics
    return entry


def test_another_logical_clusters_topic_id_names_nothing(shared: SharedBroker) -> None:
    _create(shared.conf("bob"), "secret")
    with WireConn(shared.proc.port) as admin:
        theirs = _metadata_by(admin, "lkc-b_secret", None).topic_id
    with shared.login("alice") as conn:
        entry = _metadata_by(conn, None, theirs)
        assert (entry.error_code, entry.topic_id, entry.name) == (
            ErrorCode.unknown_topic_id,
            theirs,
            None,
        )
        # Its name with the prefix is just a name alice has not got.
        entry = _metadata_by(conn, "lkc-b_secret", None)
        assert entry.error_code == ErrorCode.unknown_topic_or_partition
        partition = fetch.FetchPartition(
            partition=0,
            current_leader_epoch=-1,
            fetch_offset=0,
            last_fetched_epoch=-1,
            log_start_offset=-1,
            partition_max_bytes=1 << 20,
        )
        answer = conn.request(
            1,
            15,
            fetch_request(
                fetch, 0, -1, (fetch.FetchTopic(topic_id=theirs, partitions=(partition,)),), ()
            ),
        )
        (topic,) = answer.responses
        assert topic.topic_id == theirs
        assert topic.partitions[0].error_code == ErrorCode.unknown_topic_id
    with shared.login("bob") as conn:  # and the owner reads it by that id
        answer = conn.request(
            1,
            15,
            fetch_request(
                fetch, 0, -1, (fetch.FetchTopic(topic_id=theirs, partitions=(partition,)),), ()
            ),
        )
        assert answer.responses[0].partitions[0].error_code == ErrorCode.none


def test_cluster_wide_apis_are_refused_and_configs_are_namespaced(shared: SharedBroker) -> None:
    alice = shared.conf("alice")
    _create(alice, "retained")
    admin = AdminClient(alice)
    resource = ConfigResource(
        ResourceType.TOPIC,
        "retained",
        incremental_configs=[
            ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(10)
    physical = shared.admin.describe_configs([ConfigResource(ResourceType.TOPIC, "lkc-a_retained")])
    (configs,) = [f.result(10) for f in physical.values()]
    assert configs["retention.ms"].value == "60000"
    with shared.login("alice") as conn:
        acls = conn.request(
            30,
            3,
            create_acls.CreateAclsRequest(
                creations=(
                    create_acls.AclCreation(
                        resource_type=2,
                        resource_name="retained",
                        resource_pattern_type=3,
                        principal="User:bob",
                        host="*",
                        operation=3,
                        permission_type=3,
                    ),
                )
            ),
        )
        # Refused item by item, as an authorizer answers.
        assert [r.error_code for r in acls.results] == [ErrorCode.cluster_authorization_failed]
        # Delegation tokens are the shared cluster's (a token's owner could be any principal).
        token = conn.request(
            38,
            3,
            create_delegation_token.CreateDelegationTokenRequest(
                owner_principal_type=None,
                owner_principal_name=None,
                renewers=(),
                max_lifetime=datetime.timedelta(milliseconds=-1),
            ),
        )
        assert token.error_code == ErrorCode.cluster_authorization_failed
        tokens = conn.request(
            41, 3, describe_delegation_token.DescribeDelegationTokenRequest(owners=None)
        )
        assert (tokens.error_code, tokens.tokens) == (ErrorCode.cluster_authorization_failed, ())
        configs_answer = conn.request(
            32,
            4,
            describe_configs.DescribeConfigsRequest(
                resources=(
                    describe_configs.DescribeConfigsResource(
                        resource_type=2,
                        resource_name="retained",
                        configuration_keys=("retention.ms",),
                    ),
                    describe_configs.DescribeConfigsResource(
                        resource_type=4,
                        resource_name="1",
                        configuration_keys=("log.retention.hours",),
                    ),
                    describe_configs.DescribeConfigsResource(
                        resource_type=8, resource_name="1", configuration_keys=None
                    ),
                ),
                include_synonyms=False,
                include_documentation=False,
            ),
        )
        topic, broker_, logger = configs_answer.results
        assert (topic.error_code, topic.resource_name) == (ErrorCode.none, "retained")
        assert [(c.name, c.value) for c in topic.configs] == [("retention.ms", "60000")]
        assert broker_.error_code == ErrorCode.none
        assert logger.error_code == ErrorCode.cluster_authorization_failed
    broker_change = ConfigResource(
        ResourceType.BROKER,
        "1",
        incremental_configs=[
            ConfigEntry("log.retention.ms", "1", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(KafkaException) as refused:
        for future in admin.incremental_alter_configs([broker_change]).values():
            future.result(10)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_the_cli_lists_and_unbinds(shared: SharedBroker) -> None:
    _create(shared.conf("alice"), "listed")
    listed = json.loads(cli(shared, "logical-clusters", "list", "--json").stdout)
    by_id = {c["id"]: c for c in listed["logical_clusters"]}
    assert by_id["lkc-a"]["principals"] == ["User:alice", "User:carol"]
    assert by_id["lkc-b"]["principals"] == ["User:bob"]
    assert by_id["lkc-a"]["topics"] >= 1
    bad = cli(shared, "logical-clusters", "bind", "LKC-Nope", "User:dave", check=False)
    assert bad.returncode != 0 and "INVALID_REQUEST" in bad.stderr + bad.stdout
    cli(shared, "logical-clusters", "unbind", "User:carol")
    # carol now sees the shared cluster, physical names and all.
    deadline = time.monotonic() + 10
    topics: set[str] = set()
    while time.monotonic() < deadline and "lkc-a_listed" not in topics:
        topics = set(AdminClient(shared.conf("carol")).list_topics(timeout=10).topics)
    assert "lkc-a_listed" in topics and "__consumer_offsets" in topics
    cli(shared, "logical-clusters", "bind", "lkc-a", "User:carol")


def test_kafkajs_and_kcat_work_in_a_logical_cluster(shared: SharedBroker) -> None:
    from tests.clients.round_trips import kafkajs_round_trip, kcat_round_trip

    address = f"127.0.0.1:{shared.sasl_port}"
    sasl = {"mechanism": "scram-sha-256", "username": "bob", "password": PASSWORDS["bob"]}
    kafkajs_round_trip(address, "js-events", 30, {"sasl": sasl})
    # kcat's topic is created on first use (auto.create.topics.enable), in bob's cluster.
    kcat_round_trip(
        [
            "-b",
            address,
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanism=SCRAM-SHA-256",
            "-X",
            "sasl.username=bob",
            "-X",
            f"sasl.password={PASSWORDS['bob']}",
        ],
        "kcat-events",
        5,
    )
    assert {"lkc-b_js-events", "lkc-b_kcat-events"} <= shared.physical_topics()


def _partition(offset: int = 0) -> Any:
    return fetch.FetchPartition(
        partition=0,
        current_leader_epoch=-1,
        fetch_offset=offset,
        last_fetched_epoch=-1,
        log_start_offset=-1,
        partition_max_bytes=1 << 20,
    )


def test_requests_a_logical_cluster_may_not_send(shared: SharedBroker) -> None:
    _create(shared.conf("alice"), "guarded")
    with WireConn(shared.proc.port) as admin:
        topic_id = _metadata_by(admin, "lkc-a_guarded", None).topic_id
    topics = (fetch.FetchTopic(topic_id=topic_id, partitions=(_partition(),)),)
    with shared.login("alice") as conn:
        # A follower's fetch (replica id 1) could read past the high watermark.
        as_follower = dataclasses.replace(
            fetch_request(fetch, 0, -1, topics, ()),
            replica_state=fetch.ReplicaState(replica_id=1, replica_epoch=-1),
        )
        assert conn.request(1, 15, as_follower).error_code == ErrorCode.cluster_authorization_failed
        placed = conn.request(
            19,
            7,
            create_topics.CreateTopicsRequest(
                topics=(
                    create_topics.CreatableTopic(
                        name="placed",
                        num_partitions=-1,
                        replication_factor=-1,
                        assignments=(
                            create_topics.CreatableReplicaAssignment(
                                partition_index=0, broker_ids=(1,)
                            ),
                        ),
                        configs=(),
                    ),
                ),
                timeout=datetime.timedelta(seconds=10),
                validate_only=False,
            ),
        )
        assert [(t.name, t.error_code) for t in placed.topics] == [
            ("placed", ErrorCode.policy_violation)
        ]
        # FindCoordinator v0 has no key type: a group's key, in the logical cluster.
        found = conn.request(10, 0, find_coordinator_v0.FindCoordinatorRequest(key="g"))
        assert (found.error_code, found.node_id) == (ErrorCode.none, 1)
        # The connection carries on, and a consumer's own fetch is served.
        answer = conn.request(1, 15, fetch_request(fetch, 0, -1, topics, ()))
        assert answer.responses[0].partitions[0].error_code == ErrorCode.none
    assert "lkc-a_placed" not in shared.physical_topics()


def test_fetch_sessions_belong_to_their_logical_cluster(shared: SharedBroker) -> None:
    _create(shared.conf("alice"), "sessions")
    _produce(shared.conf("alice"), "sessions", [b"s0"])
    with WireConn(shared.proc.port) as admin:
        topic_id = _metadata_by(admin, "lkc-a_sessions", None).topic_id
    topics = (fetch.FetchTopic(topic_id=topic_id, partitions=(_partition(),)),)
    with shared.login("alice") as alice, shared.login("bob") as bob:
        opened = alice.request(1, 15, fetch_request(fetch, 0, 0, topics, ()))
        session = opened.session_id
        assert session != 0
        assert opened.responses[0].partitions[0].high_watermark == 1
        # bob quotes alice's session: unknown to him, and his full fetch does not close it.
        stolen = bob.request(1, 15, fetch_request(fetch, session, 1, (), ()))
        assert stolen.error_code == ErrorCode.fetch_session_id_not_found
        assert stolen.responses == ()
        closed = bob.request(1, 15, fetch_request(fetch, session, -1, (), ()))
        assert closed.error_code == ErrorCode.none
        kept = alice.request(1, 15, fetch_request(fetch, session, 1, (), ()))
        assert (kept.error_code, kept.session_id) == (ErrorCode.none, session)


def test_the_principals_that_run_the_cluster_cannot_be_bound(shared: SharedBroker) -> None:
    refused = cli(shared, "logical-clusters", "bind", "lkc-c", "User:ANONYMOUS", check=False)
    assert refused.returncode != 0
    assert "INVALID_REQUEST" in refused.stdout + refused.stderr
    assert "runs the cluster itself" in refused.stdout + refused.stderr
    listed = json.loads(cli(shared, "logical-clusters", "list", "--json").stdout)
    assert "lkc-c" not in [c["id"] for c in listed["logical_clusters"]]


def _produce_throttle(conn: WireConn, topic: str, size: int) -> tuple[int, int]:
    """One Produce of ``size`` bytes of values: (error code, throttle time ms)."""
    batch = make_batch(n=size // 1000, value_size=1000)
    answer = conn.request(0, 9, sample_request(0, 9, topic, batch=batch, acks=1))
    (t,) = answer.responses
    (p,) = t.partition_responses
    return int(p.error_code), int(answer.throttle_time.total_seconds() * 1000)


def test_a_logical_cluster_s_quota_is_shared_by_its_principals(shared: SharedBroker) -> None:
    _create(shared.conf("alice"), "metered")
    _create(shared.conf("bob"), "metered")
    half = cli(
        shared, "logical-clusters", "set-quota", "lkc-a", "--producer-byte-rate", "0.5", check=False
    )
    assert half.returncode != 0 and "whole number of bytes" in half.stdout + half.stderr
    cli(shared, "logical-clusters", "set-quota", "lkc-a", "--producer-byte-rate", "100000")
    listed = json.loads(cli(shared, "logical-clusters", "list", "--json").stdout)
    quotas = {c["id"]: c["quotas"] for c in listed["logical_clusters"]}
    assert (quotas["lkc-a"], quotas["lkc-b"]) == ({"producer_byte_rate": 100000.0}, {})
    try:
        with shared.login("alice") as alice, shared.login("carol") as carol:
            # 300 KB against 100 KB/s with one second of credit: about 2 s of debt...
            code, throttle_ms = _produce_throttle(alice, "metered", 300_000)
            assert code == 0 and 1500 <= throttle_ms <= 2500, throttle_ms
            # ...which carol, another principal of lkc-a, shares.
            code, throttle_ms = _produce_throttle(carol, "metered", 1000)
            assert code == 0 and throttle_ms >= 1000, throttle_ms
        with shared.login("bob") as bob:  # lkc-b has no quota
            assert _produce_throttle(bob, "metered", 300_000) == (0, 0)
    finally:
        cli(shared, "logical-clusters", "set-quota", "lkc-a", "--producer-byte-rate", "0")
    listed = json.loads(cli(shared, "logical-clusters", "list", "--json").stdout)
    assert {c["id"]: c["quotas"] for c in listed["logical_clusters"]}["lkc-a"] == {}


def test_share_groups_work_in_a_logical_cluster(shared: SharedBroker) -> None:
    from confluent_kafka import ShareConsumer
    from kio.schema.share_group_describe.v1 import request as share_describe

    for user in ("alice", "bob"):
        conf = shared.conf(user)
        _create(conf, "jobs")
        _produce(conf, "jobs", [f"{user}-{i}".encode() for i in range(5)])
        admin = AdminClient(conf)
        group = ConfigResource(
            ResourceType.GROUP,
            "workers",
            incremental_configs=[
                ConfigEntry(
                    "share.auto.offset.reset",
                    "earliest",
                    incremental_operation=AlterConfigOpType.SET,
                )
            ],
        )
        for future in admin.incremental_alter_configs([group]).values():
            future.result(10)
    for user in ("alice", "bob"):
        consumer = ShareConsumer({**shared.conf(user), "group.id": "workers"})
        consumer.subscribe(["jobs"])
        got: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            got += [(m.topic(), m.value()) for m in consumer.poll(0.5) if m.error() is None]
        # Each group named "workers" shares its own cluster's "jobs", each record once.
        assert sorted(got) == [("jobs", f"{user}-{i}".encode()) for i in range(5)]
        with shared.login(user) as conn:
            (described,) = conn.request(
                77,
                1,
                share_describe.ShareGroupDescribeRequest(
                    group_ids=("workers",), include_authorized_operations=False
                ),
            ).groups
        assert (described.error_code, described.group_id) == (ErrorCode.none, "workers")
        (member,) = described.members
        assert member.subscribed_topic_names == ("jobs",)
        assert [t.topic_name for t in member.assignment.topic_partitions] == ["jobs"]
        consumer.close()
    with WireConn(shared.proc.port) as admin_conn:
        physical = admin_conn.request(
            77,
            1,
            share_describe.ShareGroupDescribeRequest(
                group_ids=("lkc-a_workers", "lkc-b_workers"), include_authorized_operations=False
            ),
        ).groups
    assert [(g.group_id, g.error_code) for g in physical] == [
        ("lkc-a_workers", ErrorCode.none),
        ("lkc-b_workers", ErrorCode.none),
    ]


def _refusal(futures: dict[Any, Any]) -> KafkaError:
    with pytest.raises(KafkaException) as refused:
        for future in futures.values():
            future.result(10)
    error: KafkaError = refused.value.args[0]
    return error


def test_topic_policy_keeps_the_platforms_settings(shared: SharedBroker) -> None:
    admin = AdminClient(shared.conf("alice"))
    refusals = {
        "tiny segments": NewTopic("tiny", 1, 1, config={"segment.bytes": "2097152"}),
        "an fsync per record": NewTopic("flushed", 1, 1, config={"flush.messages": "1"}),
    }
    for why, topic in refusals.items():
        error = _refusal(admin.create_topics([topic]))
        assert error.code() == KafkaError.POLICY_VIOLATION, (why, error)
    assert not {"lkc-a_tiny", "lkc-a_flushed"} & shared.physical_topics()

    tuned = {"segment.bytes": str(50 * 1024 * 1024), "retention.ms": "86400000"}
    for future in admin.create_topics([NewTopic("tuned", 1, -1, config=tuned)]).values():
        future.result(10)
    # The operator of the shared cluster sets what tenants may not.
    physical = ConfigResource(
        ResourceType.TOPIC,
        "lkc-a_tuned",
        incremental_configs=[
            ConfigEntry("flush.ms", "1000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in shared.admin.incremental_alter_configs([physical]).values():
        future.result(10)

    def tenant_change(name: str, value: str) -> ConfigResource:
        op = AlterConfigOpType.SET if value else AlterConfigOpType.DELETE
        return ConfigResource(
            ResourceType.TOPIC,
            "tuned",
            incremental_configs=[ConfigEntry(name, value, incremental_operation=op)],
        )

    for name, value in (("segment.bytes", "2097152"), ("flush.ms", "1"), ("flush.ms", "")):
        error = _refusal(admin.incremental_alter_configs([tenant_change(name, value)]))
        assert error.code() == KafkaError.POLICY_VIOLATION, (name, value, error)
        if name == "segment.bytes":
            assert "'segment.bytes' with value '2097152' is below the lowest" in error.str()
    # Nor by naming a platform setting in AlterConfigs, nor when only validating.
    naming = ConfigResource(ResourceType.TOPIC, "tuned", set_config={"flush.ms": "5"})
    assert _refusal(admin.alter_configs([naming])).code() == KafkaError.POLICY_VIOLATION
    flushed = NewTopic("checked", 1, 1, config={"flush.messages": "1"})
    error = _refusal(admin.create_topics([flushed], validate_only=True))
    assert error.code() == KafkaError.POLICY_VIOLATION
    # AlterConfigs replaces every override: the tenant's go, the platform's stay.
    legacy = ConfigResource(ResourceType.TOPIC, "tuned", set_config={"retention.ms": "5000"})
    for future in admin.alter_configs([legacy]).values():
        future.result(10)
    described = shared.admin.describe_configs([ConfigResource(ResourceType.TOPIC, "lkc-a_tuned")])
    (configs,) = [f.result(10) for f in described.values()]
    overrides = {
        name: entry.value
        for name, entry in configs.items()
        if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    }
    assert overrides == {"flush.ms": "1000", "retention.ms": "5000"}
    # The tenant sees the platform's settings as read-only.
    (seen,) = [f.result(10) for f in admin.describe_configs([legacy]).values()]
    assert (seen["flush.ms"].value, seen["flush.ms"].is_read_only) == ("1000", True)
    assert (seen["retention.ms"].value, seen["retention.ms"].is_read_only) == ("5000", False)


def test_error_messages_name_the_tenants_names(shared: SharedBroker) -> None:
    alice = shared.conf("alice")
    _create(alice, "twice")
    admin = AdminClient(alice)
    error = _refusal(admin.create_topics([NewTopic("twice", 1, 1)]))
    assert error.code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert "lkc-a" not in error.str() and "'twice'" in error.str(), error.str()
    # A tenant's own name that holds its prefix keeps it: only the prefix added comes off.
    _create(alice, "lkc-a_twice")
    error = _refusal(admin.create_topics([NewTopic("lkc-a_twice", 1, 1)]))
    assert "'lkc-a_twice'" in error.str(), error.str()


def test_a_tenants_topic_names_follow_kafkas_rules(shared: SharedBroker) -> None:
    """Judged by the name the tenant gave: "." and ".." are not names, the internal topics'
    names are the shared cluster's, and the prefix counts against 249 characters."""
    admin = AdminClient(shared.conf("alice"))
    room = 249 - len("lkc-a_")
    refused = {
        ".": KafkaError.TOPIC_EXCEPTION,
        "..": KafkaError.TOPIC_EXCEPTION,
        "__consumer_offsets": KafkaError.TOPIC_AUTHORIZATION_FAILED,
        "__transaction_state": KafkaError.TOPIC_AUTHORIZATION_FAILED,
        "x" * (room + 1): KafkaError.TOPIC_EXCEPTION,
    }
    for name, code in refused.items():
        for validate_only in (True, False):
            error = _refusal(
                admin.create_topics([NewTopic(name, 1, 1)], validate_only=validate_only)
            )
            assert error.code() == code, (name, error)
    assert (
        "maximum of 243 characters"
        in _refusal(admin.create_topics([NewTopic("x" * (room + 1), 1, 1)])).str()
    )
    assert not {f"lkc-a_{name}" for name in refused} & shared.physical_topics()
    _create(shared.conf("alice"), "y" * room)  # the longest a tenant may have
    # Auto-creation by Metadata refuses the same names.
    consumer = Consumer(
        {**shared.conf("alice"), "group.id": "names", "allow.auto.create.topics": True}
    )
    try:
        md = consumer.list_topics("..", timeout=10)
        assert md.topics[".."].error.code() == KafkaError.TOPIC_EXCEPTION
    finally:
        consumer.close()
    assert "lkc-a_.." not in shared.physical_topics()


def test_list_transactions_patterns_match_the_tenants_ids(shared: SharedBroker) -> None:
    """ListTransactions v2's pattern (KIP-1152) matches the transactional ids a tenant
    knows, not the shared cluster's names for them."""
    from kio.schema.list_transactions.v2 import request as list_txns

    _create(shared.conf("bob"), "patterned")
    p = Producer({**shared.conf("bob"), "transactional.id": "pat-1"})
    p.init_transactions(15)
    with shared.login("bob") as conn:

        def listed(pattern: str) -> list[str]:
            answer = conn.request(
                66,
                2,
                list_txns.ListTransactionsRequest(
                    state_filters=(),
                    producer_id_filters=(),
                    duration_filter=-1,
                    transactional_id_pattern=pattern,
                ),
            )
            assert int(answer.error_code) == 0
            return sorted(s.transactional_id for s in answer.transaction_states)

        assert listed("pat-.*") == ["pat-1"]
        assert listed("pat-1") == ["pat-1"]
        assert listed("lkc-b_.*") == []


def test_a_logical_cluster_has_a_partition_limit(shared: SharedBroker) -> None:
    from confluent_kafka.admin import NewPartitions

    def used_by(logical_cluster: str) -> int:
        topics = shared.admin.list_topics(timeout=10).topics
        return sum(len(t.partitions) for n, t in topics.items() if n.startswith(logical_cluster))

    # lkc-b gets 5 partitions of room under the limit, and lkc-a (which the module's other
    # tests fill, in whatever order they ran) at least 3, for the last check.
    used = used_by("lkc-b_")
    if (padding := used_by("lkc-a_") - 2 - used) > 0:
        _create(shared.conf("bob"), "padding", partitions=padding)
        used += padding

    def set_limit(value: str | None) -> None:
        _set_broker_config(shared, "artesian.logical.cluster.max.partitions", value, "4096")

    set_limit(str(used + 5))
    try:
        admin = AdminClient(shared.conf("bob"))
        # Validating counts the request's topics together, as creating them would.
        checked = admin.create_topics(
            [NewTopic("v1", 3, 1), NewTopic("v2", 3, 1)], validate_only=True
        )
        assert checked["v1"].result(10) is None
        with pytest.raises(KafkaException) as refused:
            checked["v2"].result(10)
        assert refused.value.args[0].code() == KafkaError.POLICY_VIOLATION
        error = _refusal(admin.create_topics([NewTopic("too-wide", 6, 1)]))
        assert error.code() == KafkaError.POLICY_VIOLATION, error
        assert f"has {used}, and 6 more" in error.str(), error.str()
        for future in admin.create_topics([NewTopic("wide", 3, 1)]).values():
            future.result(10)
        # Two topics in one request count together.
        both = admin.create_topics([NewTopic("w1", 1, 1), NewTopic("w2", 2, 1)])
        assert both["w1"].result(10) is None
        with pytest.raises(KafkaException) as refused:
            both["w2"].result(10)
        assert refused.value.args[0].code() == KafkaError.POLICY_VIOLATION
        # Validating counts the request's topics together here too: 1 left, 2 asked for.
        checked = admin.create_partitions(
            [NewPartitions("wide", 4), NewPartitions("w1", 2)], validate_only=True
        )
        assert checked["wide"].result(10) is None
        with pytest.raises(KafkaException) as refused:
            checked["w1"].result(10)
        assert refused.value.args[0].code() == KafkaError.POLICY_VIOLATION
        grown = admin.create_partitions([NewPartitions("wide", 4)])
        assert grown["wide"].result(10) is None
        error = _refusal(admin.create_partitions([NewPartitions("wide", 5)]))
        assert error.code() == KafkaError.POLICY_VIOLATION
        # At the limit, Kafka's own answers come first: an idempotent creator still gets
        # TOPIC_ALREADY_EXISTS for a topic it has.
        error = _refusal(admin.create_topics([NewTopic("wide", 3, 1)]))
        assert error.code() == KafkaError.TOPIC_ALREADY_EXISTS
        # Nor do topics a Metadata request would create pass it.
        with shared.login("bob") as conn:
            request = metadata.MetadataRequest(
                topics=(metadata.MetadataRequestTopic(name="auto", topic_id=None),),
                allow_auto_topic_creation=True,
                include_topic_authorized_operations=False,
            )
            (entry,) = conn.request(3, 12, request).topics
        assert (entry.name, entry.error_code) == ("auto", ErrorCode.policy_violation)
        partitions = "artesian_logical_cluster_partitions"
        assert scrape(shared.metrics_port, partitions, logical_cluster="lkc-b") == used + 5
        # Another logical cluster's limit is its own.
        _create(shared.conf("alice"), "beside-the-limit", partitions=3)
    finally:
        set_limit(None)
    assert {"lkc-b_wide", "lkc-b_w1"} <= shared.physical_topics()
    assert not {"lkc-b_too-wide", "lkc-b_w2", "lkc-b_auto"} & shared.physical_topics()


def _set_broker_config(shared: SharedBroker, name: str, value: str | None, default: str) -> None:
    """A dynamic config of broker 1, set (or removed) and waited for."""
    assert _alter(shared, "1", (name, value, SET if value else DELETE)) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # applied once the broker reads its metadata
        if _describe(shared, ResourceType.BROKER, "1")[name][0] == (value or default):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} is not {value}")


def _answers(conn: WireConn) -> bool:
    """Whether the broker still serves ``conn`` (an ApiVersions answer, not a close)."""
    try:
        return conn.request(18, 3, sample_request(18, 3, "")).error_code == ErrorCode.none
    except Closed:
        return False


def test_a_logical_cluster_has_a_connection_limit_on_each_broker(shared: SharedBroker) -> None:
    upsert = UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"dave-secret"
    )
    for future in shared.admin.alter_user_scram_credentials([upsert]).values():
        future.result(10)
    cli(shared, "logical-clusters", "bind", "lkc-d", "User:dave")
    name = "artesian.logical.cluster.max.connections"
    _set_broker_config(shared, name, "2", "1000")
    try:

        def dave() -> WireConn:
            return scram_login(shared.sasl_port, "dave", "dave-secret")

        with dave() as first, dave() as second:
            # The third login is answered (scram_login checks it), then its connection closed.
            with dave() as third:
                assert not _answers(third)
            # Other logical clusters' principals are not counted with lkc-d's.
            with shared.login("bob") as bob:
                assert _answers(bob)
            assert _answers(first) and _answers(second)
            use = "artesian_logical_cluster_connections"
            assert scrape(shared.metrics_port, use, logical_cluster="lkc-d") == 2
            refused = "kafka_server_socket_server_connections_refused_total"
            labels = {"listener": "SASL_PLAINTEXT", "limit": "logical_cluster"}
            assert scrape(shared.metrics_port, refused, **labels) >= 1
            first.close()
            deadline = time.monotonic() + 5
            while True:  # the broker sees the close a moment later
                with dave() as again:
                    if _answers(again):
                        break
                assert time.monotonic() < deadline, "a closed connection is not given back"
    finally:
        _set_broker_config(shared, name, None, "1000")
        cli(shared, "logical-clusters", "unbind", "User:dave")


def test_a_logical_clusters_topics_take_the_platforms_replication_factor(
    tmp_path: Path,
) -> None:
    """On two brokers, where a replication factor of 2 passes Kafka's own checks."""
    sasl_ports: dict[int, int] = {}

    def listeners(proc: BrokerProcess) -> dict[str, str]:
        sasl_ports[proc.port] = free_port()
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},"
            f"SASL_PLAINTEXT://127.0.0.1:{sasl_ports[proc.port]}",
            "default.replication.factor": "1",
        }

    brokers = start_pair(tmp_path, listeners)
    try:
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        wait_for_both(admin)
        erin = UserScramCredentialUpsertion(
            "erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"erin-secret"
        )
        for future in admin.alter_user_scram_credentials([erin]).values():
            future.result(10)
        bound = cli(brokers[0], "logical-clusters", "bind", "lkc-e", "User:erin")
        assert bound.returncode == 0, bound.stderr
        tenant = AdminClient(
            {
                "bootstrap.servers": f"127.0.0.1:{sasl_ports[brokers[0].port]}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "erin",
                "sasl.password": "erin-secret",
            }
        )
        error = _refusal(tenant.create_topics([NewTopic("doubled", 1, 2)]))
        assert error.code() == KafkaError.POLICY_VIOLATION
        assert error.str() == (
            "A logical cluster's topics have the platform's replication factor, 1: send -1 for it"
        )
        created = tenant.create_topics([NewTopic("single", 1, 1), NewTopic("default", 1, -1)])
        assert [f.result(10) for f in created.values()] == [None, None]
        # Either broker may answer the listing, and the other learns of new topics at its
        # next metadata poll (as a Kafka broker learns of them from the controller).
        deadline = time.monotonic() + 10
        listed = set(admin.list_topics(timeout=10).topics)
        while not {"lkc-e_single", "lkc-e_default"} <= listed and time.monotonic() < deadline:
            time.sleep(0.2)
            listed = set(admin.list_topics(timeout=10).topics)
        assert {"lkc-e_single", "lkc-e_default"} <= listed
        assert "lkc-e_doubled" not in listed
    finally:
        for b in brokers:
            b.stop()
