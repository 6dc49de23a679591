"""ReplicaManager: the partitions this broker hosts, and appends and reads on them.

With one broker every partition is led here and the ISR is this broker alone, so the high
watermark moves with the log end offset; the replication layer will move it by follower
fetches instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode
from prometheus_client import Counter

from artesian.broker.purgatory import FetchPurgatory
from artesian.storage.log import Log
from artesian.storage.log_config import LogConfig
from artesian.storage.log_manager import LogManager

if TYPE_CHECKING:
    from artesian.broker.metrics import BrokerMetrics

log = logging.getLogger("artesian.replica_manager")


@dataclass(slots=True, eq=False)
class Partition:
    topic: str
    index: int
    topic_id: uuid.UUID
    log: Log
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    roll_flush: asyncio.Future[None] | None = None

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    def leader_epoch_error(self, requested: int) -> ErrorCode | None:
        """KIP-320: a client's current leader epoch must be ours (-1 skips the check)."""
        if requested == -1 or requested == self.leader_epoch:
            return None
        if requested < self.leader_epoch:
            return ErrorCode.fenced_leader_epoch
        return ErrorCode.unknown_leader_epoch


class ReplicaManager:
    def __init__(self, log_manager: LogManager, metrics: BrokerMetrics) -> None:
        self.log_manager = log_manager
        self.metrics = metrics
        self.partitions: dict[tuple[str, int], Partition] = {}
        self.purgatory = FetchPurgatory()
        self._bytes_in: dict[str, tuple[Counter, Counter]] = {}

    def get(self, topic: str, partition: int) -> Partition | None:
        return self.partitions.get((topic, partition))

    def become_leader(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        leader_epoch: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        config: LogConfig,
    ) -> Partition:
        key = (topic, index)
        p = self.partitions.get(key)
        now = int(time.time() * 1000)
        if p is None:
            plog = self.log_manager.get_or_create_log(topic, index, config, now)
            p = Partition(topic, index, topic_id, plog, leader_epoch, replicas, isr)
            self.partitions[key] = p
        else:
            p.leader_epoch, p.replicas, p.isr = leader_epoch, replicas, isr
        # One replica: everything in the log is committed.
        p.log.high_watermark = p.log.log_end_offset
        self.metrics.partitions.set(len(self.partitions))
        return p

    def remove_topic(self, topic: str) -> None:
        for key in [k for k in self.partitions if k[0] == topic]:
            del self.partitions[key]
            self.purgatory.wake(key)
            # The files stay for file.delete.delay.ms: a fetch may still be sending them.
            self.log_manager.delete_log(*key, now_ms=int(time.time() * 1000))
        self.metrics.partitions.set(len(self.partitions))

    def update_config(self, topic: str, config: LogConfig) -> None:
        self.log_manager.update_config(topic, config)

    def appended(self, p: Partition, nbytes: int, messages: int) -> asyncio.Future[None] | None:
        """Bookkeeping after a successful append: HW, metrics, waiting fetches, flush.

        Returns a flush to await before acknowledging when flush.messages or flush.ms call
        for one (Kafka flushes inline there); after a roll, the closed segments are flushed
        in the background, as Kafka's roll does."""
        p.log.high_watermark = p.log.log_end_offset
        counters = self._bytes_in.get(p.topic)
        if counters is None:
            counters = self._bytes_in[p.topic] = (
                self.metrics.bytes_in.labels(p.topic),
                self.metrics.messages_in.labels(p.topic),
            )
        b, m = counters
        b.inc(nbytes)
        m.inc(messages)
        self.purgatory.on_append((p.topic, p.index), nbytes)
        now = int(time.time() * 1000)
        if p.log.needs_flush(now):
            return self._flush(p, None, now)
        self._maybe_flush_rolled(p)
        return None

    def _maybe_flush_rolled(self, p: Partition) -> None:
        """One background flush at a time per partition; rolls made while it ran get the
        next one as soon as it ends, so the recovery point reaches the active segment even
        when appends stop (tiered storage copies only flushed segments)."""
        if p.roll_flush is not None or p.log.closed or not p.log.needs_roll_flush():
            return
        p.roll_flush = self._flush(p, p.log.active_base_offset, None)

        def done(_f: asyncio.Future[None]) -> None:
            p.roll_flush = None
            if not _f.cancelled() and _f.exception() is None:
                self._maybe_flush_rolled(p)

        p.roll_flush.add_done_callback(done)

    def _flush(self, p: Partition, up_to: int | None, now_ms: int | None) -> asyncio.Future[None]:
        """fsync in a worker thread: the event loop never waits on the disk."""
        fut = asyncio.get_running_loop().run_in_executor(None, p.log.flush, up_to, now_ms)

        def done(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error(
                    "flush of %s-%d failed: %s; the next flush retries",
                    p.topic,
                    p.index,
                    f.exception(),
                )

        fut.add_done_callback(done)
        return fut
