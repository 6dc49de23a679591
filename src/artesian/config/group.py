"""Per-group configs (KIP-848): a consumer group's own session timeout and heartbeat interval,
set with IncrementalAlterConfigs on a GROUP resource (``kafka-configs --entity-type groups``)
and kept as ConfigRecords in the metadata log. Kafka's GroupConfig names and rules: each
value within the broker's ``group.consumer.min/max.*`` bounds, the session timeout above the
heartbeat interval; a group without an override takes the broker's ``group.consumer.*``.

Share groups (KIP-932) have theirs too: ``share.session.timeout.ms``,
``share.heartbeat.interval.ms`` and ``share.record.lock.duration.ms`` within the broker's
``group.share.min/max.*`` bounds, ``share.auto.offset.reset`` (``earliest``, ``latest`` or
``by_duration:<ISO 8601 duration>``) and ``share.isolation.level``.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from artesian.config.broker import BrokerConfig
from artesian.config.definitions import (
    ConfigError,
    ConfigKey,
    ConfigSource,
    ConfigType,
    ConfigValue,
    InvalidConfigError,
    Range,
    ValidString,
    format_value,
    parse,
)
from artesian.config.resolve import ConfigEntry, ConfigSynonym

__all__ = [
    "GROUP_CONFIGS",
    "describe_group_configs",
    "effective_group_config",
    "group_timeouts",
    "share_group_config",
    "validate_group_configs",
]

log = logging.getLogger("artesian.config")

SESSION_TIMEOUT = "consumer.session.timeout.ms"
HEARTBEAT_INTERVAL = "consumer.heartbeat.interval.ms"
SHARE_SESSION_TIMEOUT = "share.session.timeout.ms"
SHARE_HEARTBEAT_INTERVAL = "share.heartbeat.interval.ms"
SHARE_LOCK_DURATION = "share.record.lock.duration.ms"
SHARE_AUTO_OFFSET_RESET = "share.auto.offset.reset"
SHARE_ISOLATION_LEVEL = "share.isolation.level"
BY_DURATION = "by_duration:"

# java.time.Duration.parse's format: PnDTnHnMn.nS, each part optional and signed, any case.
_DURATION = re.compile(
    r"([-+]?)P(?:([-+]?\d+)D)?(?:T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?"
    r"(?:([-+]?)(\d+)(?:[.,](\d{0,9}))?S)?)?",
    re.IGNORECASE | re.ASCII,
)


def parse_iso_duration(text: str) -> datetime.timedelta | None:
    """An ISO 8601 duration as Java's Duration.parse reads it; None if it is not one."""
    m = _DURATION.fullmatch(text)
    if m is None or text.upper().endswith("T"):
        return None
    sign, days, hours, minutes, s_sign, secs, frac = m.groups()
    if days is None and hours is None and minutes is None and secs is None:
        return None
    seconds = int(secs or 0) + int((frac or "0").ljust(9, "0")[:9]) / 1e9
    try:
        total = datetime.timedelta(
            days=int(days or 0),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=-seconds if s_sign == "-" else seconds,
        )
    except OverflowError:  # Java takes up to 2^63 seconds: beyond timedelta, and anything kept
        whole: float = int(days or 0) * 86_400 + int(hours or 0) * 3_600 + int(minutes or 0) * 60
        whole += -seconds if s_sign == "-" else seconds
        if sign == "-":
            whole = -whole
        return datetime.timedelta.max if whole > 0 else datetime.timedelta.min
    return -total if sign == "-" else total


def by_duration(value: str) -> datetime.timedelta | None:
    """The duration of a ``by_duration:`` share.auto.offset.reset; None for another value."""
    if not value.startswith(BY_DURATION):
        return None
    return parse_iso_duration(value[len(BY_DURATION) :])


