"""Log compaction for topics with ``cleanup.policy=compact`` (Kafka's LogCleaner, Cleaner,
LogCleanerManager and OffsetMap).

One cleaning round (:meth:`LogCleaner.clean_once`) picks the filthiest compacted log, maps
every key of its dirty section to the key's latest offset, then rewrites the log from its start
up to where the map ends, group of segments by group, keeping only each key's latest record:

- The dirty section starts at the log's ``cleaner-offset-checkpoint`` entry (Kafka's text
  format, in the data dir) and ends at the first uncleanable offset: the active segment, the
  last stable offset (the high watermark, or the start of the oldest open transaction) and the
  first segment newer than ``min.compaction.lag.ms``, rounded down to a segment base. A log is
  cleaned when its dirty ratio exceeds ``min.cleanable.dirty.ratio`` or when a dirty segment
  is older than ``max.compaction.lag.ms``.
- Offsets never change: a rewritten batch keeps its base offset, its last offset delta (as
  Kafka's v2 ``overrideLastOffset``), producer id/epoch/base sequence, partition leader epoch,
  codec (recompressed at the codec's default level) and timestamp type; each record keeps its
  bytes, only its timestamp delta is re-encoded when the base timestamp changes.
- Tombstones (null values) that are latest for their key get a delete horizon the first time
  they are cleaned (KIP-534: attribute bit 6 set, base timestamp = now + delete.retention.ms)
  and are dropped by the first cleaning after it. As in Kafka, that cleaning happens when the
  log is next cleanable; an expired horizon alone does not trigger one.
- A batch left without records is dropped, unless it has a producer id and is its producer's
  last batch: then, as Kafka's RETAIN_EMPTY, an empty batch header (no records, same offsets,
  sequence and epoch) is kept, so the producer's sequence survives a restart's state rebuild.
- Records without a key are dropped (Kafka counts them as invalid; the validator refuses them
  at produce time on compacted topics).
- Transactions: the aborted transactions of a range come from the segments' aborted
  transaction indexes (Kafka's CleanedTransactionMetadata tracks them while reading in offset
  order). Their records never enter the offset map, so they cannot shadow a committed value of
  the same key, and they are dropped when their segment is rewritten (an emptied batch that is
  its producer's last keeps its header, as above). Committed transactional records are
  compacted like any others. A marker stays while a batch of its transaction is kept; then it
  gets a delete horizon (delete.retention.ms) and goes at the first cleaning after it, its
  aborted-transaction index entry with it (see TransactionsKept). Other control records stay.

Cleaned groups are written as ``.cleaned`` files and swapped in by ``Log.replace_segments``;
``Log.open`` completes or rolls back a swap a crash interrupted. Replaced segments become
``.deleted`` and keep their fds open for ``file.delete.delay.ms``, so fetches keep working.

Where we differ from Kafka: the offset map is a dict keyed by the key bytes (exact, where Kafka
keys 24-byte slots by an MD5 of the key); its capacity is still Kafka's slot count for
``log.cleaner.dedupe.buffer.size``, though Python's memory per entry is larger. The cleaner
does not pause retention of
``compact,delete`` logs: a swap whose segments changed meanwhile is abandoned and retried.
Whether a marker's transaction still has batches is judged over the whole round (the log from
its start), where Kafka judges it per group of segments.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from artesian.protocol.compression import DEFAULT_MAX_DECOMPRESSED_SIZE, compress, decompress
from artesian.protocol.record_codec import (
    decode_end_txn_marker,
    decode_records,
    read_varint,
    write_varint,
)
from artesian.protocol.records import (
    ATTR_CONTROL,
    ATTR_DELETE_HORIZON,
    ATTR_TIMESTAMP_TYPE,
    ATTR_TRANSACTIONAL,
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    InvalidBatch,
    batch_crc_ok,
    read_batch_header,
    set_crc,
)
from artesian.storage.log import Log
from artesian.storage.log_manager import (
    LogManager,
    TopicPartition,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from artesian.storage.segment import (
    CLEANED_SUFFIX,
    SEGMENT_SUFFIXES,
    LogSegment,
    segment_file_name,
)
from artesian.storage.throttler import Throttler
from artesian.storage.transaction_index import AbortedTxn

__all__ = [
    "CLEANER_OFFSET_CHECKPOINT",
    "CleanedTransactionMetadata",
    "Cleaner",
    "CleanerConfig",
    "CleanerStats",
    "LogCleaner",
    "LogCleanerManager",
    "LogCleaningAbortedError",
    "LogToClean",
    "OffsetMap",
    "group_segments_by_size",
]

logger = logging.getLogger(__name__)

CLEANER_OFFSET_CHECKPOINT = "cleaner-offset-checkpoint"
INT32_MAX = 2**31 - 1
# Kafka's SkimpyOffsetMap slot: a 16-byte MD5 of the key and an 8-byte offset.
_BYTES_PER_ENTRY = 24
_HEADER = struct.Struct(">qiibIhiqqqhii")


class LogCleaningAbortedError(Exception):
    """Cleaning stopped part way (shutdown, or the log was closed); nothing was swapped in."""


@dataclass(slots=True, frozen=True)
class CleanerConfig:
    """The broker's ``log.cleaner.*`` settings (Kafka's CleanerConfig). The backoff between
    idle passes is read by the broker's loop each time, as a dynamic config may change it."""

    num_threads: int = 1
    dedupe_buffer_size: int = 128 * 1024 * 1024
    dedupe_buffer_load_factor: float = 0.9
    io_buffer_size: int = 512 * 1024
    enable_cleaner: bool = True

    BROKER_KEYS: ClassVar[Mapping[str, str]] = {
        "log.cleaner.threads": "num_threads",
        "log.cleaner.dedupe.buffer.size": "dedupe_buffer_size",
        "log.cleaner.io.buffer.load.factor": "dedupe_buffer_load_factor",
        "log.cleaner.io.buffer.size": "io_buffer_size",
        "log.cleaner.enable": "enable_cleaner",
    }

    @classmethod
    def from_properties(cls, props: Mapping[str, object]) -> CleanerConfig:
        """From typed broker values keyed by Kafka names; missing keys keep Kafka's defaults."""
        values = {attr: props[k] for k, attr in cls.BROKER_KEYS.items() if props.get(k) is not None}
        return cls(**values)  # type: ignore[arg-type]


