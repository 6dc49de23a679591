"""Purgatory: requests parked until enough data arrives or their time runs out.

``DelayedFetch`` is Kafka's: a fetch that found fewer than ``min_bytes`` waits on the
partitions it reads. Each append to one of them adds the appended bytes to the fetch's
count; when the count reaches ``min_bytes`` (or ``max_wait_ms`` passes) the fetch completes
and is read again. Appends wake fetchers directly, with no polling, which is what keeps
end-to-end latency low under librdkafka's 500 ms default wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass(slots=True, eq=False)
class DelayedFetch:
    min_bytes: int
    keys: tuple[TopicPartition, ...]
    future: asyncio.Future[None]
    accumulated: int = 0
    timer: asyncio.TimerHandle | None = field(default=None)
    expired: bool = False  # completed by its max wait, not by data

    def expire(self) -> None:
        self.expired = not self.future.done()
        self.complete()

    def complete(self) -> None:
        if not self.future.done():
            self.future.set_result(None)
        if self.timer is not None:
            self.timer.cancel()


class FetchPurgatory:
    def __init__(self) -> None:
        self._watchers: dict[TopicPartition, set[DelayedFetch]] = {}

    def park(
        self, keys: Iterable[TopicPartition], min_bytes: int, accumulated: int, max_wait_ms: int
    ) -> DelayedFetch:
        loop = asyncio.get_running_loop()
        op = DelayedFetch(min_bytes, tuple(keys), loop.create_future(), accumulated)
        for key in op.keys:
            self._watchers.setdefault(key, set()).add(op)
        op.timer = loop.call_later(max_wait_ms / 1000.0, op.expire)
        op.future.add_done_callback(lambda _f: self._forget(op))
        return op

    def _forget(self, op: DelayedFetch) -> None:
        if op.timer is not None:
            op.timer.cancel()  # also when the fetch was cancelled (its client went away)
        for key in op.keys:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(op)
                if not watchers:
                    del self._watchers[key]

    def on_append(self, key: TopicPartition, nbytes: int) -> None:
        watchers = self._watchers.get(key)
        if not watchers:
            return
        for op in list(watchers):
            op.accumulated += nbytes
            if op.accumulated >= op.min_bytes:
                op.complete()

    def wake(self, key: TopicPartition) -> None:
        """Complete every fetch on a partition (deleted, truncated, leadership moved)."""
        for op in list(self._watchers.get(key, ())):
            op.complete()

    def complete_all(self) -> None:
        for watchers in list(self._watchers.values()):
            for op in list(watchers):
                op.complete()

    def __len__(self) -> int:
        return len({op for ws in self._watchers.values() for op in ws})