@dataclass(frozen=True, slots=True)
class ShareAutoOffsetReset:
    """Kafka's ShareGroupAutoOffsetResetStrategy.Validator: earliest, latest, or by_duration:
    with a duration that is not negative."""

    def __call__(self, name: str, value: ConfigValue) -> None:
        if value in ("earliest", "latest"):
            return
        duration = by_duration(value) if isinstance(value, str) else None
        if duration is None or duration < datetime.timedelta(0):
            raise InvalidConfigError(
                name,
                value,
                f"Invalid value `{value}` for configuration {name}. The value must be either "
                "'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS.>'.",
            )

    def describe(self) -> str:
        return "[earliest, latest, by_duration:PnDTnHnMn.nS]"


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
    SHARE_SESSION_TIMEOUT: ConfigKey(
        SHARE_SESSION_TIMEOUT,
        ConfigType.INT,
        45_000,
        "The timeout to detect share group members' failures; this share group's value of "
        "group.share.session.timeout.ms.",
        Range.at_least(1),
    ),
    SHARE_HEARTBEAT_INTERVAL: ConfigKey(
        SHARE_HEARTBEAT_INTERVAL,
        ConfigType.INT,
        5_000,
        "The heartbeat interval given to the members of this share group; its value of "
        "group.share.heartbeat.interval.ms.",
        Range.at_least(1),
    ),
    SHARE_LOCK_DURATION: ConfigKey(
        SHARE_LOCK_DURATION,
        ConfigType.INT,
        30_000,
        "How long a member of this share group holds the records it acquired; its value of "
        "group.share.record.lock.duration.ms.",
        Range.at_least(1000),
    ),
    SHARE_AUTO_OFFSET_RESET: ConfigKey(
        SHARE_AUTO_OFFSET_RESET,
        ConfigType.STRING,
        "latest",
        "Where this share group starts reading a partition it has no state for: earliest, "
        "latest, or by_duration:<duration>, the first record no older than an ISO 8601 "
        "duration (PnDTnHnMn.nS, not negative) back from now.",
        ShareAutoOffsetReset(),
    ),
    SHARE_ISOLATION_LEVEL: ConfigKey(
        SHARE_ISOLATION_LEVEL,
        ConfigType.STRING,
        "read_uncommitted",
        "How this share group reads records written in transactions: read_committed hands "
        "out only committed ones (up to the last stable offset), read_uncommitted all of them.",
        ValidString(("read_committed", "read_uncommitted")),
    ),
}
# Where a group without an override takes each value from.
_BROKER_SETTING = {
    SESSION_TIMEOUT: "group.consumer.session.timeout.ms",
    HEARTBEAT_INTERVAL: "group.consumer.heartbeat.interval.ms",
    SHARE_SESSION_TIMEOUT: "group.share.session.timeout.ms",
    SHARE_HEARTBEAT_INTERVAL: "group.share.heartbeat.interval.ms",
    SHARE_LOCK_DURATION: "group.share.record.lock.duration.ms",
}
# Checked in this order, as Kafka's GroupConfig.validateValues does.
_BOUNDS = {
    HEARTBEAT_INTERVAL: (
        "group.consumer.min.heartbeat.interval.ms",
        "group.consumer.max.heartbeat.interval.ms",
    ),
    SESSION_TIMEOUT: (
        "group.consumer.min.session.timeout.ms",
        "group.consumer.max.session.timeout.ms",
    ),
    SHARE_HEARTBEAT_INTERVAL: (
        "group.share.min.heartbeat.interval.ms",
        "group.share.max.heartbeat.interval.ms",
    ),
    SHARE_SESSION_TIMEOUT: (
        "group.share.min.session.timeout.ms",
        "group.share.max.session.timeout.ms",
    ),
    SHARE_LOCK_DURATION: (
        "group.share.min.record.lock.duration.ms",
        "group.share.max.record.lock.duration.ms",
    ),
}


def effective_group_config(overrides: Mapping[str, str], broker: BrokerConfig) -> dict[str, int]:
    """Each group config's value: the group's override, else the broker's setting. An
    override that no longer reads (written by another version, or out of the bounds the
    broker restarted with) gives way to the broker's setting, with a warning."""
    values: dict[str, int] = {}
    for name, setting in _BROKER_SETTING.items():
        key = GROUP_CONFIGS[name]
        default = broker.get_int(setting)
        text = overrides.get(name)
        if text is None:
            values[name] = default
            continue
        try:
            value = parse(key, text)
            assert isinstance(value, int)
            low, high = (broker.get_int(b) for b in _BOUNDS[name])
            if not low <= value <= high:
                raise ConfigError(f"outside [{low}, {high}]")
        except ConfigError as e:
            _warn_once(name, text, str(e))
            value = default
        values[name] = value
    return values


_warned: set[tuple[str, str]] = set()


