"""Topic config resolution, validation, DescribeConfigs entries and IncrementalAlterConfigs.

Pure functions over a topic's stored overrides (name -> normalized string) and the
``BrokerConfig`` with its dynamic layers; the handlers own the wire structs and error codes
(a ConfigError maps to INVALID_CONFIG, a DynamicConfigError to INVALID_REQUEST).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

from artesian.config.broker import BrokerConfig, broker_synonyms
from artesian.config.definitions import (
    ConfigKey,
    ConfigSource,
    ConfigType,
    ConfigValue,
    InvalidConfigError,
    UnknownConfigError,
    format_value,
    parse,
)
from artesian.config.topic import TOPIC_CONFIG_SYNONYMS, TOPIC_CONFIGS, topic_config_key

__all__ = [
    "AlterConfigOp",
    "ConfigEntry",
    "ConfigSynonym",
    "apply_incremental",
    "describe_broker_configs",
    "describe_topic_configs",
    "effective_topic_config",
    "validate_topic_overrides",
]


class ConfigSynonym(NamedTuple):
    name: str
    value: str | None
    source: ConfigSource


@dataclass(slots=True)
class ConfigEntry:
    """One DescribeConfigs result entry, version-independent."""

    name: str
    value: str | None
    read_only: bool
    is_default: bool  # v0 only; derived from source as Kafka does
    source: ConfigSource
    is_sensitive: bool
    synonyms: list[ConfigSynonym] = field(default_factory=list)
    config_type: ConfigType = ConfigType.UNKNOWN
    documentation: str | None = None


class AlterConfigOp(IntEnum):
    """IncrementalAlterConfigs operation codes."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


def effective_topic_config(
    overrides: Mapping[str, str], broker: BrokerConfig
) -> dict[str, ConfigValue]:
    """Typed value of every topic config: override > explicit broker synonym > default."""
    for name in overrides:
        topic_config_key(name)
    out: dict[str, ConfigValue] = {}
    for name, key in TOPIC_CONFIGS.items():
        if name in overrides:
            out[name] = parse(key, overrides[name])
        else:
            out[name] = broker.topic_default(name)
    return out


def validate_topic_overrides(
    overrides: Mapping[str, str | None], broker: BrokerConfig | None = None
) -> dict[str, str]:
    """Check names and values; return the overrides in Kafka's printed (normalized) form.

    ``broker`` supplies defaults for cross-config checks (min vs max compaction lag).
    """
    normalized: dict[str, str] = {}
    typed: dict[str, ConfigValue] = {}
    for name, raw in overrides.items():
        key = topic_config_key(name)
        if raw is None:
            raise InvalidConfigError(name, None, "Null value not supported for topic configs")
        value = parse(key, raw)
        typed[name] = value
        text = format_value(key, value)
        normalized[name] = "" if text is None else text
    _check_compaction_lags(typed, broker)
    _check_remote_storage(typed, broker)
    return normalized


def _check_remote_storage(typed: Mapping[str, ConfigValue], broker: BrokerConfig | None) -> None:
    """Kafka's checks on a tiered topic (LogConfig.validateValues): the broker must have tiered
    storage on, the topic must not be compacted, and local retention may not exceed the
    total."""

    def value(name: str) -> ConfigValue:
        if name in typed:
            return typed[name]
        return broker.topic_default(name) if broker is not None else TOPIC_CONFIGS[name].default

    if value("remote.storage.enable") is not True:
        return
    if broker is not None and not broker.get_bool("remote.log.storage.system.enable"):
        raise InvalidConfigError(
            "remote.storage.enable",
            True,
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured "
            "with remote log storage. Start the broker with "
            "remote.log.storage.system.enable=true",
        )
    policy = value("cleanup.policy")
    if isinstance(policy, list) and "compact" in policy:
        raise InvalidConfigError(
            "cleanup.policy",
            ",".join(policy),
            "Remote log storage only supports topics with cleanup.policy=delete",
        )
    for total_name, local_name in (
        ("retention.ms", "local.retention.ms"),
        ("retention.bytes", "local.retention.bytes"),
    ):
        total, local = value(total_name), value(local_name)
        if not isinstance(total, int) or not isinstance(local, int) or local == -2:
            continue
        if total != -1 and local == -1:
            raise InvalidConfigError(
                local_name, local, f"Value must not be -1 as {total_name} value is set as {total}."
            )
        if total != -1 and local > total:
            raise InvalidConfigError(
                local_name,
                local,
                f"Value must not be more than {total_name} property value: {total}",
            )


def _check_compaction_lags(typed: Mapping[str, ConfigValue], broker: BrokerConfig | None) -> None:
    def value(name: str) -> ConfigValue:
        if name in typed:
            return typed[name]
        return broker.topic_default(name) if broker is not None else TOPIC_CONFIGS[name].default

    lo, hi = value("min.compaction.lag.ms"), value("max.compaction.lag.ms")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        raise InvalidConfigError(
            "min.compaction.lag.ms",
            lo,
            f"conflict topic config setting min.compaction.lag.ms ({lo}) > "
            f"max.compaction.lag.ms ({hi})",
        )


def _selected(names: Sequence[str] | None, table: Iterable[str]) -> list[str]:
    # Kafka silently omits requested names that do not exist.
    if names is None:
        return list(table)
    wanted = set(names)
    return [n for n in table if n in wanted]


