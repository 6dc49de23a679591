"""Admin APIs against a real broker, driven by confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient: CreateTopics, DeleteTopics, CreatePartitions, Describe/Alter/IncrementalAlter
Configs, DescribeCluster, DescribeLogDirs and Metadata auto-creation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

# AlterConfigs is deprecated in the client, but brokers still serve it and we test it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")

T = 15.0  # seconds: generous timeouts, this machine is shared


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    """One broker for the module: every test here uses topic names of its own. Tests that need
    a fresh broker (or other settings) take broker_factory."""
    return module_broker_factory()


def _admin(broker: Any) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def _create(admin: AdminClient, *topics: NewTopic, validate_only: bool = False) -> dict[str, Any]:
    futures = admin.create_topics(list(topics), validate_only=validate_only, request_timeout=T)
    return {name: f.exception(T) for name, f in futures.items()}


def _error(exc: BaseException | None) -> KafkaError:
    assert isinstance(exc, KafkaException), exc
    err = exc.args[0]
    assert isinstance(err, KafkaError)
    return err


def _topic_configs(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    (future,) = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, topic)], request_timeout=T
    ).values()
    return future.result(T)  # type: ignore[no-any-return]


def _partition_count(admin: AdminClient, topic: str) -> int | None:
    md = admin.list_topics(topic=None, timeout=T)
    t = md.topics.get(topic)
    return None if t is None else len(t.partitions)


# --- CreateTopics -------------------------------------------------------------------------------


def test_create_topics_partitions_and_configs(broker_factory: Any) -> None:
    broker = broker_factory()  # a fresh one: the topic listing below is exact
    admin = _admin(broker)
    errors = _create(
        admin,
        NewTopic("orders", 3, 1, config={"retention.ms": "12345", "cleanup.policy": "compact"}),
        NewTopic("events", 1, 1),
    )
    assert errors == {"orders": None, "events": None}
    md = admin.list_topics(timeout=T)
    assert sorted(md.topics) == ["events", "orders"]
    orders = md.topics["orders"]
    assert orders.error is None
    assert sorted(orders.partitions) == [0, 1, 2]
    for p in orders.partitions.values():
        assert p.leader == 1
        assert p.replicas == [1]
        assert p.isrs == [1]
    assert sorted(md.topics["events"].partitions) == [0]
    cfg = _topic_configs(admin, "orders")
    assert cfg["retention.ms"].value == "12345"
    assert cfg["cleanup.policy"].value == "compact"


def test_create_topics_validate_only_creates_nothing(broker: Any) -> None:
    admin = _admin(broker)
    assert _create(admin, NewTopic("dry", 4, 1), validate_only=True) == {"dry": None}
    # Validation still applies to a dry run.
    err = _error(
        _create(admin, NewTopic("dry2", 1, 1, config={"retention.ms": "x"}), validate_only=True)[
            "dry2"
        ]
    )
    assert err.code() == KafkaError.INVALID_CONFIG
    md = admin.list_topics(timeout=T)
    assert "dry" not in md.topics and "dry2" not in md.topics
    # ... and the name is still free.
    assert _create(admin, NewTopic("dry", 2, 1)) == {"dry": None}
    assert _partition_count(admin, "dry") == 2


def test_create_existing_topic(broker: Any) -> None:
    admin = _admin(broker)
    assert _create(admin, NewTopic("twice", 2, 1)) == {"twice": None}
    err = _error(_create(admin, NewTopic("twice", 5, 1))["twice"])
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS  # 36
    assert err.code() == 36
    assert _partition_count(admin, "twice") == 2  # unchanged


@pytest.mark.parametrize("name", ["bad name!", "a/b", ".", "..", "x" * 250])
def test_create_invalid_topic_name(broker: Any, name: str) -> None:
    admin = _admin(broker)
    err = _error(_create(admin, NewTopic(name, 1, 1))[name])
    assert err.code() == KafkaError.TOPIC_EXCEPTION == 17
    assert name not in admin.list_topics(timeout=T).topics


def test_names_that_collide_in_metric_names_are_refused(broker: Any) -> None:
    """Kafka refuses a topic whose name equals an existing one's with "." and "_" swapped."""
    admin = _admin(broker)
    assert _create(admin, NewTopic("orders.eu", 1, 1)) == {"orders.eu": None}
    err = _error(_create(admin, NewTopic("orders_eu", 1, 1))["orders_eu"])
    assert (err.code(), err.str()) == (
        KafkaError.TOPIC_EXCEPTION,
        "Topic 'orders_eu' collides with existing topic: orders.eu",
    )
    assert "orders_eu" not in admin.list_topics(timeout=T).topics
    assert _create(admin, NewTopic("orders_us", 1, 1)) == {"orders_us": None}


