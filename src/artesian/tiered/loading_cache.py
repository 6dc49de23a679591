"""LoadingCache: an LRU of values fetched from the object store once per key.

A load runs as its own task and every caller awaits it through ``asyncio.shield``: a fetch
that gives up at remote.fetch.max.wait.ms cancels only its own wait, never a download that
other requests share, and the value still lands in the cache for the next fetch (Kafka's
DelayedRemoteFetch likewise never interrupts a read in progress).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LoadingCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LoadingCache(Generic[K, V]):
    def __init__(self, max_weight: int, weigh: Callable[[V], int]) -> None:
        self.max_weight = max_weight
        self._weigh = weigh
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._loading: dict[K, asyncio.Task[V]] = {}
        self._weight = 0

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        task = self._loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key, load))
            # Retrieved here too: a failed load that every waiter gave up on logs nothing.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._loading[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
        finally:
            self._loading.pop(key, None)
        self._entries[key] = value
        self._weight += self._weigh(value)
        while self._weight > self.max_weight and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self._weight -= self._weigh(old)
        return value

    def remove_where(self, predicate: Callable[[K], bool]) -> None:
        for key in [k for k in self._entries if predicate(k)]:
            self._weight -= self._weigh(self._entries.pop(key))

    def close(self) -> None:
        for task in self._loading.values():
            task.cancel()
