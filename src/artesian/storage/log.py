"""The local log of one partition (Kafka's UnifiedLog, local part).

Segments are kept in base-offset order; the last one is active. Appends come from the event-loop
thread; ``flush`` may run on a worker thread at the same time: ``_lock`` guards only the
bookkeeping (segment list, offsets) and the fsyncs run outside it.

Deleted segments (retention, DeleteRecords, truncation) are renamed ``*.deleted`` and keep their
fd open until ``remove_deleted_segments`` runs ``file.delete.delay.ms`` later, so a fetch that
is still sendfile-ing from them never reads a reused fd.

Idempotent producers: ``producer_state`` (a ProducerStateManager) checks each append's producer
batches before it is written and answers a retried batch with its original offsets; it is
snapshotted at every roll and on close, and rebuilt at open from the latest snapshot plus the
batch headers after it (see ``producer_state.py``).

Transactions: a transactional batch opens its producer's transaction in this partition and a
marker (``append_transaction_marker``, a control batch the coordinator asks for) ends it. The
last stable offset (LSO) is the high watermark held back by the oldest open transaction;
read_committed fetches read up to it and get the aborted transactions overlapping what they
read, from the segments' aborted transaction indexes (``transaction_index.py``). After a crash
the indexes of recovered segments are rebuilt while producer state is replayed over them.

Tiered storage (``remote.storage.enable``): the log start offset may lie below the first local
segment, in segments the remote log manager (``tiered/``) copied to the object store. Reads
there raise OffsetMovedToTieredStorageError for the caller to serve remotely; local retention
(``local.retention.*``) deletes only segments already copied, and moves the local log start
offset only. The remote log manager moves the log start offset itself as remote retention
deletes remote segments.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from artesian.protocol.record_codec import (
    EndTransactionMarker,
    decode_end_txn_marker,
    decode_records,
    encode_control_batch,
)
from artesian.protocol.records import (
    ATTR_TIMESTAMP_TYPE,
    InvalidBatch,
    batch_crc_ok,
    iter_batches,
    patch_batch,
)
from artesian.storage.errors import (
    CorruptRecordError,
    OffsetMovedToTieredStorageError,
    OffsetOutOfRangeError,
    RecordBatchTooLargeError,
)
from artesian.storage.files import fsync_dir
from artesian.storage.leader_epoch import LEADER_EPOCH_CHECKPOINT, LeaderEpochFileCache
from artesian.storage.log_config import LogConfig
from artesian.storage.log_validator import LogAppendInfo, validate_and_assign_offsets
from artesian.storage.producer_state import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    BatchMetadata,
    ProducerAppend,
    ProducerStateManager,
)
from artesian.storage.segment import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    LOG_SUFFIX,
    SEGMENT_SUFFIXES,
    SWAP_SUFFIX,
    TXN_INDEX_SUFFIX,
    FileSlice,
    LogSegment,
    segment_file_name,
)
from artesian.storage.transaction_index import AbortedTxn

__all__ = [
    "EARLIEST_LOCAL_TIMESTAMP",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "MAX_TIMESTAMP",
    "FetchDataInfo",
    "Log",
    "LogOffsetMetadata",
]

LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL_TIMESTAMP = -4

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class LogOffsetMetadata:
    message_offset: int
    segment_base_offset: int = -1
    relative_position_in_segment: int = -1


@dataclass(slots=True)
class FetchDataInfo:
    fetch_offset_metadata: LogOffsetMetadata
    records: FileSlice | None  # None: nothing to send
    # read_committed only: (producer id, first offset) of aborted transactions overlapping
    # the records; None for read_uncommitted.
    aborted_transactions: list[tuple[int, int]] | None = None

    @property
    def size(self) -> int:
        return self.records.size if self.records is not None else 0


def _base_offset(seg: LogSegment) -> int:
    return seg.base_offset


def _parse_base_offset(name: str, suffix: str) -> int | None:
    stem = name[: -len(suffix)]
    return int(stem) if len(stem) == 20 and stem.isdigit() else None


def _base_offset_prefix(name: str) -> int | None:
    """Base offset of any segment file name (``<20 digits>.<suffixes>``)."""
    stem = name[:20]
    return int(stem) if len(name) > 20 and name[20] == "." and stem.isdigit() else None


def _unlink_if_exists(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Log:
    def __init__(
        self,
        directory: Path,
        topic: str,
        partition: int,
        config: LogConfig,
        now_ms: int,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        self.producer_state = ProducerStateManager(directory, producer_id_expiration_ms)
        self.dir = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self._lock = threading.RLock()
        self._segments: list[LogSegment] = []
        self._bases: list[int] = []
        self._deleted: list[tuple[int, LogSegment]] = []  # (remove at ms, segment)
        self._log_start_offset = 0
        self._log_end_offset = 0
        self._high_watermark = 0
        self._recovery_point = 0
        self._last_flush_ms = now_ms
        self._hw_position: tuple[int, int, int] | None = None  # (hw, segment base, position)
        self.leader_epoch_cache = LeaderEpochFileCache(directory / LEADER_EPOCH_CHECKPOINT)
        # Set by the remote log manager: the last offset copied to tiered storage (-1: none),
        # and whether it has listed the remote segments since start-up (until then a tiered
        # log takes no appends and serves no reads: its local end may be stale).
        self.highest_offset_in_remote_storage = -1
        self.remote_log_ready = True
        self.closed = False

    @property
    def dir(self) -> Path:
        return self._dir

    @dir.setter
    def dir(self, directory: Path) -> None:
        # LogManager renames the directory of a deleted log: snapshots follow it.
        self._dir = directory
        self.producer_state.dir = directory

    # -- opening and recovery ---------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        topic: str,
        partition: int,
        config: LogConfig,
        recovery_point: int,
        log_start_offset: int,
        now_ms: int,
        clean_shutdown: bool,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> Log:
        """Load (or create) the partition directory, recovering unflushed segments after a
        crash: every batch from the recovery point on is checked and the log is cut at the
        first torn or corrupt one; later segments are deleted."""
        directory.mkdir(parents=True, exist_ok=True)
        log = cls(directory, topic, partition, config, now_ms, producer_id_expiration_ms)
        log.leader_epoch_cache = LeaderEpochFileCache.load(directory / LEADER_EPOCH_CHECKPOINT)
        log._complete_swap_operations(now_ms)
        bases: list[int] = []
        for entry in os.scandir(directory):
            name = entry.name
            if name.endswith((DELETED_SUFFIX, ".tmp")):
                os.unlink(entry.path)  # leftovers of an interrupted delete or write
            elif name.endswith(LOG_SUFFIX):
                base = _parse_base_offset(name, LOG_SUFFIX)
                if base is not None:
                    bases.append(base)
        bases.sort()
        known = set(bases)
        txn_index_bases = set()
        for entry in os.scandir(directory):
            for suffix in SEGMENT_SUFFIXES[1:]:
                if entry.name.endswith(suffix):
                    base = _parse_base_offset(entry.name, suffix)
                    if base is not None and base not in known:
                        os.unlink(entry.path)  # orphan index
                    elif base is not None and suffix == TXN_INDEX_SUFFIX:
                        txn_index_bases.add(base)
        segments = [log._new_segment(base, now_ms) for base in bases]
        # Indexes that fail their sanity checks are rebuilt even after a clean shutdown.
        needs_recovery = [not seg.load() for seg in segments]
        if not clean_shutdown and segments:
            first = max(0, bisect_right(bases, recovery_point) - 1)
            for i in range(first, len(segments)):
                needs_recovery[i] = True
        # Segments whose aborted transaction index is rebuilt while producer state is replayed.
        rebuild_txn_index: list[LogSegment] = []
        for i, seg in enumerate(segments):
            if not needs_recovery[i]:
                if seg.base_offset in txn_index_bases and not seg.txn_index.load():
                    seg.txn_index.reset()  # torn or foreign: rebuilt from the markers
                    rebuild_txn_index.append(seg)
                log._add_segment(seg)
                continue
            truncated = seg.recover(config.max_message_bytes)
            seg.txn_index.reset()
            rebuild_txn_index.append(seg)
            log._add_segment(seg)
            if truncated:
                later = segments[i + 1 :] if not clean_shutdown else []
                logger.warning(
                    "%s-%d: %d bytes of torn or corrupt batches at the end of segment %d "
                    "(from offset %d) truncated%s; a follower fetches them again from its leader",
                    topic,
                    partition,
                    truncated,
                    seg.base_offset,
                    seg.next_offset,
                    f", and {len(later)} later segment(s) deleted" if later else "",
                )
            if truncated and not clean_shutdown:
                # Everything after a corruption is suspect: Kafka deletes the later segments.
                for later_segment in segments[i + 1 :]:
                    later_segment.delete()
                break
        if not log._segments:
            log._add_segment(log._new_segment(max(log_start_offset, 0), now_ms))
        log._log_end_offset = log._segments[-1].next_offset
        local_start = min(max(log_start_offset, log._segments[0].base_offset), log._log_end_offset)
        # A tiered log's start may lie in remote segments; the remote log manager checks it
        # against what the object store holds once it has listed it.
        remote_start = config.remote_storage_enable and 0 <= log_start_offset < local_start
        log._log_start_offset = log_start_offset if remote_start else local_start
        # After a crash, recovered bytes may still be only in the page cache: keep the old
        # recovery point so a second crash checks them again.
        log._recovery_point = (
            log._log_end_offset
            if clean_shutdown
            else min(max(recovery_point, log._log_start_offset), log._log_end_offset)
        )
        log._high_watermark = log._log_end_offset
        cache = log.leader_epoch_cache
        cache.truncate_from_end(log._log_end_offset)
        cache.truncate_from_start(log._log_start_offset)
        live = {id(seg) for seg in log._segments}
        log._rebuild_producer_state([s for s in rebuild_txn_index if id(s) in live])
        return log

    def _rebuild_producer_state(self, rebuild_txn_index: Sequence[LogSegment] = ()) -> None:
        """Latest snapshot at or below the LEO, then the producer batches after it, read from
        batch headers only, and the record of each control batch (Kafka's loadProducerState).

        The aborted transaction indexes of ``rebuild_txn_index`` (emptied by the caller) are
        refilled from the markers in them; replay then starts at a snapshot at or below the
        first of them, since their entries need the transactions open at their start."""
        ps = self.producer_state
        rebuild = {id(seg) for seg in rebuild_txn_index}
        upper_snapshot = self._log_end_offset
        if rebuild_txn_index:
            upper_snapshot = min(upper_snapshot, min(s.base_offset for s in rebuild_txn_index))
        start = ps.load_latest_snapshot(upper_snapshot) or 0
        segments = self._segments
        for i, seg in enumerate(segments):
            upper = segments[i + 1].base_offset if i + 1 < len(segments) else self._log_end_offset
            if upper <= start or seg.size == 0:
                continue
            pos = 0
            if start > seg.base_offset:
                found = seg.translate_offset(start)
                if found is None:
                    continue
                pos = found[0]
            index = seg.txn_index if id(seg) in rebuild else None
            try:
                for batch_pos, h in seg._scan(pos, seg.size):
                    if h.last_offset < start:
                        continue
                    if not (h.is_control and h.has_producer_id):
                        ps.apply_from_log(h)
                        continue
                    marker = seg.read_end_txn_marker(batch_pos, h)
                    completed = ps.apply_from_log(h, marker)
                    if completed is not None:
                        lso = ps.complete_txn(completed)
                        if index is not None and completed.is_aborted:
                            index.append(
                                AbortedTxn(
                                    completed.producer_id,
                                    completed.first_offset,
                                    completed.last_offset,
                                    lso,
                                )
                            )
            except InvalidBatch:
                continue  # recovery already cut torn batches; a bad header ends this segment
        ps.note_end_offset(self._log_end_offset)
        ps.delete_snapshots_before(segments[0].base_offset)

    def _take_producer_snapshot(self, now_ms: int | None, fsync: bool = False) -> None:
        try:
            self.producer_state.take_snapshot(now_ms, fsync)
        except OSError:
            pass  # only an optimisation: the next open replays more of the log

    def _new_segment(self, base_offset: int, now_ms: int) -> LogSegment:
        jitter = 0
        if self.config.segment_jitter_ms > 0:
            # Kafka draws a random jitter per segment; a hash of (partition, base offset)
            # spreads rolls just as well and keeps no random state.
            key = f"{self.topic}-{self.partition}-{base_offset}".encode()
            jitter = zlib.crc32(key) % min(self.config.segment_jitter_ms, self.config.segment_ms)
        return LogSegment(
            self.dir,
            base_offset,
            index_interval_bytes=self.config.index_interval_bytes,
            max_index_size=self.config.segment_index_bytes,
            now_ms=now_ms,
            roll_jitter_ms=jitter,
        )

    def _add_segment(self, segment: LogSegment) -> None:
        # Copy-on-write: readers on other threads use a snapshot of the list without a lock.
        self._segments = [*self._segments, segment]
        self._bases = [*self._bases, segment.base_offset]

    # -- properties ---------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def local_log_start_offset(self) -> int:
        """First offset held on local disk (the log start offset unless the log is tiered)."""
        return min(max(self._log_start_offset, self._bases[0]), self._log_end_offset)

    @property
    def remote_log_enabled(self) -> bool:
        return self.config.remote_storage_enable

    @property
    def log_end_offset(self) -> int:
        return self._log_end_offset

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @high_watermark.setter
    def high_watermark(self, offset: int) -> None:
        self._high_watermark = min(max(offset, self._log_start_offset), self._log_end_offset)

    @property
    def first_unstable_offset(self) -> int | None:
        """Start of the oldest open transaction, never below the log start offset (retention
        may have removed its first batches)."""
        first = self.producer_state.first_unstable_offset()
        return None if first is None else max(first, self._log_start_offset)

    @property
    def last_stable_offset(self) -> int:
        """Kafka's lastStableOffset: what read_committed consumers may read up to."""
        first = self.first_unstable_offset
        hw = self._high_watermark
        return hw if first is None or first >= hw else first

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def size_in_bytes(self) -> int:
        return sum(seg.size for seg in self._segments)

    @property
    def segments(self) -> list[LogSegment]:
        return list(self._segments)

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    @property
    def unflushed_messages(self) -> int:
        # Kafka's definition: everything past the recovery point (offsets, not batches).
        return max(0, self._log_end_offset - self._recovery_point)

    @property
    def latest_epoch(self) -> int:
        return self.leader_epoch_cache.latest_epoch

    # -- append -------------------------------------------------------------------------------

    def append_as_leader(
        self,
        records: bytearray | memoryview,
        leader_epoch: int,
        now_ms: int,
        from_coordinator: bool = False,
        checked: bytes | None = None,
    ) -> LogAppendInfo:
        """Validate, assign offsets from the LEO and append. Raises StorageError subclasses.
        ``checked``: see ``validate_and_assign_offsets``.

        A retried idempotent batch (a duplicate of one of its producer's last five) is not
        appended: the answer carries the original offsets and ``duplicate=True``.
        ``from_coordinator``: a coordinator's own write for a producer (TxnOffsetCommit),
        which carries no sequence: Kafka's COORDINATOR origin, checked for epoch only."""
        with self._lock:
            info = validate_and_assign_offsets(
                records,
                base_offset=self._log_end_offset,
                leader_epoch=leader_epoch,
                config=self.config,
                now_ms=now_ms,
                from_client=not from_coordinator,
                checked=checked,
            )
            if info.size > self.config.segment_bytes:
                raise RecordBatchTooLargeError(
                    f"{info.size} bytes of records exceed segment.bytes={self.config.segment_bytes}"
                )
            # Checked for every batch before any is written, as Kafka does.
            producer_append = self.producer_state.prepare_append(
                info.records, check_sequence=not from_coordinator
            )
            if producer_append.duplicate is not None:
                return self._duplicate_info(producer_append.duplicate, info)
            return self._append(info, producer_append, leader_epoch, now_ms)

    def append_transaction_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        leader_epoch: int,
        now_ms: int,
    ) -> LogAppendInfo:
        """Write a COMMIT or ABORT marker (a control batch) ending ``producer_id``'s
        transaction in this partition (Kafka's appendAsLeader with the coordinator origin).
        An aborted transaction goes into the aborted transaction index of the segment that
        holds the marker. Raises InvalidProducerEpochError (the marker's producer epoch is
        older than the producer's) or TransactionCoordinatorFencedError."""
        with self._lock:
            offset = self._log_end_offset
            producer_append = self.producer_state.prepare_marker(
                producer_id, producer_epoch, commit, coordinator_epoch, offset, now_ms
            )
            log_append = self.config.log_append_time
            batch = encode_control_batch(
                EndTransactionMarker(commit, coordinator_epoch),
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                timestamp=now_ms,
                base_offset=offset,
                attributes=ATTR_TIMESTAMP_TYPE if log_append else 0,
            )
            patch_batch(batch, 0, offset, leader_epoch)  # not CRC-covered
            info = LogAppendInfo(
                first_offset=offset,
                last_offset=offset,
                max_timestamp=now_ms,
                offset_of_max_timestamp=offset,
                log_append_time=now_ms if log_append else -1,
                records=batch,
                batch_count=1,
                records_count=1,
                first_batch_timestamp=now_ms,
            )
            return self._append(info, producer_append, leader_epoch, now_ms)

    def append_as_follower(self, records: bytes | bytearray | memoryview, now_ms: int) -> int:
        """Append batches copied from the leader, offsets and leader epochs as they are
        (Kafka's appendAsFollower). Each batch's CRC is checked and offsets must move forward
        from the log end; a partial batch at the end is left for the next fetch. Producer
        state and the transaction index follow the batches, as on replay. Returns the number
        of bytes appended. Raises CorruptRecordError."""
        view = memoryview(records)
        with self._lock:
            appended = 0
            try:
                batches = list(iter_batches(view))
            except InvalidBatch as e:
                raise CorruptRecordError(f"replicated batch header is invalid: {e}") from None
            for pos, h in batches:
                if h.base_offset < self._log_end_offset:
                    raise CorruptRecordError(
                        f"replicated batch at offset {h.base_offset} is below the log end "
                        f"offset {self._log_end_offset}"
                    )
                if not batch_crc_ok(view, pos, h):
                    raise CorruptRecordError(f"replicated batch at offset {h.base_offset}: bad CRC")
                batch = view[pos : pos + h.size]
                info = LogAppendInfo(
                    first_offset=h.base_offset,
                    last_offset=h.last_offset,
                    max_timestamp=h.max_timestamp,
                    offset_of_max_timestamp=h.last_offset,
                    log_append_time=-1,
                    records=batch,
                    batch_count=1,
                    records_count=h.records_count,
                    first_batch_timestamp=h.base_timestamp,
                )
                marker = None
                if h.is_control and h.has_producer_id:
                    try:
                        first = next(iter(decode_records(batch, h)), None)
                        marker = decode_end_txn_marker(first) if first is not None else None
                    except InvalidBatch as e:
                        raise CorruptRecordError(f"replicated control batch: {e}") from None
                segment = self._maybe_roll(info, now_ms)
                segment.append(h.last_offset, h.max_timestamp, h.last_offset, batch)
                self._log_end_offset = h.next_offset
                epoch = h.partition_leader_epoch
                if epoch >= 0 and epoch > self.leader_epoch_cache.latest_epoch:
                    self.leader_epoch_cache.assign(epoch, h.base_offset)
                ps = self.producer_state
                completed = ps.apply_from_log(h, marker)
                ps.note_end_offset(self._log_end_offset)
                if completed is not None:
                    lso = ps.complete_txn(completed)
                    if completed.is_aborted:
                        segment.txn_index.append(
                            AbortedTxn(
                                completed.producer_id,
                                completed.first_offset,
                                completed.last_offset,
                                lso,
                            )
                        )
                appended += h.size
            return appended

    def _append(
        self,
        info: LogAppendInfo,
        producer_append: ProducerAppend,
        leader_epoch: int,
        now_ms: int,
    ) -> LogAppendInfo:
        """Write checked batches at the LEO: roll if due, append, move the LEO, record the
        leader epoch and the producers' new state. Under the lock."""
        segment = self._maybe_roll(info, now_ms)
        segment.append(
            info.last_offset, info.max_timestamp, info.offset_of_max_timestamp, info.records
        )
        self._log_end_offset = info.last_offset + 1
        if leader_epoch >= 0 and leader_epoch > self.leader_epoch_cache.latest_epoch:
            self.leader_epoch_cache.assign(leader_epoch, info.first_offset)
        ps = self.producer_state
        ps.complete_append(producer_append, self._log_end_offset)
        completed = producer_append.completed_txn
        if completed is not None:
            lso = ps.complete_txn(completed)
            if completed.is_aborted:
                segment.txn_index.append(
                    AbortedTxn(
                        completed.producer_id, completed.first_offset, completed.last_offset, lso
                    )
                )
        info.log_start_offset = self._log_start_offset
        return info

    def _duplicate_info(self, dup: BatchMetadata, info: LogAppendInfo) -> LogAppendInfo:
        return LogAppendInfo(
            first_offset=dup.first_offset,
            last_offset=dup.last_offset,
            max_timestamp=dup.max_timestamp,
            offset_of_max_timestamp=dup.last_offset,
            log_append_time=dup.max_timestamp if self.config.log_append_time else -1,
            records=info.records,
            batch_count=0,
            records_count=0,
            first_batch_timestamp=info.first_batch_timestamp,
            log_start_offset=self._log_start_offset,
            duplicate=True,
        )

    def _maybe_roll(self, info: LogAppendInfo, now_ms: int) -> LogSegment:
        seg = self._segments[-1]
        config = self.config
        if seg.size == 0:
            return seg
        if (
            seg.size > config.segment_bytes - info.size
            or seg.time_waited_for_roll(now_ms, info.max_timestamp)
            > config.segment_ms - seg.roll_jitter_ms
            or seg.indexes_full
            or not seg.can_hold(info.last_offset)
        ):
            return self._roll(now_ms)
        return seg

    def roll(self, now_ms: int) -> LogSegment:
        with self._lock:
            return self._roll(now_ms)

    def _roll(self, now_ms: int) -> LogSegment:
        active = self._segments[-1]
        if active.size == 0:
            return active
        active.on_become_inactive()
        seg = self._new_segment(self._log_end_offset, now_ms)
        self._add_segment(seg)
        # Kafka snapshots producer state at every roll, so a restart replays one segment at most.
        self._take_producer_snapshot(now_ms)
        return seg

    # -- read ---------------------------------------------------------------------------------

    def read(
        self,
        fetch_offset: int,
        max_bytes: int,
        isolation_max_offset: int | None = None,
        min_one_message: bool = True,
        read_committed: bool = False,
    ) -> FetchDataInfo:
        """Bytes from the batch holding ``fetch_offset``, never past the batch holding
        ``isolation_max_offset`` (exclusive; HW or LEO, or the LSO for read_committed).
        Raises OffsetOutOfRangeError outside [log_start_offset, log_end_offset].

        ``read_committed`` (the caller passes the LSO; None means the LSO) also collects the
        aborted transactions overlapping [fetch_offset, upper bound), where the upper bound is
        the end of the segment read, capped by ``isolation_max_offset``: the exact offset after
        the last returned batch would need a scan, and entries beyond the returned records are
        ignored by consumers (Kafka falls back to the same bound)."""
        leo = self._log_end_offset
        segments = self._segments
        if fetch_offset < self._log_start_offset or fetch_offset > leo:
            raise OffsetOutOfRangeError(
                f"offset {fetch_offset} is outside [{self._log_start_offset}, {leo}] "
                f"of {self.topic}-{self.partition}"
            )
        if fetch_offset < self._bases[0]:  # below the local log (at or above the log start)
            raise OffsetMovedToTieredStorageError(
                f"offset {fetch_offset} of {self.topic}-{self.partition} is below the local "
                f"log start offset {self.local_log_start_offset}"
            )
        if read_committed and isolation_max_offset is None:
            isolation_max_offset = self.last_stable_offset
        aborted: list[tuple[int, int]] | None = [] if read_committed else None
        max_offset = leo if isolation_max_offset is None else min(isolation_max_offset, leo)
        if fetch_offset >= max_offset:
            return FetchDataInfo(LogOffsetMetadata(fetch_offset), None, aborted)
        i = bisect_right(segments, fetch_offset, key=_base_offset) - 1
        while i < len(segments):
            seg = segments[i]
            nxt = segments[i + 1].base_offset if i + 1 < len(segments) else leo + 1
            max_position = self._position_limit(seg, nxt, max_offset, leo)
            if max_position is None:
                break
            slice_ = seg.read(fetch_offset, max_bytes, max_position, min_one_message)
            if slice_ is not None:
                meta = LogOffsetMetadata(fetch_offset, seg.base_offset, slice_.position)
                if slice_.size <= 0:
                    return FetchDataInfo(meta, None, aborted)
                if read_committed:
                    upper = min(max_offset, nxt)
                    aborted = [
                        (t.producer_id, t.first_offset)
                        for t in self._collect_aborted(segments, i, fetch_offset, upper)
                    ]
                return FetchDataInfo(meta, slice_, aborted)
            i += 1
        return FetchDataInfo(LogOffsetMetadata(fetch_offset), None, aborted)

    def collect_aborted_transactions(
        self, start_offset: int, upper_bound_offset: int
    ) -> list[AbortedTxn]:
        """Aborted transactions overlapping [start_offset, upper_bound_offset), from the
        indexes of the segment holding ``start_offset`` onward (Kafka's
        collectAbortedTransactions). A transaction's entry lies in its marker's segment."""
        segments = self._segments
        i = max(0, bisect_right(segments, start_offset, key=_base_offset) - 1)
        return self._collect_aborted(segments, i, start_offset, upper_bound_offset)

    @staticmethod
    def _collect_aborted(
        segments: Sequence[LogSegment], first: int, start_offset: int, upper_bound_offset: int
    ) -> list[AbortedTxn]:
        out: list[AbortedTxn] = []
        for seg in segments[first:]:
            if not seg.txn_index.entries:
                continue
            found = seg.txn_index.search(start_offset, upper_bound_offset)
            out += found.aborted
            if found.is_complete:
                break
        return out

    def _position_limit(self, seg: LogSegment, nxt: int, max_offset: int, leo: int) -> int | None:
        """File position in ``seg`` where ``max_offset`` starts; None if the segment starts
        at or after it."""
        if seg.base_offset >= max_offset and seg.size:
            return None
        if max_offset >= leo or max_offset >= nxt:
            return seg.size
        cached = self._hw_position
        if cached is not None and cached[0] == max_offset and cached[1] == seg.base_offset:
            return cached[2]
        found = seg.translate_offset(max_offset)
        pos = found[0] if found is not None else seg.size
        self._hw_position = (max_offset, seg.base_offset, pos)
        return pos

    # -- ListOffsets --------------------------------------------------------------------------

    def fetch_offset_by_timestamp(self, timestamp: int) -> tuple[int, int, int] | None:
        """ListOffsets: (offset, timestamp, leader epoch) or None.

        Specials: -1 latest (LEO), -2 earliest (log start), -3 max timestamp, -4 earliest local.
        Answers are at record level, as Kafka 3.8+ gives them: -3 is the first record with the
        largest timestamp, and a real timestamp finds the first record at or after it. Indexes
        and batch headers narrow the search to one batch, which alone is decoded.
        """
        cache = self.leader_epoch_cache
        if timestamp in (EARLIEST_TIMESTAMP, EARLIEST_LOCAL_TIMESTAMP):
            start = (
                self._log_start_offset
                if timestamp == EARLIEST_TIMESTAMP
                else self.local_log_start_offset
            )
            return start, -1, cache.epoch_for_offset(start)
        if timestamp == LATEST_TIMESTAMP:
            leo = self._log_end_offset
            return leo, -1, cache.latest_epoch
        segments = self._segments
        if timestamp == MAX_TIMESTAMP:
            best: LogSegment | None = None
            for seg in segments:
                if seg.size and (best is None or seg.max_timestamp > best.max_timestamp):
                    best = seg
            if best is None:
                return None
            exact = best.offset_of_timestamp(best.max_timestamp)
            off = exact if exact is not None else best.offset_of_max_timestamp
            # The epoch of the batch itself, as Kafka: the record may lie below a log start
            # offset moved by DeleteRecords, where the epoch cache no longer reaches.
            holder = best.translate_offset(off)
            epoch = holder[1].partition_leader_epoch if holder is not None else -1
            return off, best.max_timestamp, epoch if epoch >= 0 else -1
        if timestamp < 0:
            return None
        lso = self.local_log_start_offset
        for seg in segments:
            if seg.max_timestamp < timestamp or seg.next_offset <= lso:
                continue
            found = seg.find_offset_by_timestamp(timestamp, lso)
            if found is not None:
                return found[0], found[1], cache.epoch_for_offset(found[0])
        return None

    # -- DeleteRecords and retention ----------------------------------------------------------

    def delete_records_before(self, offset: int, now_ms: int = 0) -> int:
        """DeleteRecords: move the log start offset to ``offset`` (-1: the high watermark) and
        delete segments wholly below it. Returns the new log start offset."""
        with self._lock:
            if offset == -1:
                offset = self._high_watermark
            if offset > self._high_watermark or offset < 0:
                raise OffsetOutOfRangeError(
                    f"cannot delete records before {offset}: high watermark is "
                    f"{self._high_watermark}"
                )
            return self._increment_log_start_offset(offset, now_ms)

    def maybe_increment_log_start_offset(self, offset: int, now_ms: int) -> int:
        """Remote retention deleted the remote segments below ``offset``."""
        with self._lock:
            return self._increment_log_start_offset(min(offset, self._high_watermark), now_ms)

    def _increment_log_start_offset(self, offset: int, now_ms: int) -> int:
        if offset > self._log_start_offset:
            self._log_start_offset = offset
            self.leader_epoch_cache.truncate_from_start(offset)
        if self._delete_start_breached(now_ms):
            self.producer_state.delete_snapshots_before(self._bases[0])
        return self._log_start_offset

    def _delete_start_breached(self, now_ms: int) -> int:
        n = 0
        while len(self._segments) > 1 and self._bases[1] <= self._log_start_offset:
            self._remove_first_segment(now_ms)
            n += 1
        return n

    def delete_old_segments(self, now_ms: int) -> int:
        """Retention: segments below the log start offset always; with cleanup.policy=delete
        also by retention.bytes and retention.ms (Kafka's order). Returns segments deleted.

        A tiered log keeps local.retention.bytes/ms locally (-2: retention.*) and deletes only
        segments already copied to remote storage; the remote log manager applies
        retention.bytes/ms to the whole log."""
        with self._lock:
            self.producer_state.remove_expired(now_ms)
            deleted = self._delete_start_breached(now_ms)
            config = self.config
            if not config.delete_enabled:
                if deleted:
                    self.producer_state.delete_snapshots_before(self._bases[0])
                return deleted
            retention_bytes, retention_ms = config.retention_bytes, config.retention_ms
            if config.remote_storage_enable and not config.remote_log_copy_disable:
                if config.local_retention_bytes != -2:
                    retention_bytes = config.local_retention_bytes
                if config.local_retention_ms != -2:
                    retention_ms = config.local_retention_ms
            if retention_bytes >= 0:
                diff = self.size_in_bytes - retention_bytes

                def by_size(seg: LogSegment) -> bool:
                    nonlocal diff
                    if diff - seg.size >= 0:
                        diff -= seg.size
                        return True
                    return False

                deleted += self._delete_while(by_size, now_ms)
            if retention_ms >= 0:
                limit = now_ms - retention_ms
                deleted += self._delete_while(lambda s: s.largest_timestamp() < limit, now_ms)
            if deleted:
                self.producer_state.delete_snapshots_before(self._bases[0])
            return deleted

    def _delete_while(self, predicate: object, now_ms: int) -> int:
        assert callable(predicate)
        count = 0
        # With copying off (remote.log.copy.disable) the local log keeps Kafka's plain
        # retention: nothing new reaches remote storage to wait for.
        tiered = self.config.remote_storage_enable and not self.config.remote_log_copy_disable
        for i, seg in enumerate(self._segments):
            upper = self._bases[i + 1] if i + 1 < len(self._bases) else self._log_end_offset
            active = i + 1 == len(self._segments)
            if self._high_watermark < upper or (active and seg.size == 0):
                break
            if tiered and upper - 1 > self.highest_offset_in_remote_storage:
                if active and predicate(seg):
                    # The active segment breaches retention: roll it, so it is copied and
                    # then deleted, rather than kept (and read) until segment.ms rolls it on
                    # a quiet topic (Kafka's KAFKA-15047). Flushed, as copies wait for it.
                    self._roll(now_ms)
                    self.flush(self._log_end_offset, now_ms)
                break  # not in remote storage yet: keep it
            if not predicate(seg):
                break
            count += 1
        if count == 0:
            return 0
        if count == len(self._segments):
            self._roll(now_ms)  # keep an (empty) active segment
        for _ in range(count):
            self._remove_first_segment(now_ms)
        if not tiered:  # remote copies stopped too: the log starts where the local one does
            self._log_start_offset = max(self._log_start_offset, self._bases[0])
            self.leader_epoch_cache.truncate_from_start(self._log_start_offset)
        return count

    def _remove_first_segment(self, now_ms: int) -> None:
        seg = self._segments[0]
        self._segments = self._segments[1:]
        self._bases = self._bases[1:]
        self._schedule_delete(seg, now_ms)

    # -- tiered storage ------------------------------------------------------------------------

    def segments_to_copy(self) -> list[tuple[LogSegment, int]]:
        """(segment, next segment's base offset) of rolled segments past the highest offset
        in remote storage, whose offsets are all stable and flushed. Kafka bounds the copy by
        the last stable offset; a single replica also waits for the recovery point, so that
        remote storage never holds offsets a crash could cut from the local log."""
        segments, bases = self._segments, self._bases
        limit = min(self.last_stable_offset, self._recovery_point)
        highest = self.highest_offset_in_remote_storage
        out = []
        for i in range(len(segments) - 1):
            nxt = bases[i + 1]
            if nxt > limit:
                break
            if nxt - 1 > highest and segments[i].size > 0 and bases[i] > highest:
                out.append((segments[i], nxt))
        return out

    def leader_epochs_between(self, start_offset: int, end_offset: int) -> list[tuple[int, int]]:
        """(epoch, start offset) of the leader epochs that wrote [start_offset, end_offset]."""
        entries = self.leader_epoch_cache.entries
        out = [(e, max(o, start_offset)) for e, o in entries if o <= end_offset]
        # Only the epoch in effect at start_offset and those starting after it.
        first = max((i for i, (_, o) in enumerate(out) if o <= start_offset), default=0)
        return out[first:]

    def reconcile_remote_log_start(self, remote_start: int | None) -> None:
        """Once the remote segments are listed: the log start offset lies at the first of
        them, or, without any below the local log, at the local log's start."""
        with self._lock:
            first_local = self._bases[0]
            if remote_start is None or remote_start >= first_local:
                start = max(self._log_start_offset, first_local)
            else:
                start = max(self._log_start_offset, remote_start)
            self._log_start_offset = min(start, self._log_end_offset)
            self.leader_epoch_cache.truncate_from_start(self._log_start_offset)

    def truncate_fully_and_start_at(self, offset: int, log_start_offset: int, now_ms: int) -> None:
        """Empty the local log and continue it at ``offset`` (Kafka's truncateFullyAndStartAt):
        a broker whose disk lost what tiered storage holds restarts the log after it, so no
        offset is ever handed out twice."""
        with self._lock:
            for seg in self._segments:
                self._schedule_delete(seg, now_ms)
            self._segments, self._bases = [], []
            self._add_segment(self._new_segment(offset, now_ms))
            self._log_end_offset = self._high_watermark = self._recovery_point = offset
            self._log_start_offset = min(log_start_offset, offset)
            self._hw_position = None
            self.leader_epoch_cache.clear()  # the caller assigns the remote segments' epochs
            self.producer_state.delete_snapshots_after(-1)
            self.producer_state.load_latest_snapshot(offset)
            self.producer_state.note_end_offset(offset)

    # -- log compaction: swapping cleaned segments in -------------------------------------------

    def replace_segments(
        self,
        cleaned: LogSegment,
        old: Sequence[LogSegment],
        now_ms: int,
        old_sizes: Sequence[int] | None = None,
    ) -> bool:
        """Swap in the cleaner's output (Kafka's replaceSegments). ``cleaned`` holds the
        consecutive non-active segments ``old`` compacted, written with the ``.cleaned`` suffix
        and flushed, at ``old[0]``'s base offset.

        Under the lock: rename it ``.swap``, replace ``old`` in the (copy-on-write) list,
        rename ``old`` ``.deleted`` (their fds stay open for file.delete.delay.ms, so fetches
        still reading them are safe) and drop the ``.swap`` suffix. A crash between any two
        renames leaves files that :meth:`open` completes or rolls back. Returns False, deleting
        ``cleaned``, if the log changed meanwhile (retention, truncation, close)."""
        with self._lock:
            segs = self._segments
            start = next((i for i, s in enumerate(segs) if s is old[0]), -1)
            ok = (
                not self.closed
                and bool(old)
                and start >= 0
                and start + len(old) < len(segs)  # never the active segment
                and cleaned.base_offset == old[0].base_offset
                and all(segs[start + j] is seg for j, seg in enumerate(old))
                and (old_sizes is None or [s.size for s in old] == list(old_sizes))
            )
            if not ok:
                cleaned.delete()
                return False
            # As Kafka's deleteProducerSnapshots: a snapshot inside the rewritten range may
            # hold a transaction open whose marker the cleaner removed; replaying from it
            # would never see it end. The one at the next segment's base stays valid. First,
            # so a crash in the renames below cannot leave one (deleting is always safe).
            self.producer_state.delete_snapshots_in(
                cleaned.base_offset, segs[start + len(old)].base_offset
            )
            cleaned.change_file_suffix(SWAP_SUFFIX)
            self._segments = [*segs[:start], cleaned, *segs[start + len(old) :]]
            self._bases = [s.base_offset for s in self._segments]
            for seg in old:
                self._schedule_delete(seg, now_ms)
            cleaned.change_file_suffix("")
            return True

    def _complete_swap_operations(self, now_ms: int) -> None:
        """At open, finish or roll back a cleaner swap that a crash interrupted (Kafka's
        LogLoader). ``.cleaned`` files are unfinished output and go, with any ``.swap`` at or
        above the lowest of them (its group was still being renamed). A remaining ``.swap``
        segment is complete: the regular segments whose base offsets fall in its offset range
        are deleted and it loses its suffix, as the interrupted swap would have done."""
        directory = self.dir
        cleaned: list[tuple[int, str]] = []
        swaps: list[tuple[int, str]] = []
        for entry in os.scandir(directory):
            base = _base_offset_prefix(entry.name)
            if base is None:
                continue
            if entry.name.endswith(CLEANED_SUFFIX):
                cleaned.append((base, entry.path))
            elif entry.name.endswith(SWAP_SUFFIX):
                swaps.append((base, entry.path))
        if not cleaned and not swaps:
            return
        min_cleaned = min((b for b, _ in cleaned), default=None)
        for _, path in cleaned:
            _unlink_if_exists(path)
        valid: list[tuple[int, str]] = []
        for base, path in swaps:
            if min_cleaned is not None and base >= min_cleaned:
                _unlink_if_exists(path)
            else:
                valid.append((base, path))
        log_swap = segment_file_name(0, LOG_SUFFIX + SWAP_SUFFIX)[20:]
        for base in sorted(b for b, p in valid if p.endswith(log_swap)):
            seg = LogSegment(
                directory,
                base,
                index_interval_bytes=self.config.index_interval_bytes,
                max_index_size=self.config.segment_index_bytes,
                now_ms=now_ms,
                file_suffix=SWAP_SUFFIX,
            )
            seg.recover(self.config.max_message_bytes)
            end = max(seg.next_offset, base + 1)
            for entry in os.scandir(directory):
                old = (
                    _parse_base_offset(entry.name, LOG_SUFFIX)
                    if entry.name.endswith(LOG_SUFFIX)
                    else None
                )
                if old is not None and base <= old < end:
                    for suffix in SEGMENT_SUFFIXES:
                        _unlink_if_exists(str(directory / segment_file_name(old, suffix)))
            seg.change_file_suffix("")
            seg.close()
        # Index files still ``.swap`` whose log was already renamed: that swap was finishing.
        for _, path in valid:
            if os.path.exists(path):
                os.replace(path, path[: -len(SWAP_SUFFIX)])

    def _schedule_delete(self, seg: LogSegment, now_ms: int) -> None:
        seg.change_file_suffix(DELETED_SUFFIX)
        self._deleted.append((now_ms + self.config.file_delete_delay_ms, seg))
        self._hw_position = None

    def remove_deleted_segments(self, now_ms: int) -> int:
        """Physically remove segments deleted at least file.delete.delay.ms ago."""
        with self._lock:
            due = [seg for t, seg in self._deleted if t <= now_ms]
            self._deleted = [(t, seg) for t, seg in self._deleted if t > now_ms]
        for seg in due:
            seg.delete()
        return len(due)

    # -- flush --------------------------------------------------------------------------------

    def needs_flush(self, now_ms: int) -> bool:
        """flush.messages or flush.ms says so: the caller flushes before acknowledging."""
        n = self.unflushed_messages
        if n <= 0:
            return False
        return (
            n >= self.config.flush_messages or now_ms - self._last_flush_ms >= self.config.flush_ms
        )

    def flush(self, up_to_offset: int | None = None, now_ms: int | None = None) -> None:
        """fsync the segments holding [recovery point, up_to_offset) (default: the LEO) and
        move the recovery point. Safe to call from a worker thread while appends go on."""
        with self._lock:
            target = self._log_end_offset if up_to_offset is None else up_to_offset
            target = min(target, self._log_end_offset)
            if target <= self._recovery_point:
                return
            first = max(0, bisect_right(self._bases, self._recovery_point) - 1)
            last = bisect_right(self._bases, target - 1)
            to_flush = self._segments[first : max(last, first + 1)]
            old_recovery_point = self._recovery_point
        for seg in to_flush:
            seg.flush()
        if any(seg.base_offset > old_recovery_point for seg in to_flush):
            # A segment created since the last flush: its directory entry must be durable too.
            fsync_dir(self.dir)
        with self._lock:
            self._recovery_point = max(self._recovery_point, target)
            if now_ms is not None:
                self._last_flush_ms = now_ms

    def needs_roll_flush(self) -> bool:
        """Rolled segments not yet on disk: Kafka flushes up to the new active segment in the
        background after every roll, so the recovery point follows the rolls."""
        return self._recovery_point < self._segments[-1].base_offset

    @property
    def active_base_offset(self) -> int:
        return self._segments[-1].base_offset

    # -- truncation, config, close --------------------------------------------------------------

    def truncate_to(self, offset: int, now_ms: int = 0) -> bool:
        """Follower truncation: remove offsets >= ``offset``. False if there was nothing."""
        with self._lock:
            if offset < 0:
                raise ValueError("cannot truncate to a negative offset")
            if offset >= self._log_end_offset:
                return False
            while len(self._segments) > 1 and self._bases[-1] >= offset:
                seg = self._segments[-1]
                self._segments = self._segments[:-1]
                self._bases = self._bases[:-1]
                self._schedule_delete(seg, now_ms)
            if self._bases[0] >= offset:
                # Everything goes: restart the log at ``offset`` (Kafka's truncateFullyAndStartAt).
                seg = self._segments[0]
                self._segments, self._bases = [], []
                self._schedule_delete(seg, now_ms)
                self._add_segment(self._new_segment(offset, now_ms))
                self._log_start_offset = offset
            else:
                self._segments[-1].truncate_to(offset)
            self._log_end_offset = offset
            self._high_watermark = min(self._high_watermark, offset)
            self._recovery_point = min(self._recovery_point, offset)
            self._hw_position = None
            self.leader_epoch_cache.truncate_from_end(offset)
            self._rebuild_producer_state()
            return True

    def update_config(self, config: LogConfig) -> None:
        with self._lock:
            self.config = config
            for seg in self._segments:
                seg.index_interval_bytes = config.index_interval_bytes

    def close(self) -> None:
        """Clean close: write the indexes and close the files (no fsync: see flush)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            # At the LEO: the next open loads it and replays nothing.
            self._take_producer_snapshot(None, fsync=True)
            for seg in self._segments:
                seg.close()
            for _, seg in self._deleted:
                seg.close_handlers()

    def delete(self) -> None:
        """Close and remove the whole partition directory now."""
        with self._lock:
            self.closed = True
            for seg in self._segments:
                seg.close_handlers()
            for _, seg in self._deleted:
                seg.close_handlers()
            self._segments, self._bases = [], []
            self._deleted.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        return (
            f"Log({self.topic}-{self.partition}, start={self._log_start_offset}, "
            f"end={self._log_end_offset}, segments={len(self._segments)})"
        )
