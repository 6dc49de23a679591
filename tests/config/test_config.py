"""Tests for artesian.config against Kafka 4.x documented names, defaults and behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from artesian.config.broker import BROKER_CONFIGS, BrokerConfig, parse_properties
from artesian.config.definitions import (
    LONG_MAX,
    ConfigKey,
    ConfigSource,
    ConfigType,
    DynamicConfigError,
    InvalidConfigError,
    UnknownConfigError,
    format_value,
    parse,
)
from artesian.config.resolve import (
    AlterConfigOp,
    ConfigSynonym,
    apply_incremental,
    describe_broker_configs,
    describe_topic_configs,
    effective_topic_config,
    validate_topic_overrides,
)
from artesian.config.topic import TOPIC_CONFIG_SYNONYMS, TOPIC_CONFIGS

S, D = ConfigSource.STATIC_BROKER_CONFIG, ConfigSource.DEFAULT_CONFIG

# Kafka 4.0 documented topic defaults (printed form) and types.
TOPIC_DEFAULTS = {
    "cleanup.policy": ("delete", ConfigType.LIST),
    "compression.type": ("producer", ConfigType.STRING),
    "compression.gzip.level": ("-1", ConfigType.INT),
    "compression.lz4.level": ("9", ConfigType.INT),
    "compression.zstd.level": ("3", ConfigType.INT),
    "delete.retention.ms": ("86400000", ConfigType.LONG),
    "file.delete.delay.ms": ("60000", ConfigType.LONG),
    "flush.messages": ("9223372036854775807", ConfigType.LONG),
    "flush.ms": ("9223372036854775807", ConfigType.LONG),
    "follower.replication.throttled.replicas": ("", ConfigType.LIST),
    "index.interval.bytes": ("4096", ConfigType.INT),
    "local.retention.bytes": ("-2", ConfigType.LONG),
    "local.retention.ms": ("-2", ConfigType.LONG),
    "max.compaction.lag.ms": ("9223372036854775807", ConfigType.LONG),
    "max.message.bytes": ("1048588", ConfigType.INT),
    "message.timestamp.after.max.ms": ("3600000", ConfigType.LONG),
    "message.timestamp.before.max.ms": ("9223372036854775807", ConfigType.LONG),
    "message.timestamp.type": ("CreateTime", ConfigType.STRING),
    "min.cleanable.dirty.ratio": ("0.5", ConfigType.DOUBLE),
    "min.compaction.lag.ms": ("0", ConfigType.LONG),
    "min.insync.replicas": ("1", ConfigType.INT),
    "preallocate": ("false", ConfigType.BOOLEAN),
    "remote.storage.enable": ("false", ConfigType.BOOLEAN),
    "remote.log.copy.disable": ("false", ConfigType.BOOLEAN),
    "remote.log.delete.on.disable": ("false", ConfigType.BOOLEAN),
    "retention.bytes": ("-1", ConfigType.LONG),
    "retention.ms": ("604800000", ConfigType.LONG),
    "segment.bytes": ("1073741824", ConfigType.INT),
    "segment.index.bytes": ("10485760", ConfigType.INT),
    "segment.jitter.ms": ("0", ConfigType.LONG),
    "segment.ms": ("604800000", ConfigType.LONG),
    "unclean.leader.election.enable": ("false", ConfigType.BOOLEAN),
}


@pytest.mark.parametrize("name", sorted(TOPIC_DEFAULTS))
def test_topic_defaults_match_kafka(name: str) -> None:
    key = TOPIC_CONFIGS[name]
    assert (key.default_str, key.type) == TOPIC_DEFAULTS[name]


def test_removed_4_0_topic_configs_are_unknown() -> None:
    for name in ("message.format.version", "message.downconversion.enable"):
        with pytest.raises(UnknownConfigError, match=f"Unknown topic config name: {name}"):
            validate_topic_overrides({name: "x"})


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("num.partitions", 1),
        ("default.replication.factor", 1),
        ("auto.create.topics.enable", True),
        ("delete.topic.enable", True),
        ("message.max.bytes", 1048588),
        ("socket.request.max.bytes", 104857600),
        ("log.retention.check.interval.ms", 300000),
        ("log.segment.delete.delay.ms", 60000),
        ("log.retention.hours", 168),
        ("log.retention.ms", None),
        ("offsets.topic.num.partitions", 50),
        ("offsets.topic.replication.factor", 3),
        ("offsets.retention.minutes", 10080),
        ("group.initial.rebalance.delay.ms", 3000),
        ("group.min.session.timeout.ms", 6000),
        ("group.max.session.timeout.ms", 1800000),
        ("fetch.max.bytes", 57671680),
        ("connections.max.idle.ms", 600000),
        ("log.cleanup.policy", ["delete"]),
        ("node.id", 1),
    ],
)
def test_broker_defaults(name: str, default: object) -> None:
    assert BrokerConfig().get(name) == default


def test_every_synonym_is_a_defined_broker_config() -> None:
    for syns in TOPIC_CONFIG_SYNONYMS.values():
        for s in syns:
            assert s.name in BROKER_CONFIGS, s.name


def test_retention_precedence_and_units() -> None:
    assert BrokerConfig().retention_ms == 604_800_000
    assert BrokerConfig({"log.retention.hours": "24"}).retention_ms == 86_400_000
    assert BrokerConfig({"log.retention.minutes": "5"}).retention_ms == 300_000
    both = BrokerConfig(
        {"log.retention.hours": "24", "log.retention.minutes": "5", "log.retention.ms": "1234"}
    )
    assert both.retention_ms == 1234
    hm = BrokerConfig({"log.retention.hours": "24", "log.retention.minutes": "5"})
    assert hm.retention_ms == 300_000
    # Any negative broker retention means "forever" (-1), as in Kafka.
    assert BrokerConfig({"log.retention.hours": "-3"}).retention_ms == -1


def test_segment_ms_and_flush_ms_synonyms() -> None:
    assert BrokerConfig({"log.roll.hours": "2"}).segment_ms == 7_200_000
    assert BrokerConfig({"log.roll.hours": "2", "log.roll.ms": "5"}).segment_ms == 5
    assert BrokerConfig({"log.roll.jitter.hours": "1"}).segment_jitter_ms == 3_600_000
    assert BrokerConfig({"log.flush.scheduler.interval.ms": "9"}).flush_ms == 9
    cfg = BrokerConfig({"log.flush.scheduler.interval.ms": "9", "log.flush.interval.ms": "3"})
    assert cfg.flush_ms == 3


def test_effective_topic_config_precedence() -> None:
    broker = BrokerConfig({"log.retention.hours": "1", "message.max.bytes": "2000"})
    eff = effective_topic_config({"retention.ms": "5000"}, broker)
    assert eff["retention.ms"] == 5000
    assert eff["max.message.bytes"] == 2000
    assert eff["cleanup.policy"] == ["delete"]
    assert eff["min.cleanable.dirty.ratio"] == 0.5
    assert eff["preallocate"] is False
    assert set(eff) == set(TOPIC_CONFIGS)


@pytest.mark.parametrize(
    ("name", "raw", "typed", "printed"),
    [
        ("preallocate", " TRUE ", True, "true"),
        ("preallocate", "False", False, "false"),
        ("cleanup.policy", " compact , delete ", ["compact", "delete"], "compact,delete"),
        ("cleanup.policy", "", [], ""),
        ("retention.ms", " -1 ", -1, "-1"),
        ("retention.ms", "+5", 5, "5"),
        ("min.cleanable.dirty.ratio", "0.25", 0.25, "0.25"),
        ("min.cleanable.dirty.ratio", "1", 1.0, "1.0"),
        ("min.cleanable.dirty.ratio", "1e-4", 1e-4, "1.0E-4"),
        ("compression.type", " zstd ", "zstd", "zstd"),
        ("flush.messages", "9223372036854775807", LONG_MAX, "9223372036854775807"),
    ],
)
def test_parse_format_round_trip(name: str, raw: str, typed: object, printed: str) -> None:
    key = TOPIC_CONFIGS[name]
    value = parse(key, raw)
    assert value == typed
    assert format_value(key, value) == printed
    assert parse(key, printed) == typed


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "retention.ms",
            "abc",
            "Invalid value abc for configuration retention.ms: Not a number of type LONG",
        ),
        ("retention.ms", "1.5", "Not a number of type LONG"),
        ("retention.ms", "9223372036854775808", "Not a number of type LONG"),
        ("segment.bytes", "2147483648", "Not a number of type INT"),
        ("retention.ms", "-2", "Value must be at least -1"),
        ("segment.bytes", "1000", "Value must be at least 1048576"),
        ("min.cleanable.dirty.ratio", "1.5", "Value must be no more than 1"),
        ("min.cleanable.dirty.ratio", "x", "Not a number of type DOUBLE"),
        ("preallocate", "yes", "Expected value to be either true or false"),
        ("cleanup.policy", "compact,nope", "String must be one of: compact, delete"),
        ("compression.type", "ZSTD", "String must be one of"),
        ("compression.gzip.level", "0", "Invalid value 0"),
        ("compression.lz4.level", "18", "no more than 17"),
        ("message.timestamp.type", "Now", "CreateTime, LogAppendTime"),
        ("leader.replication.throttled.replicas", "0:1,x", "partitionId"),
    ],
)
def test_bad_values(name: str, raw: str, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message) as info:
        validate_topic_overrides({name: raw})
    assert type(info.value) is InvalidConfigError


def test_validate_normalizes_and_rejects_null_and_conflicts() -> None:
    out = validate_topic_overrides({"cleanup.policy": "compact, delete", "preallocate": "TRUE"})
    assert out == {"cleanup.policy": "compact,delete", "preallocate": "true"}
    assert validate_topic_overrides({"leader.replication.throttled.replicas": "*"})
    throttled = validate_topic_overrides({"follower.replication.throttled.replicas": "0:1, 1:2"})
    assert throttled == {"follower.replication.throttled.replicas": "0:1,1:2"}
    with pytest.raises(InvalidConfigError, match="Null value"):
        validate_topic_overrides({"retention.ms": None})
    with pytest.raises(InvalidConfigError, match="conflict topic config"):
        validate_topic_overrides({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"})


def test_unknown_broker_key_suggests_closest() -> None:
    with pytest.raises(UnknownConfigError, match=r"log\.retention\.hour.*log\.retention\.hours"):
        BrokerConfig.load(None, ["log.retention.hour=5"])
    with pytest.raises(InvalidConfigError, match="Not a number of type INT"):
        BrokerConfig.load(None, ["num.partitions=many"])
    with pytest.raises(InvalidConfigError):
        BrokerConfig.load(None, ["num.partitions"])


def test_node_id_and_broker_id() -> None:
    assert BrokerConfig().node_id == 1
    assert BrokerConfig({"broker.id": "7"}).node_id == 7
    assert BrokerConfig({"node.id": "3", "broker.id": "3"}).node_id == 3
    with pytest.raises(InvalidConfigError, match=r"must match node\.id"):
        BrokerConfig({"node.id": "3", "broker.id": "4"})


def test_log_dirs_fallback() -> None:
    assert BrokerConfig().log_dirs == ["/tmp/kafka-logs"]
    assert BrokerConfig({"log.dir": "/a"}).log_dirs == ["/a"]
    assert BrokerConfig({"log.dir": "/a", "log.dirs": "/b, /c"}).log_dirs == ["/b", "/c"]


def test_properties_parsing_edge_cases() -> None:
    text = (
        "# comment\n"
        "! also a comment \\\n"
        "\n"
        "   a=1\n"
        "b : 2\n"
        "c 3\n"
        "d=x\\\n"
        "    y\\\n"
        "  z\n"
        "e=ends with backslash \\\\\n"
        "f=\n"
        "g\n"
        "h\\=k=v\n"
        "i=tab\\there\\u0041\n"
        "a=override\n"
        "j = spaced value  \n"
    )
    props = parse_properties(text)
    assert props == {
        "a": "override",
        "b": "2",
        "c": "3",
        "d": "xyz",
        "e": "ends with backslash \\",
        "f": "",
        "g": "",
        "h=k": "v",
        "i": "tab\thereA",
        "j": "spaced value  ",
    }


def test_load_file_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "server.properties"
    f.write_text("num.partitions=3\nlog.retention.hours=24\n", encoding="utf-8")
    cfg = BrokerConfig.load(f, ["num.partitions=5"])
    assert cfg.num_partitions == 5
    assert cfg.retention_ms == 86_400_000
    assert cfg.explicit == {"num.partitions": "5", "log.retention.hours": "24"}
    assert cfg.source("num.partitions") is S
    assert cfg.source("default.replication.factor") is D


def test_incremental_ops() -> None:
    set_, delete, append, subtract = (int(op) for op in AlterConfigOp)
    cur = {"retention.ms": "1000"}
    assert apply_incremental(cur, [("retention.ms", delete, None)]) == {}
    assert apply_incremental(cur, [("segment.ms", set_, "60000")]) == {
        "retention.ms": "1000",
        "segment.ms": "60000",
    }
    # APPEND starts from the default when unset; duplicates are not added twice.
    out = apply_incremental({}, [("cleanup.policy", append, "compact,delete")])
    assert out == {"cleanup.policy": "delete,compact"}
    out = apply_incremental(out, [("cleanup.policy", subtract, "delete")])
    assert out == {"cleanup.policy": "compact"}
    with pytest.raises(InvalidConfigError, match="type is not LIST"):
        apply_incremental(cur, [("retention.ms", append, "5")])
    with pytest.raises(UnknownConfigError):
        apply_incremental(cur, [("nope", set_, "5")])
    with pytest.raises(InvalidConfigError):
        apply_incremental(cur, [("retention.ms", set_, "abc")])
    with pytest.raises(ValueError, match="Unknown alter config operation"):
        apply_incremental(cur, [("retention.ms", 9, "5")])
    assert cur == {"retention.ms": "1000"}


def _by_name(entries: list) -> dict:  # type: ignore[type-arg]
    return {e.name: e for e in entries}


def test_describe_topic_sources_and_synonyms() -> None:
    broker = BrokerConfig({"log.retention.ms": "1000", "log.retention.hours": "24"})
    entries = _by_name(describe_topic_configs({"retention.ms": "5000"}, broker, None, True, True))
    assert set(entries) == set(TOPIC_CONFIGS)
    e = entries["retention.ms"]
    assert (e.value, e.source, e.is_default, e.read_only) == ("5000", 1, False, False)
    assert e.synonyms == [
        ConfigSynonym("retention.ms", "5000", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ConfigSynonym("log.retention.ms", "1000", S),
        ConfigSynonym("log.retention.hours", "24", S),
        ConfigSynonym("log.retention.hours", "168", D),
    ]
    assert e.config_type is ConfigType.LONG and e.documentation
    m = entries["max.message.bytes"]
    assert (m.value, m.source) == ("1048588", D)
    assert m.synonyms == [ConfigSynonym("message.max.bytes", "1048588", D)]
    r = entries["remote.storage.enable"]
    assert (r.source, r.synonyms) == (D, [])


def test_describe_topic_kafka_first_synonym_quirk() -> None:
    # Kafka lists broker synonyms from the first one (log.retention.ms) only.
    broker = BrokerConfig({"log.retention.hours": "24"})
    (e,) = describe_topic_configs({}, broker, ["retention.ms"], True, False)
    assert (e.value, e.source, e.synonyms) == ("86400000", D, [])
    broker = BrokerConfig({"log.retention.ms": "24"})
    (e,) = describe_topic_configs({}, broker, ["retention.ms", "unknown.name"], False, False)
    assert (e.value, e.source, e.synonyms, e.documentation) == ("24", S, [], None)


def test_describe_broker() -> None:
    broker = BrokerConfig({"log.retention.hours": "24", "num.partitions": "3"})
    entries = _by_name(describe_broker_configs(broker, None, True, False))
    assert entries["num.partitions"].source is S and entries["num.partitions"].value == "3"
    assert entries["num.partitions"].read_only
    h = entries["log.retention.hours"]
    assert h.synonyms == [
        ConfigSynonym("log.retention.hours", "24", S),
        ConfigSynonym("log.retention.hours", "168", D),
    ]
    ms = entries["log.retention.ms"]
    assert (ms.value, ms.source, ms.synonyms, ms.read_only) == (None, D, [], False)
    assert entries["log.cleanup.policy"].value == "delete"
    assert entries["log.cleaner.min.cleanable.ratio"].value == "0.5"


def test_describe_broker_password_is_hidden() -> None:
    defs = {
        "node.id": BROKER_CONFIGS["node.id"],
        "broker.id": BROKER_CONFIGS["broker.id"],
        "ssl.key.password": ConfigKey("ssl.key.password", ConfigType.PASSWORD, None, "secret"),
    }
    broker = BrokerConfig({"ssl.key.password": " s3cret "}, definitions=defs)
    assert broker.get("ssl.key.password") == " s3cret "
    (e,) = describe_broker_configs(broker, ["ssl.key.password"], True, False)
    assert (e.value, e.is_sensitive, e.source) == (None, True, S)
    assert e.synonyms == [ConfigSynonym("ssl.key.password", None, S)]
    assert "s3cret" not in repr(broker)


DYN, DYN_DEFAULT = ConfigSource.DYNAMIC_BROKER_CONFIG, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG


def test_dynamic_layers_win_in_kafka_order() -> None:
    broker = BrokerConfig({"log.retention.ms": "7200000", "message.max.bytes": "5000"})
    skipped = broker.update_dynamic(
        {"log.retention.ms": "1800000"},
        {"log.retention.ms": "3600000", "log.segment.bytes": "2097152"},
    )
    assert skipped == []
    assert broker.get("log.retention.ms") == 1_800_000
    assert broker.source("log.retention.ms") is DYN
    assert broker.get("log.segment.bytes") == 2_097_152
    assert broker.source("log.segment.bytes") is DYN_DEFAULT
    assert (broker.get("message.max.bytes"), broker.source("message.max.bytes")) == (5000, S)
    assert broker.source("log.roll.ms") is D
    # Topic defaults follow, and so do their DescribeConfigs sources.
    assert broker.topic_default("retention.ms") == 1_800_000
    assert broker.topic_default("segment.bytes") == 2_097_152
    (e,) = describe_topic_configs({}, broker, ["retention.ms"], True, False)
    assert (e.value, e.source) == ("1800000", DYN)
    assert e.synonyms == [
        ConfigSynonym("log.retention.ms", "1800000", DYN),
        ConfigSynonym("log.retention.ms", "3600000", DYN_DEFAULT),
        ConfigSynonym("log.retention.ms", "7200000", S),
        ConfigSynonym("log.retention.hours", "168", D),
    ]
    # The static settings are what they were.
    assert broker.explicit == {"log.retention.ms": "7200000", "message.max.bytes": "5000"}


def test_replacing_dynamic_layers_removes_what_is_gone() -> None:
    broker = BrokerConfig()
    broker.update_dynamic({"log.roll.ms": "1000"}, {"log.roll.ms": "2000"})
    assert broker.get("log.roll.ms") == 1000
    broker.update_dynamic({}, {"log.roll.ms": "2000"})
    assert (broker.get("log.roll.ms"), broker.source("log.roll.ms")) == (2000, DYN_DEFAULT)
    broker.update_dynamic({}, {})
    assert (broker.get("log.roll.ms"), broker.source("log.roll.ms")) == (None, D)
    assert broker.dynamic(DYN) == {} and broker.dynamic(DYN_DEFAULT) == {}


def test_dynamic_entries_this_version_cannot_apply_are_skipped() -> None:
    broker = BrokerConfig()
    skipped = broker.update_dynamic(
        {"log.dirs": "/x", "no.such.config": "1", "log.retention.ms": "soon"},
        {"log.retention.ms": "60000"},
    )
    assert sorted(skipped) == ["log.dirs", "log.retention.ms", "no.such.config"]
    assert (broker.get("log.retention.ms"), broker.source("log.retention.ms")) == (
        60000,
        DYN_DEFAULT,
    )
    assert broker.get("log.dirs") is None


@pytest.mark.parametrize(
    ("props", "error"),
    [
        ({"node.id": "2"}, DynamicConfigError),
        ({"listeners": "PLAINTEXT://:9093"}, DynamicConfigError),
        ({"log.retention.mss": "1"}, UnknownConfigError),
        ({"log.retention.ms": "x"}, InvalidConfigError),
        ({"leader.replication.throttled.rate": "0"}, InvalidConfigError),
    ],
)
def test_validate_dynamic_refuses(props: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        BrokerConfig().validate_dynamic(props)


def test_describe_cluster_default_resource_lists_only_its_entries() -> None:
    broker = BrokerConfig({"log.retention.ms": "7200000"})
    broker.update_dynamic({"log.retention.ms": "1800000"}, {"log.retention.ms": "3600000"})
    (e,) = describe_broker_configs(broker, None, True, False, cluster_default=True)
    assert (e.name, e.value, e.source, e.read_only) == (
        "log.retention.ms",
        "3600000",
        DYN_DEFAULT,
        False,
    )
    # The cluster default's view leaves out any broker's own value.
    assert [s.source for s in e.synonyms] == [DYN_DEFAULT, S, D]


def test_incremental_alter_carries_over_a_foreign_topic_override() -> None:
    """An override another version wrote neither blocks changes to the others nor its own
    deletion."""
    current = {"retention.ms": "1000", "future.feature": "on"}
    changed = apply_incremental(current, [("segment.ms", AlterConfigOp.SET, "60000")])
    assert changed == {"retention.ms": "1000", "segment.ms": "60000", "future.feature": "on"}
    deleted = apply_incremental(current, [("future.feature", AlterConfigOp.DELETE, None)])
    assert deleted == {"retention.ms": "1000"}
    with pytest.raises(UnknownConfigError):
        apply_incremental(current, [("other.future", AlterConfigOp.SET, "1")])


def test_a_refused_boolean_is_printed_as_kafka_prints_it() -> None:
    from artesian.config.definitions import InvalidConfigError

    assert str(InvalidConfigError("remote.storage.enable", True, "no tiered storage")) == (
        "Invalid value true for configuration remote.storage.enable: no tiered storage"
    )


def test_implied_settings_read_as_static_but_do_not_count_as_set() -> None:
    from artesian.config.broker import BrokerConfig
    from artesian.config.definitions import ConfigSource

    config = BrokerConfig({"log.dirs": "/data/kafka"})
    config.note_implied({"listeners": "PLAINTEXT://127.0.0.1:9092", "log.dirs": "/elsewhere"})
    assert config.get("listeners") == "PLAINTEXT://127.0.0.1:9092"
    assert config.source("listeners") is ConfigSource.STATIC_BROKER_CONFIG
    assert not config.is_set("listeners") and "listeners" not in config.explicit
    assert config.get("log.dirs") == ["/data/kafka"]  # what was set is not overridden
