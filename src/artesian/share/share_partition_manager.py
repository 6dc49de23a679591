"""SharePartitionManager: ShareFetch and ShareAcknowledge on a partition leader (KIP-932).

It keeps the SharePartition of each (group, topic, partition) this broker leads and members
fetch, loaded from the share coordinator on first use (or started where the group's
``share.auto.offset.reset`` says), and stores its state there after every change that
matters: acknowledgements, releases, expired locks. A fetch acquires records for the member
(released ones first, then new ones up to the high watermark) and returns the log batches
holding them; with nothing to hand out it waits, like a Fetch, until an append, a release or
an expired lock, or its max wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from artesian.config.group import (
    SHARE_AUTO_OFFSET_RESET,
    SHARE_ISOLATION_LEVEL,
    SHARE_LOCK_DURATION,
    by_duration,
    share_group_config,
)
from artesian.protocol.records import InvalidBatch, iter_batches
from artesian.share.persister import PersisterError, SharePersister
from artesian.share.records import ShareState, ShareStateKey
from artesian.share.share_partition import (
    AckBatch,
    AcquiredRange,
    PendingAcknowledgement,
    SharePartition,
    validate_ack_batches,
)
from artesian.share.share_session import ShareSession, ShareSessionCache
from artesian.storage.errors import OffsetOutOfRangeError
from artesian.storage.log_cleaner import CleanedTransactionMetadata
from artesian.storage.transaction_index import AbortedTxn

if TYPE_CHECKING:
    from artesian.broker.replica_manager import Partition
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.share")

PartitionId = tuple[str, str, int]  # group, topic, partition


@dataclass(slots=True, eq=False)
class ShareEntry:
    key: ShareStateKey
    topic: str
    index: int
    partition: SharePartition
    leader_epoch: int
    state_epoch: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Writes of this partition's state go one at a time, in order."""
    stores: set[asyncio.Task[None]] = field(default_factory=set)
    """Writes nobody waits for (releases, expired locks), not yet done."""


@dataclass(slots=True)
class Acquired:
    """What a fetch took from one partition."""

    records: bytes
    ranges: list[AcquiredRange]


