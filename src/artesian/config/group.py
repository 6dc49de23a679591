"""Per-group configs (KIP-848): a consumer group's own session timeout and heartbeat interval,
set with IncrementalAlterConfigs on a GROUP resource (``kafka-configs --entity-type groups``)
and kept as ConfigRecords in the metadata log. Kafka's GroupConfig names and rules: each
value within the broker's ``group.consumer.min/max.*`` bounds, the session timeout above the
heartbeat interval; a group without an override takes the broker's ``group.consumer.*``.

Kafka's ``share.*`` group configs are for share groups (KIP-932), which Artesian does not
have: they are refused as unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from artesian.config.broker import BrokerConfig
from artesian.config.definitions import (
    ConfigError,
    ConfigKey,
    ConfigSource,
    ConfigType,
    Range,
    format_value,
    parse,
)
from artesian.config.resolve import ConfigEntry, ConfigSynonym

__all__ = [
    "GROUP_CONFIGS",
    "describe_group_configs",
    "effective_group_config",
    "validate_group_configs",
]

SESSION_TIMEOUT = "consumer.session.timeout.ms"
HEARTBEAT_INTERVAL = "consumer.heartbeat.interval.ms"

GROUP_CONFIGS: dict[str, ConfigKey] = {
    SESSION_TIMEOUT: ConfigKey(
        SESSION_TIMEOUT,
        ConfigType.INT,
        45_000,
        "The timeout to detect client failures when using the consumer group protocol; "
        "this group's value of group.consumer.session.timeout.ms.",
        Range.at_least(1),
    ),
    HEARTBEAT_INTERVAL: ConfigKey(
        HEARTBEAT_INTERVAL,
        ConfigType.INT,
        5_000,
        "The heartbeat interval given to the members of this consumer group; its value of "
        "group.consumer.heartbeat.interval.ms.",
        Range.at_least(1),
    ),
}
# Where a group without an override takes each value from.
_BROKER_SETTING = {
    SESSION_TIMEOUT: "group.consumer.session.timeout.ms",
    HEARTBEAT_INTERVAL: "group.consumer.heartbeat.interval.ms",
}
_BOUNDS = {
    SESSION_TIMEOUT: (
        "group.consumer.min.session.timeout.ms",
        "group.consumer.max.session.timeout.ms",
    ),
    HEARTBEAT_INTERVAL: (
        "group.consumer.min.heartbeat.interval.ms",
        "group.consumer.max.heartbeat.interval.ms",
    ),
}


def effective_group_config(overrides: Mapping[str, str], broker: BrokerConfig) -> dict[str, int]:
    """Each group config's value: the group's override, else the broker's setting."""
    values: dict[str, int] = {}
    for name, key in GROUP_CONFIGS.items():
        text = overrides.get(name)
        value = parse(key, text) if text is not None else broker.get(_BROKER_SETTING[name])
        assert isinstance(value, int)
        values[name] = value
    return values


def validate_group_configs(wanted: Mapping[str, str], broker: BrokerConfig) -> dict[str, str]:
    """A group's overrides once altered, checked and normalized as Kafka's GroupConfig.validate
    does; raises ConfigError (INVALID_CONFIG)."""
    for name in wanted:
        if name not in GROUP_CONFIGS:
            raise ConfigError(f"Unknown group config name: {name}")
    normalized = {
        name: format_value(GROUP_CONFIGS[name], parse(GROUP_CONFIGS[name], value)) or ""
        for name, value in wanted.items()
    }
    values = effective_group_config(normalized, broker)
    for name, (low, high) in _BOUNDS.items():
        if values[name] < broker.get_int(low):
            raise ConfigError(f"{name} must be greater than or equal to {low}")
        if values[name] > broker.get_int(high):
            raise ConfigError(f"{name} must be less than or equal to {high}")
    if values[SESSION_TIMEOUT] <= values[HEARTBEAT_INTERVAL]:
        raise ConfigError(f"{SESSION_TIMEOUT} must be greater than {HEARTBEAT_INTERVAL}")
    return normalized


def describe_group_configs(
    overrides: Mapping[str, str],
    broker: BrokerConfig,
    names: Sequence[str] | None,
    include_synonyms: bool,
    include_documentation: bool,
) -> list[ConfigEntry]:
    """Entries as Kafka's DescribeConfigs gives them for a GROUP resource: GROUP_CONFIG where
    the group sets one, else DEFAULT_CONFIG with the broker's value."""
    effective = effective_group_config(overrides, broker)
    entries = []
    for name, key in GROUP_CONFIGS.items():
        if names is not None and name not in names:
            continue  # as Kafka, requested names that do not exist are left out
        value = format_value(key, effective[name])
        source = ConfigSource.GROUP_CONFIG if name in overrides else ConfigSource.DEFAULT_CONFIG
        entries.append(
            ConfigEntry(
                name=name,
                value=value,
                read_only=False,
                is_default=source is ConfigSource.DEFAULT_CONFIG,
                source=source,
                is_sensitive=False,
                synonyms=[ConfigSynonym(name, value, source)] if include_synonyms else [],
                config_type=key.type,
                documentation=key.doc if include_documentation else None,
            )
        )
    return entries
