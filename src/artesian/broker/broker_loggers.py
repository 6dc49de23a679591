"""The BROKER_LOGGER config resource (KIP-412): this broker's loggers and their levels, read
with DescribeConfigs and changed live with IncrementalAlterConfigs, as Kafka's
Log4jController does. ``kafka-configs --entity-type broker-loggers`` works unchanged.

Levels use log4j's names; Python's are mapped (WARNING is WARN, CRITICAL is FATAL, and TRACE
is a level below DEBUG). Changes are not kept: a restart starts from ``--log-level``, as a
Kafka broker starts from its log4j configuration."""

from __future__ import annotations

import logging

__all__ = ["ROOT_LOGGER", "VALID_LEVELS", "LoggerLevelError", "check", "loggers", "set_level"]

ROOT_LOGGER = "root"
TRACE = 5
logging.addLevelName(TRACE, "TRACE")
# Kafka's LogLevelConfig.VALID_LOG_LEVELS, as Python levels.
VALID_LEVELS = {
    "TRACE": TRACE,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
}
_NAMES = sorted((level, name) for name, level in VALID_LEVELS.items())


class LoggerLevelError(Exception):
    """A change Kafka refuses: ``invalid_config`` says whether as INVALID_CONFIG (an unknown
    logger or level) rather than INVALID_REQUEST."""

    def __init__(self, message: str, invalid_config: bool) -> None:
        super().__init__(message)
        self.invalid_config = invalid_config


def _name(level: int) -> str:
    """log4j's name for a Python level: the highest named level at or below it."""
    found = "TRACE"
    for value, name in _NAMES:
        if value <= level:
            found = name
    return "OFF" if level > logging.CRITICAL else found


def loggers() -> dict[str, str]:
    """Every logger with its effective level, the root logger as "root"."""
    found = {ROOT_LOGGER: _name(logging.getLogger().level)}
    for name, logger in sorted(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            found[name] = _name(logger.getEffectiveLevel())
    return found


def _exists(name: str) -> bool:
    """A logger, or the parent of some (``artesian`` for ``artesian.produce``): setting a
    parent's level sets its children's that have none of their own."""
    return name == ROOT_LOGGER or name in logging.Logger.manager.loggerDict


def check(name: str, level: str | None, reset: bool = False) -> None:
    """Raise LoggerLevelError for a change Kafka's ConfigAdminManager refuses: a SET of
    ``level``, or with ``reset`` a DELETE of the logger's own level (it inherits its
    parent's)."""
    if not _exists(name):
        raise LoggerLevelError(f"Logger {name} does not exist!", True)
    if reset:
        if name == ROOT_LOGGER:
            raise LoggerLevelError(
                f"Removing the log level of the {ROOT_LOGGER} logger is not allowed", False
            )
        return
    if level not in VALID_LEVELS:
        raise LoggerLevelError(
            f"Cannot set the log level of {name} to {level} as it is not a supported log "
            f"level. Valid log levels are {', '.join(VALID_LEVELS)}",
            True,
        )


def set_level(name: str, level: str | None) -> None:
    """Apply a change ``check`` passed."""
    logger = logging.getLogger() if name == ROOT_LOGGER else logging.getLogger(name)
    logger.setLevel(logging.NOTSET if level is None else VALID_LEVELS[level])
