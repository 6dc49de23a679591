"""ACLs enforced by the handlers, as Kafka's KafkaApis enforces them: one broker with the
StandardAuthorizer, a PLAINTEXT listener (User:ANONYMOUS, a super user, as brokers reach each
other) and a SASL_PLAINTEXT one where SCRAM users log in. ACLs are created with confluent's
AdminClient on the PLAINTEXT listener; librdkafka and kafka-python clients, and raw frames
for the exact codes of the APIs clients hide. Without ``authorizer.class.name`` nothing
changes: the rest of the suite runs that way."""

from __future__ import annotations

import base64
import datetime
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kio.schema.consumer_group_describe.v0 import request as group_describe
from kio.schema.errors import ErrorCode

from tests.broker_process import BrokerProcess, free_port
from tests.cli_run import artesian
from tests.kafka_wire import WireConn, request_frame, sample_request, scram_login
from tests.storage.batches import make_batch

SUPER = "root"
PASSWORDS = {
    user: f"{user}-secret"
    for user in (
        *("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hana", "ivan", "jude"),
        SUPER,
    )
}
# Kafka's AclOperation codes: the bits of the *_authorized_operations fields.
_OP_BITS = {"READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8}
_CLUSTER_OPS = sum(1 << op for op in (5, 9, 10, 11, 12, 7, 8))  # every CLUSTER operation


class SecuredBroker:
    def __init__(self, proc: BrokerProcess, sasl_port: int) -> None:
        self.proc = proc
        self.sasl_port = sasl_port
        self.admin = AdminClient({"bootstrap.servers": proc.bootstrap})

    def conf(self, user: str) -> dict[str, str]:
        return {
            "bootstrap.servers": f"127.0.0.1:{self.sasl_port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": PASSWORDS[user],
        }

    def login(self, user: str) -> WireConn:
        """A raw connection logged in as ``user`` (SCRAM-SHA-256)."""
        return scram_login(self.sasl_port, user, PASSWORDS[user])

    def allow(self, user: str, rtype: Any, name: str, *ops: Any, **kw: Any) -> None:
        self.acl(user, rtype, name, *ops, **kw)

    def acl(
        self,
        user: str,
        rtype: Any,
        name: str,
        *ops: Any,
        pattern: Any = ResourcePatternType.LITERAL,
        permission: Any = AclPermissionType.ALLOW,
    ) -> None:
        bindings = [
            AclBinding(rtype, name, pattern, f"User:{user}", "*", op, permission) for op in ops
        ]
        for future in self.admin.create_acls(bindings).values():
            assert future.result(10) is None

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name`` unless it exists (tests may share topics and run alone)."""
        for future in self.admin.create_topics([NewTopic(name, partitions, 1)]).values():
            try:
                future.result(10)
            except KafkaException as e:
                if _code(e) != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    proc = BrokerProcess(tmp_path_factory.mktemp("authz") / "broker")
    sasl_port = free_port()
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:ANONYMOUS;User:{SUPER}",
        "group.initial.rebalance.delay.ms": "0",
        "group.share.enable": "true",
        "share.coordinator.state.topic.num.partitions": "2",
    }
    proc.start()
    try:
        broker = SecuredBroker(proc, sasl_port)
        upsertions = [
            UserScramCredentialUpsertion(
                user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password.encode()
            )
            for user, password in PASSWORDS.items()
        ]
        for future in broker.admin.alter_user_scram_credentials(upsertions).values():
            assert future.result(10) is None
        broker.create_topic("locked")
        yield broker
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


# --- raw requests -------------------------------------------------------------------------


def _produce(conn: WireConn, topic: str, acks: int = -1, **kw: Any) -> tuple[int, int]:
    """Produce v9, one record: (error code, base offset)."""
    req = sample_request(0, 9, topic, batch=make_batch(n=1), acks=acks, **kw)
    (t,) = conn.request(0, 9, req).responses
    (p,) = t.partition_responses
    return int(p.error_code), int(p.base_offset)


def _fetch(conn: WireConn, topic: str, **kw: Any) -> Any:
    """Fetch v12 of partition 0 from offset 0: the response."""
    req = sample_request(
        1,
        12,
        topic,
        fetch_offset=0,
        partition=0,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        **kw,
    )
    return conn.request(1, 12, req)


def _partition_codes(response: Any) -> dict[str, list[int]]:
    return {t.topic: [int(p.error_code) for p in t.partitions] for t in response.responses}


def _metadata(conn: WireConn, topics: list[str] | None, auto: bool = False) -> Any:
    from kio.schema.metadata.v12 import request as md

    return conn.request(
        3,
        12,
        md.MetadataRequest(
            topics=None
            if topics is None
            else tuple(md.MetadataRequestTopic(topic_id=None, name=n) for n in topics),
            allow_auto_topic_creation=auto,
            include_topic_authorized_operations=True,
        ),
    )


def _metadata_codes(response: Any) -> dict[str, int]:
    return {t.name: int(t.error_code) for t in response.topics}


def _code(error: Any) -> int:
    """The Kafka error code of a confluent KafkaException or KafkaError."""
    if isinstance(error, KafkaException):
        error = error.args[0]
    return int(error.code())


def _deliver(conf: dict[str, str], topic: str, count: int = 1) -> list[Any]:
    """Produce ``count`` records with librdkafka; the delivery reports (err, offset, value)."""
    reports: list[Any] = []
    producer = Producer({**conf, "acks": "all", "message.timeout.ms": 10_000})
    for i in range(count):
        producer.produce(
            topic,
            f"{topic}-{i}".encode(),
            on_delivery=lambda err, msg: reports.append(
                (err, msg.offset(), msg.value()) if err is None else (err, None, None)
            ),
        )
    producer.flush(20)
    assert len(reports) == count
    return reports


def _consume(conf: dict[str, str], topic: str, group: str, count: int) -> list[Any]:
    """Subscribe with ``group`` and read ``count`` records: [(offset, value)]; the first
    error raises it as a KafkaException."""
    consumer = Consumer(
        {**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 20
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got.append((msg.offset(), msg.value()))
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


# --- tests --------------------------------------------------------------------------------


def test_a_user_without_acls_can_do_nothing(secured: SecuredBroker) -> None:
    # librdkafka: the delivery fails with TOPIC_AUTHORIZATION_FAILED.
    ((err, _, _),) = _deliver(secured.conf("dave"), "locked")
    assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with secured.login("dave") as conn:
        assert _produce(conn, "locked") == (ErrorCode.topic_authorization_failed, -1)
        fetched = _fetch(conn, "locked")
        assert _partition_codes(fetched) == {"locked": [ErrorCode.topic_authorization_failed]}
        assert not fetched.responses[0].partitions[0].records
        # No topic is listed; named ones are refused whether they exist or not.
        assert _metadata(conn, None).topics == ()
        named = _metadata(conn, ["locked", "no-such-topic"], auto=True)
        assert _metadata_codes(named) == {
            "locked": ErrorCode.topic_authorization_failed,
            "no-such-topic": ErrorCode.topic_authorization_failed,
        }
        assert {t.topic_id for t in named.topics} == {None}  # the all-zero id: no id
        assert "no-such-topic" not in secured.admin.list_topics(timeout=10).topics
        listed = conn.request(2, 7, sample_request(2, 7, "locked", timestamp=-1))
        assert (
            int(listed.topics[0].partitions[0].error_code) == ErrorCode.topic_authorization_failed
        )
    # ... and the topic is untouched.
    with WireConn(secured.proc.port) as admin:
        assert _fetch(admin, "locked").responses[0].partitions[0].high_watermark == 0


def test_granted_acls_let_a_user_produce_and_consume(secured: SecuredBroker) -> None:
    secured.create_topic("granted")
    secured.allow("alice", ResourceType.TOPIC, "granted", AclOperation.WRITE, AclOperation.READ)
    secured.allow("alice", ResourceType.GROUP, "g-granted", AclOperation.READ)
    conf = secured.conf("alice")
    reports = _deliver(conf, "granted", 5)
    assert [(e, o, v) for e, o, v in reports] == [
        (None, i, f"granted-{i}".encode()) for i in range(5)
    ]
    assert _consume(conf, "granted", "g-granted", 5) == [
        (i, f"granted-{i}".encode()) for i in range(5)
    ]
    consumer = Consumer({**conf, "group.id": "g-granted"})
    try:
        (committed,) = consumer.committed([TopicPartition("granted", 0)], timeout=10)
        assert committed.offset == 5
    finally:
        consumer.close()
    with secured.login("alice") as conn:
        # WRITE and READ imply DESCRIBE: the topic is listed, with what alice may do on it.
        (topic,) = _metadata(conn, None).topics
        assert (topic.name, int(topic.error_code)) == ("granted", 0)
        assert topic.topic_authorized_operations == sum(
            1 << _OP_BITS[op] for op in ("READ", "WRITE", "DESCRIBE")
        )


def test_a_deny_acl_wins_over_an_allow(secured: SecuredBroker) -> None:
    for topic in ("bob-free", "bob-readonly"):
        secured.create_topic(topic)
    secured.allow("bob", ResourceType.TOPIC, "*", AclOperation.ALL)
    secured.acl(
        "bob",
        ResourceType.TOPIC,
        "bob-readonly",
        AclOperation.WRITE,
        permission=AclPermissionType.DENY,
    )
    with secured.login("bob") as conn:
        assert _produce(conn, "bob-free") == (ErrorCode.none, 0)
        assert _produce(conn, "bob-readonly") == (ErrorCode.topic_authorization_failed, -1)
        # Only WRITE is denied: bob still reads and sees the topic.
        assert _partition_codes(_fetch(conn, "bob-readonly")) == {"bob-readonly": [0]}
        assert _metadata_codes(_metadata(conn, ["bob-readonly"])) == {"bob-readonly": 0}
    ((err, _, _),) = _deliver(secured.conf("bob"), "bob-readonly")
    assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_prefixed_acl_covers_the_topics_it_prefixes(secured: SecuredBroker) -> None:
    for topic in ("carol-a", "carol-b", "carl-c"):
        secured.create_topic(topic)
    secured.allow(
        "carol",
        ResourceType.TOPIC,
        "carol-",
        AclOperation.READ,
        AclOperation.WRITE,
        pattern=ResourcePatternType.PREFIXED,
    )
    secured.allow(
        "carol",
        ResourceType.GROUP,
        "carol-",
        AclOperation.READ,
        pattern=ResourcePatternType.PREFIXED,
    )
    conf = secured.conf("carol")
    assert [(e, o) for e, o, _ in _deliver(conf, "carol-a", 3)] == [(None, 0), (None, 1), (None, 2)]
    assert _consume(conf, "carol-a", "carol-group", 3) == [
        (i, f"carol-a-{i}".encode()) for i in range(3)
    ]
    with secured.login("carol") as conn:
        assert _produce(conn, "carl-c") == (ErrorCode.topic_authorization_failed, -1)
        assert sorted(t.name for t in _metadata(conn, None).topics) == ["carol-a", "carol-b"]


def test_the_metadata_cache_is_per_principal(secured: SecuredBroker) -> None:
    """The all-topics answer is cached per image: one principal's view must not leak to
    another, nor the other way round."""
    for topic in ("carol-a", "carl-c"):
        secured.create_topic(topic)
    secured.allow(
        "carol",
        ResourceType.TOPIC,
        "carol-",
        AclOperation.READ,
        pattern=ResourcePatternType.PREFIXED,
    )
    with secured.login(SUPER) as root, secured.login("carol") as carol:
        everything = {t.name for t in _metadata(root, None).topics}
        assert {"locked", "carol-a", "carl-c"} <= everything
        seen = {t.name for t in _metadata(carol, None).topics}
        assert seen == {t for t in everything if t.startswith("carol-")}
        assert {t.name for t in _metadata(root, None).topics} == everything
        # An ACL is a metadata record: the cached answers give way to new ones at once.
        secured.allow("carol", ResourceType.TOPIC, "carl-c", AclOperation.DESCRIBE)
        assert {t.name for t in _metadata(carol, None).topics} == seen | {"carl-c"}
    with WireConn(secured.proc.port) as anonymous:  # a super user too (the brokers' principal)
        assert {t.name for t in _metadata(anonymous, None).topics} == everything


def test_consumer_groups_need_read_on_the_group(secured: SecuredBroker) -> None:
    secured.create_topic("erin-topic")
    secured.allow("erin", ResourceType.TOPIC, "erin-topic", AclOperation.READ, AclOperation.WRITE)
    _deliver(secured.conf("erin"), "erin-topic", 2)
    with pytest.raises(KafkaException) as refused:
        _consume(secured.conf("erin"), "erin-topic", "erin-group", 2)
    assert _code(refused.value) == KafkaError.GROUP_AUTHORIZATION_FAILED
    from kio.schema.heartbeat.v4.request import HeartbeatRequest

    with secured.login("erin") as conn:
        find = conn.request(10, 3, sample_request(10, 3, "", key="erin-group", key_type=0))
        assert int(find.error_code) == ErrorCode.group_authorization_failed
        commit = conn.request(
            8, 8, sample_request(8, 8, "erin-topic", group_id="erin-group", committed_offset=1)
        )
        assert [int(p.error_code) for p in commit.topics[0].partitions] == [
            ErrorCode.group_authorization_failed
        ]
        beat = conn.request(
            12,
            4,
            HeartbeatRequest(
                group_id="erin-group", generation_id=1, member_id="m", group_instance_id=None
            ),
        )
        assert int(beat.error_code) == ErrorCode.group_authorization_failed
    secured.allow("erin", ResourceType.GROUP, "erin-group", AclOperation.READ)
    assert _consume(secured.conf("erin"), "erin-topic", "erin-group", 2) == [
        (0, b"erin-topic-0"),
        (1, b"erin-topic-1"),
    ]


def test_a_group_member_without_read_on_the_topic(secured: SecuredBroker) -> None:
    secured.allow("erin", ResourceType.GROUP, "erin-other", AclOperation.READ)
    with pytest.raises(KafkaException) as refused:
        _consume(secured.conf("erin"), "locked", "erin-other", 1)
    assert _code(refused.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_regex_subscription_gets_only_topics_its_member_may_describe(
    secured: SecuredBroker,
) -> None:
    for topic in ("rx-open", "rx-secret"):
        secured.create_topic(topic)
        _deliver(secured.conf(SUPER), topic)
    secured.allow("ivan", ResourceType.GROUP, "rx-group", AclOperation.READ)
    secured.allow("ivan", ResourceType.TOPIC, "rx-open", AclOperation.READ)
    # A super user's group resolves the same regex first, to both topics: what it saw is
    # not what ivan's group gets.
    wide = Consumer(
        {**secured.conf(SUPER), "group.id": "rx-wide", "group.protocol": "consumer"}
        | {"auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    wide.subscribe(["^rx-.*"])
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while seen != {"rx-open", "rx-secret"} and time.monotonic() < deadline:
            msg = wide.poll(0.5)
            if msg is not None and msg.error() is None:
                seen.add(msg.topic())
        assert seen == {"rx-open", "rx-secret"}
    finally:
        wide.close()
    consumer = Consumer(
        {**secured.conf("ivan"), "group.id": "rx-group", "group.protocol": "consumer"}
        | {"auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe(["^rx-.*"])
    got: list[tuple[str, bytes]] = []
    try:
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                if msg.error():
                    raise KafkaException(msg.error())
                got.append((msg.topic(), msg.value()))
        # KAFKA-18813: the regex matched rx-secret too, which ivan may not DESCRIBE.
        assert got == [("rx-open", b"rx-open-0")]
        assert {tp.topic for tp in consumer.assignment()} == {"rx-open"}

        # ConsumerGroupDescribe hides a group whose topics the caller may not DESCRIBE.
        secured.allow("jude", ResourceType.GROUP, "rx-group", AclOperation.DESCRIBE)
        request = group_describe.ConsumerGroupDescribeRequest(
            group_ids=("rx-group",), include_authorized_operations=False
        )
        with secured.login("jude") as conn:
            (hidden,) = conn.request(69, 0, request).groups
        assert (hidden.error_code, hidden.error_message, hidden.members) == (
            ErrorCode.topic_authorization_failed,
            "The described group uses topics that the client is not authorized to describe.",
            (),
        )
        with secured.login("ivan") as conn:
            (shown,) = conn.request(69, 0, request).groups
        assert shown.error_code == ErrorCode.none
        (member,) = shown.members
        assert [t.topic_name for t in member.assignment.topic_partitions] == ["rx-open"]
    finally:
        consumer.close()


def _session_fetch(
    conn: WireConn,
    session_id: int,
    epoch: int,
    topics: list[str] | dict[str, int],
    replica_id: int = -1,
) -> Any:
    """Fetch v12 of partition 0 of each topic (from offset 0, or the offsets given)."""
    offsets = topics if isinstance(topics, dict) else dict.fromkeys(topics, 0)
    from kio.schema.fetch.v12 import request as fr

    return conn.request(
        1,
        12,
        fr.FetchRequest(
            replica_id=replica_id,
            max_wait=datetime.timedelta(0),
            min_bytes=0,
            session_id=session_id,
            session_epoch=epoch,
            topics=tuple(
                fr.FetchTopic(
                    topic=t,
                    partitions=(
                        fr.FetchPartition(
                            partition=0, fetch_offset=offset, partition_max_bytes=1 << 20
                        ),
                    ),
                )
                for t, offset in offsets.items()
            ),
            forgotten_topics_data=(),
        ),
    )


def test_fetch_sessions_and_follower_fetches_are_authorized(secured: SecuredBroker) -> None:
    denied = ErrorCode.topic_authorization_failed
    for topic in ("carol-session", "hidden-session"):
        secured.create_topic(topic)
    secured.allow("carol", ResourceType.TOPIC, "carol-session", AclOperation.READ)
    with secured.login(SUPER) as root:
        for topic in ("carol-session", "hidden-session"):
            assert _produce(root, topic) == (0, 0)
    with secured.login("carol") as conn:
        full = _session_fetch(conn, 0, 0, ["carol-session", "hidden-session"])
        assert (int(full.error_code), full.session_id > 0) == (0, True)
        assert _partition_codes(full) == {"carol-session": [0], "hidden-session": [denied]}
        records = {t.topic: t.partitions[0].records for t in full.responses}
        assert records["carol-session"] and not records["hidden-session"]
        # The session keeps both; each fetch checks the ACLs again: the refused partition is
        # answered every time (an error is news), the other only when it has news.
        again = _session_fetch(conn, full.session_id, 1, {"carol-session": 1})
        assert _partition_codes(again) == {"hidden-session": [denied]}
        secured.allow("carol", ResourceType.TOPIC, "hidden-session", AclOperation.READ)
        granted = _session_fetch(conn, full.session_id, 2, {})
        assert _partition_codes(granted) == {"hidden-session": [0]}
        assert granted.responses[0].partitions[0].records
        # A follower's fetch needs CLUSTER_ACTION: refused for every partition, with no
        # follower state touched.
        follower = _session_fetch(conn, 0, -1, ["carol-session", "locked"], replica_id=7)
        assert _partition_codes(follower) == {"carol-session": [denied], "locked": [denied]}


def test_idempotent_producers_need_idempotent_write_or_write_on_a_topic(
    secured: SecuredBroker,
) -> None:
    from kio.schema.init_producer_id.v4.request import InitProducerIdRequest

    def init_producer_id(user: str) -> int:
        with secured.login(user) as conn:
            answer = conn.request(
                22,
                4,
                InitProducerIdRequest(
                    transactional_id=None,
                    transaction_timeout=datetime.timedelta(seconds=60),
                    producer_id=-1,
                    producer_epoch=-1,
                ),
            )
            assert (answer.producer_id >= 0) == (answer.error_code == 0)
            return int(answer.error_code)

    assert init_producer_id("frank") == ErrorCode.cluster_authorization_failed
    # librdkafka: a fatal error, raised from poll().
    producer = Producer({**secured.conf("frank"), "enable.idempotence": True})
    producer.produce("frank-topic", b"x")
    deadline = time.monotonic() + 10
    with pytest.raises(KafkaException) as fatal:
        while time.monotonic() < deadline:
            producer.poll(0.2)
    assert _code(fatal.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert fatal.value.args[0].fatal()
    # WRITE on any topic is enough for a producer id (Kafka's authorizeByResourceType)...
    secured.create_topic("frank-topic")
    secured.allow("frank", ResourceType.TOPIC, "frank-topic", AclOperation.WRITE)
    assert init_producer_id("frank") == 0
    reports = _deliver({**secured.conf("frank"), "enable.idempotence": True}, "frank-topic", 3)
    assert [(e, o) for e, o, _ in reports] == [(None, 0), (None, 1), (None, 2)]
    # ... and so is IDEMPOTENT_WRITE on the cluster, which lets no topic be written to.
    secured.allow("gina", ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE)
    assert init_producer_id("gina") == 0
    with secured.login("gina") as conn:
        assert _produce(conn, "frank-topic") == (ErrorCode.topic_authorization_failed, -1)


def test_create_topics_needs_create(secured: SecuredBroker) -> None:
    conf = secured.conf("dave")
    admin = AdminClient(conf)
    (future,) = admin.create_topics([NewTopic("dave-new", 1, 1)]).values()
    with pytest.raises(KafkaException) as refused:
        future.result(10)
    assert _code(refused.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    secured.allow(
        "dave",
        ResourceType.TOPIC,
        "dave-",
        AclOperation.CREATE,
        pattern=ResourcePatternType.PREFIXED,
    )
    (future,) = admin.create_topics([NewTopic("dave-new", 2, 1)]).values()
    assert future.result(10) is None
    assert len(secured.admin.list_topics(timeout=10).topics["dave-new"].partitions) == 2
    from kio.schema.create_topics.v7 import request as ct

    with secured.login("dave") as conn:
        # CREATE without DESCRIBE_CONFIGS: created, but its configs are not shown.
        answer = conn.request(
            19,
            7,
            ct.CreateTopicsRequest(
                topics=tuple(
                    ct.CreatableTopic(
                        name=name,
                        num_partitions=1,
                        replication_factor=1,
                        assignments=(),
                        configs=(),
                    )
                    for name in ("dave-other", "elsewhere")
                ),
                timeout=datetime.timedelta(seconds=10),
                validate_only=False,
            ),
        )
        results = {r.name: r for r in answer.topics}
        assert int(results["elsewhere"].error_code) == ErrorCode.topic_authorization_failed
        created = results["dave-other"]
        assert (int(created.error_code), int(created.topic_config_error_code)) == (
            0,
            ErrorCode.topic_authorization_failed,
        )
        assert (created.configs, created.num_partitions, created.topic_id is not None) == (
            (),
            -1,
            True,
        )
        # Auto-creation through Metadata needs CREATE too, and DESCRIBE to be told anything.
        secured.allow(
            "dave",
            ResourceType.TOPIC,
            "dave-",
            AclOperation.DESCRIBE,
            pattern=ResourcePatternType.PREFIXED,
        )
        secured.allow(
            "dave",
            ResourceType.TOPIC,
            "seen-",
            AclOperation.DESCRIBE,
            pattern=ResourcePatternType.PREFIXED,
        )
        auto = _metadata(conn, ["dave-auto", "seen-auto", "hidden-auto"], auto=True)
        assert _metadata_codes(auto) == {
            "dave-auto": 0,
            "seen-auto": ErrorCode.topic_authorization_failed,
            "hidden-auto": ErrorCode.topic_authorization_failed,
        }
        manual = _metadata(conn, ["seen-auto"], auto=False)
        assert _metadata_codes(manual) == {"seen-auto": ErrorCode.unknown_topic_or_partition}
    topics = secured.admin.list_topics(timeout=10).topics
    assert "dave-auto" in topics and "seen-auto" not in topics and "hidden-auto" not in topics


def test_a_super_user_may_do_everything(secured: SecuredBroker) -> None:
    conf = secured.conf(SUPER)
    admin = AdminClient(conf)
    (future,) = admin.create_topics([NewTopic("root-topic", 1, 1)]).values()
    assert future.result(10) is None
    assert [(e, o) for e, o, _ in _deliver(conf, "root-topic", 2)] == [(None, 0), (None, 1)]
    assert _consume(conf, "root-topic", "root-group", 2) == [
        (0, b"root-topic-0"),
        (1, b"root-topic-1"),
    ]
    with secured.login(SUPER) as conn:
        assert _produce(conn, "locked") == (ErrorCode.none, 0)
        assert _partition_codes(_fetch(conn, "locked")) == {"locked": [0]}
        # Fetch as a follower would (CLUSTER_ACTION): past the check, a broker that holds
        # no replica is told so.
        follower = _session_fetch(conn, 0, -1, ["root-topic"], replica_id=7)
        assert _partition_codes(follower) == {"root-topic": [ErrorCode.not_leader_or_follower]}
        from kio.schema.describe_cluster.v1.request import DescribeClusterRequest

        cluster = conn.request(
            60,
            1,
            DescribeClusterRequest(include_cluster_authorized_operations=True, endpoint_type=1),
        )
        assert cluster.cluster_authorized_operations == _CLUSTER_OPS
        groups = conn.request(16, 4, sample_request(16, 4, "", states_filter=()))
        assert "root-group" in {g.group_id for g in groups.groups}


def _ask(conn: WireConn, api_key: int, version: int, topic: str = "locked", **kw: Any) -> Any:
    return conn.request(api_key, version, sample_request(api_key, version, topic, **kw))


def test_admin_apis_answer_kafkas_authorization_errors(secured: SecuredBroker) -> None:
    topic_denied = ErrorCode.topic_authorization_failed
    cluster_denied = ErrorCode.cluster_authorization_failed
    with WireConn(secured.proc.port) as admin:
        (locked,) = _metadata(admin, ["locked"]).topics
        locked_id = locked.topic_id
    secured.create_topic("dave-dtp")
    secured.allow("dave", ResourceType.TOPIC, "dave-dtp", AclOperation.DESCRIBE)
    with secured.login("dave") as conn:
        for key, version in ((32, 4), (33, 2), (44, 1)):  # Describe/Alter/IncrementalAlter
            (topic,) = (
                _ask(conn, key, version).results
                if key == 32
                else _ask(conn, key, version).responses
            )
            assert int(topic.error_code) == topic_denied, key
            broker = _ask(conn, key, version, resource_type=4, resource_name="")
            (result,) = broker.results if key == 32 else broker.responses
            assert (int(result.error_code), result.error_message) == (
                cluster_denied,
                "Cluster authorization failed.",
            ), key
            # Client metrics subscriptions (KIP-714) are the cluster's, as in Kafka.
            subscription = _ask(conn, key, version, resource_type=16, resource_name="subs")
            (result,) = subscription.results if key == 32 else subscription.responses
            assert (int(result.error_code), result.error_message) == (
                cluster_denied,
                "Cluster authorization failed.",
            ), key
            group = _ask(conn, key, version, resource_type=32, resource_name="cfg-group")
            (result,) = group.results if key == 32 else group.responses
            assert (int(result.error_code), result.error_message) == (
                ErrorCode.group_authorization_failed,
                "Group authorization failed.",
            ), key
        (deleted,) = _ask(conn, 20, 6, name="locked").responses
        assert (deleted.name, int(deleted.error_code)) == ("locked", topic_denied)
        by_id = conn.request(20, 6, sample_request(20, 6, "locked", name=None, topic_id=locked_id))
        (deleted,) = by_id.responses
        # By id without DESCRIBE: the name stays hidden.
        assert (deleted.name, deleted.topic_id, int(deleted.error_code)) == (
            None,
            locked_id,
            topic_denied,
        )
        (grown,) = _ask(conn, 37, 3, count=2, assignments=None, validate_only=False).results
        assert int(grown.error_code) == topic_denied
        (records,) = _ask(conn, 21, 2).topics
        assert [(int(p.error_code), p.low_watermark) for p in records.partitions] == [
            (topic_denied, -1)
        ]
        (epochs,) = _ask(conn, 23, 4).topics
        assert [int(p.error_code) for p in epochs.partitions] == [topic_denied]
        # DescribeProducers needs READ; DescribeTopicPartitions DESCRIBE, and lists only the
        # topics it allows when asked for all of them.
        (producers,) = _ask(conn, 61, 0, name="locked", partition_indexes=(0,)).topics
        assert [int(p.error_code) for p in producers.partitions] == [topic_denied]
        from kio.schema.describe_topic_partitions.v0 import request as dtp

        (described,) = conn.request(
            75,
            0,
            dtp.DescribeTopicPartitionsRequest(
                topics=(dtp.TopicRequest(name="locked"),), response_partition_limit=10, cursor=None
            ),
        ).topics
        assert (described.name, int(described.error_code), described.topic_id) == (
            "locked",
            topic_denied,
            None,
        )
        every = conn.request(
            75,
            0,
            dtp.DescribeTopicPartitionsRequest(topics=(), response_partition_limit=10, cursor=None),
        )
        listed = {t.name for t in every.topics}
        assert "dave-dtp" in listed and "locked" not in listed
        from kio.schema.list_config_resources.v0.request import ListConfigResourcesRequest

        listed = conn.request(74, 0, ListConfigResourcesRequest())
        assert (int(listed.error_code), listed.config_resources) == (cluster_denied, ())
        elected = _ask(conn, 43, 2, election_type=0)
        assert int(elected.error_code) == cluster_denied
        assert [
            (r.topic, [(int(p.error_code), p.error_message) for p in r.partition_result])
            for r in elected.replica_election_results
        ] == [("locked", [(cluster_denied, "Cluster authorization failed.")])]
        dirs = _ask(conn, 35, 4, topics=None)
        assert (int(dirs.error_code), dirs.results) == (cluster_denied, ())
        assert int(_ask(conn, 46, 0, topics=None).error_code) == cluster_denied
        moved = _ask(conn, 45, 0, replicas=(1,))
        # Each partition carries the error too: Java's admin client counts them.
        assert int(moved.error_code) == cluster_denied
        assert [
            (r.name, [(int(p.error_code), p.error_message) for p in r.partitions])
            for r in moved.responses
        ] == [("locked", [(cluster_denied, "Cluster authorization failed.")])]
        scram = _ask(conn, 50, 0, users=None)
        assert (int(scram.error_code), scram.results) == (cluster_denied, ())
        from kio.schema.alter_user_scram_credentials.v0 import request as alter_scram

        altered = conn.request(
            51,
            0,
            alter_scram.AlterUserScramCredentialsRequest(
                deletions=(alter_scram.ScramCredentialDeletion(name="bob", mechanism=1),),
                upsertions=(),
            ),
        )
        assert [(r.user, int(r.error_code)) for r in altered.results] == [("bob", cluster_denied)]
        from kio.schema.describe_cluster.v1.request import DescribeClusterRequest

        cluster = conn.request(
            60,
            1,
            DescribeClusterRequest(include_cluster_authorized_operations=True, endpoint_type=1),
        )
        # Brokers answer anyone, as Kafka's do; the operations need DESCRIBE on the cluster.
        assert (int(cluster.error_code), len(cluster.brokers)) == (0, 1)
        assert cluster.cluster_authorized_operations == 0
    secured.allow("dave", ResourceType.TOPIC, "locked", AclOperation.DESCRIBE_CONFIGS)
    with secured.login("dave") as conn:
        (topic,) = _ask(conn, 32, 4).results
        assert (int(topic.error_code), len(topic.configs) > 0) == (0, True)
        (topic,) = _ask(conn, 33, 2, validate_only=True).responses
        assert int(topic.error_code) == topic_denied  # ALTER_CONFIGS is not implied
    secured.allow("dave", ResourceType.GROUP, "cfg-group", AclOperation.DESCRIBE_CONFIGS)
    with secured.login("dave") as conn:
        (group,) = _ask(
            conn, 32, 4, resource_type=32, resource_name="cfg-group", configuration_keys=None
        ).results
        assert int(group.error_code) == 0
        assert sorted((c.name, int(c.config_source)) for c in group.configs) == [
            ("consumer.heartbeat.interval.ms", 5),  # DEFAULT_CONFIG: the broker's value
            ("consumer.session.timeout.ms", 5),
            ("share.auto.offset.reset", 5),
            ("share.heartbeat.interval.ms", 5),
            ("share.isolation.level", 5),
            ("share.record.lock.duration.ms", 5),
            ("share.session.timeout.ms", 5),
        ]


def test_share_group_offsets_show_only_the_topics_a_user_may_describe(
    secured: SecuredBroker,
) -> None:
    """DescribeShareGroupOffsets for every topic leaves out those the user may not describe
    (not even their names show); named, they are refused."""
    from kio.schema.alter_share_group_offsets.v0 import request as aso
    from kio.schema.describe_share_group_offsets.v1 import request as dsgo

    for name in ("share-seen", "share-hidden"):
        secured.create_topic(name)
    with WireConn(secured.proc.port) as admin:  # the super user sets the group's offsets
        altered = admin.request(
            91,
            0,
            aso.AlterShareGroupOffsetsRequest(
                group_id="share-g",
                topics=tuple(
                    aso.AlterShareGroupOffsetsRequestTopic(
                        topic_name=name,
                        partitions=(
                            aso.AlterShareGroupOffsetsRequestPartition(
                                partition_index=0, start_offset=0
                            ),
                        ),
                    )
                    for name in ("share-seen", "share-hidden")
                ),
            ),
        )
        assert [int(p.error_code) for t in altered.responses for p in t.partitions] == [0, 0]
    secured.allow("hana", ResourceType.GROUP, "share-g", AclOperation.DESCRIBE)
    secured.allow("hana", ResourceType.TOPIC, "share-seen", AclOperation.DESCRIBE)

    def describe(conn: WireConn, topics: tuple[str, ...] | None) -> list[tuple[str, int, int]]:
        (g,) = conn.request(
            90,
            1,
            dsgo.DescribeShareGroupOffsetsRequest(
                groups=(
                    dsgo.DescribeShareGroupOffsetsRequestGroup(
                        group_id="share-g",
                        topics=None
                        if topics is None
                        else tuple(
                            dsgo.DescribeShareGroupOffsetsRequestTopic(
                                topic_name=t, partitions=(0,)
                            )
                            for t in topics
                        ),
                    ),
                )
            ),
        ).groups
        assert int(g.error_code) == 0, g
        return [
            (t.topic_name, int(p.start_offset), int(p.error_code))
            for t in g.topics
            for p in t.partitions
        ]

    with secured.login(SUPER) as root:
        assert sorted(describe(root, None)) == [("share-hidden", 0, 0), ("share-seen", 0, 0)]
    with secured.login("hana") as conn:
        assert describe(conn, None) == [("share-seen", 0, 0)]
        assert describe(conn, ("share-hidden", "share-seen")) == [
            ("share-seen", 0, 0),
            ("share-hidden", -1, ErrorCode.topic_authorization_failed),
        ]


def test_share_group_describe_hides_a_group_whose_topics_the_caller_may_not_describe(
    secured: SecuredBroker,
) -> None:
    """KAFKA-18817: as ConsumerGroupDescribe, a share group whose assignment names a topic
    the caller may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED, with no members."""
    from kio.schema.share_group_describe.v1 import request as sgd
    from kio.schema.share_group_heartbeat.v1 import request as sgh

    topics = ("sgd-open", "sgd-secret")
    for name in topics:
        secured.create_topic(name)
    member_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    assigned: set[str] = set()
    with secured.login(SUPER) as root:
        names = {t.topic_id: t.name for t in _metadata(root, list(topics)).topics}
        epoch, deadline = 0, time.monotonic() + 20
        while assigned != set(topics) and time.monotonic() < deadline:
            beat = root.request(
                76,
                1,
                sgh.ShareGroupHeartbeatRequest(
                    group_id="sgd-g",
                    member_id=member_id,
                    member_epoch=epoch,
                    subscribed_topic_names=topics if epoch == 0 else None,
                ),
            )
            assert beat.error_code == ErrorCode.none, beat
            epoch = beat.member_epoch
            if beat.assignment is not None:
                assigned = {names[t.topic_id] for t in beat.assignment.topic_partitions}
            time.sleep(0.1)
    assert assigned == set(topics)
    secured.allow("jude", ResourceType.GROUP, "sgd-g", AclOperation.DESCRIBE)
    secured.allow("jude", ResourceType.TOPIC, "sgd-open", AclOperation.DESCRIBE)
    request = sgd.ShareGroupDescribeRequest(
        group_ids=("sgd-g",), include_authorized_operations=False
    )
    with secured.login("jude") as conn:
        (hidden,) = conn.request(77, 1, request).groups
    assert (hidden.error_code, hidden.error_message, hidden.members) == (
        ErrorCode.topic_authorization_failed,
        "The described group uses topics that the client is not authorized to describe.",
        (),
    )
    secured.allow("jude", ResourceType.TOPIC, "sgd-secret", AclOperation.DESCRIBE)
    with secured.login("jude") as conn:
        (shown,) = conn.request(77, 1, request).groups
    assert shown.error_code == ErrorCode.none
    (member,) = shown.members
    assert member.member_id == member_id
    assert sorted(t.topic_name for t in member.assignment.topic_partitions) == list(topics)


def test_group_apis_answer_kafkas_authorization_errors(secured: SecuredBroker) -> None:
    group_denied = ErrorCode.group_authorization_failed
    secured.create_topic("erin-admin")
    secured.allow("erin", ResourceType.TOPIC, "erin-admin", AclOperation.READ, AclOperation.WRITE)
    secured.allow("erin", ResourceType.GROUP, "erin-admin-group", AclOperation.READ)
    _deliver(secured.conf("erin"), "erin-admin", 2)
    assert len(_consume(secured.conf("erin"), "erin-admin", "erin-admin-group", 2)) == 2
    _consume(secured.conf(SUPER), "erin-admin", "root-admin-group", 2)
    with secured.login("erin") as conn:
        described = _ask(
            conn,
            15,
            6,
            groups=("erin-admin-group", "root-admin-group"),
            include_authorized_operations=True,
        )
        mine, other = described.groups
        assert (mine.group_id, int(mine.error_code)) == ("erin-admin-group", 0)
        assert mine.authorized_operations == (1 << _OP_BITS["READ"]) | (1 << _OP_BITS["DESCRIBE"])
        assert (other.group_id, int(other.error_code), other.error_message, other.members) == (
            "root-admin-group",
            group_denied,
            "Group authorization failed.",
            (),
        )
        listed = {g.group_id for g in _ask(conn, 16, 4, states_filter=()).groups}
        assert "erin-admin-group" in listed and "root-admin-group" not in listed
        deleted = _ask(conn, 42, 2, groups_names=("erin-admin-group", "root-admin-group"))
        assert {r.group_id: int(r.error_code) for r in deleted.results} == {
            "erin-admin-group": group_denied,
            "root-admin-group": group_denied,
        }
        from kio.schema.offset_fetch.v8 import request as of

        fetched = conn.request(
            9,
            8,
            of.OffsetFetchRequest(
                groups=(
                    of.OffsetFetchRequestGroup(group_id="erin-admin-group", topics=None),
                    of.OffsetFetchRequestGroup(
                        group_id="erin-admin-group",
                        topics=tuple(
                            of.OffsetFetchRequestTopics(name=t, partition_indexes=(0,))
                            for t in ("erin-admin", "locked")
                        ),
                    ),
                    of.OffsetFetchRequestGroup(group_id="root-admin-group", topics=None),
                ),
                require_stable=False,
            ),
        )
        every, named, refused = fetched.groups
        assert [(t.name, [p.committed_offset for p in t.partitions]) for t in every.topics] == [
            ("erin-admin", [2])
        ]
        assert {
            t.name: [(int(p.error_code), p.committed_offset) for p in t.partitions]
            for t in named.topics
        } == {
            "erin-admin": [(0, 2)],
            "locked": [(ErrorCode.topic_authorization_failed, -1)],
        }
        assert (int(refused.error_code), refused.topics) == (group_denied, ())
        gone = _ask(conn, 47, 0, group_id="erin-admin-group")
        assert (int(gone.error_code), gone.topics) == (group_denied, ())
        joined = _ask(conn, 11, 9, group_id="root-admin-group", protocol_type="consumer")
        assert (int(joined.error_code), joined.member_id, joined.generation_id) == (
            group_denied,
            "",
            -1,
        )
        synced = _ask(
            conn,
            14,
            5,
            group_id="root-admin-group",
            protocol_type="consumer",
            protocol_name="range",
        )
        assert int(synced.error_code) == group_denied
        left = _ask(conn, 13, 5, group_id="root-admin-group")
        assert (int(left.error_code), left.members) == (group_denied, ())


def test_transactions_need_write_on_the_transactional_id(secured: SecuredBroker) -> None:
    txn_denied = ErrorCode.transactional_id_authorization_failed
    tid = "alice-txn"
    secured.create_topic("alice-txn-topic")
    secured.allow("alice", ResourceType.TOPIC, "alice-txn-topic", AclOperation.WRITE)
    secured.allow("alice", ResourceType.GROUP, "alice-txn-group", AclOperation.READ)
    conf = {**secured.conf("alice"), "transactional.id": tid}
    producer = Producer(conf)
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(10)
    assert _code(refused.value) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    with secured.login("alice") as conn:
        find = _ask(conn, 10, 4, key_type=1, coordinator_keys=(tid,))
        assert [(c.key, int(c.error_code)) for c in find.coordinators] == [(tid, txn_denied)]
        from kio.schema.init_producer_id.v4.request import InitProducerIdRequest

        init = conn.request(
            22,
            4,
            InitProducerIdRequest(
                transactional_id=tid,
                transaction_timeout=datetime.timedelta(seconds=60),
                producer_id=-1,
                producer_epoch=-1,
            ),
        )
        assert (int(init.error_code), init.producer_id) == (txn_denied, -1)
        added = _ask(conn, 24, 3, "alice-txn-topic", v3_and_below_transactional_id=tid)
        assert [
            int(p.partition_error_code)
            for t in added.results_by_topic_v3_and_below
            for p in t.results_by_partition
        ] == [txn_denied]
        offsets = _ask(conn, 25, 3, transactional_id=tid, group_id="alice-txn-group")
        assert int(offsets.error_code) == txn_denied
        ended = _ask(conn, 26, 3, transactional_id=tid, committed=True)
        assert int(ended.error_code) == txn_denied
        committed = _ask(
            conn, 28, 3, "alice-txn-topic", transactional_id=tid, group_id="alice-txn-group"
        )
        assert [int(p.error_code) for t in committed.topics for p in t.partitions] == [txn_denied]
        (described,) = _ask(conn, 65, 0, transactional_ids=(tid,)).transaction_states
        assert int(described.error_code) == txn_denied
        markers = _ask(conn, 27, 1, "alice-txn-topic")
        assert [
            int(p.error_code) for m in markers.markers for t in m.topics for p in t.partitions
        ] == [ErrorCode.cluster_authorization_failed]
    secured.allow("alice", ResourceType.TRANSACTIONAL_ID, tid, AclOperation.WRITE)
    producer = Producer(conf)
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce("alice-txn-topic", b"in-a-transaction")
    producer.commit_transaction(10)
    with secured.login("alice") as conn:
        # Every partition must be writable, else none is added.
        from kio.schema.add_partitions_to_txn.v3 import request as ap

        added = conn.request(
            24,
            3,
            ap.AddPartitionsToTxnRequest(
                v3_and_below_transactional_id=tid,
                v3_and_below_producer_id=0,
                v3_and_below_producer_epoch=0,
                v3_and_below_topics=tuple(
                    ap.AddPartitionsToTxnTopic(name=t, partitions=(0,))
                    for t in ("alice-txn-topic", "locked")
                ),
            ),
        )
        assert {
            t.name: [int(p.partition_error_code) for p in t.results_by_partition]
            for t in added.results_by_topic_v3_and_below
        } == {
            "alice-txn-topic": [ErrorCode.operation_not_attempted],
            "locked": [ErrorCode.topic_authorization_failed],
        }
        listed = _ask(conn, 66, 1, state_filters=(), producer_id_filters=(), duration_filter=-1)
        assert [s.transactional_id for s in listed.transaction_states] == [tid]
    with secured.login("dave") as conn:
        listed = _ask(conn, 66, 1, state_filters=(), producer_id_filters=(), duration_filter=-1)
        assert listed.transaction_states == ()


def test_kafka_python_producer_is_refused(secured: SecuredBroker) -> None:
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    producer = KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{secured.sasl_port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username="dave",
        sasl_plain_password=PASSWORDS["dave"],
        max_block_ms=5000,
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send("locked", b"no").get(10)
    finally:
        producer.close(timeout=5)


def test_an_acks_0_produce_that_is_refused_closes_the_connection(secured: SecuredBroker) -> None:
    with secured.login("dave") as conn:
        req = sample_request(0, 9, "locked", batch=make_batch(n=1), acks=0)
        conn.send(request_frame(0, 9, conn.next_corr(), req))
        conn.expect_closed()
    with secured.login(SUPER) as conn:  # allowed: no answer, and the connection stays
        req = sample_request(0, 9, "locked", batch=make_batch(n=1), acks=0)
        conn.send(request_frame(0, 9, conn.next_corr(), req))
        assert _produce(conn, "locked")[0] == ErrorCode.none


def test_sync_group_v5_without_its_protocol_is_refused_before_anything(
    secured: SecuredBroker,
) -> None:
    from kio.schema.sync_group.v5 import request as sg

    with secured.login("gina") as conn:
        for protocol_type, protocol_name in ((None, "range"), ("consumer", None)):
            answer = conn.request(
                14,
                5,
                sg.SyncGroupRequest(
                    group_id="nulls",
                    generation_id=1,
                    member_id="m",
                    group_instance_id=None,
                    protocol_type=protocol_type,
                    protocol_name=protocol_name,
                    assignments=(),
                ),
            )
            # INCONSISTENT_GROUP_PROTOCOL, even for a principal with no READ on the group.
            assert (int(answer.error_code), answer.assignment) == (23, b"")


def test_fetch_sessions_do_not_tell_whether_a_hidden_topic_exists(secured: SecuredBroker) -> None:
    secured.create_topic("exists-but-hidden")
    with secured.login("gina") as conn:
        sessions = {}
        for topic in ("exists-but-hidden", "never-created-hidden"):
            full = _session_fetch(conn, 0, 0, [topic])
            assert _partition_codes(full) == {topic: [int(ErrorCode.topic_authorization_failed)]}
            sessions[topic] = full.session_id
            # An incremental fetch adding the other topic keeps the session either way.
            other = "never-created-hidden" if topic == "exists-but-hidden" else "locked"
            more = _session_fetch(conn, full.session_id, 1, [other])
            assert (int(more.error_code), more.session_id) == (0, full.session_id)
        assert all(sessions.values()), sessions  # a session for both, not only the real one


def test_the_cli_reads_assigned_partitions_without_a_group_acl(secured: SecuredBroker) -> None:
    """`artesian consume -p -o` names no group: READ on the topic is all it needs, as with
    kafka-console-consumer's --partition and --offset."""
    secured.create_topic("cli-assigned")
    _deliver(secured.conf(SUPER), "cli-assigned", 2)
    secured.allow("gina", ResourceType.TOPIC, "cli-assigned", AclOperation.READ)
    login = [f"{k}={v}" for k, v in secured.conf("gina").items() if k != "bootstrap.servers"]
    read = artesian(
        "consume", "cli-assigned", "-p", "0", "-o", "0", "-n", "2", "-t", "20",
        "-b", f"127.0.0.1:{secured.sasl_port}", *(a for kv in login for a in ("-X", kv)),
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines() == ["cli-assigned-0", "cli-assigned-1"]
