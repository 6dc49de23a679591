"""Client metrics subscriptions (KIP-714): CLIENT_METRICS config resources, one per
subscription name, set with IncrementalAlterConfigs (``kafka-client-metrics``, or
``kafka-configs --entity-type client-metrics``) and kept as ConfigRecords in the metadata log.

Kafka's three configs:

- ``metrics``: metric name prefixes the matching clients push (``*``: all); none by default.
- ``interval.ms``: how often they push, 100 ms to an hour; 300000 by default.
- ``match``: ``selector=regex`` entries that must all match a client in full (client_id,
  client_instance_id, client_software_name, client_software_version,
  client_source_address, client_source_port); none matches every client.

Patterns are RE2 (as Kafka's newest), so a subscription cannot stall the broker either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import re2

from artesian.config.definitions import ConfigError, ConfigKey, ConfigSource, ConfigType
from artesian.config.resolve import ConfigEntry, ConfigSynonym
from artesian.regex import compile_regex, regex_error_reason

__all__ = [
    "CLIENT_METRICS_CONFIGS",
    "SELECTORS",
    "Subscription",
    "describe_client_metrics",
    "subscription_of",
    "validate_client_metrics",
]

METRICS, INTERVAL, MATCH = "metrics", "interval.ms", "match"
_TYPES = {METRICS: ConfigType.LIST, INTERVAL: ConfigType.INT, MATCH: ConfigType.LIST}
# As definitions, for IncrementalAlterConfigs' APPEND and SUBTRACT on the two lists; the
# values are checked by validate_client_metrics.
CLIENT_METRICS_CONFIGS = {
    METRICS: ConfigKey(METRICS, ConfigType.LIST, "", "Metric name prefixes to push (*: all)."),
    INTERVAL: ConfigKey(INTERVAL, ConfigType.STRING, "300000", "Push interval in ms."),
    MATCH: ConfigKey(MATCH, ConfigType.LIST, "", "selector=regex entries a client must match."),
}
DEFAULT_INTERVAL_MS = 300_000
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 100, 3_600_000
SELECTORS = (
    "client_instance_id",
    "client_id",
    "client_software_name",
    "client_software_version",
    "client_source_address",
    "client_source_port",
)


@dataclass(slots=True, frozen=True)
class Subscription:
    name: str
    metrics: tuple[str, ...]
    interval_ms: int
    match: tuple[tuple[str, re2._Regexp], ...]

    def matches(self, client: Mapping[str, str]) -> bool:
        """Every selector matches the client's attribute in full; a missing one never does."""
        for key, pattern in self.match:
            value = client.get(key)
            if value is None or pattern.fullmatch(value) is None:
                return False
        return True


def _items(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _pattern(entry: str) -> tuple[str, re2._Regexp]:
    key, sep, regex = entry.partition("=")
    key, regex = key.strip(), regex.strip()
    if not sep or key not in SELECTORS or not regex:
        raise ConfigError(f"Illegal client matching pattern: {entry}")
    try:
        return key, compile_regex(regex)
    except re2.error as e:
        raise ConfigError(
            f"Client match pattern `{entry}` is not a valid regular expression: "
            f"{regex_error_reason(e)}."
        ) from None


def validate_client_metrics(wanted: Mapping[str, str]) -> dict[str, str]:
    """A subscription's configs once altered, checked as Kafka's ClientMetricsConfigs does:
    ValueError (INVALID_REQUEST) for an unknown name or an interval out of range,
    ConfigError (INVALID_CONFIG) for a match pattern that does not read."""
    for name in wanted:
        if name not in _TYPES:
            raise ValueError(f"Unknown client metrics configuration: {name}")
    normalized = dict(wanted)
    if INTERVAL in wanted:
        text = wanted[INTERVAL].strip()
        if not text.lstrip("-").isdigit() or not (MIN_INTERVAL_MS <= int(text) <= MAX_INTERVAL_MS):
            raise ValueError(
                f"Invalid value {text} for {INTERVAL}, interval must be between "
                f"{MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} (1 hour)"
            )
        normalized[INTERVAL] = str(int(text))
    for name in (METRICS, MATCH):
        if name in wanted:
            items = _items(wanted[name])
            if len(set(items)) != len(items):
                raise ConfigError(f"Configuration '{name}' values must not be duplicated.")
            normalized[name] = ",".join(items)
    for entry in _items(normalized.get(MATCH)):
        _pattern(entry)
    return normalized


def subscription_of(name: str, configs: Mapping[str, str]) -> Subscription:
    """A stored subscription, read as validated when it was set."""
    interval = configs.get(INTERVAL)
    return Subscription(
        name,
        tuple(_items(configs.get(METRICS))),
        int(interval) if interval and interval.isdigit() else DEFAULT_INTERVAL_MS,
        tuple(_pattern(e) for e in _items(configs.get(MATCH))),
    )


def describe_client_metrics(
    configs: Mapping[str, str], names: Sequence[str] | None, include_synonyms: bool
) -> list[ConfigEntry]:
    """As Kafka: only what the subscription sets, as CLIENT_METRICS_CONFIG."""
    source = ConfigSource.CLIENT_METRICS_CONFIG
    return [
        ConfigEntry(
            name=name,
            value=value,
            read_only=False,
            is_default=False,
            source=source,
            is_sensitive=False,
            synonyms=[ConfigSynonym(name, value, source)] if include_synonyms else [],
            config_type=_TYPES.get(name, ConfigType.STRING),
        )
        for name, value in sorted(configs.items())
        if names is None or name in names
    ]
