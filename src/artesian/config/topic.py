"""Topic-level configs (Kafka 4.x ``LogConfig``) and their broker synonyms.

Names, types, defaults and validators follow Kafka 4.0: ``segment.bytes`` has a 1 MiB floor
and ``message.timestamp.after.max.ms`` defaults to one hour (KIP-1030); configs removed in
4.0 (``message.format.version``, ``message.downconversion.enable``,
``message.timestamp.difference.max.ms``) are unknown, as they are to a 4.0 broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from artesian.config.definitions import (
    LONG_MAX,
    ConfigKey,
    ConfigType,
    GzipLevel,
    Range,
    ThrottledReplicas,
    UnknownConfigError,
    ValidList,
    ValidString,
    freeze,
)

__all__ = [
    "COMPRESSION_TYPES",
    "TOPIC_CONFIGS",
    "TOPIC_CONFIG_SYNONYMS",
    "Synonym",
    "topic_config_key",
]

_HOUR_MS = 3_600_000
_MINUTE_MS = 60_000
_WEEK_MS = 7 * 24 * _HOUR_MS

# Kafka's BrokerCompressionType names, in Kafka's order (it shows up in error messages).
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")

_L, _I, _B, _S, _D, _LS = (
    ConfigType.LONG,
    ConfigType.INT,
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.DOUBLE,
    ConfigType.LIST,
)
_GE0 = Range.at_least(0)


@dataclass(frozen=True, slots=True)
class Synonym:
    """A broker config that supplies a topic config's default; value * multiplier converts."""

    name: str
    multiplier: int = 1


TOPIC_CONFIGS: Mapping[str, ConfigKey] = freeze(
    (
        ConfigKey(
            "cleanup.policy",
            _LS,
            ["delete"],
            "Retention policy for old segments: delete, compact, or both.",
            ValidList(("compact", "delete")),
        ),
        ConfigKey(
            "compression.type",
            _S,
            "producer",
            "Final compression codec for the topic; 'producer' keeps what the producer used.",
            ValidString(COMPRESSION_TYPES),
        ),
        ConfigKey(
            "compression.gzip.level",
            _I,
            -1,
            "gzip level used when compression.type is gzip (-1 = codec default).",
            GzipLevel(),
        ),
        ConfigKey(
            "compression.lz4.level",
            _I,
            9,
            "lz4 level used when compression.type is lz4.",
            Range.between(1, 17),
        ),
        ConfigKey(
            "compression.zstd.level",
            _I,
            3,
            "zstd level used when compression.type is zstd.",
            Range.between(-131072, 22),
        ),
        ConfigKey(
            "delete.retention.ms",
            _L,
            86_400_000,
            "How long delete tombstones are kept on compacted topics.",
            _GE0,
        ),
        ConfigKey(
            "file.delete.delay.ms",
            _L,
            60_000,
            "Delay before a deleted segment file is removed from disk.",
            _GE0,
        ),
        ConfigKey(
            "flush.messages",
            _L,
            LONG_MAX,
            "Force an fsync after this many messages.",
            Range.at_least(1),
        ),
        ConfigKey("flush.ms", _L, LONG_MAX, "Force an fsync after this many milliseconds.", _GE0),
        ConfigKey(
            "follower.replication.throttled.replicas",
            _LS,
            [],
            "Replicas throttled on the follower side: '*' or partition:broker pairs.",
            ThrottledReplicas(),
        ),
        ConfigKey(
            "index.interval.bytes", _I, 4096, "Bytes of log between offset index entries.", _GE0
        ),
        ConfigKey(
            "leader.replication.throttled.replicas",
            _LS,
            [],
            "Replicas throttled on the leader side: '*' or partition:broker pairs.",
            ThrottledReplicas(),
        ),
        ConfigKey(
            "local.retention.bytes",
            _L,
            -2,
            "Local size limit for tiered topics (-2 = use retention.bytes).",
            Range.at_least(-2),
        ),
        ConfigKey(
            "local.retention.ms",
            _L,
            -2,
            "Local time limit for tiered topics (-2 = use retention.ms).",
            Range.at_least(-2),
        ),
        ConfigKey(
            "max.compaction.lag.ms",
            _L,
            LONG_MAX,
            "Longest a record may stay uncompacted.",
            Range.at_least(1),
        ),
        ConfigKey("max.message.bytes", _I, 1_048_588, "Largest record batch size accepted.", _GE0),
        ConfigKey(
            "message.timestamp.after.max.ms",
            _L,
            _HOUR_MS,
            "How far in the future a CreateTime timestamp may be.",
            _GE0,
        ),
        ConfigKey(
            "message.timestamp.before.max.ms",
            _L,
            LONG_MAX,
            "How far in the past a CreateTime timestamp may be.",
            _GE0,
        ),
        ConfigKey(
            "message.timestamp.type",
            _S,
            "CreateTime",
            "Whether record timestamps are producer (CreateTime) or broker (LogAppendTime) time.",
            ValidString(("CreateTime", "LogAppendTime")),
        ),
        ConfigKey(
            "min.cleanable.dirty.ratio",
            _D,
            0.5,
            "Dirty-to-total ratio that makes a log eligible for compaction.",
            Range.between(0, 1),
        ),
        ConfigKey("min.compaction.lag.ms", _L, 0, "Shortest a record stays uncompacted.", _GE0),
        ConfigKey(
            "min.insync.replicas",
            _I,
            1,
            "In-sync replicas needed for an acks=all write.",
            Range.at_least(1),
        ),
        ConfigKey("preallocate", _B, False, "Preallocate segment files on disk."),
        ConfigKey(
            "remote.log.copy.disable",
            _B,
            False,
            "Stop copying segments to tiered storage (remote reads still served).",
        ),
        ConfigKey(
            "remote.log.delete.on.disable",
            _B,
            False,
            "Delete remote data when tiered storage is turned off for the topic.",
        ),
        ConfigKey("remote.storage.enable", _B, False, "Enable tiered storage for the topic."),
        ConfigKey(
            "retention.bytes",
            _L,
            -1,
            "Partition size limit before old segments are deleted (-1 = none).",
        ),
        ConfigKey(
            "retention.ms",
            _L,
            _WEEK_MS,
            "Age limit before old segments are deleted (-1 = none).",
            Range.at_least(-1),
        ),
        ConfigKey(
            "segment.bytes",
            _I,
            1_073_741_824,
            "Segment file size limit.",
            Range.at_least(1024 * 1024),
        ),
        ConfigKey(
            "segment.index.bytes",
            _I,
            10_485_760,
            "Offset index file size limit.",
            Range.at_least(4),
        ),
        ConfigKey("segment.jitter.ms", _L, 0, "Random jitter subtracted from segment.ms.", _GE0),
        ConfigKey(
            "segment.ms", _L, _WEEK_MS, "Roll a new segment after this long.", Range.at_least(1)
        ),
        ConfigKey(
            "unclean.leader.election.enable",
            _B,
            False,
            "Allow out-of-sync replicas to become leader (may lose data).",
        ),
    )
)