class SharePartitionManager:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.entries: dict[PartitionId, ShareEntry] = {}
        self.sessions = ShareSessionCache(broker.config.get_int("group.share.max.share.sessions"))
        self.persister = SharePersister(broker)
        self._loading: dict[PartitionId, asyncio.Future[ShareEntry]] = {}
        self._retired: dict[PartitionId, list[ShareEntry]] = {}
        """Evicted entries whose writes are still going: a new load waits for them."""
        self._expiry: asyncio.Task[None] | None = None
        self._expiry_wakeup = asyncio.Event()
        self._stores: set[asyncio.Task[None]] = set()
        self._expiry_at = float("inf")
        """When the expiry loop wakes next (loop time; infinite while it has nothing)."""

    # --- share partitions ------------------------------------------------------------------

    async def entry(self, group_id: str, p: Partition, topic_id: uuid.UUID) -> ShareEntry:
        """The share partition of ``group_id`` on ``p`` (led here); loaded from the share
        coordinator on first use, or after a leadership change. Raises PersisterError."""
        pid = (group_id, p.topic, p.index)
        for _ in range(3):
            entry = self.entries.get(pid)
            if (
                entry is not None
                and entry.leader_epoch == p.leader_epoch
                and entry.key.topic_id == topic_id  # not a topic deleted and created again
            ):
                return entry
            loading = self._loading.get(pid)
            if loading is None:
                loading = self._loading[pid] = asyncio.ensure_future(
                    self._load(group_id, p, topic_id)
                )
                loading.add_done_callback(lambda _f: self._loading.pop(pid, None))
            loaded = await asyncio.shield(loading)
            # Evicted while this request waited (a refused write, the group's last session
            # closing): records acquired from it would be lost to acknowledgements.
            if self.entries.get(pid) is loaded:
                return loaded
        raise PersisterError(
            ErrorCode.coordinator_load_in_progress, f"{p.topic}-{p.index}: the share state moved"
        )

    async def _load(self, group_id: str, p: Partition, topic_id: uuid.UUID) -> ShareEntry:
        key = ShareStateKey(group_id, topic_id, p.index)
        for retired in self._retired.pop((group_id, p.topic, p.index), []):
            # What an evicted entry still writes must land before the read.
            await asyncio.gather(*retired.stores, return_exceptions=True)
            async with retired.lock:
                pass
        stored = await self.persister.read(key, p.leader_epoch)
        cfg = self.broker.config
        limit = cfg.get_int("group.share.delivery.count.limit")
        locks = cfg.get_int("group.share.partition.max.record.locks")
        fresh = stored is None or stored.deleted
        if stored is not None and not fresh:
            partition = SharePartition(stored.start_offset, stored.batches, limit, locks)
            state_epoch = stored.state_epoch
        else:
            start = self._reset_offset(
                p, str(self._group_config(group_id)[SHARE_AUTO_OFFSET_RESET])
            )
            partition = SharePartition(start, (), limit, locks)
            state_epoch = stored.state_epoch + 1 if stored is not None else 0
        partition.move_start(p.log.local_log_start_offset)
        entry = ShareEntry(key, p.topic, p.index, partition, p.leader_epoch, state_epoch)
        if fresh:
            # Where it starts must outlive this leader. Refused (FENCED_STATE_EPOCH) if an
            # admin started the state meanwhile: the next fetch reads that.
            await self.persister.initialize(key, state_epoch, partition.start_offset)
        self.entries[(group_id, p.topic, p.index)] = entry
        log.info(
            "share group %s on %s-%d starts at offset %d%s",
            group_id,
            p.topic,
            p.index,
            partition.start_offset,
            "" if fresh else " (stored state)",
        )
        return entry

    @staticmethod
    def _reset_offset(p: Partition, reset: str) -> int:
        """Where a share group without state starts: the log start (earliest), the high
        watermark (latest), or the first record no older than a duration (by_duration:).
        With no record that recent, by_duration starts at the high watermark, as a consumer's
        by_duration does (Kafka's share partition fails the fetch instead)."""
        if reset == "earliest":
            return p.log.local_log_start_offset
        duration = by_duration(reset)
        if duration is not None:
            # Never below 0: negative timestamps are ListOffsets' specials (-1 latest, ...).
            since = max(int((time.time() - duration.total_seconds()) * 1000), 0)
            found = p.log.fetch_offset_by_timestamp(since)
            if found is not None:
                return max(min(found[0], p.high_watermark), p.log.local_log_start_offset)
        return p.high_watermark

    async def _persist(
        self, entry: ShareEntry, pending: PendingAcknowledgement | None = None
    ) -> None:
        """Store the partition's state, with ``pending``'s acknowledgements and no other's
        not yet stored (raises PersisterError). Refused when the share
        coordinator holds newer state than the entry was loaded from (an admin altered or
        deleted it, or a newer leader read it): the entry is dropped, and the next fetch
        loads what is stored."""
        try:
            async with entry.lock:
                sp = entry.partition
                state = ShareState(
                    entry.state_epoch,
                    entry.leader_epoch,
                    sp.stored_start_offset(pending),
                    tuple(sp.state_batches(pending)),
                )
                try:
                    await self.persister.write(entry.key, state)
                except PersisterError as e:
                    if e.code in STALE:
                        log.info(
                            "share group %s's state of %s-%d changed elsewhere (%s): "
                            "loading it again",
                            entry.key.group_id,
                            entry.topic,
                            entry.index,
                            e,
                        )
                        self._evict(entry)
                    raise
        finally:
            self._settled(entry)

    def _group_config(self, group_id: str) -> dict[str, int | str]:
        overrides = self.broker.image.group_configs.get(group_id, {})
        return share_group_config(overrides, self.broker.config)

    def fetch_settings(self, group_id: str) -> tuple[int, bool]:
        """The group's lock duration (ms) and whether it reads committed records only."""
        config = self._group_config(group_id)
        return (
            int(config[SHARE_LOCK_DURATION]),
            config[SHARE_ISOLATION_LEVEL] == "read_committed",
        )

    # --- acquiring -------------------------------------------------------------------------

    def acquire(
        self,
        entry: ShareEntry,
        p: Partition,
        member_id: str,
        max_records: int,
        max_bytes: int,
        lock_ms: int,
        read_committed: bool = False,
    ) -> Acquired | None:
        """Records for ``member_id``, locked for ``lock_ms`` (the group's
        share.record.lock.duration.ms): released ones first, else new ones below the high
        watermark, or with ``read_committed`` (share.isolation.level) below the last stable
        offset and without those of aborted transactions. None when there is nothing to
        hand out."""
        sp = entry.partition
        deadline = asyncio.get_running_loop().time() + lock_ms / 1000
        # Records no longer on this broker's disk (retention, DeleteRecords, or moved to the
        # remote tier, which share groups do not read) are skipped.
        if sp.move_start(p.log.local_log_start_offset):
            self._store_soon(entry)
        first = sp.first_available()
        if first is not None:
            # Released records, within the batches one read of max_bytes brings (whole
            # batches, at least one).
            data, last = self._read(p, first, max_bytes)
            if data:
                ranges = sp.acquire_available(member_id, max_records, deadline, up_to=last)
                if ranges:
                    self._watch_locks(deadline)
                    return Acquired(_slice(data, ranges[-1].last_offset), ranges)
        upper = p.log.last_stable_offset if read_committed else p.high_watermark
        start_offset = sp.start_offset
        try:
            # A read holding only aborted batches hands nothing out: read on, a few times.
            for _ in range(MAX_READS):
                if sp.window_full() or sp.next_offset >= upper:
                    return None
                try:
                    info = p.log.read(
                        sp.next_offset, _read_size(max_bytes), upper, True, read_committed
                    )
                except OffsetOutOfRangeError:
                    return None
                if info.records is None:
                    return None
                data = info.records.read_bytes()
                batches, aborted = _batches(p, data, upper, info.aborted_transactions)
                before = sp.next_offset
                ranges = sp.acquire_new(member_id, batches, max_records, deadline, aborted)
                if ranges:
                    self._watch_locks(deadline)
                    return Acquired(_slice(data, ranges[-1].last_offset), ranges)
                if sp.next_offset == before:
                    return None
            # Still only aborted records: the fetch parks now, and is woken once it has, to
            # read on (waiting out its max wait with committed records below would stall).
            asyncio.get_running_loop().call_soon(self._wake, entry)
            return None
        finally:
            if sp.start_offset != start_offset:
                self._store_soon(entry)  # aborted records done: the start offset moved

    def _read(self, p: Partition, first: int, max_bytes: int) -> tuple[bytes, int]:
        """Whole log batches from the one holding ``first``, about ``max_bytes`` of them (at
        least one), and the last offset they hold (-1 for none)."""
        try:
            info = p.log.read(first, _read_size(max_bytes), p.high_watermark, True)
        except OffsetOutOfRangeError:
            return b"", -1
        if info.records is None:
            return b"", -1
        data = info.records.read_bytes()
        last, end = -1, 0
        try:
            for pos, h in iter_batches(data):
                last, end = h.last_offset, pos + h.size
        except InvalidBatch as e:
            log.warning("unreadable batch in %s-%d: %s", p.topic, p.index, e)
        return data[:end], last

    # --- acknowledging, releasing ------------------------------------------------------------

    async def acknowledge(
        self, entry: ShareEntry, member_id: str, batches: list[AckBatch]
    ) -> tuple[int, str | None]:
        invalid = validate_ack_batches(batches)
        if invalid is not None:
            return ErrorCode.invalid_request, invalid
        code, message, pending = entry.partition.prepare_acknowledge(member_id, batches)
        if pending is None:
            return code, message
        # Answered only once stored; if it cannot be, the records go back to the member, so
        # that what the member is told and what a new leader loads agree (Kafka's rollback).
        # A request cancelled meanwhile (its connection closed) rolls back too: the records
        # may then come again, but are never lost.
        stored = False
        try:
            await self._persist(entry, pending)
            stored = True
        except PersisterError as e:
            code, message = e.code, str(e)
        except Exception as e:  # a connection to the share coordinator failed
            code, message = ErrorCode.coordinator_not_available, str(e)
        finally:
            entry.partition.complete(pending, stored=stored)
            deadline = None if stored else entry.partition.next_deadline()
            if deadline is not None:
                self._watch_locks(deadline)  # the locks it gave back run again
        if stored:
            self._wake(entry)
        return code, message

    def existing(
        self, group_id: str, topic: str, index: int, topic_id: uuid.UUID
    ) -> ShareEntry | None:
        """The share partition a member acknowledges records of, if it is still current:
        this broker leads the partition at the epoch it was loaded at (else its records
        were never acquired from the state the share coordinator now holds)."""
        entry = self.entries.get((group_id, topic, index))
        if entry is None or entry.key.topic_id != topic_id or not self._current(entry):
            return None
        return entry

    def _current(self, entry: ShareEntry) -> bool:
        """Whether this broker still leads the entry's partition at its epoch; an entry of a
        partition that moved, or was deleted, is dropped."""
        rm = self.broker.replica_manager
        p = rm.get(entry.topic, entry.index) if rm is not None else None
        if p is not None and p.is_leader and p.leader_epoch == entry.leader_epoch:
            return True
        pid = (entry.key.group_id, entry.topic, entry.index)
        if self.entries.get(pid) is entry:
            del self.entries[pid]
        return False

    def _evict(self, entry: ShareEntry) -> None:
        pid = (entry.key.group_id, entry.topic, entry.index)
        if self.entries.get(pid) is entry:
            del self.entries[pid]
            if entry.stores or entry.lock.locked():
                self._retired.setdefault(pid, []).append(entry)

    def _settled(self, entry: ShareEntry) -> None:
        """An entry's writes are done: if evicted, nobody need wait for it any more."""
        if entry.stores or entry.lock.locked():
            return
        pid = (entry.key.group_id, entry.topic, entry.index)
        retired = self._retired.get(pid)
        if retired is not None and entry in retired:
            retired.remove(entry)
            if not retired:
                del self._retired[pid]

    def session_closed(self, session: ShareSession) -> None:
        """A member's session ended (closed, replaced or its connection gone): its acquired
        records go back to the group. With the group's last session on this broker gone,
        its share partitions here are dropped, as Kafka does: while no member fetches, an
        admin may alter or delete their state, which the next fetch loads."""
        self.release(session.group_id, session.member_id, self._names(session.partitions))
        if self.sessions.has_group(session.group_id):
            return
        for entry in [e for e in self.entries.values() if e.key.group_id == session.group_id]:
            self._evict(entry)

    def release(self, group_id: str, member_id: str, partitions: Iterable[tuple[str, int]]) -> None:
        """A member's session ended: its acquired records go back to the group."""
        for topic, index in partitions:
            entry = self.entries.get((group_id, topic, index))
            if entry is None or not self._current(entry):
                continue
            if entry.partition.release_member(member_id):
                self._store_soon(entry)

    def connection_closed(self, connection: object) -> None:
        for session in self.sessions.of_connection(connection):
            self.sessions.remove(session)
            self.session_closed(session)

    def _names(self, keys: Iterable[tuple[uuid.UUID, int]]) -> list[tuple[str, int]]:
        by_id = self.broker.image.topics_by_id
        return [(by_id[t].name, i) for t, i in keys if t in by_id]

    def _wake(self, entry: ShareEntry) -> None:
        rm = self.broker.replica_manager
        if rm is not None:
            rm.purgatory.wake((entry.topic, entry.index))

    def _store_soon(self, entry: ShareEntry) -> None:
        """Store a change nobody waits for (a release, an expired lock), and wake fetches
        that may now acquire."""
        self._wake(entry)

        async def store() -> None:
            try:
                await self._persist(entry)
            except Exception as e:
                log.warning(
                    "could not store share group %s's state of %s-%d: %s",
                    entry.key.group_id,
                    entry.topic,
                    entry.index,
                    e,
                )

        task = asyncio.ensure_future(store())
        self._stores.add(task)
        entry.stores.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._stores.discard(task)
            entry.stores.discard(task)
            self._settled(entry)

        task.add_done_callback(done)
        self._start_expiry()

    # --- lock expiry ---------------------------------------------------------------------

    def _watch_locks(self, deadline: float) -> None:
        """New locks until ``deadline``: the expiry loop wakes to plan again only if it
        would sleep past it (groups' lock durations differ)."""
        self._start_expiry()
        if deadline < self._expiry_at:
            self._expiry_wakeup.set()

    def _start_expiry(self) -> None:
        if self._expiry is None or self._expiry.done():
            self._expiry = asyncio.ensure_future(self._expire_loop())

    async def _expire_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadlines = [
                d for e in self.entries.values() if (d := e.partition.next_deadline()) is not None
            ]
            wait = min(deadlines) - loop.time() if deadlines else 60.0
            self._expiry_at = min(deadlines) if deadlines else float("inf")
            self._expiry_wakeup.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._expiry_wakeup.wait()
                continue
            now = loop.time()
            for entry in list(self.entries.values()):
                if not self._current(entry):
                    continue
                if entry.partition.expire(now):
                    log.debug(
                        "acquisition locks expired in share group %s's %s-%d",
                        entry.key.group_id,
                        entry.topic,
                        entry.index,
                    )
                    self._store_soon(entry)

    def start(self) -> None:
        self._start_expiry()

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        self.persister.close()


