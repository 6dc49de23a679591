"""One module per Kafka API (or tight group of APIs); this registry maps API keys to them.

Each module defines ``API_KEY``, ``MIN_VERSION``, ``MAX_VERSION`` and ``handle(ctx, request)``
(or ``APIS``, a list of such tuples), which returns a kio response, a ``RawResponse``, None (no
response), or an awaitable of one. A module may define ``decode(header, frame)`` to replace
the schema decoder (hot paths). Every public module in this package is a handler: adding an
API is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from artesian.protocol import api


@dataclass(slots=True, frozen=True)
class HandlerEntry:
    api_key: int
    min_version: int
    max_version: int
    handler: Callable[[Any, Any], Any]
    decode: Callable[[api.RequestHeader, memoryview], Any]


def _entries(module: ModuleType) -> list[HandlerEntry]:
    specs = getattr(module, "APIS", None) or [
        (module.API_KEY, module.MIN_VERSION, module.MAX_VERSION, module.handle)
    ]
    decode = getattr(module, "decode", api.decode_request)
    return [HandlerEntry(key, lo, hi, handler, decode) for key, lo, hi, handler in specs]


def _registry() -> dict[int, HandlerEntry]:
    registry: dict[int, HandlerEntry] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for entry in _entries(module):
            if entry.api_key in registry:
                raise RuntimeError(f"API key {entry.api_key} is handled twice ({info.name})")
            registry[entry.api_key] = entry
    return dict(sorted(registry.items()))


HANDLERS: dict[int, HandlerEntry] = _registry()
