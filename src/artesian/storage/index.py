"""Sparse offset and time indexes of a segment, in Kafka's on-disk format.

Kafka mmaps preallocated index files; we keep the entries in ``array`` objects (bisect lookups,
no per-lookup syscalls) and write only the new entries on flush, roll and close. A damaged or
stale file fails :meth:`sanity_check` on load and the segment rebuilds it from the log.

- ``.index``: 8-byte entries, relative offset int32 + file position int32 (big-endian).
- ``.timeindex``: 12-byte entries, timestamp int64 + relative offset int32 (big-endian).
"""

from __future__ import annotations

import os
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path

__all__ = ["IndexCorrupt", "OffsetIndex", "TimeIndex"]

_SWAP = sys.byteorder == "little"


class IndexCorrupt(Exception):
    """An index file is inconsistent; the segment rebuilds it from the log."""


class _Index:
    ENTRY_SIZE = 0

    def __init__(self, path: Path, base_offset: int, max_index_size: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(1, max_index_size // self.ENTRY_SIZE)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._dirty_from = 0  # first entry not known to be on disk
        self._file_truncated = True  # the file may hold entries past the in-memory ones

    @property
    def entries(self) -> int:
        raise NotImplementedError

    @property
    def is_full(self) -> bool:
        return self.entries >= self.max_entries

    def _encode(self, start: int, end: int) -> bytes:
        raise NotImplementedError

    def _decode(self, data: bytes) -> None:
        raise NotImplementedError

    def _clear(self) -> None:
        raise NotImplementedError

    def load(self) -> None:
        """Read the file (if any); call :meth:`sanity_check` before trusting it."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        if len(data) % self.ENTRY_SIZE:
            raise IndexCorrupt(f"{self.path}: size {len(data)} is not a multiple of entries")
        with self._lock:
            self._decode(data)
            self._dirty_from = self.entries
            self._file_truncated = False

    def to_bytes(self) -> bytes:
        """The whole index in its file format (what tiered storage uploads)."""
        with self._lock:
            return self._encode(0, self.entries)

    def load_bytes(self, data: bytes) -> None:
        """Load entries in the file format; call :meth:`sanity_check` before trusting them."""
        if len(data) % self.ENTRY_SIZE:
            raise IndexCorrupt(f"{self.path}: size {len(data)} is not a multiple of entries")
        with self._lock:
            self._decode(data)
            self._dirty_from = self.entries

    def reset(self) -> None:
        with self._lock:
            self._clear()
            self._dirty_from = 0
            self._file_truncated = True

    def flush(self) -> None:
        """Write the entries not yet in the file; safe against concurrent appends."""
        with self._flush_lock:
            with self._lock:
                n = self.entries
                start = self._dirty_from
                truncate = self._file_truncated
                data = self._encode(start, n)
                self._dirty_from = n
                self._file_truncated = False
            if not data and not truncate and self.path.exists():
                return
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if data:
                    os.pwrite(fd, data, start * self.ENTRY_SIZE)
                if truncate:
                    os.ftruncate(fd, n * self.ENTRY_SIZE)
                # No fsync: an index that lost its tail to a power cut is still a valid sparse
                # index, and a torn one fails the load-time sanity check and is rebuilt from
                # the log. Only the log's own bytes need to reach the disk.
            finally:
                os.close(fd)

    def rename(self, path: Path) -> None:
        # Under the flush lock: a flush in a worker thread must not recreate the old name.
        with self._flush_lock:
            if self.path.exists():
                os.replace(self.path, path)
            self.path = path

    def delete(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class OffsetIndex(_Index):
    """Maps offsets to positions in the ``.log`` file: an entry every index.interval.bytes."""

    ENTRY_SIZE = 8

    def __init__(self, path: Path, base_offset: int, max_index_size: int) -> None:
        super().__init__(path, base_offset, max_index_size)
        self._rel = array("i")
        self._pos = array("i")

    @property
    def entries(self) -> int:
        return len(self._rel)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self._rel[-1] if self._rel else self.base_offset

    @property
    def last_position(self) -> int:
        return self._pos[-1] if self._pos else 0

    def append(self, offset: int, position: int) -> None:
        rel = offset - self.base_offset
        with self._lock:
            if self._rel and rel <= self._rel[-1]:
                return
            self._rel.append(rel)
            self._pos.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """Largest entry with offset <= ``offset``, or (base_offset, 0)."""
        i = bisect_right(self._rel, offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._rel[i], self._pos[i]

    def truncate_to(self, offset: int) -> None:
        """Drop entries with offset >= ``offset``."""
        with self._lock:
            i = bisect_left(self._rel, offset - self.base_offset)
            if i < len(self._rel):
                del self._rel[i:]
                del self._pos[i:]
                self._dirty_from = min(self._dirty_from, i)
                self._file_truncated = True

    def sanity_check(self, log_size: int) -> None:
        rel, pos = self._rel, self._pos
        for i in range(1, len(rel)):
            if rel[i] <= rel[i - 1] or pos[i] < pos[i - 1]:
                raise IndexCorrupt(f"{self.path}: entry {i} is not increasing")
        if rel and (rel[0] < 0 or pos[0] < 0 or pos[-1] >= max(log_size, 1)):
            raise IndexCorrupt(f"{self.path}: entries point outside the log")

    def _encode(self, start: int, end: int) -> bytes:
        out = array("i", bytes(8 * (end - start)))
        out[0::2] = self._rel[start:end]
        out[1::2] = self._pos[start:end]
        if _SWAP:
            out.byteswap()
        return out.tobytes()

    def _decode(self, data: bytes) -> None:
        a = array("i", data)
        if _SWAP:
            a.byteswap()
        self._rel = a[0::2]
        self._pos = a[1::2]

    def _clear(self) -> None:
        self._rel = array("i")
        self._pos = array("i")


class TimeIndex(_Index):
    """Maps max-timestamp-so-far to the offset holding it; timestamps strictly increase."""

    ENTRY_SIZE = 12

    def __init__(self, path: Path, base_offset: int, max_index_size: int) -> None:
        super().__init__(path, base_offset, max_index_size)
        self._ts = array("q")
        self._rel = array("i")

    @property
    def entries(self) -> int:
        return len(self._ts)

    def last_entry(self) -> tuple[int, int]:
        """(timestamp, offset) of the last entry, or (-1, base_offset)."""
        if not self._ts:
            return -1, self.base_offset
        return self._ts[-1], self.base_offset + self._rel[-1]

    def maybe_append(self, timestamp: int, offset: int, skip_full_check: bool = False) -> None:
        rel = offset - self.base_offset
        with self._lock:
            if self._ts and (timestamp <= self._ts[-1] or rel < self._rel[-1]):
                return
            if not skip_full_check and len(self._ts) >= self.max_entries:
                return
            self._ts.append(timestamp)
            self._rel.append(rel)

    def lookup_before(self, timestamp: int) -> tuple[int, int]:
        """Largest entry with timestamp < ``timestamp``: every batch before its offset has a
        smaller max timestamp. Returns (-1, base_offset) when there is none."""
        i = bisect_left(self._ts, timestamp) - 1
        if i < 0:
            return -1, self.base_offset
        return self._ts[i], self.base_offset + self._rel[i]

    def truncate_to(self, offset: int) -> None:
        with self._lock:
            rel = offset - self.base_offset
            i = len(self._rel)
            while i > 0 and self._rel[i - 1] >= rel:
                i -= 1
            if i < len(self._rel):
                del self._ts[i:]
                del self._rel[i:]
                self._dirty_from = min(self._dirty_from, i)
                self._file_truncated = True

    def sanity_check(self, last_offset: int) -> None:
        ts, rel = self._ts, self._rel
        for i in range(1, len(ts)):
            if ts[i] <= ts[i - 1] or rel[i] < rel[i - 1]:
                raise IndexCorrupt(f"{self.path}: entry {i} is not increasing")
        if rel and (rel[0] < 0 or self.base_offset + rel[-1] > last_offset):
            raise IndexCorrupt(f"{self.path}: entries point outside the log")

    def _encode(self, start: int, end: int) -> bytes:
        ts = self._ts[start:end]
        rel = self._rel[start:end]
        if _SWAP:
            ts.byteswap()
            rel.byteswap()
        tb, rb = ts.tobytes(), rel.tobytes()
        return b"".join(tb[8 * i : 8 * i + 8] + rb[4 * i : 4 * i + 4] for i in range(end - start))

    def _decode(self, data: bytes) -> None:
        n = len(data) // 12
        view = memoryview(data)
        self._ts = array("q", b"".join(view[12 * i : 12 * i + 8] for i in range(n)))
        self._rel = array("i", b"".join(view[12 * i + 8 : 12 * i + 12] for i in range(n)))
        if _SWAP:
            self._ts.byteswap()
            self._rel.byteswap()

    def _clear(self) -> None:
        self._ts = array("q")
        self._rel = array("i")
