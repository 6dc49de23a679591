"""RemoteLogManager: copies rolled segments to tiered storage, applies retention there, and
serves the reads and timestamp lookups that fall below the local log (Kafka's
RemoteLogManager, with its copy and expiration tasks and its remote reader).

Everything runs on the event loop; the object store's I/O is async. Each partition's tasks
run under its own lock, one at a time. The partition's ``Log`` learns the highest offset in
remote storage (local retention deletes only what is below it) and has its log start offset
moved as remote retention deletes segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from artesian.protocol.record_codec import decode_records
from artesian.protocol.records import BATCH_HEADER_SIZE, BatchHeader, read_batch_header
from artesian.storage.errors import OffsetOutOfRangeError
from artesian.tiered.quota import UNLIMITED, ByteRateQuota
from artesian.tiered.remote_chunk_cache import RemoteChunkCache
from artesian.tiered.remote_index_cache import RemoteIndexCache
from artesian.tiered.remote_log_segment_metadata import (
    RemoteLogSegmentMetadata,
    partition_prefix,
)
from artesian.tiered.remote_storage_manager import RemoteStorageManager, SegmentIndexes

if TYPE_CHECKING:
    from artesian.broker.metrics import BrokerMetrics
    from artesian.storage.log import Log
    from artesian.storage.segment import LogSegment

__all__ = ["RemoteFetchResult", "RemoteLogManager", "RemoteLogManagerConfig"]

log = logging.getLogger("artesian.tiered")


@dataclass(frozen=True, slots=True)
class RemoteLogManagerConfig:
    broker_id: int
    task_interval_ms: int = 30_000  # remote.log.manager.task.interval.ms
    copy_max_bytes_per_second: int = UNLIMITED  # remote.log.manager.copy.max.bytes.per.second
    fetch_max_bytes_per_second: int = UNLIMITED  # remote.log.manager.fetch.max.bytes.per.second
    index_cache_bytes: int = 1024 * 1024 * 1024  # remote.log.index.file.cache.total.size.bytes


@dataclass(slots=True)
class RemoteFetchResult:
    records: bytes | memoryview
    # read_committed only: (producer id, first offset) of aborted transactions overlapping.
    aborted_transactions: list[tuple[int, int]] | None = None


@dataclass(slots=True, eq=False)
class RemotePartition:
    topic: str
    partition: int
    topic_id: uuid.UUID
    log: Log
    segments: list[RemoteLogSegmentMetadata] = field(default_factory=list)
    loaded: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def prefix(self) -> str:
        return partition_prefix(self.topic, self.partition, self.topic_id)

    @property
    def size_in_bytes(self) -> int:
        return sum(m.size_in_bytes for m in self.segments)

    def segment_for(self, offset: int) -> RemoteLogSegmentMetadata | None:
        segments = self.segments
        i = bisect_right(segments, offset, key=lambda m: m.start_offset) - 1
        if i >= 0 and segments[i].end_offset >= offset:
            return segments[i]
        return None


class RemoteLogManager:
    def __init__(
        self,
        rsm: RemoteStorageManager,
        config: RemoteLogManagerConfig,
        metrics: BrokerMetrics,
        partitions: Callable[[], Iterable[tuple[str, int, uuid.UUID, Log]]],
        followed: Callable[[], Iterable[tuple[str, int, uuid.UUID, Log]]] = lambda: (),
    ) -> None:
        """``partitions`` lists the partitions this broker leads (all of them, tiered or
        not): the tasks follow topic config changes without being told. ``followed`` lists
        those it follows: their leaders copy, and each round tells their local retention how
        far the store reaches."""
        self.rsm = rsm
        self.config = config
        self.metrics = metrics
        self.index_cache = RemoteIndexCache(rsm, config.index_cache_bytes)
        self.chunk_cache = RemoteChunkCache(rsm)
        self.copy_quota = ByteRateQuota(config.copy_max_bytes_per_second)
        self.fetch_quota = ByteRateQuota(config.fetch_max_bytes_per_second)
        self._led = partitions
        self._followed = followed
        self._partitions: dict[tuple[str, int], RemotePartition] = {}
        # Followed partitions that consumers read below the local log (KIP-392).
        self._followed_reads: dict[tuple[str, int], RemotePartition] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Partitions of deleted topics, by topic id: a round that started before the deletion
        # must not copy into their prefix again.
        self._stopped: set[tuple[uuid.UUID, int]] = set()

    # -- partitions ---------------------------------------------------------------------------

    def partition(self, topic: str, index: int) -> RemotePartition | None:
        return self._partitions.get((topic, index))

    def state_for(self, topic: str, index: int, topic_id: uuid.UUID, plog: Log) -> RemotePartition:
        """The partition's remote state, created on first use (a read may come first)."""
        st = self._partitions.get((topic, index))
        if st is None or st.topic_id != topic_id or st.log is not plog:
            st = self._partitions[(topic, index)] = RemotePartition(topic, index, topic_id, plog)
        return st

    def followed_state_for(
        self, topic: str, index: int, topic_id: uuid.UUID, plog: Log
    ) -> RemotePartition:
        """A followed partition's remote segments, for consumers that read from this follower
        (KIP-392). Kept apart from the led partitions': a follower only lists them, since
        deleting unfinished copies and reshaping the local log are the leader's to do."""
        st = self._followed_reads.get((topic, index))
        if st is None or st.topic_id != topic_id or st.log is not plog:
            st = self._followed_reads[(topic, index)] = RemotePartition(
                topic, index, topic_id, plog
            )
        return st

    def stop_partitions(self, topic: str, topic_id: uuid.UUID, partitions: Iterable[int]) -> None:
        """The topic was deleted: forget its partitions and delete their remote objects in the
        background, as Kafka's stopPartitions(delete=true) does."""
        for index in partitions:
            self._stopped.add((topic_id, index))
            self._followed_reads.pop((topic, index), None)
            st = self._partitions.pop((topic, index), None)
            if st is not None:
                for meta in st.segments:
                    self._forget(meta)
            prefix = partition_prefix(topic, index, topic_id)
            task = asyncio.get_running_loop().create_task(self._delete_partition(prefix, st))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if not any(p.topic == topic for p in self._partitions.values()):
            with contextlib.suppress(KeyError):
                self.metrics.remote_log_size_bytes.remove(topic)

    async def _delete_partition(self, prefix: str, st: RemotePartition | None) -> None:
        try:
            if st is not None:
                # After a copy in flight: its objects land first, then all go.
                async with st.lock:
                    n = await self.rsm.delete_partition(prefix)
            else:
                n = await self.rsm.delete_partition(prefix)
            if n:
                log.info("deleted %d remote object(s) of deleted partition %s", n, prefix)
        except Exception as e:
            log.warning(
                "could not delete the remote objects of %s: %s; delete them from the object "
                "store by hand",
                prefix,
                e,
            )

    def _forget(self, meta: RemoteLogSegmentMetadata) -> None:
        self.index_cache.remove(meta.segment_id)
        self.chunk_cache.remove(meta.segment_id)

    # -- the periodic tasks ---------------------------------------------------------------------

    async def load(self, timeout_s: float = 15.0) -> None:
        """At start-up, before clients connect: list the remote segments of every tiered
        partition (and of partitions whose remote data must go since tiering was turned
        off), a few at a time. Until its listing succeeds a tiered log is not ready: Produce
        and Fetch answer KAFKA_STORAGE_ERROR, so a log whose local disk was lost never hands
        out an offset the store holds. Listings still running after ``timeout_s`` go on in
        the background, and failed ones are retried by the periodic task."""
        pending = []
        for topic, index, topic_id, plog in list(self._led()):
            config = plog.config
            if plog.remote_log_enabled:
                plog.remote_log_ready = False
            elif not config.remote_log_delete_on_disable:
                continue
            pending.append(self.state_for(topic, index, topic_id, plog))
        if not pending:
            return
        limit = asyncio.Semaphore(8)

        async def load_one(st: RemotePartition) -> None:
            async with limit, st.lock:
                if self._partitions.get((st.topic, st.partition)) is not st:
                    return  # deleted meanwhile
                try:
                    if st.log.remote_log_enabled:
                        await self._ensure_loaded(st)  # copying waits for the periodic round
                    else:
                        await self._disable(st)
                except Exception as e:
                    log.warning(
                        "could not list the remote segments of %s-%d: %s; retrying every %d ms "
                        "(check rsm.config.store.url and the object store)",
                        st.topic,
                        st.partition,
                        e,
                        self.config.task_interval_ms,
                    )

        tasks = [asyncio.get_running_loop().create_task(load_one(st)) for st in pending]
        for task in tasks:
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        _, slow = await asyncio.wait(tasks, timeout=timeout_s)
        if slow:
            log.warning(
                "%d tiered partition(s) still listing their remote segments after %.0f s; "
                "they stay unavailable until it succeeds (check rsm.config.store.url and the "
                "object store)",
                len(slow),
                timeout_s,
            )

    async def run(self) -> None:
        """The copy and expiration tasks for every tiered partition, every
        remote.log.manager.task.interval.ms, starting at once (a restart resumes copying)."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tiered storage tasks failed; they run again")
            await asyncio.sleep(self.config.task_interval_ms / 1000)

    async def run_once(self) -> None:
        led = list(self._led())
        live = {(t, i) for t, i, _, _ in led}
        for key in [k for k in self._partitions if k not in live]:
            del self._partitions[key]  # no longer led here (its objects stay)
        for topic, index, topic_id, plog in led:
            if (topic_id, index) in self._stopped:
                continue  # deleted since the round began
            st = self._partitions.get((topic, index))
            if not plog.remote_log_enabled and st is None:
                continue
            st = self.state_for(topic, index, topic_id, plog)
            async with st.lock:
                if self._partitions.get((topic, index)) is not st:
                    continue  # deleted while we waited for the lock
                await self._run_partition(st)

        followed = list(self._followed())
        still = {(t, i) for t, i, _, _ in followed}
        for key in [k for k in self._followed_reads if k not in still]:
            del self._followed_reads[key]
        for topic, index, topic_id, plog in followed:
            if plog.remote_log_enabled:
                await self._follow(topic, index, topic_id, plog)

        sizes: dict[str, int] = {}
        for st in self._partitions.values():
            sizes[st.topic] = sizes.get(st.topic, 0) + st.size_in_bytes
        for topic, size in sizes.items():
            self.metrics.remote_log_size_bytes.labels(topic).set(size)

    async def _follow(self, topic: str, index: int, topic_id: uuid.UUID, plog: Log) -> None:
        """A follower's view of its leader's copies (Kafka's followers read it from the
        remote log metadata topic): local retention may then delete what the store holds,
        as on the leader."""
        try:
            segments, _unfinished = await self.rsm.list_segments(
                partition_prefix(topic, index, topic_id)
            )
        except Exception as e:
            log.debug("listing the remote segments of followed %s-%d failed: %s", topic, index, e)
            return
        reads = self._followed_reads.get((topic, index))
        if reads is not None and reads.log is plog:
            # Before local retention can act on this listing: consumers' reads must find
            # below the local log whatever it deletes (and the transaction indexes in it).
            reads.segments, reads.loaded = segments, True
        if segments:
            plog.highest_offset_in_remote_storage = max(m.end_offset for m in segments)
        plog.reconcile_remote_log_start(segments[0].start_offset if segments else None)

    async def _run_partition(self, st: RemotePartition) -> None:
        """One round of a partition's tasks (under its lock); failures are logged and the
        next round retries."""
        plog = st.log
        try:
            if not plog.remote_log_enabled:
                await self._disable(st)
                return
            await self._ensure_loaded(st)
            if not plog.config.remote_log_copy_disable:
                await self._copy(st)
            await self._expire(st)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning(
                "tiered storage task for %s-%d failed: %s; it runs again in %d ms (check "
                "rsm.config.store.url and the object store)",
                st.topic,
                st.partition,
                e,
                self.config.task_interval_ms,
            )

    async def _ensure_loaded(self, st: RemotePartition) -> None:
        """List the partition's remote segments (once per leadership) and bring the local
        log in line: its highest remote offset, its log start offset, and, if the local disk
        lost what remote storage holds, a local log that continues after it."""
        if st.loaded:
            return
        segments, orphans = await self.rsm.list_segments(st.prefix)
        if orphans:
            await self.rsm.delete_objects(orphans)
            log.info(
                "deleted %d object(s) of unfinished segment copies of %s-%d",
                len(orphans),
                st.topic,
                st.partition,
            )
        plog = st.log
        st.segments = segments
        if not plog.remote_log_enabled:
            st.loaded = True  # tiering was turned off: the listing is only for deleting
            plog.remote_log_ready = True
            return
        if segments:
            highest = max(m.end_offset for m in segments)
            if plog.log_end_offset <= highest:
                now = int(time.time() * 1000)
                log.warning(
                    "%s-%d: the local log ends at %d but tiered storage holds offsets up to "
                    "%d; continuing the local log after them",
                    st.topic,
                    st.partition,
                    plog.log_end_offset,
                    highest,
                )
                # Never below a checkpointed log start (DeleteRecords, unfinished retention).
                start = max(plog.log_start_offset, segments[0].start_offset)
                plog.truncate_fully_and_start_at(highest + 1, start, now)
                for meta in segments:
                    for epoch, epoch_start in meta.segment_leader_epochs:
                        plog.leader_epoch_cache.assign(epoch, epoch_start)
            plog.highest_offset_in_remote_storage = highest
        plog.reconcile_remote_log_start(segments[0].start_offset if segments else None)
        st.loaded = True
        plog.remote_log_ready = True

    async def _copy(self, st: RemotePartition) -> None:
        """Kafka's RLMCopyTask: each rolled, stable segment past the highest remote offset,
        oldest first."""
        plog = st.log
        for seg, next_base in plog.segments_to_copy():
            # Over remote.log.manager.copy.max.bytes.per.second: wait, as Kafka's copy
            # thread blocks on its quota.
            wait = self.copy_quota.throttle_seconds()
            if wait > 0:
                self.metrics.remote_copy_throttle_seconds.inc(wait)
                await asyncio.sleep(wait)
            await self._copy_segment(st, seg, next_base)
            self.copy_quota.record(seg.size)

    async def _copy_segment(self, st: RemotePartition, seg: LogSegment, next_base: int) -> None:
        plog = st.log
        end = next_base - 1
        meta = RemoteLogSegmentMetadata(
            topic=st.topic,
            partition=st.partition,
            topic_id=st.topic_id,
            segment_id=uuid.uuid4(),
            start_offset=seg.base_offset,
            end_offset=end,
            max_timestamp=seg.largest_timestamp(),
            size_in_bytes=seg.size,
            segment_leader_epochs=tuple(plog.leader_epochs_between(seg.base_offset, end)),
            has_txn_index=bool(seg.txn_index.entries),
            event_timestamp_ms=int(time.time() * 1000),
            broker_id=self.config.broker_id,
        )
        indexes = SegmentIndexes(
            seg.offset_index.to_bytes(), seg.time_index.to_bytes(), seg.txn_index.to_bytes()
        )
        try:
            await self.rsm.copy_log_segment_data(meta, Path(seg.log_path), indexes)
        except Exception:
            self.metrics.remote_copy_errors.labels(st.topic).inc()
            # Each attempt has its own segment id: what this one wrote goes now.
            with contextlib.suppress(Exception):
                await self.rsm.delete_log_segment_data(meta)
            raise
        st.segments = [*st.segments, meta]
        plog.highest_offset_in_remote_storage = end
        self.metrics.remote_copy_bytes.labels(st.topic).inc(meta.size_in_bytes)
        self.metrics.remote_copy_requests.labels(st.topic).inc()
        log.debug(
            "copied %s-%d [%d, %d] to tiered storage",
            st.topic,
            st.partition,
            meta.start_offset,
            end,
        )

    async def _expire(self, st: RemotePartition) -> None:
        """Kafka's RLMExpirationTask: remote segments below the log start offset, then by
        retention.bytes over the whole log, then by retention.ms, oldest first."""
        plog = st.log
        config = plog.config
        segments = st.segments
        if not segments:
            return
        now = int(time.time() * 1000)
        log_start = plog.log_start_offset
        n = 0
        while n < len(segments) and segments[n].end_offset < log_start:
            n += 1
        if config.retention_bytes >= 0:
            highest = plog.highest_offset_in_remote_storage
            only_local = sum(s.size for s in plog.segments if s.base_offset > highest)
            breach = (
                only_local + sum(m.size_in_bytes for m in segments[n:]) - config.retention_bytes
            )
            while n < len(segments) and breach - segments[n].size_in_bytes >= 0:
                breach -= segments[n].size_in_bytes
                n += 1
        if config.retention_ms >= 0:
            limit = now - config.retention_ms
            while n < len(segments) and segments[n].max_timestamp <= limit:
                n += 1
        if n == 0:
            return
        doomed, st.segments = segments[:n], segments[n:]
        # The log start offset moves first: no fetch reads a segment being deleted.
        plog.maybe_increment_log_start_offset(doomed[-1].end_offset + 1, now)
        for meta in doomed:
            self._forget(meta)
            await self.rsm.delete_log_segment_data(meta)
            self.metrics.remote_delete_requests.labels(st.topic).inc()
        log.info(
            "remote retention deleted %d segment(s) of %s-%d; log start offset is now %d",
            n,
            st.topic,
            st.partition,
            plog.log_start_offset,
        )

    async def _disable(self, st: RemotePartition) -> None:
        """remote.storage.enable turned off (with remote.log.delete.on.disable=true): every
        remote segment goes and the log starts at its local start again."""
        st.log.remote_log_ready = True
        if not st.log.config.remote_log_delete_on_disable:
            self._partitions.pop((st.topic, st.partition), None)  # its objects stay
            return
        await self._ensure_loaded(st)
        doomed = list(st.segments)
        # The log start offset moves first: no fetch reads a segment being deleted.
        st.log.highest_offset_in_remote_storage = -1
        st.log.reconcile_remote_log_start(None)
        for meta in doomed:
            self._forget(meta)
            await self.rsm.delete_log_segment_data(meta)
            st.segments = st.segments[1:]  # a failed delete is retried next round
        self._partitions.pop((st.topic, st.partition), None)
        if doomed:
            log.info(
                "tiered storage disabled for %s-%d: deleted its %d remote segment(s)",
                st.topic,
                st.partition,
                len(doomed),
            )

    # -- reads --------------------------------------------------------------------------------

    async def read(
        self,
        st: RemotePartition,
        fetch_offset: int,
        max_bytes: int,
        min_one_message: bool,
        read_committed: bool,
    ) -> RemoteFetchResult:
        """Whole batches from the remote segment holding ``fetch_offset``, at most
        ``max_bytes`` (or the first batch whole if ``min_one_message``), as Kafka's remote
        reader returns them. Raises OffsetOutOfRangeError when no remote segment holds it."""
        if not st.loaded:
            async with st.lock:
                await self._ensure_loaded(st)
        return await self._read_loaded(st, fetch_offset, max_bytes, min_one_message, read_committed)

    async def read_as_follower(
        self,
        st: RemotePartition,
        fetch_offset: int,
        max_bytes: int,
        min_one_message: bool,
        read_committed: bool,
    ) -> RemoteFetchResult:
        """``read`` for a consumer of a followed partition (``followed_state_for``). The
        leader's copies are listed again when the listing held here lacks the offset, stops
        short of the local log (a newer segment's transaction index would be missed), or
        names an object the leader's retention has deleted since; an offset still in no
        copy then raises OffsetOutOfRangeError."""
        args = (fetch_offset, max_bytes, min_one_message, read_committed)
        if self._stale(st, fetch_offset):
            async with st.lock:
                if self._stale(st, fetch_offset):  # another read may have listed meanwhile
                    await self._list_followed(st)
        try:
            return await self._read_loaded(st, *args)
        except FileNotFoundError:
            async with st.lock:
                await self._list_followed(st)
            return await self._read_loaded(st, *args)

    @staticmethod
    def _stale(st: RemotePartition, fetch_offset: int) -> bool:
        if not st.loaded or st.segment_for(fetch_offset) is None:
            return True
        return st.segments[-1].end_offset + 1 < st.log.local_log_start_offset

    async def _list_followed(self, st: RemotePartition) -> None:
        st.segments, _unfinished = await self.rsm.list_segments(st.prefix)
        st.loaded = True

    async def _read_loaded(
        self,
        st: RemotePartition,
        fetch_offset: int,
        max_bytes: int,
        min_one_message: bool,
        read_committed: bool,
    ) -> RemoteFetchResult:
        if self.fetch_quota.throttle_seconds() > 0:
            # Over remote.log.manager.fetch.max.bytes.per.second: Kafka skips the remote read
            # and the fetch answers without records; the client asks again.
            self.metrics.remote_fetch_throttled.inc()
            return RemoteFetchResult(b"", [] if read_committed else None)
        meta = st.segment_for(fetch_offset)
        if meta is None or fetch_offset < st.log.log_start_offset:
            raise OffsetOutOfRangeError(
                f"offset {fetch_offset} of {st.topic}-{st.partition} is in no remote segment"
            )
        try:
            result = await self._read(
                st, meta, fetch_offset, max_bytes, min_one_message, read_committed
            )
        except OffsetOutOfRangeError:
            raise
        except FileNotFoundError:
            if fetch_offset < st.log.log_start_offset:
                # Remote retention deleted the segment while it was being read.
                raise OffsetOutOfRangeError(
                    f"offset {fetch_offset} of {st.topic}-{st.partition} was deleted by retention"
                ) from None
            self.metrics.remote_fetch_errors.labels(st.topic).inc()
            raise
        except Exception:
            self.metrics.remote_fetch_errors.labels(st.topic).inc()
            raise
        self.fetch_quota.record(len(result.records))
        self.metrics.remote_fetch_requests.labels(st.topic).inc()
        self.metrics.remote_fetch_bytes.labels(st.topic).inc(len(result.records))
        return result

    async def _read(
        self,
        st: RemotePartition,
        meta: RemoteLogSegmentMetadata,
        fetch_offset: int,
        max_bytes: int,
        min_one_message: bool,
        read_committed: bool,
    ) -> RemoteFetchResult:
        indexes = await self.index_cache.get(meta)
        _, pos = indexes.offset_index.lookup(fetch_offset)
        while True:  # to the batch holding fetch_offset
            h = await self._header(meta, pos)
            if h is None:
                raise OffsetOutOfRangeError(
                    f"offset {fetch_offset} is past the data of remote segment {meta.segment_id}"
                )
            if h.last_offset >= fetch_offset:
                break
            pos += h.size
        # Kafka's remote read: max_bytes from the first batch, a trailing partial batch being
        # the client's to drop; the whole first batch at least if min_one_message, and nothing
        # if it does not fit otherwise.
        if min_one_message:
            size = max(max_bytes, h.size)
        else:
            size = max_bytes if h.size <= max_bytes else 0
        end = min(pos + size, meta.size_in_bytes)
        records = await self.chunk_cache.read(meta, pos, end) if end > pos else b""
        aborted = None
        if read_committed:
            # Up to the end of the segment, as for a local read (consumers ignore the rest).
            aborted = await self._collect_aborted(st, meta, fetch_offset, meta.end_offset + 1)
        return RemoteFetchResult(records or b"", aborted)

    async def _header(self, meta: RemoteLogSegmentMetadata, pos: int) -> BatchHeader | None:
        data = await self.chunk_cache.read(meta, pos, pos + BATCH_HEADER_SIZE)
        return read_batch_header(data) if data is not None else None

    async def _collect_aborted(
        self, st: RemotePartition, meta: RemoteLogSegmentMetadata, start: int, upper: int
    ) -> list[tuple[int, int]]:
        """Aborted transactions overlapping [start, upper): the remote segments' indexes from
        ``meta`` on, then the local log's, until one answers for the whole range."""
        out = []
        segments = st.segments
        # By id: a follower's listing may have been replaced while the read waited.
        i = next(
            (k for k, m in enumerate(segments) if m.segment_id == meta.segment_id), len(segments)
        )
        for m in segments[i:]:
            if not m.has_txn_index:
                continue
            found = (await self.index_cache.get(m)).txn_index.search(start, upper)
            out += [(t.producer_id, t.first_offset) for t in found.aborted]
            if found.is_complete:
                return out
        local = st.log.collect_aborted_transactions(start, upper)
        return out + [(t.producer_id, t.first_offset) for t in local]

    async def find_offset_by_timestamp(
        self, st: RemotePartition, timestamp: int
    ) -> tuple[int, int, int] | None:
        """ListOffsets over the remote segments: (offset, timestamp, leader epoch) of the first
        record at or after ``timestamp``, or None (then the local log answers)."""
        if not st.loaded:
            async with st.lock:
                await self._ensure_loaded(st)
        start_offset = st.log.log_start_offset
        for meta in st.segments:
            if meta.max_timestamp < timestamp or meta.end_offset < start_offset:
                continue
            indexes = await self.index_cache.get(meta)
            _, off = indexes.time_index.lookup_before(timestamp)
            _, pos = indexes.offset_index.lookup(max(off, start_offset))
            while (h := await self._header(meta, pos)) is not None:
                if h.max_timestamp >= timestamp and h.last_offset >= start_offset:
                    batch = await self.chunk_cache.read(meta, pos, pos + h.size)
                    if batch is None:
                        break
                    for record in decode_records(batch, h):
                        if record.offset >= start_offset and record.timestamp >= timestamp:
                            epoch = h.partition_leader_epoch
                            return record.offset, record.timestamp, epoch if epoch >= 0 else -1
                pos += h.size
        return None

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        self.index_cache.close()
        self.chunk_cache.close()