def describe_topic_configs(
    overrides: Mapping[str, str],
    broker: BrokerConfig,
    names: Sequence[str] | None,
    include_synonyms: bool,
    include_documentation: bool,
) -> list[ConfigEntry]:
    """Entries as Kafka's DescribeConfigs returns them for a TOPIC resource.

    Kafka quirk kept on purpose: broker synonyms are listed starting at the topic config's
    *first* broker synonym, so e.g. with only ``log.retention.hours`` set, ``retention.ms``
    reports DEFAULT_CONFIG and no synonyms even though its value comes from that setting.
    """
    effective = effective_topic_config(overrides, broker)
    entries: list[ConfigEntry] = []
    for name in _selected(names, TOPIC_CONFIGS):
        key = TOPIC_CONFIGS[name]
        value = None if key.sensitive else format_value(key, effective[name])
        syns: list[ConfigSynonym] = []
        if name in overrides:
            syns.append(ConfigSynonym(name, value, ConfigSource.DYNAMIC_TOPIC_CONFIG))
        topic_syns = TOPIC_CONFIG_SYNONYMS.get(name)
        if topic_syns:
            first = topic_syns[0].name
            syns.extend(
                ConfigSynonym(*s) for s in broker.config_synonyms(first, broker_synonyms(first))
            )
        entries.append(_entry(key, value, syns, False, include_synonyms, include_documentation))
    return entries


def describe_broker_configs(
    broker: BrokerConfig,
    names: Sequence[str] | None,
    include_synonyms: bool,
    include_documentation: bool,
    *,
    cluster_default: bool = False,
) -> list[ConfigEntry]:
    """Entries as Kafka's DescribeConfigs returns them for a BROKER resource: this node's
    (every config, effective values), or with ``cluster_default`` the resource named "" (only
    the configs set as cluster-wide dynamic defaults, and their values there)."""
    entries: list[ConfigEntry] = []
    defaults = broker.dynamic(ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    every = [*broker.definitions, *broker.listener_overrides()]
    for name in _selected(names, defaults if cluster_default else every):
        key = broker.key(name)
        if cluster_default:
            value = None if key.sensitive else defaults[name]
        else:
            value = None if key.sensitive else format_value(key, broker.get(name))
        syns = [
            ConfigSynonym(*s)
            for s in broker.config_synonyms(name, broker_synonyms(name))
            if not (cluster_default and s[2] is ConfigSource.DYNAMIC_BROKER_CONFIG)
        ]
        entries.append(
            _entry(key, value, syns, key.read_only, include_synonyms, include_documentation, name)
        )
    return entries


def _entry(
    key: ConfigKey,
    value: str | None,
    syns: list[ConfigSynonym],
    read_only: bool,
    include_synonyms: bool,
    include_documentation: bool,
    name: str | None = None,
) -> ConfigEntry:
    """``name``: when not the key's own (a listener override of it)."""
    source = syns[0].source if syns else ConfigSource.DEFAULT_CONFIG
    return ConfigEntry(
        name=name or key.name,
        value=value,
        read_only=read_only,
        is_default=source is ConfigSource.DEFAULT_CONFIG,
        source=source,
        is_sensitive=key.sensitive,
        synonyms=syns if include_synonyms else [],
        config_type=key.type,
        documentation=key.doc if include_documentation else None,
    )


def apply_incremental(
    current: Mapping[str, str],
    ops: Iterable[tuple[str, int, str | None]],
    definitions: Mapping[str, ConfigKey] = TOPIC_CONFIGS,
    kind: str = "",
) -> dict[str, str]:
    """Apply IncrementalAlterConfigs ops to stored overrides; return the new overrides.
    ``kind`` names the resource in errors (topic or broker by default).

    APPEND/SUBTRACT work on LIST configs only, starting from the default when unset; values
    of the result are validated and normalized (topic configs), or for other definitions the
    values the ops set are checked. A stored entry these definitions do not know (written by
    another version) may be deleted, and is otherwise carried over as it is. An unknown op
    code raises ValueError (the wire maps that to INVALID_REQUEST).
    """
    result = dict(current)
    touched: set[str] = set()
    for name, op_code, value in ops:
        try:
            op = AlterConfigOp(op_code)
        except ValueError:
            raise ValueError(f"Unknown alter config operation type {op_code}") from None
        key = definitions.get(name)
        if key is None:
            if op is AlterConfigOp.DELETE and name in result:
                del result[name]
                continue
            what = kind or ("topic" if definitions is TOPIC_CONFIGS else "broker")
            raise UnknownConfigError(name, f"Unknown {what} config name: {name}")
        if op is AlterConfigOp.DELETE:
            result.pop(name, None)
            continue
        touched.add(name)
        if value is None:
            raise InvalidConfigError(name, None, f"Null value not supported for {op.name}")
        if op is AlterConfigOp.SET:
            result[name] = value
            continue
        if key.type is not ConfigType.LIST:
            raise InvalidConfigError(
                name, value, f"Can't {op.name} to key {name} because its type is not LIST."
            )
        base = result.get(name, key.default_str)
        parts = [p for p in (base or "").split(",") if p]
        for item in value.split(","):
            if op is AlterConfigOp.APPEND:
                if item not in parts:
                    parts.append(item)
            elif item in parts:
                parts.remove(item)
        result[name] = ",".join(parts)
    if definitions is TOPIC_CONFIGS:
        foreign = {k: v for k, v in result.items() if k not in TOPIC_CONFIGS}
        known = validate_topic_overrides({k: v for k, v in result.items() if k not in foreign})
        return {**foreign, **known}
    for name in touched:
        parse(definitions[name], result[name])
    return result
