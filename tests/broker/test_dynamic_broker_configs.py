"""Dynamic broker configs: (Incremental)AlterConfigs on a BROKER resource, as kafka-configs
--entity-type brokers sends them. "" is the cluster-wide default, a node id that broker's own;
the per-broker value beats the default, which beats the static setting. They are metadata
records, so they outlive a restart, and the broker applies them at once."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)
from kio.static.primitive import i8

from artesian.metadata.records import ConfigRecord
from artesian.metadata.store import SqliteMetadataStore
from tests.kafka_wire import WireConn

pytestmark = pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")

T = 15.0
INVALID_CONFIG = 40
INVALID_REQUEST = 42
TOPIC, BROKER = 2, 4
ALTER_CONFIGS = 33
DESCRIBE_CONFIGS = 32
INCREMENTAL_ALTER_CONFIGS = 44
DYN = ConfigSource.DYNAMIC_BROKER_CONFIG.value
DYN_DEFAULT = ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE


def _admin(broker: Any) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def _alter(
    broker: Any,
    name: str,
    *ops: tuple[str, str | None, Any],
    validate_only: bool = False,
    raw: bool = False,
) -> int:
    """IncrementalAlterConfigs on BROKER ``name``; returns the error code. A node's resource
    goes through confluent-kafka's AdminClient; the cluster default ("") through raw frames,
    since neither librdkafka nor kafka-python can name it (kafka-configs --entity-default
    can). ``raw``: raw frames to this broker, whatever the name."""
    if name and not raw:
        entries = [ConfigEntry(k, v, incremental_operation=op) for k, v, op in ops]
        res = ConfigResource(ResourceType.BROKER, name, incremental_configs=entries)
        admin = _admin(broker)  # held until the answer: a dropped client cancels its requests
        futures = admin.incremental_alter_configs(
            [res], request_timeout=T, validate_only=validate_only
        )
        (f,) = futures.values()
        exc = f.exception(T)
        if exc is None:
            return 0
        assert isinstance(exc, KafkaException), exc
        return int(exc.args[0].code())
    from kio.schema.incremental_alter_configs.v1 import request as iac

    body = iac.IncrementalAlterConfigsRequest(
        resources=(
            iac.AlterConfigsResource(
                resource_type=i8(BROKER),
                resource_name=name,
                configs=tuple(
                    iac.AlterableConfig(name=k, config_operation=i8(op.value), value=v)
                    for k, v, op in ops
                ),
            ),
        ),
        validate_only=validate_only,
    )
    with WireConn(broker.port) as conn:
        (result,) = conn.request(INCREMENTAL_ALTER_CONFIGS, 1, body).responses
    return int(result.error_code)


def _describe(broker: Any, rtype: ResourceType, name: str) -> dict[str, Any]:
    """DescribeConfigs: name -> (value, source, read_only)."""
    if name:
        res = ConfigResource(rtype, name)
        admin = _admin(broker)
        (f,) = admin.describe_configs([res], request_timeout=T).values()
        return {k: (e.value, e.source, e.is_read_only) for k, e in f.result(T).items()}
    from kio.schema.describe_configs.v4 import request as dc

    body = dc.DescribeConfigsRequest(
        resources=(
            dc.DescribeConfigsResource(
                resource_type=i8(BROKER), resource_name="", configuration_keys=None
            ),
        ),
        include_synonyms=False,
        include_documentation=False,
    )
    with WireConn(broker.port) as conn:
        (result,) = conn.request(DESCRIBE_CONFIGS, 4, body).results
    assert result.error_code == 0, result
    return {c.name: (c.value, int(c.config_source), c.read_only) for c in result.configs}


def _create(broker: Any, topic: str) -> None:
    admin = _admin(broker)
    (f,) = admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=T).values()
    f.result(T)


def _produce(broker: Any, topic: str, value: bytes) -> KafkaError | None:
    """One record; the broker's answer (librdkafka's own size check is set out of the way)."""
    outcome: list[KafkaError | None] = []
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "message.max.bytes": 1_000_000,
            "retries": 0,
            "linger.ms": 0,
        }
    )
    p.produce(topic, value, on_delivery=lambda err, _m: outcome.append(err))
    assert p.flush(T) == 0
    return outcome[0]


def test_cluster_default_then_per_broker_value_apply_at_once(broker_factory: Any) -> None:
    broker = broker_factory()
    _create(broker, "dyn")
    assert _produce(broker, "dyn", b"x" * 5000) is None

    # The cluster default lowers the topic's max.message.bytes: the next batch is refused.
    assert _alter(broker, "", ("message.max.bytes", "4000", SET)) == 0
    err = _produce(broker, "dyn", b"x" * 5000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    topic = _describe(broker, ResourceType.TOPIC, "dyn")
    assert topic["max.message.bytes"][:2] == ("4000", DYN_DEFAULT)

    # This broker's own value beats the default.
    assert _alter(broker, "1", ("message.max.bytes", "100000", SET)) == 0
    assert _produce(broker, "dyn", b"x" * 5000) is None
    own = _describe(broker, ResourceType.BROKER, "1")
    assert own["message.max.bytes"] == ("100000", DYN, False)
    assert own["log.dirs"][2] is True  # static: read-only
    # Only the default shows under "", with its own value.
    assert _describe(broker, ResourceType.BROKER, "") == {
        "message.max.bytes": ("4000", DYN_DEFAULT, False)
    }

    # Deleting both brings back Kafka's default.
    assert _alter(broker, "1", ("message.max.bytes", None, DELETE)) == 0
    assert _alter(broker, "", ("message.max.bytes", None, DELETE)) == 0
    assert _produce(broker, "dyn", b"x" * 5000) is None
    own = _describe(broker, ResourceType.BROKER, "1")
    assert own["message.max.bytes"][:2] == ("1048588", ConfigSource.DEFAULT_CONFIG.value)
    assert _describe(broker, ResourceType.BROKER, "") == {}


def test_synonyms_list_every_layer_in_kafka_order(broker_factory: Any) -> None:
    """Per-broker dynamic, cluster default, static, default: as kafka-python reads them raw."""
    broker = broker_factory({"log.retention.ms": "7200000"})
    assert _alter(broker, "", ("log.retention.ms", "3600000", SET)) == 0
    assert _alter(broker, "1", ("log.retention.ms", "1800000", SET)) == 0
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        resp = kp.describe_configs(
            [KConfigResource(ConfigResourceType.BROKER, "1", configs={"log.retention.ms": None})],
            include_synonyms=True,
            config_filter="all",
        )
    finally:
        kp.close()
    entry = resp["broker"]["1"]["log.retention.ms"]
    assert (entry["value"], entry["config_source"]) == ("1800000", "DYNAMIC_BROKER_CONFIG")
    assert [(s["name"], s["value"], s["source"]) for s in entry["synonyms"]] == [
        ("log.retention.ms", "1800000", "DYNAMIC_BROKER_CONFIG"),
        ("log.retention.ms", "3600000", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
        ("log.retention.ms", "7200000", "STATIC_BROKER_CONFIG"),
        ("log.retention.hours", "168", "DEFAULT_CONFIG"),
    ]
    # A topic without an override takes the per-broker value.
    _create(broker, "ret")
    assert _describe(broker, ResourceType.TOPIC, "ret")["retention.ms"][:2] == ("1800000", DYN)


def test_dynamic_configs_outlive_a_restart(broker_factory: Any) -> None:
    broker = broker_factory()
    assert _alter(broker, "", ("log.segment.bytes", "2097152", SET)) == 0
    assert _alter(broker, "1", ("log.cleaner.backoff.ms", "5000", SET)) == 0
    broker.restart()
    own = _describe(broker, ResourceType.BROKER, "1")
    assert own["log.segment.bytes"][:2] == ("2097152", DYN_DEFAULT)
    assert own["log.cleaner.backoff.ms"][:2] == ("5000", DYN)
    _create(broker, "after")
    assert _describe(broker, ResourceType.TOPIC, "after")["segment.bytes"][:2] == (
        "2097152",
        DYN_DEFAULT,
    )


@pytest.mark.parametrize(
    ("name", "key", "value", "code"),
    [
        pytest.param("1", "log.dirs", "/elsewhere", INVALID_REQUEST, id="static-config"),
        pytest.param("", "node.id", "7", INVALID_REQUEST, id="static-config-default"),
        pytest.param("1", "log.retention.mss", "1", INVALID_CONFIG, id="unknown-name"),
        pytest.param("1", "log.retention.ms", "soon", INVALID_CONFIG, id="not-a-number"),
        pytest.param("", "log.cleaner.min.cleanable.ratio", "2.0", INVALID_CONFIG, id="range"),
        pytest.param("7", "log.retention.ms", "1000", INVALID_REQUEST, id="other-broker"),
    ],
)
def test_refusals_change_nothing(
    module_broker_factory: Any, name: str, key: str, value: str, code: int
) -> None:
    broker = module_broker_factory()
    # librdkafka sends a node's resource to that node: only raw frames reach 1 with "7".
    assert _alter(broker, name, (key, value, SET), raw=name == "7") == code
    assert _describe(broker, ResourceType.BROKER, "") == {}
    own = _describe(broker, ResourceType.BROKER, "1")
    assert [k for k, e in own.items() if e[1] in (DYN, DYN_DEFAULT)] == []


def test_validate_only_and_legacy_alter_configs(broker_factory: Any) -> None:
    broker = broker_factory()
    assert _alter(broker, "1", ("log.retention.ms", "60000", SET), validate_only=True) == 0
    assert _alter(broker, "", ("log.retention.ms", "60000", SET), validate_only=True) == 0
    assert _describe(broker, ResourceType.BROKER, "") == {}
    assert _describe(broker, ResourceType.BROKER, "1")["log.retention.ms"][1] != DYN
    assert _alter(broker, "1", ("log.retention.ms", "60000", SET)) == 0
    assert _alter(broker, "1", ("log.roll.ms", "120000", SET)) == 0
    # AlterConfigs replaces the resource's whole set.
    res = ConfigResource(ResourceType.BROKER, "1", set_config={"log.roll.ms": "240000"})
    admin = _admin(broker)
    (f,) = admin.alter_configs([res], request_timeout=T).values()
    assert f.result(T) is None
    own = _describe(broker, ResourceType.BROKER, "1")
    assert {k: e[0] for k, e in own.items() if e[1] == DYN} == {"log.roll.ms": "240000"}


def test_an_entry_this_version_cannot_apply_is_skipped_and_can_be_deleted(
    broker_factory: Any,
) -> None:
    """A dynamic config written by another version (unknown here) neither stops the broker
    nor blocks other changes to its resource, and can be deleted."""
    broker = broker_factory()
    assert _alter(broker, "1", ("log.roll.ms", "60000", SET)) == 0
    broker.stop()
    store = SqliteMetadataStore(broker.data_dir / "metadata.db")
    try:
        store.append([ConfigRecord(BROKER, "1", "log.future.feature", "on")])
    finally:
        store.close()
    mark = broker.log_mark()
    broker.start()
    assert "ignoring dynamic broker configs this version cannot apply: log.future.feature" in (
        broker.log_tail(since=mark)
    )
    own = _describe(broker, ResourceType.BROKER, "1")
    assert "log.future.feature" not in own
    assert own["log.roll.ms"][:2] == ("60000", DYN)
    # Changes to the same resource go through, and so does the entry's deletion.
    assert _alter(broker, "1", ("log.roll.ms", "120000", SET)) == 0
    assert _alter(broker, "1", ("log.future.feature", None, DELETE), raw=True) == 0
    assert _alter(broker, "1", ("log.future.feature", None, DELETE), raw=True) == INVALID_CONFIG
    assert _describe(broker, ResourceType.BROKER, "1")["log.roll.ms"][:2] == ("120000", DYN)


def test_alter_configs_refuses_null_values(broker_factory: Any) -> None:
    """Kafka: INVALID_REQUEST "Null value not supported" for AlterConfigs, topic or broker."""
    from kio.schema.alter_configs.v1 import request as ac

    broker = broker_factory()
    _create(broker, "nulls")
    with WireConn(broker.port) as conn:
        for rtype, name in ((BROKER, "1"), (TOPIC, "nulls")):
            body = ac.AlterConfigsRequest(
                resources=(
                    ac.AlterConfigsResource(
                        resource_type=i8(rtype),
                        resource_name=name,
                        configs=(
                            ac.AlterableConfig(
                                name="retention.ms" if rtype == TOPIC else "log.roll.ms", value=None
                            ),
                        ),
                    ),
                ),
                validate_only=False,
            )
            (result,) = conn.request(ALTER_CONFIGS, 1, body).responses
            assert result.error_code == INVALID_REQUEST, (rtype, result)


def test_the_command_lines_settings_describe_as_static_configs(broker_factory: Any) -> None:
    """--listen and --data-dir stand for listeners and log.dirs, and node.id for broker.id
    (Kafka's populateSynonyms): kafka-configs --describe --all shows what the broker uses."""
    broker = broker_factory()
    configs = _describe(broker, ResourceType.BROKER, "1")
    static = ConfigSource.STATIC_BROKER_CONFIG.value
    assert configs["listeners"] == (f"PLAINTEXT://{broker.bootstrap}", static, True)
    assert configs["log.dirs"][:2] == (str(broker.data_dir.resolve()), static)
    assert configs["broker.id"][:2] == ("1", static)
    assert configs["node.id"][:2] == ("1", ConfigSource.DEFAULT_CONFIG.value)


# --- BROKER_LOGGER (KIP-412): kafka-configs --entity-type broker-loggers ----------------------

BROKER_LOGGER = 8
APPEND = 2
DYN_LOGGER = 6  # DYNAMIC_BROKER_LOGGER_CONFIG


def _loggers(conn: WireConn, name: str, keys: tuple[str, ...] | None = None) -> Any:
    from kio.schema.describe_configs.v4 import request as dc

    body = dc.DescribeConfigsRequest(
        resources=(
            dc.DescribeConfigsResource(
                resource_type=i8(BROKER_LOGGER), resource_name=name, configuration_keys=keys
            ),
        ),
        include_synonyms=True,
        include_documentation=False,
    )
    (result,) = conn.request(DESCRIBE_CONFIGS, 4, body).results
    return result


def _set_levels(
    conn: WireConn, name: str, *ops: tuple[str, str | None, int], validate_only: bool = False
) -> tuple[int, str | None]:
    from kio.schema.incremental_alter_configs.v1 import request as iac

    body = iac.IncrementalAlterConfigsRequest(
        resources=(
            iac.AlterConfigsResource(
                resource_type=i8(BROKER_LOGGER),
                resource_name=name,
                configs=tuple(
                    iac.AlterableConfig(name=k, config_operation=i8(op), value=v)
                    for k, v, op in ops
                ),
            ),
        ),
        validate_only=validate_only,
    )
    (result,) = conn.request(INCREMENTAL_ALTER_CONFIGS, 1, body).responses
    return int(result.error_code), result.error_message


def test_log_levels_are_read_and_changed_live(broker: Any) -> None:
    """DescribeConfigs lists every logger with its level as log4j names it; a level SET
    takes effect at once (the admin logger set to WARN drops the "created topic" line) and a
    DELETE hands the logger back to its parent. Kafka's refusals change nothing."""
    with WireConn(broker.port) as conn:
        described = _loggers(conn, "1")
        assert int(described.error_code) == 0
        levels = {c.name: c.value for c in described.configs}
        assert levels["root"] == "INFO" and levels["artesian.admin"] == "INFO"
        assert {
            (int(c.config_source), c.read_only, tuple(c.synonyms)) for c in described.configs
        } == {(DYN_LOGGER, False, ())}
        # Refused, each with Kafka's code; a bad entry keeps the good one from applying.
        refusals = [
            (
                ("artesian.admin", "WARN", 0),
                ("nope", "DEBUG", 0),
                INVALID_CONFIG,
                "Logger nope does not exist!",
            ),
            (("artesian.admin", "VERBOSE", 0), None, INVALID_CONFIG, "not a supported log level"),
            (("root", None, 1), None, INVALID_REQUEST, "root logger is not allowed"),
            (("nope", None, 1), None, INVALID_CONFIG, "Logger nope does not exist!"),
            (("artesian.admin", None, 0), None, INVALID_CONFIG, "to None as it is not a"),
            (
                ("artesian.admin", "WARN", APPEND),
                None,
                INVALID_REQUEST,
                "APPEND operation is not allowed",
            ),
        ]
        for first, second, code, message in refusals:
            ops = (first,) if second is None else (first, second)
            got, text = _set_levels(conn, "1", *ops)
            assert (got, message in (text or "")) == (code, True), (ops, got, text)
        for name, message in (("7", "expected 1 but received 7"), ("", "must not be empty")):
            assert _set_levels(conn, name, ("artesian.admin", "WARN", 0))[0] == INVALID_REQUEST
            refused = _loggers(conn, name)
            assert (int(refused.error_code), message in refused.error_message) == (
                INVALID_REQUEST,
                True,
            )
        assert _set_levels(conn, "1", ("artesian.admin", "WARN", 0), validate_only=True) == (
            0,
            None,
        )
        assert {c.name: c.value for c in _loggers(conn, "1", ("artesian.admin",)).configs} == {
            "artesian.admin": "INFO"
        }

        assert _set_levels(conn, "1", ("artesian.admin", "WARN", 0)) == (0, None)
        assert {
            c.name: c.value for c in _loggers(conn, "1", ("artesian.admin", "root")).configs
        } == {
            "artesian.admin": "WARN",
            "root": "INFO",
        }
        mark = broker.log_mark()
        _create(broker, "quiet")
        assert "created topic quiet" not in broker.log_tail(200, since=mark)
        assert _set_levels(conn, "1", ("artesian.admin", None, 1)) == (0, None)
        assert {c.name: c.value for c in _loggers(conn, "1", ("artesian.admin",)).configs} == {
            "artesian.admin": "INFO"
        }
        _create(broker, "heard")
        assert "created topic heard" in broker.log_tail(200, since=mark)
    # AlterConfigs (the legacy API) has no BROKER_LOGGER, as in Kafka.
    from kio.schema.alter_configs.v2 import request as ac

    body = ac.AlterConfigsRequest(
        resources=(
            ac.AlterConfigsResource(
                resource_type=i8(BROKER_LOGGER),
                resource_name="1",
                configs=(ac.AlterableConfig(name="root", value="DEBUG"),),
            ),
        ),
        validate_only=False,
    )
    with WireConn(broker.port) as conn:
        (result,) = conn.request(ALTER_CONFIGS, 2, body).responses
    assert int(result.error_code) == INVALID_REQUEST