# A write refused because the stored state moved on: the entry is out of date.
STALE = frozenset(
    {ErrorCode.fenced_state_epoch, ErrorCode.fenced_leader_epoch, ErrorCode.invalid_request}
)

# What one share fetch reads of a partition at most (at least one batch): a fetch takes a few
# hundred records (librdkafka's max.poll.records), so reading up to the request's max_bytes
# (fetch.max.bytes, 50 MiB) would copy far more than is handed out.
READ_CHUNK = 256 * 1024


MAX_READS = 8


def _batches(
    p: Partition, data: bytes, upper: int, aborted_txns: list[tuple[int, int]] | None
) -> tuple[list[tuple[int, int]], set[int]]:
    """The (base, last offset) of the log batches in ``data`` below ``upper``, and the base
    offsets of those of aborted transactions (read_committed: ``aborted_txns`` given), found
    as a consumer finds them (CleanedTransactionMetadata: a producer's batches are aborted
    from its aborted transaction's first offset until its marker)."""
    batches: list[tuple[int, int]] = []
    aborted: set[int] = set()
    txns = (
        CleanedTransactionMetadata(AbortedTxn(pid, first, -1, -1) for pid, first in aborted_txns)
        if aborted_txns
        else None
    )
    try:
        for pos, h in iter_batches(data):
            if h.base_offset >= upper:
                break
            batches.append((h.base_offset, h.last_offset))
            if txns is None:
                continue
            if h.is_control:
                txns.on_control_batch_read(h, data[pos : pos + h.size])
            elif txns.on_batch_read(h):
                aborted.add(h.base_offset)
    except InvalidBatch as e:
        log.warning("unreadable batch in %s-%d: %s", p.topic, p.index, e)
    return batches, aborted


def _read_size(max_bytes: int) -> int:
    return max(min(max_bytes, READ_CHUNK), 1)


def _slice(data: bytes, last_offset: int) -> bytes:
    """The leading batches of ``data`` up to the one holding ``last_offset``."""
    end = 0
    try:
        for pos, h in iter_batches(data):
            if h.base_offset > last_offset:
                break
            end = pos + h.size
    except InvalidBatch:
        pass
    return data[:end]
