"""One module per Kafka API (or tight group of APIs); this registry maps API keys to them.

Each module defines ``API_KEY``, ``MIN_VERSION``, ``MAX_VERSION`` and ``handle(ctx, request)``,
which returns a kio response, a ``RawResponse``, None (no response), or an awaitable of one.
A module may define ``decode(header, frame)`` to replace the schema decoder (hot paths).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from artesian.broker.handlers import (
    api_versions,
    configs,
    create_partitions,
    create_topics,
    delete_records,
    delete_topics,
    describe_cluster,
    describe_log_dirs,
    fetch,
    list_offsets,
    metadata,
    offset_for_leader_epoch,
    produce,
)
from artesian.protocol import api


@dataclass(slots=True, frozen=True)
class HandlerEntry:
    api_key: int
    min_version: int
    max_version: int
    handler: Callable[[Any, Any], Any]
    decode: Callable[[api.RequestHeader, memoryview], Any]
    accepts_any_version: bool = False


def _entries(module: ModuleType) -> list[HandlerEntry]:
    specs = getattr(module, "APIS", None) or [
        (module.API_KEY, module.MIN_VERSION, module.MAX_VERSION, module.handle)
    ]
    decode = getattr(module, "decode", api.decode_request)
    return [HandlerEntry(key, lo, hi, handler, decode) for key, lo, hi, handler in specs]


def _registry() -> dict[int, HandlerEntry]:
    modules = (
        api_versions,
        configs,
        create_partitions,
        create_topics,
        delete_records,
        delete_topics,
        describe_cluster,
        describe_log_dirs,
        fetch,
        list_offsets,
        metadata,
        offset_for_leader_epoch,
        produce,
    )
    registry: dict[int, HandlerEntry] = {}
    for module in modules:
        for entry in _entries(module):
            registry[entry.api_key] = entry
    return registry


HANDLERS: dict[int, HandlerEntry] = _registry()
