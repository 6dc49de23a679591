"""Version-independent construction of kio response entities.

A handler builds its answer once with every field it knows; ``make`` keeps only the fields the
requested version has, so one handler serves every version of its API.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable, Coroutine
from dataclasses import fields
from functools import cache
from types import ModuleType
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.protocol.api import response_class


@cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def millis(value: Any) -> int:
    """A kio duration field (timedelta) in whole milliseconds, as Kafka's wire has it."""
    return int(value // datetime.timedelta(milliseconds=1))


def make(cls: type, **values: Any) -> Any:
    names = _field_names(cls)
    return cls(**{k: v for k, v in values.items() if k in names})


def response_module(api_key: int, version: int) -> ModuleType:
    cls = response_class(api_key, version)
    assert cls is not None, f"no response schema for api {api_key} v{version}"
    return sys.modules[cls.__module__]


def has_field(cls: type, name: str) -> bool:
    return name in _field_names(cls)


def reply_when_replicated(
    wait: Coroutine[Any, Any, ErrorCode] | None, build: Callable[[ErrorCode], Any]
) -> Any:
    """The response ``build`` makes, once a coordinator's write is replicated: ``wait`` (from
    Broker.coordinator_write_replicated) is None when there is nothing to wait for; else its
    error code, NONE when all went well, is passed to ``build``."""
    if wait is None:
        return build(ErrorCode.none)

    async def reply() -> Any:
        return build(await wait)

    return reply()


def with_replication_error(errors: dict[Any, int], replication: ErrorCode) -> dict[Any, int]:
    """Per-partition results once the coordinator's write is known: what succeeded takes the
    replication's error (if any)."""
    if replication is ErrorCode.none:
        return errors
    return {k: replication if code == ErrorCode.none else code for k, code in errors.items()}
