"""One log segment: a ``.log`` file of whole RecordBatch v2 batches plus its sparse indexes
and its aborted transaction index (``.txnindex``, see ``transaction_index.py``).

Writes go through ``os.pwrite`` on a raw fd (no Python buffering), so appended bytes are in the
page cache at once: visible to ``sendfile`` and surviving a kill -9. ``flush`` fsyncs.
The fd stays open until the segment is physically removed, since fetch responses may still be
sending from it (see ``file.delete.delay.ms``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crc32c import crc32c

from artesian.protocol.record_codec import (
    EndTransactionMarker,
    Record,
    decode_end_txn_marker,
    decode_records,
)
from artesian.protocol.records import (
    BATCH_HEADER_SIZE,
    CRC_START,
    BatchHeader,
    InvalidBatch,
    read_batch_header,
)
from artesian.storage.index import IndexCorrupt, OffsetIndex, TimeIndex
from artesian.storage.transaction_index import TransactionIndex

__all__ = ["FileSlice", "LogSegment", "segment_file_name"]

INT32_MAX = 2**31 - 1
_MAX_TS = struct.Struct(">q")
# Header scans read this much at a time, so a run of small batches costs one pread.
_SCAN_CHUNK = 16 * 1024
# Recovery reads whole batches (to check CRCs) in chunks of at least this size.
_RECOVER_CHUNK = 4 * 1024 * 1024

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
TXN_INDEX_SUFFIX = ".txnindex"
# Every file of a segment, in the order renames go (the log first).
SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)
DELETED_SUFFIX = ".deleted"
# Log compaction writes a group's replacement as ``.cleaned`` files, renames them ``.swap`` when
# complete, then swaps them in (see Log.replace_segments and Log.open).
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"


def segment_file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


@dataclass(slots=True)
class FileSlice:
    """A byte range of a segment file; the broker sends it with os.sendfile."""

    fd: int
    position: int
    size: int

    def read_bytes(self) -> bytes:
        """For transports without sendfile (TLS, tests)."""
        out = os.pread(self.fd, self.size, self.position)
        return out


class LogSegment:
    def __init__(
        self,
        directory: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        max_index_size: int,
        now_ms: int,
        roll_jitter_ms: int = 0,
        file_suffix: str = "",
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.roll_jitter_ms = roll_jitter_ms
        self.created_ms = now_ms
        self.log_path = directory / segment_file_name(base_offset, LOG_SUFFIX + file_suffix)
        self.offset_index = OffsetIndex(
            directory / segment_file_name(base_offset, INDEX_SUFFIX + file_suffix),
            base_offset,
            max_index_size,
        )
        self.time_index = TimeIndex(
            directory / segment_file_name(base_offset, TIME_INDEX_SUFFIX + file_suffix),
            base_offset,
            max_index_size,
        )
        # Filled by the Log (it knows the producers' transactions), not by recover().
        self.txn_index = TransactionIndex(
            directory / segment_file_name(base_offset, TXN_INDEX_SUFFIX + file_suffix),
            base_offset,
        )
        self._fd = os.open(
            self.log_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644
        )
        self.size = os.fstat(self._fd).st_size
        self.next_offset = base_offset  # last offset + 1; exact once loaded or recovered
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self._bytes_since_index_entry = 0
        self._first_batch_timestamp: int | None = None

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> bool:
        """Load indexes for a cleanly shut down segment; False if they must be rebuilt."""
        try:
            self.offset_index.load()
            self.offset_index.sanity_check(self.size)
            _, pos = self.offset_index.lookup(2**63 - 1)
            last_offset = self.base_offset - 1
            for _, h in self._scan(pos, self.size):
                last_offset = h.last_offset
            if self.size and last_offset < self.base_offset:
                return False
            self.next_offset = last_offset + 1 if self.size else self.base_offset
            self.time_index.load()
            self.time_index.sanity_check(self.next_offset - 1)
        except (IndexCorrupt, InvalidBatch):
            return False
        ts, off = self.time_index.last_entry()
        self.max_timestamp, self.offset_of_max_timestamp = ts, off
        return True

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    # -- writing ------------------------------------------------------------------------------

    def append(
        self,
        largest_offset: int,
        largest_timestamp: int,
        offset_of_max_timestamp: int,
        records: bytes | bytearray | memoryview,
    ) -> None:
        """Append whole batches whose offsets are already assigned. O(1) Python work."""
        n = len(records)
        if n == 0:
            return
        position = self.size
        if position == 0:
            self._first_batch_timestamp = _MAX_TS.unpack_from(records, 35)[0]
        written = os.pwrite(self._fd, records, position)
        while written < n:  # regular files rarely write short, but never lose the tail
            written += os.pwrite(self._fd, memoryview(records)[written:], position + written)
        self.size = position + n
        if largest_timestamp > self.max_timestamp:
            self.max_timestamp = largest_timestamp
            self.offset_of_max_timestamp = offset_of_max_timestamp
        # Kafka's rule: index the start of this append once enough bytes went by.
        if self._bytes_since_index_entry > self.index_interval_bytes:
            self.offset_index.append(largest_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += n
        self.next_offset = largest_offset + 1

    def can_hold(self, largest_offset: int) -> bool:
        return largest_offset - self.base_offset <= INT32_MAX

    @property
    def indexes_full(self) -> bool:
        return self.offset_index.is_full or self.time_index.is_full

    def first_batch_timestamp(self) -> int | None:
        """Max timestamp of the first batch (Kafka's rollingBasedTimestamp)."""
        if self._first_batch_timestamp is None and self.size >= BATCH_HEADER_SIZE:
            self._first_batch_timestamp = _MAX_TS.unpack(os.pread(self._fd, 8, 35))[0]
        return self._first_batch_timestamp

    def time_waited_for_roll(self, now_ms: int, message_timestamp: int) -> int:
        first = self.first_batch_timestamp()
        if first is not None and first >= 0:
            return message_timestamp - first
        return now_ms - self.created_ms

    def on_become_inactive(self) -> None:
        """When rolled: record the final max timestamp so retention sees it after a restart."""
        self.time_index.maybe_append(
            self.max_timestamp, self.offset_of_max_timestamp, skip_full_check=True
        )
        self.offset_index.flush()
        self.time_index.flush()

    def flush(self) -> None:
        fd = self._fd
        if fd < 0:
            return
        try:
            # fdatasync: the data and the file size, not timestamps (the log needs no more).
            os.fdatasync(fd)
        except OSError:
            if self._fd >= 0:
                raise
            return  # closed while we were flushing
        self.offset_index.flush()
        self.time_index.flush()
        self.txn_index.flush()

    # -- reading ------------------------------------------------------------------------------

    def _scan(self, start: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
        """Yield (position, header) of batches in [start, end) with few preads; stops at a
        header that is incomplete before ``end``; raises InvalidBatch on a bad header."""
        pos = start
        buf = b""
        buf_pos = start
        while end - pos >= BATCH_HEADER_SIZE:
            rel = pos - buf_pos
            if rel < 0 or len(buf) - rel < BATCH_HEADER_SIZE:
                buf = os.pread(self._fd, min(_SCAN_CHUNK, end - pos), pos)
                buf_pos, rel = pos, 0
                if len(buf) < BATCH_HEADER_SIZE:
                    return
            h = read_batch_header(buf, rel)
            if pos + h.size > end:
                return
            yield pos, h
            pos += h.size

    def translate_offset(self, offset: int, start_pos: int = 0) -> tuple[int, BatchHeader] | None:
        """Position and header of the first batch whose last offset >= ``offset``."""
        _, pos = self.offset_index.lookup(offset)
        for p, h in self._scan(max(pos, start_pos), self.size):
            if h.last_offset >= offset:
                return p, h
        return None

    def read(
        self,
        start_offset: int,
        max_size: int,
        max_position: int | None = None,
        min_one_message: bool = False,
    ) -> FileSlice | None:
        """Bytes from the batch holding ``start_offset``, at most ``max_size`` (or the whole
        first batch if ``min_one_message``), never past ``max_position``. None if the offset
        is past this segment. A trailing partial batch is allowed, as in Kafka."""
        found = self.translate_offset(start_offset)
        if found is None:
            return None
        pos, h = found
        limit = self.size if max_position is None else min(max_position, self.size)
        size = max(max_size, h.size) if min_one_message else max_size
        size = min(limit - pos, size)
        return FileSlice(self._fd, pos, max(size, 0))

    def find_offset_by_timestamp(self, timestamp: int, start_offset: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record from ``start_offset`` whose timestamp is
        >= ``timestamp``. Indexes and batch headers find the batch; only that one batch is
        decoded (ListOffsets is rare, and Kafka answers at record level)."""
        _, off = self.time_index.lookup_before(timestamp)
        _, pos = self.offset_index.lookup(max(off, start_offset))
        for batch_pos, h in self._scan(pos, self.size):
            if h.max_timestamp >= timestamp and h.last_offset >= start_offset:
                for record in self.read_records(batch_pos, h):
                    if record.offset >= start_offset and record.timestamp >= timestamp:
                        return record.offset, record.timestamp
        return None

    def largest_timestamp(self) -> int:
        """For retention: the largest record timestamp, or the file's modification time when
        no batch carried one (timestamp -1) — Kafka's rule, so such a segment is not deleted
        at once."""
        if self.max_timestamp >= 0:
            return self.max_timestamp
        try:
            return int(os.fstat(self._fd).st_mtime * 1000)
        except OSError:
            return -1

    def offset_of_timestamp(self, timestamp: int) -> int | None:
        """Offset of the first record carrying exactly ``timestamp`` (max-timestamp lookups)."""
        found = self.find_offset_by_timestamp(timestamp, self.base_offset)
        return found[0] if found is not None and found[1] == timestamp else None

    def read_records(self, pos: int, header: BatchHeader) -> list[Record]:
        return list(decode_records(os.pread(self._fd, header.size, pos), header))

    def read_end_txn_marker(self, pos: int, header: BatchHeader) -> EndTransactionMarker | None:
        """The COMMIT/ABORT marker of the control batch at ``pos`` (None: another type)."""
        records = self.read_records(pos, header)
        return decode_end_txn_marker(records[0]) if records else None

    # -- recovery and truncation ---------------------------------------------------------------

    def recover(self, max_message_bytes: int) -> int:
        """Check every batch (header, offsets, CRC), rebuild the indexes and cut the log at the
        first torn or corrupt batch. Returns the number of bytes truncated.

        A batch larger than ``max_message_bytes`` is kept when its CRC holds: the topic's limit
        may have been lowered after it was written."""
        del max_message_bytes
        self.offset_index.reset()
        self.time_index.reset()
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self._first_batch_timestamp = None
        valid = 0
        next_offset = self.base_offset
        since_entry = 0
        size = self.size
        buf = b""
        buf_pos = 0
        while size - valid >= BATCH_HEADER_SIZE:
            rel = valid - buf_pos
            if len(buf) - rel < BATCH_HEADER_SIZE:
                buf = os.pread(self._fd, min(_RECOVER_CHUNK, size - valid), valid)
                buf_pos, rel = valid, 0
            try:
                h = read_batch_header(buf, rel)
            except InvalidBatch:
                break
            if (
                valid + h.size > size
                or h.base_offset < next_offset
                or not self.can_hold(h.last_offset)
                # The cleaner may keep an idempotent producer's last batch with no records.
                or h.records_count < 0
                or h.last_offset_delta < 0
            ):
                break
            if len(buf) - rel < h.size:
                buf = os.pread(self._fd, max(_RECOVER_CHUNK, h.size), valid)
                buf_pos, rel = valid, 0
            if crc32c(memoryview(buf)[rel + CRC_START : rel + h.size]) != h.crc:
                break
            if h.max_timestamp > self.max_timestamp:
                self.max_timestamp = h.max_timestamp
                self.offset_of_max_timestamp = h.last_offset
            if since_entry > self.index_interval_bytes:
                self.offset_index.append(h.last_offset, valid)
                self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
                since_entry = 0
            since_entry += h.size
            next_offset = h.next_offset
            valid += h.size
        truncated = size - valid
        if truncated:
            os.ftruncate(self._fd, valid)
            self.size = valid
        self._bytes_since_index_entry = since_entry
        self.next_offset = next_offset
        self.time_index.maybe_append(
            self.max_timestamp, self.offset_of_max_timestamp, skip_full_check=True
        )
        return truncated

    def truncate_to(self, offset: int) -> int:
        """Remove every batch holding offsets >= ``offset`` (a batch straddling it goes whole,
        as in Kafka). Returns the bytes removed."""
        found = self.translate_offset(offset)
        if found is None:
            return 0
        pos = found[0]
        removed = self.size - pos
        os.ftruncate(self._fd, pos)
        self.size = pos
        # Rare (follower truncation): rebuild the bookkeeping from the headers that remain.
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        self.txn_index.truncate_to(offset)
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self.next_offset = self.base_offset
        for _, h in self._scan(0, pos):
            if h.max_timestamp > self.max_timestamp:
                self.max_timestamp = h.max_timestamp
                self.offset_of_max_timestamp = h.last_offset
            self.next_offset = h.next_offset
        self._bytes_since_index_entry = pos - self.offset_index.last_position if pos else 0
        if pos == 0:
            self._first_batch_timestamp = None
        return removed

    # -- lifecycle ----------------------------------------------------------------------------

    def change_file_suffix(self, suffix: str) -> None:
        """Rename the files (e.g. add ``.deleted``); the open fd keeps working."""
        new_log = self.directory / segment_file_name(self.base_offset, LOG_SUFFIX + suffix)
        os.replace(self.log_path, new_log)
        self.log_path = new_log
        self.offset_index.rename(
            self.directory / segment_file_name(self.base_offset, INDEX_SUFFIX + suffix)
        )
        self.time_index.rename(
            self.directory / segment_file_name(self.base_offset, TIME_INDEX_SUFFIX + suffix)
        )
        self.txn_index.rename(
            self.directory / segment_file_name(self.base_offset, TXN_INDEX_SUFFIX + suffix)
        )

    def close(self) -> None:
        if self._fd < 0:
            return
        self.time_index.maybe_append(
            self.max_timestamp, self.offset_of_max_timestamp, skip_full_check=True
        )
        self.offset_index.flush()
        self.time_index.flush()
        self.txn_index.flush()
        self.close_handlers()

    def close_handlers(self) -> None:
        """Close the fd without writing anything (after a delete)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def delete(self) -> None:
        """Close and remove the files now."""
        self.close_handlers()
        for path in (
            self.log_path,
            self.offset_index.path,
            self.time_index.path,
            self.txn_index.path,
        ):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        return f"LogSegment(base_offset={self.base_offset}, size={self.size})"