@pytest.mark.parametrize(
    "config",
    [
        {"retention.ms": "abc"},
        {"cleanup.policy": "shred"},
        {"min.insync.replicas": "0"},
        {"no.such.config": "1"},
        {"compression.type": "brotli"},
    ],
)
def test_create_invalid_config(broker: Any, config: dict[str, str]) -> None:
    admin = _admin(broker)
    err = _error(_create(admin, NewTopic("cfg", 1, 1, config=config))["cfg"])
    assert err.code() == KafkaError.INVALID_CONFIG == 40
    assert "cfg" not in admin.list_topics(timeout=T).topics


# --- Metadata, DescribeTopics, DescribeCluster --------------------------------------------------


def test_describe_topics_and_cluster(broker: Any) -> None:
    admin = _admin(broker)
    assert _create(admin, NewTopic("desc", 4, 1)) == {"desc": None}
    (future,) = admin.describe_topics(TopicCollection(["desc"]), request_timeout=T).values()
    desc = future.result(T)
    assert desc.name == "desc"
    assert desc.is_internal is False
    assert [p.id for p in desc.partitions] == [0, 1, 2, 3]
    for p in desc.partitions:
        assert p.leader.id == 1
        assert [r.id for r in p.replicas] == [1]
        assert [r.id for r in p.isr] == [1]

    cluster = admin.describe_cluster(request_timeout=T).result(T)
    md = admin.list_topics(timeout=T)
    assert cluster.cluster_id == md.cluster_id
    assert cluster.cluster_id and len(cluster.cluster_id) == 22  # base64 UUID, as Kafka
    assert cluster.controller.id == 1 == md.controller_id
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, "127.0.0.1", broker.port)]
    assert {k: (b.host, b.port) for k, b in md.brokers.items()} == {1: ("127.0.0.1", broker.port)}


def test_describe_unknown_topic(broker: Any) -> None:
    admin = _admin(broker)
    (future,) = admin.describe_topics(TopicCollection(["nope"]), request_timeout=T).values()
    exc = future.exception(T)
    assert _error(exc).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, "nope")], request_timeout=T
    )
    (future,) = futures.values()
    exc = future.exception(T)
    assert _error(exc).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


# --- DescribeConfigs / AlterConfigs / IncrementalAlterConfigs -----------------------------------