def _warn_once(name: str, text: str, why: str) -> None:
    if (name, text) not in _warned:
        _warned.add((name, text))
        log.warning(
            "a group's %s=%r cannot apply (%s): the broker's %s applies instead; set "
            "it again with `artesian groups config GROUP --set %s=...`",
            name,
            text,
            why,
            _BROKER_SETTING[name],
            name,
        )


def validate_group_configs(
    wanted: Mapping[str, str], broker: BrokerConfig, current: Mapping[str, str] = {}
) -> dict[str, str]:
    """A group's overrides once altered, checked and normalized as Kafka's GroupConfig.validate
    does; raises ConfigError (INVALID_CONFIG). A stored entry this version does not know
    (another wrote it) is carried over as it is, not refused."""
    foreign = {k: v for k, v in wanted.items() if k not in GROUP_CONFIGS and current.get(k) == v}
    for name in wanted:
        if name not in GROUP_CONFIGS and name not in foreign:
            raise ConfigError(f"Unknown group config name: {name}")
    normalized = {
        name: format_value(GROUP_CONFIGS[name], parse(GROUP_CONFIGS[name], value)) or ""
        for name, value in wanted.items()
        if name in GROUP_CONFIGS
    }
    values = {
        name: int(normalized[name]) if name in normalized else broker.get_int(setting)
        for name, setting in _BROKER_SETTING.items()
    }
    for name, (low, high) in _BOUNDS.items():
        if values[name] < broker.get_int(low):
            raise ConfigError(f"{name} must be greater than or equal to {low}")
        if values[name] > broker.get_int(high):
            raise ConfigError(f"{name} must be less than or equal to {high}")
    for session, heartbeat in (
        (SESSION_TIMEOUT, HEARTBEAT_INTERVAL),
        (SHARE_SESSION_TIMEOUT, SHARE_HEARTBEAT_INTERVAL),
    ):
        if values[session] <= values[heartbeat]:
            raise ConfigError(f"{session} must be greater than {heartbeat}")
    return {**foreign, **normalized}


def describe_group_configs(
    overrides: Mapping[str, str],
    broker: BrokerConfig,
    names: Sequence[str] | None,
    include_synonyms: bool,
    include_documentation: bool,
) -> list[ConfigEntry]:
    """Entries as Kafka's DescribeConfigs gives them for a GROUP resource: GROUP_CONFIG with
    the group's value where it sets one (as stored, even one that cannot apply now), else
    DEFAULT_CONFIG with the broker's value."""
    entries = []
    for name, key in GROUP_CONFIGS.items():
        if names is not None and name not in names:
            continue  # as Kafka, requested names that do not exist are left out
        setting = _BROKER_SETTING.get(name)
        default = broker.get(setting) if setting is not None else key.default
        value = overrides.get(name) or format_value(key, default)
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


def group_timeouts(overrides: Mapping[str, str], broker: BrokerConfig) -> tuple[int, int]:
    """(session timeout, heartbeat interval) in ms for a group with these overrides."""
    if not overrides:  # most groups: the broker's, without parsing anything
        return (
            broker.get_int(_BROKER_SETTING[SESSION_TIMEOUT]),
            broker.get_int(_BROKER_SETTING[HEARTBEAT_INTERVAL]),
        )
    values = effective_group_config(overrides, broker)
    return values[SESSION_TIMEOUT], values[HEARTBEAT_INTERVAL]


def share_group_config(overrides: Mapping[str, str], broker: BrokerConfig) -> dict[str, int | str]:
    """A share group's session timeout, heartbeat interval, lock duration (ms), where it
    starts reading (``share.auto.offset.reset``) and how (``share.isolation.level``)."""
    values: dict[str, int | str] = {
        SHARE_AUTO_OFFSET_RESET: overrides.get(SHARE_AUTO_OFFSET_RESET, "latest"),
        SHARE_ISOLATION_LEVEL: overrides.get(SHARE_ISOLATION_LEVEL, "read_uncommitted"),
    }
    if not overrides:
        for name in (SHARE_SESSION_TIMEOUT, SHARE_HEARTBEAT_INTERVAL, SHARE_LOCK_DURATION):
            values[name] = broker.get_int(_BROKER_SETTING[name])
        return values
    effective = effective_group_config(overrides, broker)
    for name in (SHARE_SESSION_TIMEOUT, SHARE_HEARTBEAT_INTERVAL, SHARE_LOCK_DURATION):
        values[name] = effective[name]
    return values
