"""The aborted transaction index of a segment (Kafka's TransactionIndex).

One ``<base offset, 20 digits>.txnindex`` file per segment, holding an entry for every aborted
transaction whose ABORT marker lies in that segment. A read_committed fetch collects the entries
overlapping what it returns, so the consumer can drop the aborted records itself; the broker
never filters records.

Entries are fixed 34 bytes (big-endian), in Kafka's format::

    version int16 = 0 | producer_id int64 | first_offset int64 | last_offset int64
    | last_stable_offset int64

``last_offset`` is the marker's offset; ``last_stable_offset`` is the partition's LSO right
after the transaction completed. Since every transaction that started before that LSO was done
by then, a search may stop at the first entry whose LSO reaches its upper bound.

Where we differ from Kafka: the entries are also kept in memory (aborts are rare, and a
read_committed fetch then costs no I/O), and the file is opened per write rather than held
open, so segments with aborted transactions do not each pin a file descriptor. The file is
created with the first entry: a segment without aborted transactions has none.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AbortedTxn", "TransactionIndex", "TxnIndexSearchResult"]

_ENTRY = struct.Struct(">hqqqq")
_VERSION = 0


@dataclass(slots=True, frozen=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


@dataclass(slots=True)
class TxnIndexSearchResult:
    aborted: list[AbortedTxn]
    is_complete: bool  # no later segment can hold an entry overlapping the range


class TransactionIndex:
    ENTRY_SIZE = _ENTRY.size  # 34

    def __init__(self, path: Path, start_offset: int) -> None:
        self.path = path
        self.start_offset = start_offset
        # Replaced, never mutated in place: fetches read it without a lock.
        self._entries: list[AbortedTxn] = []
        self._lock = threading.Lock()  # orders writes, flushes and renames of the file
        self._unflushed = False

    @property
    def entries(self) -> list[AbortedTxn]:
        return self._entries

    def load(self) -> bool:
        """Read the file, if any. A torn trailing entry is cut off. Returns False when the
        entries cannot be trusted (torn, or not within this segment): the caller rebuilds
        them from the log (after :meth:`reset`)."""
        with self._lock:
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                self._entries = []
                return True
            whole = len(data) - len(data) % self.ENTRY_SIZE
            ok = whole == len(data)
            if not ok:
                os.truncate(self.path, whole)
            entries = []
            for pos in range(0, whole, self.ENTRY_SIZE):
                version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
                if version != _VERSION or last < self.start_offset or first > last:
                    ok = False
                entries.append(AbortedTxn(pid, first, last, lso))
            self._entries = entries
            return ok

    def to_bytes(self) -> bytes:
        """The whole index in its file format (what tiered storage uploads)."""
        return b"".join(
            _ENTRY.pack(
                _VERSION, t.producer_id, t.first_offset, t.last_offset, t.last_stable_offset
            )
            for t in self._entries
        )

    def load_bytes(self, data: bytes) -> None:
        """Entries from the file format (a copy fetched from tiered storage)."""
        whole = len(data) - len(data) % self.ENTRY_SIZE
        self._entries = [
            AbortedTxn(*_ENTRY.unpack_from(data, pos)[1:])
            for pos in range(0, whole, self.ENTRY_SIZE)
        ]

    def append(self, txn: AbortedTxn) -> None:
        """Written at once (page cache), like the log itself; :meth:`flush` fsyncs."""
        self.extend([txn])

    def extend(self, txns: list[AbortedTxn]) -> None:
        """Append entries in marker order with one write."""
        if not txns:
            return
        with self._lock:
            entries = self._entries
            last = entries[-1].last_offset if entries else -1
            data = bytearray()
            for txn in txns:
                if txn.last_offset < last:
                    raise ValueError(
                        f"aborted transaction ending at {txn.last_offset} is older than the "
                        f"last one ({last}) in {self.path}"
                    )
                last = txn.last_offset
                data += _ENTRY.pack(
                    _VERSION,
                    txn.producer_id,
                    txn.first_offset,
                    txn.last_offset,
                    txn.last_stable_offset,
                )
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                os.pwrite(fd, data, len(entries) * self.ENTRY_SIZE)
            finally:
                os.close(fd)
            self._entries = [*entries, *txns]
            self._unflushed = True

    def search(self, start_offset: int, upper_bound_offset: int) -> TxnIndexSearchResult:
        """Entries of transactions overlapping [start_offset, upper_bound_offset)."""
        out = []
        for txn in self._entries:
            if txn.last_offset >= start_offset and txn.first_offset < upper_bound_offset:
                out.append(txn)
            if txn.last_stable_offset >= upper_bound_offset:
                return TxnIndexSearchResult(out, True)
        return TxnIndexSearchResult(out, False)

    def collect(self, start_offset: int, upper_bound_offset: int) -> list[AbortedTxn]:
        return self.search(start_offset, upper_bound_offset).aborted

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or after ``offset`` (log truncation)."""
        with self._lock:
            entries = self._entries
            keep = len(entries)
            while keep and entries[keep - 1].last_offset >= offset:
                keep -= 1
            if keep == len(entries):
                return
            self._entries = entries[:keep]
            self._truncate_file(keep)

    def reset(self) -> None:
        """Forget every entry (before a rebuild from the log)."""
        with self._lock:
            self._entries = []
            self._truncate_file(0)

    def _truncate_file(self, entries: int) -> None:
        try:
            os.truncate(self.path, entries * self.ENTRY_SIZE)
        except FileNotFoundError:
            return
        self._unflushed = True

    def flush(self) -> None:
        with self._lock:
            if not self._unflushed:
                return
            try:
                fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                return  # renamed away with its directory (topic deletion): nothing to keep
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._unflushed = False

    def rename(self, path: Path) -> None:
        with self._lock:
            if self.path.exists():
                os.replace(self.path, path)
            self.path = path

    def delete(self) -> None:
        with self._lock:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        return f"TransactionIndex({self.path.name}, entries={len(self._entries)})"