def test_describe_configs_sources_and_synonyms(broker: Any) -> None:
    admin = _admin(broker)
    assert _create(admin, NewTopic("cfgs", 1, 1, config={"retention.ms": "12345"})) == {
        "cfgs": None
    }
    cfg = _topic_configs(admin, "cfgs")
    r = cfg["retention.ms"]
    assert r.value == "12345"
    assert r.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert r.is_default is False
    assert r.is_read_only is False
    assert r.synonyms["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert r.synonyms["retention.ms"].value == "12345"

    c = cfg["cleanup.policy"]
    assert (c.value, c.source, c.is_default) == ("delete", ConfigSource.DEFAULT_CONFIG.value, True)
    assert list(c.synonyms) == ["log.cleanup.policy"]
    assert c.synonyms["log.cleanup.policy"].value == "delete"
    assert c.synonyms["log.cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value

    s = cfg["segment.bytes"]
    assert (s.value, s.source) == (str(1024**3), ConfigSource.DEFAULT_CONFIG.value)
    assert s.synonyms["log.segment.bytes"].value == str(1024**3)
    assert cfg["max.message.bytes"].value == "1048588"
    assert cfg["message.timestamp.type"].value == "CreateTime"
    assert cfg["compression.type"].value == "producer"
    # Every non-overridden entry reports DEFAULT_CONFIG.
    others = {e.source for k, e in cfg.items() if k != "retention.ms"}
    assert others == {ConfigSource.DEFAULT_CONFIG.value}


def test_describe_configs_static_broker_setting(broker_factory: Any) -> None:
    """A broker --set shows up as the topic default's STATIC_BROKER_CONFIG synonym."""
    broker = broker_factory({"log.segment.bytes": "2097152"})
    admin = _admin(broker)
    assert _create(admin, NewTopic("st", 1, 1)) == {"st": None}
    s = _topic_configs(admin, "st")["segment.bytes"]
    assert s.value == "2097152"
    assert s.source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert s.is_default is False
    # Kafka lists log.segment.bytes twice (STATIC_BROKER_CONFIG, then DEFAULT_CONFIG); the
    # confluent client keys synonyms by name, so read the raw list through kafka-python.
    kp = _kp_admin(broker)
    try:
        from kafka.admin import ConfigResource as KConfigResource
        from kafka.admin import ConfigResourceType

        resp = kp.describe_configs(
            [KConfigResource(ConfigResourceType.TOPIC, "st", configs={"segment.bytes": None})],
            include_synonyms=True,
            config_filter="all",
        )
    finally:
        kp.close()
    entry = resp["topic"]["st"]["segment.bytes"]
    assert entry["value"] == "2097152"
    assert entry["config_source"] == "STATIC_BROKER_CONFIG"
    assert [(x["name"], x["value"], x["source"]) for x in entry["synonyms"]] == [
        ("log.segment.bytes", "2097152", "STATIC_BROKER_CONFIG"),
        ("log.segment.bytes", str(1024**3), "DEFAULT_CONFIG"),
    ]


def test_alter_configs_replaces_overrides(broker: Any) -> None:
    admin = _admin(broker)
    assert _create(
        admin, NewTopic("alt", 1, 1, config={"retention.ms": "1000", "segment.ms": "60000"})
    ) == {"alt": None}
    res = ConfigResource(ResourceType.TOPIC, "alt", set_config={"retention.bytes": "4096"})
    (f,) = admin.alter_configs([res], request_timeout=T).values()
    assert f.result(T) is None
    cfg = _topic_configs(admin, "alt")
    # AlterConfigs is a full replacement: the previous overrides are gone.
    assert cfg["retention.bytes"].value == "4096"
    assert cfg["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    bad = ConfigResource(ResourceType.TOPIC, "alt", set_config={"retention.bytes": "lots"})
    (f,) = admin.alter_configs([bad], request_timeout=T).values()
    assert _error(f.exception(T)).code() == KafkaError.INVALID_CONFIG
    assert _topic_configs(admin, "alt")["retention.bytes"].value == "4096"


def test_incremental_alter_configs(broker: Any) -> None:
    admin = _admin(broker)
    assert _create(admin, NewTopic("inc", 1, 1, config={"retention.ms": "1000"})) == {"inc": None}

    def apply(*entries: ConfigEntry) -> KafkaException | None:
        res = ConfigResource(ResourceType.TOPIC, "inc", incremental_configs=list(entries))
        (f,) = admin.incremental_alter_configs([res], request_timeout=T).values()
        return f.exception(T)  # type: ignore[no-any-return]

    assert (
        apply(ConfigEntry("retention.bytes", "2048", incremental_operation=AlterConfigOpType.SET))
        is None
    )
    cfg = _topic_configs(admin, "inc")
    # SET keeps the other overrides, unlike AlterConfigs.
    assert cfg["retention.ms"].value == "1000"
    assert cfg["retention.bytes"].value == "2048"
    assert cfg["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    assert (
        apply(ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE))
        is None
    )
    cfg = _topic_configs(admin, "inc")
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert cfg["retention.bytes"].value == "2048"

    # APPEND on a list config: from the default [delete] to [delete, compact]; again is a no-op.
    for _ in range(2):
        assert (
            apply(
                ConfigEntry(
                    "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND
                )
            )
            is None
        )
        c = _topic_configs(admin, "inc")["cleanup.policy"]
        assert c.value == "delete,compact"
        assert c.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert (
        apply(
            ConfigEntry(
                "cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT
            )
        )
        is None
    )
    assert _topic_configs(admin, "inc")["cleanup.policy"].value == "compact"

    err = apply(ConfigEntry("retention.ms", "-5x", incremental_operation=AlterConfigOpType.SET))
    assert _error(err).code() == KafkaError.INVALID_CONFIG
    err = apply(ConfigEntry("not.a.config", "1", incremental_operation=AlterConfigOpType.SET))
    assert _error(err).code() == KafkaError.INVALID_CONFIG


def test_alter_configs_unknown_topic(broker: Any) -> None:
    admin = _admin(broker)
    res = ConfigResource(ResourceType.TOPIC, "ghost", set_config={"retention.ms": "1"})
    (f,) = admin.alter_configs([res], request_timeout=T).values()
    assert _error(f.exception(T)).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


# --- CreatePartitions / DeleteTopics ------------------------------------------------------------


def test_create_partitions_grow_and_shrink(broker: Any) -> None:
    admin = _admin(broker)
    assert _create(admin, NewTopic("grow", 2, 1)) == {"grow": None}
    (f,) = admin.create_partitions([NewPartitions("grow", 5)], request_timeout=T).values()
    assert f.result(T) is None
    assert _partition_count(admin, "grow") == 5
    # The new partitions take writes.
    p = Producer({"bootstrap.servers": broker.bootstrap})
    delivered: list[Any] = []
    p.produce("grow", b"v", partition=4, on_delivery=lambda e, m: delivered.append((e, m)))
    assert p.flush(T) == 0
    assert delivered[0][0] is None and delivered[0][1].offset() == 0

    for count, code in [(3, KafkaError.INVALID_PARTITIONS), (5, KafkaError.INVALID_PARTITIONS)]:
        (f,) = admin.create_partitions([NewPartitions("grow", count)], request_timeout=T).values()
        err = _error(f.exception(T))
        assert err.code() == code == 37
    assert _partition_count(admin, "grow") == 5
    (f,) = admin.create_partitions([NewPartitions("ghost", 3)], request_timeout=T).values()
    assert _error(f.exception(T)).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions_validate_only(broker: Any) -> None:
    admin = _admin(broker)
    assert _create(admin, NewTopic("vgrow", 1, 1)) == {"vgrow": None}
    (f,) = admin.create_partitions(
        [NewPartitions("vgrow", 3)], validate_only=True, request_timeout=T
    ).values()
    assert f.result(T) is None
    assert _partition_count(admin, "vgrow") == 1


# The longest name Kafka allows: its deleted directory's name (topic, partition, a uuid and
# "-delete") would pass 255 bytes unless the topic part is cut, as Kafka's LocalLog does.
@pytest.mark.parametrize("name", ["gone", "g" * 249])
def test_delete_topic_then_recreate(broker: Any, name: str) -> None:
    admin = _admin(broker)
    assert _create(admin, NewTopic(name, 2, 1)) == {name: None}
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(5):
        p.produce(name, b"x%d" % i, partition=0)
    assert p.flush(T) == 0
    (f,) = admin.delete_topics([name], request_timeout=T).values()
    assert f.result(T) is None
    assert name not in admin.list_topics(timeout=T).topics
    (f,) = admin.delete_topics([name], request_timeout=T).values()
    assert _error(f.exception(T)).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert not (broker.data_dir / f"{name}-0").exists()  # renamed for deletion

    assert _create(admin, NewTopic(name, 1, 1)) == {name: None}
    p2 = Producer({"bootstrap.servers": broker.bootstrap})
    delivered: list[Any] = []
    p2.produce(name, b"fresh", partition=0, on_delivery=lambda e, m: delivered.append((e, m)))
    assert p2.flush(T) == 0
    assert delivered[0][0] is None
    assert delivered[0][1].offset() == 0  # a new log, not the old one


# --- Auto-creation ------------------------------------------------------------------------------


def test_produce_auto_creates_topic(broker_factory: Any) -> None:
    broker = broker_factory({"num.partitions": "3"})
    p = Producer({"bootstrap.servers": broker.bootstrap})
    delivered: list[Any] = []
    p.produce(
        "auto-topic", b"hello", partition=2, on_delivery=lambda e, m: delivered.append((e, m))
    )
    assert p.flush(T) == 0
    assert delivered[0][0] is None and delivered[0][1].offset() == 0
    assert _partition_count(_admin(broker), "auto-topic") == 3


def test_an_internal_topic_auto_created_by_metadata_gets_its_coordinators_settings(
    broker_factory: Any,
) -> None:
    """A tool reading __consumer_offsets before any group exists creates it as the group
    coordinator would (offsets.topic.num.partitions, compacted), and groups work after."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    broker = broker_factory({"offsets.topic.num.partitions": "4"})
    admin = _admin(broker)
    for name in ("__consumer_offsets", "__transaction_state"):
        admin.list_topics(topic=name, timeout=T)  # Metadata with auto-creation allowed
    assert _partition_count(admin, "__consumer_offsets") == 4
    assert _partition_count(admin, "__transaction_state") == 50
    for name in ("__consumer_offsets", "__transaction_state"):
        res = ConfigResource(ResourceType.TOPIC, name)
        configs = admin.describe_configs([res])[res].result(T)
        assert configs["cleanup.policy"].value == "compact"
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("after-auto", b"v")
    assert p.flush(T) == 0
    c = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "g", "auto.offset.reset": "earliest"}
    )
    try:
        c.subscribe(["after-auto"])
        msg = None
        deadline = time.monotonic() + T
        while msg is None and time.monotonic() < deadline:
            msg = c.poll(0.5)
        assert msg is not None and msg.error() is None and msg.value() == b"v"
        committed = c.commit(message=msg, asynchronous=False)
        assert committed is not None and committed[0].offset == 1
    finally:
        c.close()


def test_auto_create_disabled(broker_factory: Any) -> None:
    broker = broker_factory({"auto.create.topics.enable": "false"})
    admin = _admin(broker)
    md = admin.list_topics(topic="not-there", timeout=T)
    assert md.topics["not-there"].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 1000})
    delivered: list[Any] = []
    p.produce("not-there", b"x", on_delivery=lambda e, m: delivered.append(e))
    p.flush(T)
    assert len(delivered) == 1
    assert delivered[0].code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._MSG_TIMED_OUT,
    )
    assert "not-there" not in admin.list_topics(timeout=T).topics


# --- kafka-python KafkaAdminClient --------------------------------------------------------------


def _kp_admin(broker: Any) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(T * 1000))


def test_kafka_python_admin(broker: Any) -> None:
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType
    from kafka.admin import NewPartitions as KNewPartitions
    from kafka.admin import NewTopic as KNewTopic
    from kafka.errors import (
        InvalidConfigurationError,
        InvalidPartitionsError,
        InvalidTopicError,
        TopicAlreadyExistsError,
    )

    admin = _kp_admin(broker)
    try:
        admin.create_topics(
            [KNewTopic("kp", 2, 1, topic_configs={"retention.ms": "5000"})], timeout_ms=15000
        )
        assert "kp" in admin.list_topics()
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([KNewTopic("kp", 2, 1)])
        with pytest.raises(InvalidTopicError):
            admin.create_topics([KNewTopic("no good", 1, 1)])
        with pytest.raises(InvalidConfigurationError):
            admin.create_topics([KNewTopic("kp2", 1, 1, topic_configs={"segment.bytes": "x"})])
        admin.create_topics([KNewTopic("kp3", 1, 1)], validate_only=True)
        assert "kp3" not in admin.list_topics()

        (desc,) = admin.describe_topics(["kp"])
        assert desc["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1]
        assert {p["leader_id"] for p in desc["partitions"]} == {1}

        admin.create_partitions({"kp": KNewPartitions(4)})
        (desc,) = admin.describe_topics(["kp"])
        assert len(desc["partitions"]) == 4
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({"kp": KNewPartitions(2)})

        entries = _kp_configs(admin, "kp")
        assert entries["retention.ms"]["value"] == "5000"
        assert entries["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert entries["cleanup.policy"]["value"] == "delete"
        assert entries["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"
        assert entries["cleanup.policy"]["config_type"] == "LIST"

        admin.alter_configs(
            [KConfigResource(ConfigResourceType.TOPIC, "kp", configs={"retention.ms": "6000"})]
        )
        entries = _kp_configs(admin, "kp")
        assert entries["retention.ms"]["value"] == "6000"
        assert entries["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"

        cluster = admin.describe_cluster()
        assert cluster["controller_id"] == 1
        assert [(b["broker_id"], b["port"]) for b in cluster["brokers"]] == [(1, broker.port)]
        assert cluster["cluster_id"] == _admin(broker).list_topics(timeout=T).cluster_id

        admin.delete_topics(["kp"], timeout_ms=15000)
        assert "kp" not in admin.list_topics()
    finally:
        admin.close()


def _kp_configs(admin: Any, topic: str) -> dict[str, Any]:
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType

    resp = admin.describe_configs(
        [KConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
    )
    return resp["topic"][topic]  # type: ignore[no-any-return]


def test_kafka_python_describe_log_dirs(broker: Any) -> None:
    from confluent_kafka import Producer as CProducer

    admin = _admin(broker)
    assert _create(admin, NewTopic("dirs", 2, 1)) == {"dirs": None}
    p = CProducer({"bootstrap.servers": broker.bootstrap, "compression.type": "none"})
    for _ in range(10):
        p.produce("dirs", b"z" * 100, partition=1)
    assert p.flush(T) == 0

    kp = _kp_admin(broker)
    try:
        resp = kp.describe_log_dirs()
    finally:
        kp.close()
    (per_broker,) = resp
    assert per_broker["broker"] == 1
    (result,) = per_broker["log_dirs"]
    assert result["error_code"] == 0
    assert result["log_dir"] == str((broker.data_dir / "logs").resolve())
    sizes = {
        (t["name"], p["partition_index"]): p["partition_size"]
        for t in result["topics"]
        for p in t["partitions"]
    }
    assert sizes[("dirs", 0)] == 0
    on_disk = sum(f.stat().st_size for f in (broker.data_dir / "logs" / "dirs-1").glob("*.log"))
    assert sizes[("dirs", 1)] == on_disk > 10 * 100