@dataclass(slots=True)
class CleanerStats:
    """What one cleaning round did (Kafka's CleanerStats). ``topic`` is None when no log was
    cleanable; ``aborted`` when the round stopped without moving the checkpoint."""

    topic: str | None = None
    partition: int = -1
    first_dirty_offset: int = -1
    end_offset: int = -1
    cleanable_ratio: float = 0.0
    map_bytes_read: int = 0
    map_messages_read: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    messages_read: int = 0
    messages_written: int = 0
    invalid_messages: int = 0
    segments_cleaned: int = 0
    groups_swapped: int = 0
    aborted: bool = False
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def cleaned(self) -> bool:
        return self.topic is not None and not self.aborted and self.error is None


class OffsetMap:
    """Key -> latest offset over the dirty section, bounded like Kafka's SkimpyOffsetMap."""

    __slots__ = ("_map", "latest_offset", "max_desired_size", "slots")

    def __init__(self, memory: int, load_factor: float) -> None:
        self.slots = max(1, min(memory, INT32_MAX) // _BYTES_PER_ENTRY)
        self.max_desired_size = max(1, int(self.slots * load_factor))
        self._map: dict[bytes, int] = {}
        self.latest_offset = -1

    @property
    def size(self) -> int:
        return len(self._map)

    def put(self, key: bytes, offset: int) -> None:
        self._map[key] = offset

    def get(self, key: bytes) -> int:
        return self._map.get(key, -1)

    def __contains__(self, key: bytes) -> bool:
        return key in self._map

    def clear(self) -> None:
        self._map = {}
        self.latest_offset = -1


@dataclass(slots=True)
class LogToClean:
    """A compacted log and its cleanable range (Kafka's LogToClean)."""

    log: Log
    first_dirty_offset: int
    first_uncleanable_offset: int  # a segment base offset
    clean_bytes: int
    cleanable_bytes: int
    need_compaction_now: bool = False

    @property
    def total_bytes(self) -> int:
        return self.clean_bytes + self.cleanable_bytes

    @property
    def cleanable_ratio(self) -> float:
        total = self.total_bytes
        return self.cleanable_bytes / total if total else 0.0


# -- segment ranges (Kafka's logSegments(from, to) and nonActiveLogSegmentsFrom) ------------------


def _floor_index(segments: Sequence[LogSegment], offset: int) -> int:
    return max(0, bisect_right(segments, offset, key=lambda s: s.base_offset) - 1)


def _log_segments(segments: Sequence[LogSegment], from_offset: int, to: int) -> list[LogSegment]:
    """Segments holding offsets in [from_offset, to)."""
    out = []
    for seg in segments[_floor_index(segments, from_offset) :]:
        if seg.base_offset >= to:
            break
        out.append(seg)
    return out


def _non_active_from(segments: Sequence[LogSegment], offset: int) -> list[LogSegment]:
    return list(segments[_floor_index(segments, offset) : len(segments) - 1])


def cleanable_offsets(log: Log, checkpoint: int | None, now_ms: int) -> tuple[int, int]:
    """(first dirty offset, first uncleanable dirty offset) of a compacted log."""
    lso = log.log_start_offset
    first_dirty = lso if checkpoint is None else checkpoint
    if first_dirty < lso or first_dirty > log.log_end_offset:
        first_dirty = lso  # truncated or deleted past the checkpoint: all is dirty again
    segments = log.segments
    # Never beyond what read_committed consumers may read (so never an open transaction,
    # whose fate is unknown), and never the active segment.
    bounds = [log.last_stable_offset, segments[-1].base_offset]
    lag = max(log.config.min_compaction_lag_ms, 0)
    if lag > 0:
        for seg in _non_active_from(segments, first_dirty):
            if seg.largest_timestamp() > now_ms - lag:
                bounds.append(seg.base_offset)
                break
    return first_dirty, min(bounds)


def max_compaction_delay(log: Log, first_dirty_offset: int, now_ms: int) -> int:
    """How long past ``max.compaction.lag.ms`` the oldest dirty record is (0: not yet)."""
    stamps = [
        ts
        for seg in _non_active_from(log.segments, first_dirty_offset)
        if (ts := seg.first_batch_timestamp()) is not None and ts > 0
    ]
    if not stamps:
        return 0
    clean_until = now_ms - max(log.config.max_compaction_lag_ms, 0)
    earliest = min(stamps)
    return clean_until - earliest if earliest < clean_until else 0


def log_to_clean(log: Log, checkpoint: int | None, now_ms: int) -> LogToClean:
    first_dirty, uncleanable = cleanable_offsets(log, checkpoint, now_ms)
    segments = log.segments
    non_active = _non_active_from(segments, uncleanable)
    first_uncleanable = non_active[0].base_offset if non_active else segments[-1].base_offset
    clean_bytes = sum(s.size for s in _log_segments(segments, -1, first_dirty))
    cleanable_bytes = sum(
        s.size
        for s in _log_segments(segments, min(first_dirty, first_uncleanable), first_uncleanable)
    )
    return LogToClean(
        log,
        first_dirty,
        first_uncleanable,
        clean_bytes,
        cleanable_bytes,
        max_compaction_delay(log, first_dirty, now_ms) > 0,
    )


def group_segments_by_size(
    segments: Sequence[LogSegment],
    next_bases: Sequence[int],
    max_size: int,
    max_index_size: int,
) -> list[list[LogSegment]]:
    """Consecutive groups whose total log and index sizes fit in one segment and whose offsets
    fit its 32-bit relative offsets; ``next_bases[i]`` is where ``segments[i]`` ends."""
    groups: list[list[LogSegment]] = []
    i = 0
    while i < len(segments):
        first = segments[i]
        group = [first]
        log_size = first.size
        index_size = first.offset_index.entries * first.offset_index.ENTRY_SIZE
        time_size = first.time_index.entries * first.time_index.ENTRY_SIZE
        i += 1
        while i < len(segments):
            seg = segments[i]
            seg_index = seg.offset_index.entries * seg.offset_index.ENTRY_SIZE
            seg_time = seg.time_index.entries * seg.time_index.ENTRY_SIZE
            if (
                log_size + seg.size > max_size
                or index_size + seg_index > max_index_size
                or time_size + seg_time > max_index_size
                or next_bases[i] - 1 - first.base_offset > INT32_MAX
            ):
                break
            group.append(seg)
            log_size += seg.size
            index_size += seg_index
            time_size += seg_time
            i += 1
        groups.append(group)
    return groups


# -- records ------------------------------------------------------------------------------------

RawRecord = tuple[int, int, bytes | None, bool, int, int, int]
"""(offset delta, timestamp delta, key, has value, start, end of timestamp delta, end): start and
end bound the record after its length prefix, in the batch's (decompressed) records part."""


def _iter_records(data: bytes | memoryview, count: int) -> Iterator[RawRecord]:
    pos = 0
    n = len(data)
    for _ in range(count):
        length, pos = read_varint(data, pos)
        start, end = pos, pos + length
        if length < 1 or end > n:
            raise InvalidBatch("record length runs past the batch")
        ts_delta, p = read_varint(data, start + 1)  # after the attributes byte
        ts_end = p
        offset_delta, p = read_varint(data, p)
        key_len, p = read_varint(data, p)
        key = None
        if key_len >= 0:
            key = bytes(data[p : p + key_len])
            p += key_len
        value_len, p = read_varint(data, p)
        if p > end or (value_len > 0 and p + value_len > end):
            raise InvalidBatch("record fields run past the record")
        yield offset_delta, ts_delta, key, value_len >= 0, start, ts_end, end
        pos = end


def _records_part(batch: memoryview, h: BatchHeader) -> bytes | memoryview:
    payload = batch[BATCH_HEADER_SIZE : h.size]
    if h.compression:
        return decompress(h.compression, payload, DEFAULT_MAX_DECOMPRESSED_SIZE)
    return payload


def _pack_header(
    out: bytearray, h: BatchHeader, attributes: int, base_ts: int, max_ts: int, count: int
) -> None:
    _HEADER.pack_into(
        out,
        0,
        h.base_offset,
        len(out) - LOG_OVERHEAD,
        h.partition_leader_epoch,
        2,
        0,
        attributes,
        h.last_offset_delta,  # Kafka keeps the last offset: producer sequences stay right
        base_ts,
        max_ts,
        h.producer_id,
        h.producer_epoch,
        h.base_sequence,
        count,
    )
    set_crc(out, 0, len(out))


def rebuild_batch(
    h: BatchHeader,
    data: bytes | memoryview,
    kept: Sequence[tuple[int, int, int, int]],
    delete_horizon_ms: int | None,
) -> bytearray:
    """``h``'s batch with only the ``kept`` records ((timestamp, start, ts_end, end) in
    ``data``), same offsets and producer fields, recompressed with the same codec."""
    # Kafka's builder: the base timestamp is the delete horizon if any, else the first record's.
    base_ts = delete_horizon_ms if delete_horizon_ms is not None else kept[0][0]
    body = bytearray()
    for ts, start, ts_end, end in kept:
        if base_ts == h.base_timestamp:
            write_varint(body, end - start)
            body += data[start:end]
        else:
            rec = bytearray(data[start : start + 1])
            write_varint(rec, ts - base_ts)
            rec += data[ts_end:end]
            write_varint(body, len(rec))
            body += rec
    payload = compress(h.compression, bytes(body)) if h.compression else body
    max_ts = h.max_timestamp if h.is_log_append_time else max(k[0] for k in kept)
    attributes = h.attributes & ~ATTR_DELETE_HORIZON
    if delete_horizon_ms is not None:
        attributes |= ATTR_DELETE_HORIZON
    out = bytearray(BATCH_HEADER_SIZE + len(payload))
    out[BATCH_HEADER_SIZE:] = payload
    _pack_header(out, h, attributes, base_ts, max_ts, len(kept))
    return out


def empty_batch(h: BatchHeader) -> bytearray:
    """Kafka's empty batch header: no records, the batch's offsets, producer fields and max
    timestamp (as base and max), no codec."""
    out = bytearray(BATCH_HEADER_SIZE)
    attributes = h.attributes & (ATTR_TIMESTAMP_TYPE | ATTR_TRANSACTIONAL | ATTR_CONTROL)
    _pack_header(out, h, attributes, h.max_timestamp, h.max_timestamp, 0)
    return out


# -- transactions ---------------------------------------------------------------------------------


class CleanedTransactionMetadata:
    """Which batches of a range belong to aborted transactions, fed the range's batches in
    offset order (Kafka's CleanedTransactionMetadata). ``aborted`` are the index entries
    overlapping the range: a producer's batches are aborted from its entry's first offset
    until its next marker."""

    __slots__ = ("_next", "_ongoing_aborted", "_pending")

    def __init__(self, aborted: Iterable[AbortedTxn]) -> None:
        self._pending = sorted(aborted, key=lambda t: t.first_offset)
        self._next = 0
        self._ongoing_aborted: set[int] = set()  # producer ids

    def _consume_up_to(self, offset: int) -> None:
        pending = self._pending
        i = self._next
        while i < len(pending) and pending[i].first_offset <= offset:
            self._ongoing_aborted.add(pending[i].producer_id)
            i += 1
        self._next = i

    def on_batch_read(self, h: BatchHeader) -> bool:
        """Whether the (non-control) batch belongs to an aborted transaction."""
        if self._next < len(self._pending):
            self._consume_up_to(h.last_offset)
        return h.is_transactional and h.producer_id in self._ongoing_aborted

    def on_control_batch_read(self, h: BatchHeader, batch: bytes | memoryview) -> None:
        if self._next < len(self._pending):
            self._consume_up_to(h.last_offset)
        if h.producer_id not in self._ongoing_aborted:
            return
        for record in decode_records(batch, h):
            if decode_end_txn_marker(record) is not None:
                self._ongoing_aborted.discard(h.producer_id)  # its transaction ended here


class TransactionsKept:
    """Which transaction markers a cleaning round may remove. A round rewrites the log from its
    start in offset order; a producer's marker may go once no batch of the transaction it
    ends is kept (Kafka: "we didn't traverse any batches from the transaction", here over the
    whole round, not one group of segments, so no transaction can look open again when the
    producer state is rebuilt from the log). Such a marker first gets a delete horizon
    (delete.retention.ms from now, as a tombstone does) and goes at the first cleaning after
    it, its aborted-transaction index entry with it. Other control records (not markers) stay.
    """

    __slots__ = ("_open", "kept_markers")

    def __init__(self) -> None:
        self._open: set[int] = set()  # producers with a batch of their transaction kept
        self.kept_markers: set[int] = set()  # offsets of the control batches written

    def written(self, h: BatchHeader) -> None:
        """``h``'s batch stays in the cleaned log (as it was, rebuilt or as an empty header)."""
        if h.is_control:
            self.kept_markers.add(h.last_offset)  # its aborted-transaction entry stays too
        elif h.is_transactional:
            self._open.add(h.producer_id)

    def marker_removable(self, h: BatchHeader, batch: bytes | memoryview) -> bool:
        if not h.records_count:
            return True  # an empty control batch carries nothing
        if not any(decode_end_txn_marker(r) is not None for r in decode_records(batch, h)):
            return False  # another control type: not a transaction's end
        if h.producer_id in self._open:
            self._open.discard(h.producer_id)
            return False
        return True


# -- the cleaner ----------------------------------------------------------------------------------


_NAP_SLICE_S = 0.1


class Cleaner:
    """Cleans one log at a time with its own offset map (one per cleaner thread)."""

    def __init__(
        self, config: CleanerConfig, stop: threading.Event, throttler: Throttler | None = None
    ) -> None:
        self.config = config
        self._stop = stop
        self._throttler = throttler
        threads = max(1, config.num_threads)
        self.offset_map = OffsetMap(
            config.dedupe_buffer_size // threads, config.dedupe_buffer_load_factor
        )
        # Kafka's own start-up check: a map that cannot hold one key never makes progress.
        if self.offset_map.slots * config.dedupe_buffer_load_factor <= 1:
            raise ValueError(
                f"log.cleaner.dedupe.buffer.size={config.dedupe_buffer_size} over "
                f"{threads} cleaner thread(s) makes an offset map too small to fit even a "
                "single message, so log cleaning would never make progress: increase "
                "log.cleaner.dedupe.buffer.size or decrease log.cleaner.threads"
            )

    def clean(self, ltc: LogToClean, now_ms: int) -> CleanerStats:
        """Kafka's doClean: map the dirty section, then rewrite [0, end of map) group by group.
        ``end_offset`` in the result is the next first dirty offset."""
        log = ltc.log
        stats = CleanerStats(
            log.topic,
            log.partition,
            ltc.first_dirty_offset,
            cleanable_ratio=ltc.cleanable_ratio,
        )
        started = time.monotonic()
        segments = log.segments
        offset_map = self.offset_map
        offset_map.clear()
        offset_map.latest_offset = ltc.first_dirty_offset - 1
        try:
            self._build_offset_map(
                log, segments, ltc.first_dirty_offset, ltc.first_uncleanable_offset, stats
            )
            end_offset = offset_map.latest_offset + 1
            stats.end_offset = end_offset
            cleanable = [s for s in segments[:-1] if s.base_offset < end_offset]
            next_bases = [s.base_offset for s in segments[1 : len(cleanable) + 1]]
            groups = group_segments_by_size(
                cleanable, next_bases, log.config.segment_bytes, log.config.segment_index_bytes
            )
            last_of_producer = _last_batch_of_producer(log, segments)
            kept_txns = TransactionsKept()
            done = 0
            for group in groups:
                done += len(group)
                # Aborted transactions overlapping the group, whichever segment holds their
                # markers (Kafka collects them per segment over the same range).
                txns = CleanedTransactionMetadata(
                    log.collect_aborted_transactions(group[0].base_offset, next_bases[done - 1])
                )
                if not self._clean_segments(
                    log, group, now_ms, stats, last_of_producer, txns, kept_txns
                ):
                    stats.aborted = True  # the log changed under us: retry next round
                    break
        finally:
            offset_map.clear()
            stats.elapsed_s = time.monotonic() - started
        return stats

    def _throttle(self, nbytes: int, reading: LogSegment | None = None) -> None:
        """log.cleaner.io.max.bytes.per.second: nap when ahead of it, waking for a shutdown.
        A segment being read that retention closed meanwhile aborts the round."""
        throttler = self._throttler
        if throttler is None:
            return
        nap, generation = throttler.charge(nbytes)
        if nap <= 0:
            return
        end = time.monotonic() + nap
        # In slices: a new rate (a dynamic config) ends a nap planned at the old one, and the
        # metric shows a long nap as it goes.
        while (left := end - time.monotonic()) > 0 and throttler.generation == generation:
            before = time.monotonic()
            stopped = self._stop.wait(min(left, _NAP_SLICE_S))
            throttler.record_throttled(time.monotonic() - before)
            if stopped:
                raise LogCleaningAbortedError("stopped while throttled")
        if reading is not None and reading.closed:
            raise LogCleaningAbortedError(f"{reading} closed while throttled")

    # -- reading ------------------------------------------------------------------------------

    def _read_batches(
        self, seg: LogSegment, start: int, end: int
    ) -> Iterator[tuple[BatchHeader, memoryview]]:
        """Whole, CRC-checked batches of ``seg`` in [start, end), read in io-buffer chunks; the
        views are valid until the next one is yielded."""
        chunk = max(self.config.io_buffer_size, BATCH_HEADER_SIZE)
        pos = start
        while end - pos >= BATCH_HEADER_SIZE:
            if self._stop.is_set() or seg.closed:
                raise LogCleaningAbortedError(f"stopped while reading {seg}")
            buf = os.pread(seg.fd, min(chunk, end - pos), pos)
            self._throttle(len(buf), seg)
            h = read_batch_header(buf, 0)
            if h.size > len(buf):  # one batch larger than the buffer: read it whole
                if pos + h.size > end:
                    return
                buf = os.pread(seg.fd, h.size, pos)
                self._throttle(len(buf), seg)
            view = memoryview(buf)
            rel = 0
            while len(buf) - rel >= BATCH_HEADER_SIZE:
                h = read_batch_header(buf, rel)
                if rel + h.size > len(buf):
                    break
                if not batch_crc_ok(buf, rel, h):
                    raise InvalidBatch(f"CRC mismatch at byte {pos + rel} of {seg}")
                yield h, view[rel : rel + h.size]
                rel += h.size
            pos += rel
            time.sleep(0)  # let the event loop thread have the GIL between chunks

    def _build_offset_map(
        self, log: Log, segments: Sequence[LogSegment], start: int, end: int, stats: CleanerStats
    ) -> None:
        txns = CleanedTransactionMetadata(log.collect_aborted_transactions(start, end))
        for seg in _log_segments(segments[:-1], start, end):
            pos = 0
            if start > seg.base_offset:
                found = seg.translate_offset(start)
                if found is None:
                    continue
                pos = found[0]
            if self._map_segment(seg, pos, start, stats, txns):
                break  # the map is full: this round cleans up to where it got

    def _map_segment(
        self,
        seg: LogSegment,
        pos: int,
        start: int,
        stats: CleanerStats,
        txns: CleanedTransactionMetadata,
    ) -> bool:
        offset_map = self.offset_map
        limit = offset_map.max_desired_size
        for h, batch in self._read_batches(seg, pos, seg.size):
            stats.map_bytes_read += h.size
            stats.map_messages_read += h.records_count
            if h.is_control:
                txns.on_control_batch_read(h, batch)
            elif not txns.on_batch_read(h):  # aborted records must not shadow committed ones
                base = h.base_offset
                for od, _, key, _, _, _, _ in _iter_records(
                    _records_part(batch, h), h.records_count
                ):
                    if key is None or base + od < start:
                        continue
                    if offset_map.size >= limit and key not in offset_map:
                        return True
                    offset_map.put(key, base + od)
            if h.last_offset >= start:
                offset_map.latest_offset = h.last_offset
        return False

    # -- rewriting ------------------------------------------------------------------------------

    def _clean_segments(
        self,
        log: Log,
        group: Sequence[LogSegment],
        now_ms: int,
        stats: CleanerStats,
        last_of_producer: Callable[[BatchHeader], bool],
        txns: CleanedTransactionMetadata,
        kept_txns: TransactionsKept,
    ) -> bool:
        """Write ``group`` compacted as one ``.cleaned`` segment and swap it in."""
        base = group[0].base_offset
        for suffix in SEGMENT_SUFFIXES:
            try:  # left by an aborted round: LogSegment would append to it
                os.unlink(log.dir / segment_file_name(base, suffix + CLEANED_SUFFIX))
            except FileNotFoundError:
                pass
        config = log.config
        cleaned = LogSegment(
            log.dir,
            base,
            index_interval_bytes=config.index_interval_bytes,
            max_index_size=config.segment_index_bytes,
            now_ms=now_ms,
            file_suffix=CLEANED_SUFFIX,
        )
        sizes = [seg.size for seg in group]
        drm = config.delete_retention_ms
        flush_at = max(self.config.io_buffer_size, 1)
        try:
            pending = bytearray()
            last_offset = max_ts = -1
            for seg, size in zip(group, sizes, strict=True):
                for h, batch in self._read_batches(seg, 0, size):
                    stats.messages_read += h.records_count
                    stats.bytes_read += h.size
                    out = self._filter_batch(
                        h, batch, now_ms, drm, last_of_producer, stats, txns, kept_txns
                    )
                    if out is None:
                        continue
                    kept_txns.written(h)
                    pending += out
                    last_offset = h.last_offset
                    max_ts = max(max_ts, _max_timestamp(out))
                    if len(pending) >= flush_at:
                        cleaned.append(last_offset, max_ts, last_offset, pending)
                        stats.bytes_written += len(pending)
                        self._throttle(len(pending))
                        pending = bytearray()
                        max_ts = -1
            if pending:
                cleaned.append(last_offset, max_ts, last_offset, pending)
                stats.bytes_written += len(pending)
                self._throttle(len(pending))
            # An aborted transaction's entry lives as long as its marker; the swap renames
            # this file too.
            cleaned.txn_index.extend(
                [
                    t
                    for seg in group
                    for t in seg.txn_index.entries
                    if t.last_offset in kept_txns.kept_markers
                ]
            )
            cleaned.on_become_inactive()
            cleaned.flush()
        except BaseException:
            cleaned.delete()
            raise
        if not log.replace_segments(cleaned, group, now_ms, sizes):
            return False
        stats.segments_cleaned += len(group)
        stats.groups_swapped += 1
        return True

    def _filter_batch(
        self,
        h: BatchHeader,
        batch: memoryview,
        now_ms: int,
        delete_retention_ms: int,
        last_of_producer: Callable[[BatchHeader], bool],
        stats: CleanerStats,
        txns: CleanedTransactionMetadata,
        kept_txns: TransactionsKept,
    ) -> bytes | memoryview | bytearray | None:
        """The batch to write for ``h`` (itself, rebuilt, an empty header) or None."""
        if h.is_control:
            txns.on_control_batch_read(h, batch)
            horizon = h.base_timestamp if h.attributes & ATTR_DELETE_HORIZON else None
            if kept_txns.marker_removable(h, batch):
                if not h.records_count or (horizon is not None and now_ms >= horizon):
                    return None
                if horizon is None:
                    stats.messages_written += h.records_count
                    data = _records_part(batch, h)
                    spans = [
                        (h.base_timestamp + ts_delta, start, ts_end, end)
                        for _, ts_delta, _, _, start, ts_end, end in _iter_records(
                            data, h.records_count
                        )
                    ]
                    return rebuild_batch(h, data, spans, now_ms + delete_retention_ms)
            stats.messages_written += h.records_count
            return batch
        if txns.on_batch_read(h):
            # Aborted: no reader may see these records; keep the producer's sequence only.
            if h.has_producer_id and last_of_producer(h):
                return empty_batch(h)
            return None
        offset_map = self.offset_map
        latest = offset_map.latest_offset
        horizon = h.base_timestamp if h.attributes & ATTR_DELETE_HORIZON else None
        data = _records_part(batch, h)
        kept: list[tuple[int, int, int, int]] = []
        has_tombstone = False
        dropped = 0
        for od, ts_delta, key, has_value, start, ts_end, end in _iter_records(
            data, h.records_count
        ):
            offset = h.base_offset + od
            if offset > latest:
                retain = True  # beyond what this round mapped
            elif key is None:
                stats.invalid_messages += 1
                retain = False
            else:
                retain = offset >= offset_map.get(key) and (
                    has_value or horizon is None or now_ms < horizon
                )
            if retain:
                kept.append((h.base_timestamp + ts_delta, start, ts_end, end))
                has_tombstone = has_tombstone or not has_value
            else:
                dropped += 1
        stats.messages_written += len(kept)
        set_horizon = has_tombstone and horizon is None
        if not dropped and not set_horizon:
            return batch
        if kept:
            return rebuild_batch(
                h, data, kept, now_ms + delete_retention_ms if set_horizon else horizon
            )
        if h.has_producer_id and last_of_producer(h):
            return empty_batch(h)
        return None


def _max_timestamp(batch: bytes | bytearray | memoryview) -> int:
    return int(struct.unpack_from(">q", batch, 35)[0])


def _last_batch_of_producer(
    log: Log, segments: Sequence[LogSegment]
) -> Callable[[BatchHeader], bool]:
    """Whether a batch is its producer's last (Kafka asks the producer state manager). Uses the
    log's ``producer_state`` when it has one, else the batch headers of the whole log, read
    lazily the first time a producer batch would be emptied."""
    state = getattr(log, "producer_state", None)
    last_entry = getattr(state, "last_entry", None)
    if callable(last_entry):

        def from_state(h: BatchHeader) -> bool:
            entry = last_entry(h.producer_id)
            return entry is not None and getattr(entry, "last_offset", -1) == h.last_offset

        return from_state
    last: dict[int, int] | None = None

    def from_headers(h: BatchHeader) -> bool:
        nonlocal last
        if last is None:
            last = {}
            for seg in segments:
                for _, bh in seg._scan(0, seg.size):
                    if bh.has_producer_id and not bh.is_control:
                        last[bh.producer_id] = bh.last_offset
        return last.get(h.producer_id) == h.last_offset

    return from_headers


# -- the manager ----------------------------------------------------------------------------------


class LogCleanerManager:
    """Which compacted log to clean next, which are being cleaned, and the first dirty offset
    of each (``cleaner-offset-checkpoint``). Thread-safe."""

    def __init__(self, log_manager: LogManager) -> None:
        self.log_manager = log_manager
        self.checkpoint_path = log_manager.data_dir / CLEANER_OFFSET_CHECKPOINT
        self._lock = threading.Lock()
        self._in_progress: set[TopicPartition] = set()
        self._uncleanable: set[TopicPartition] = set()
        self._checkpoints = read_offset_checkpoint(self.checkpoint_path)

    def all_cleaner_checkpoints(self) -> dict[TopicPartition, int]:
        with self._lock:
            return dict(self._checkpoints)

    @property
    def uncleanable_partitions(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._uncleanable)

    def grab_filthiest_compacted_log(self, now_ms: int) -> LogToClean | None:
        """The compacted log with the highest dirty ratio among those above their
        ``min.cleanable.dirty.ratio`` or past ``max.compaction.lag.ms``; marked in progress."""
        with self._lock:
            live = {(log.topic, log.partition): log for log in self.log_manager.all_logs()}
            self._uncleanable &= live.keys()  # a deleted log may come back clean
            best: LogToClean | None = None
            for tp, log in live.items():
                if (
                    not log.config.compact_enabled
                    or log.closed
                    or tp in self._in_progress
                    or tp in self._uncleanable
                ):
                    continue
                try:
                    ltc = log_to_clean(log, self._checkpoints.get(tp), now_ms)
                except (OSError, InvalidBatch) as e:
                    logger.warning("cannot compute cleanable range of %s: %s", log, e)
                    self._uncleanable.add(tp)
                    continue
                if ltc.total_bytes <= 0:
                    continue
                if not (
                    (ltc.need_compaction_now and ltc.cleanable_bytes > 0)
                    or ltc.cleanable_ratio > log.config.min_cleanable_dirty_ratio
                ):
                    continue
                if best is None or ltc.cleanable_ratio > best.cleanable_ratio:
                    best = ltc
            if best is not None:
                self._in_progress.add((best.log.topic, best.log.partition))
            return best

    def done_cleaning(self, log: Log, end_offset: int) -> None:
        tp = (log.topic, log.partition)
        with self._lock:
            self._in_progress.discard(tp)
            self._checkpoints[tp] = end_offset
            live = {(lg.topic, lg.partition) for lg in self.log_manager.all_logs()}
            self._checkpoints = {k: v for k, v in self._checkpoints.items() if k in live}
            write_offset_checkpoint(self.checkpoint_path, self._checkpoints)

    def abort_cleaning(self, log: Log) -> None:
        with self._lock:
            self._in_progress.discard((log.topic, log.partition))

    def mark_uncleanable(self, log: Log) -> None:
        with self._lock:
            self._in_progress.discard((log.topic, log.partition))
            self._uncleanable.add((log.topic, log.partition))


def _now_ms() -> int:
    return int(time.time() * 1000)


class LogCleaner:
    """Entry point for the broker. ``clean_once`` is synchronous and meant for a worker thread
    (``run_in_executor``); it never blocks appends or fetches beyond the short swap under the
    log's lock. Up to ``num_threads`` calls may run at once, each on a different log."""

    def __init__(
        self,
        log_manager: LogManager,
        config: CleanerConfig | None = None,
        clock: Callable[[], int] = _now_ms,
        throttler: Throttler | None = None,
    ) -> None:
        self.config = config or CleanerConfig()
        self.clock = clock
        self.cleaner_manager = LogCleanerManager(log_manager)
        # One throttle for all cleaner threads, as Kafka's; its rate may change while it runs.
        self.throttler = throttler
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._idle = [
            Cleaner(self.config, self._stop, throttler)
            for _ in range(max(1, self.config.num_threads))
        ]

    def clean_once(self, now_ms: int | None = None) -> CleanerStats:
        """Clean the filthiest compacted log, if any (Kafka's cleanFilthiestLog). When the
        result's ``cleaned`` is True call again at once; otherwise wait log.cleaner.backoff.ms.
        A log whose cleaning fails is logged and left alone until it is recreated."""
        if not self.config.enable_cleaner or self._stop.is_set():
            return CleanerStats()
        with self._lock:
            if not self._idle:
                return CleanerStats()
            cleaner = self._idle.pop()
        try:
            now = self.clock() if now_ms is None else now_ms
            ltc = self.cleaner_manager.grab_filthiest_compacted_log(now)
            if ltc is None:
                return CleanerStats()
            return self._clean(cleaner, ltc, now)
        finally:
            with self._lock:
                self._idle.append(cleaner)

    def _clean(self, cleaner: Cleaner, ltc: LogToClean, now_ms: int) -> CleanerStats:
        log = ltc.log
        manager = self.cleaner_manager
        start = log.log_start_offset
        try:
            stats = cleaner.clean(ltc, now_ms)
        except LogCleaningAbortedError:
            manager.abort_cleaning(log)
            return CleanerStats(log.topic, log.partition, ltc.first_dirty_offset, aborted=True)
        except Exception as e:
            if log.closed or log.log_start_offset != start:
                # Retention or DeleteRecords removed segments under the cleaner (their files
                # may already be closed): not the log's fault, try again next round.
                manager.abort_cleaning(log)
            else:
                logger.exception("cleaning %s failed; marking it uncleanable", log)
                manager.mark_uncleanable(log)
            return CleanerStats(log.topic, log.partition, ltc.first_dirty_offset, error=repr(e))
        if stats.aborted:
            manager.abort_cleaning(log)
        else:
            manager.done_cleaning(log, stats.end_offset)
            logger.info(
                "cleaned %s: offsets [%d, %d), %d -> %d bytes, %d -> %d messages in %.3fs",
                log,
                stats.first_dirty_offset,
                stats.end_offset,
                stats.bytes_read,
                stats.bytes_written,
                stats.messages_read,
                stats.messages_written,
                stats.elapsed_s,
            )
        return stats

    def shutdown(self) -> None:
        """Make running and future ``clean_once`` calls stop soon (nothing half-swapped stays);
        the broker must still wait for a running call before closing the logs."""
        self._stop.set()