# Broker configs that supply each topic config's default, highest precedence first
# (Kafka's ServerTopicConfigSynonyms). Topic configs missing here have no broker default.
TOPIC_CONFIG_SYNONYMS: Mapping[str, tuple[Synonym, ...]] = MappingProxyType(
    {
        "segment.bytes": (Synonym("log.segment.bytes"),),
        "segment.ms": (Synonym("log.roll.ms"), Synonym("log.roll.hours", _HOUR_MS)),
        "segment.jitter.ms": (
            Synonym("log.roll.jitter.ms"),
            Synonym("log.roll.jitter.hours", _HOUR_MS),
        ),
        "segment.index.bytes": (Synonym("log.index.size.max.bytes"),),
        "flush.messages": (Synonym("log.flush.interval.messages"),),
        "flush.ms": (Synonym("log.flush.interval.ms"), Synonym("log.flush.scheduler.interval.ms")),
        "retention.bytes": (Synonym("log.retention.bytes"),),
        "retention.ms": (
            Synonym("log.retention.ms"),
            Synonym("log.retention.minutes", _MINUTE_MS),
            Synonym("log.retention.hours", _HOUR_MS),
        ),
        "max.message.bytes": (Synonym("message.max.bytes"),),
        "index.interval.bytes": (Synonym("log.index.interval.bytes"),),
        "delete.retention.ms": (Synonym("log.cleaner.delete.retention.ms"),),
        "min.compaction.lag.ms": (Synonym("log.cleaner.min.compaction.lag.ms"),),
        "max.compaction.lag.ms": (Synonym("log.cleaner.max.compaction.lag.ms"),),
        "file.delete.delay.ms": (Synonym("log.segment.delete.delay.ms"),),
        "min.cleanable.dirty.ratio": (Synonym("log.cleaner.min.cleanable.ratio"),),
        "cleanup.policy": (Synonym("log.cleanup.policy"),),
        "unclean.leader.election.enable": (Synonym("unclean.leader.election.enable"),),
        "min.insync.replicas": (Synonym("min.insync.replicas"),),
        "compression.type": (Synonym("compression.type"),),
        "compression.gzip.level": (Synonym("compression.gzip.level"),),
        "compression.lz4.level": (Synonym("compression.lz4.level"),),
        "compression.zstd.level": (Synonym("compression.zstd.level"),),
        "preallocate": (Synonym("log.preallocate"),),
        "message.timestamp.type": (Synonym("log.message.timestamp.type"),),
        "message.timestamp.before.max.ms": (Synonym("log.message.timestamp.before.max.ms"),),
        "message.timestamp.after.max.ms": (Synonym("log.message.timestamp.after.max.ms"),),
        "local.retention.ms": (Synonym("log.local.retention.ms"),),
        "local.retention.bytes": (Synonym("log.local.retention.bytes"),),
    }
)

assert set(TOPIC_CONFIG_SYNONYMS) <= set(TOPIC_CONFIGS)


def topic_config_key(name: str) -> ConfigKey:
    """The definition of a topic config; UnknownConfigError with Kafka's message otherwise."""
    try:
        return TOPIC_CONFIGS[name]
    except KeyError:
        raise UnknownConfigError(name, f"Unknown topic config name: {name}") from None
