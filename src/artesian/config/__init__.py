"""Kafka-style configuration: definitions, topic and broker configs, resolution.

See ``definitions`` (ConfigDef machinery), ``topic`` (LogConfig), ``broker`` (BrokerConfig)
and ``resolve`` (effective values, DescribeConfigs entries, IncrementalAlterConfigs).
"""

from artesian.config.broker import BrokerConfig
from artesian.config.definitions import (
    ConfigError,
    ConfigSource,
    ConfigType,
    InvalidConfigError,
    UnknownConfigError,
)

__all__ = [
    "BrokerConfig",
    "ConfigError",
    "ConfigSource",
    "ConfigType",
    "InvalidConfigError",
    "UnknownConfigError",
]
