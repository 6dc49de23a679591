"""ConfigDef machinery: typed config keys, Kafka's parsing rules and printed forms.

Mirrors the behaviour of Kafka's ``ConfigDef`` (parse, validate, convert-to-string) so that
values a Kafka user types are accepted or rejected exactly as a Kafka broker would, and
DescribeConfigs prints them the way Kafka does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum
from types import MappingProxyType
from typing import Protocol, TypeAlias

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "LONG_MAX",
    "LONG_MIN",
    "ConfigError",
    "ConfigKey",
    "ConfigSource",
    "ConfigType",
    "ConfigValue",
    "DynamicConfigError",
    "GzipLevel",
    "InvalidConfigError",
    "Range",
    "UnknownConfigError",
    "ValidList",
    "ValidString",
    "Validator",
    "format",
    "format_value",
    "freeze",
    "parse",
]

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1
_SHORT_MIN = -(2**15)
_SHORT_MAX = 2**15 - 1

# Typed config values, as Kafka's ConfigDef.parse produces them. LIST -> list[str].
ConfigValue: TypeAlias = bool | int | float | str | list[str] | None


class ConfigType(IntEnum):
    """Wire values of DescribeConfigsResponse ``ConfigType`` (v3+)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(IntEnum):
    """Wire values of DescribeConfigsResponse ``ConfigSource`` (v1+)."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    CLIENT_METRICS_CONFIG = 7
    GROUP_CONFIG = 8


class ConfigError(Exception):
    """Base of config errors; every subclass maps to INVALID_CONFIG (40) on the wire."""


class InvalidConfigError(ConfigError):
    """A value does not parse or fails validation (Kafka's ``ConfigException``)."""

    def __init__(self, name: str, value: object, reason: str | None = None) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        shown = str(value).lower() if isinstance(value, bool) else value  # as Java prints it
        msg = f"Invalid value {shown} for configuration {name}"
        super().__init__(msg if reason is None else f"{msg}: {reason}")


class DynamicConfigError(ConfigError):
    """A broker config that cannot change while the broker runs. On the wire INVALID_REQUEST
    (42), as Kafka answers a dynamic update of a static config."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


class UnknownConfigError(ConfigError):
    """A config name that is not defined for the resource."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message if message is not None else f"Unknown config name: {name}")


class Validator(Protocol):
    """Checks a parsed (non-null) value; raises InvalidConfigError."""

    def __call__(self, name: str, value: ConfigValue) -> None: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Range:
    """Numeric bounds, inclusive, either side optional (Kafka ``Range``)."""

    min: int | float | None = None
    max: int | float | None = None

    @classmethod
    def at_least(cls, lo: int | float) -> Range:
        return cls(lo, None)

    @classmethod
    def between(cls, lo: int | float, hi: int | float) -> Range:
        return cls(lo, hi)

    def __call__(self, name: str, value: ConfigValue) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidConfigError(name, value, "Value must be a number")
        if self.min is not None and value < self.min:
            raise InvalidConfigError(name, value, f"Value must be at least {self.min}")
        if self.max is not None and value > self.max:
            raise InvalidConfigError(name, value, f"Value must be no more than {self.max}")

    def describe(self) -> str:
        if self.max is None:
            return f"[{self.min},...]"
        if self.min is None:
            return f"[...,{self.max}]"
        return f"[{self.min},...,{self.max}]"


@dataclass(frozen=True, slots=True)
class ValidString:
    """A STRING that must be one of a fixed set (case-sensitive, as Kafka's ``ValidString``,
    unless ``case_insensitive``, as its ``CaseInsensitiveValidString``)."""

    valid: tuple[str, ...]
    case_insensitive: bool = False

    def __call__(self, name: str, value: ConfigValue) -> None:
        if self.case_insensitive:
            if not isinstance(value, str) or value.lower() not in self.valid:
                raise InvalidConfigError(
                    name,
                    value,
                    f"String must be one of (case insensitive): {', '.join(self.valid)}",
                )
        elif value not in self.valid:
            raise InvalidConfigError(name, value, f"String must be one of: {', '.join(self.valid)}")

    def describe(self) -> str:
        return f"[{', '.join(self.valid)}]"


@dataclass(frozen=True, slots=True)
class ValidList:
    """A LIST whose every item must be one of a fixed set (Kafka ``ValidList.in``)."""

    valid: tuple[str, ...]

    def __call__(self, name: str, value: ConfigValue) -> None:
        items = value if isinstance(value, list) else [str(value)]
        for item in items:
            if item not in self.valid:
                raise InvalidConfigError(
                    name, item, f"String must be one of: {', '.join(self.valid)}"
                )

    def describe(self) -> str:
        return f"[{', '.join(self.valid)}]"


@dataclass(frozen=True, slots=True)
class GzipLevel:
    """gzip accepts 1..9, plus -1 meaning "the codec's default level"."""

    def __call__(self, name: str, value: ConfigValue) -> None:
        if value == -1:
            return
        if not isinstance(value, int) or not 1 <= value <= 9:
            raise InvalidConfigError(name, value, "Value must be -1 or between 1 and 9")

    def describe(self) -> str:
        return "[1,...,9] or -1"


@dataclass(frozen=True, slots=True)
class ThrottledReplicas:
    """``*`` or a list of ``partition:broker`` pairs (Kafka's ThrottledReplicaListValidator)."""

    def __call__(self, name: str, value: ConfigValue) -> None:
        items = value if isinstance(value, list) else [str(value)]
        # Like Kafka, empty entries (e.g. a trailing comma) are tolerated.
        if "".join(items).strip() == "*" or all(
            re.fullmatch(r"(\d+:\d+)?", i.strip()) for i in items
        ):
            return
        raise InvalidConfigError(
            name,
            ",".join(items),
            "must be '*' or a list of replicas as [partitionId]:[brokerId],...",
        )

    def describe(self) -> str:
        return "[partitionId]:[brokerId],[partitionId]:[brokerId],..."


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One config definition. ``default=None`` means "no default" (the value is null)."""

    name: str
    type: ConfigType
    default: ConfigValue
    doc: str
    validator: Validator | None = None
    # Kafka marks PASSWORD types sensitive; an explicit flag lets us hide others too.
    sensitive: bool = False
    # For broker configs: not dynamically updatable in Kafka (DescribeConfigs read_only).
    read_only: bool = False
    # Default the way it is printed by Kafka; filled in by __post_init__.
    default_str: str | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_str", format_value(self, self.default))
        if self.type is ConfigType.PASSWORD and not self.sensitive:
            object.__setattr__(self, "sensitive", True)


_INT_RE = re.compile(r"[+-]?[0-9]+")
# Java's Double.parseDouble grammar, minus hex floats: digits, optional exponent, NaN/Infinity,
# and an optional d/f suffix.
_DOUBLE_RE = re.compile(
    r"[+-]?(NaN|Infinity|(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)[fFdD]?)"
)
_LIST_SPLIT = re.compile(r"\s*,\s*")
_INTEGRAL_BOUNDS: Mapping[ConfigType, tuple[int, int]] = MappingProxyType(
    {
        ConfigType.SHORT: (_SHORT_MIN, _SHORT_MAX),
        ConfigType.INT: (INT_MIN, INT_MAX),
        ConfigType.LONG: (LONG_MIN, LONG_MAX),
    }
)


def _parse_type(key: ConfigKey, value: str) -> ConfigValue:
    name, t = key.name, key.type
    trimmed = value.strip()
    if t is ConfigType.BOOLEAN:
        lowered = trimmed.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise InvalidConfigError(name, value, "Expected value to be either true or false")
    if t in _INTEGRAL_BOUNDS:
        lo, hi = _INTEGRAL_BOUNDS[t]
        if _INT_RE.fullmatch(trimmed):
            n = int(trimmed)
            if lo <= n <= hi:
                return n
        raise InvalidConfigError(name, value, f"Not a number of type {t.name}")
    if t is ConfigType.DOUBLE:
        if _DOUBLE_RE.fullmatch(trimmed):
            return float(trimmed.rstrip("fFdD") if trimmed[-1:] in "fFdD" else trimmed)
        raise InvalidConfigError(name, value, f"Not a number of type {t.name}")
    if t is ConfigType.LIST:
        return [] if not trimmed else _LIST_SPLIT.split(trimmed)
    if t in (ConfigType.STRING, ConfigType.CLASS):
        return trimmed
    # PASSWORD keeps its bytes exactly: whitespace may be part of a secret.
    return value


def parse(key: ConfigKey, value: str | None) -> ConfigValue:
    """Parse and validate a raw string as Kafka does. ``None`` stays null (not validated)."""
    if value is None:
        return None
    parsed = _parse_type(key, value)
    if key.validator is not None:
        key.validator(key.name, parsed)
    return parsed


def validate(key: ConfigKey, value: ConfigValue) -> ConfigValue:
    """Validate an already-typed value (e.g. one converted from a broker synonym)."""
    if value is not None and key.validator is not None:
        key.validator(key.name, value)
    return value


def _java_double(x: float) -> str:
    """Format like Java's Double.toString (scientific notation outside [1e-3, 1e7))."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0 or 1e-3 <= abs(x) < 1e7:
        s = repr(x)
        return s if ("." in s or "e" in s) else s + ".0"
    sign, digits, exp = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    sci_exp = len(ds) + exp - 1
    mantissa = ds[0] + "." + (ds[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{sci_exp}"


def format_value(key: ConfigKey, value: ConfigValue) -> str | None:
    """Print a typed value as Kafka's ConfigDef.convertToString does (null stays None)."""
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) or key.type is ConfigType.DOUBLE:
        return _java_double(float(value))
    return str(value)


def freeze(keys: Sequence[ConfigKey]) -> Mapping[str, ConfigKey]:
    """Build an immutable name -> key table; duplicate names are a programming error."""
    table: dict[str, ConfigKey] = {}
    for k in keys:
        if k.name in table:
            raise ValueError(f"duplicate config definition {k.name}")
        table[k.name] = k
    return MappingProxyType(dict(sorted(table.items())))


# The brief's name for format_value; prefer format_value in new code (no builtin shadowing).
format = format_value
