"""Per-partition state of idempotent and transactional producers (Kafka's
ProducerStateManager).

For every producer id seen in the partition we keep its epoch, the metadata of its last five
batches (``BatchMetadata``), the first offset of its ongoing transaction in this partition and
the epoch of the coordinator that last wrote a marker for it. A produce request is checked
against it before anything is written:

- a batch equal (epoch, first and last sequence) to one of the last five is a duplicate: the log
  appends nothing and answers with the original offsets (Kafka answers NONE with them);
- an epoch lower than the producer's latest is a zombie: INVALID_PRODUCER_EPOCH (47);
- a new epoch must start at sequence 0, and within an epoch each batch must continue the last
  sequence (wrapping after Int32.MAX): otherwise OUT_OF_ORDER_SEQUENCE_NUMBER (45);
- a producer id with no state accepts any sequence. Since KIP-360 (Kafka 2.5) the broker no
  longer answers UNKNOWN_PRODUCER_ID (59): state may be gone because retention or DeleteRecords
  removed the producer's batches, or because it expired, and the client's epoch bump recovers;
- a transactional batch starts the producer's transaction at its base offset, or continues it;
  a non-transactional batch while its transaction is open is INVALID_TXN_STATE (48).

Transaction markers (``prepare_marker``) end a transaction: an epoch older than the producer's
is INVALID_PRODUCER_EPOCH (47), a coordinator epoch older than the last marker's is
TRANSACTION_COORDINATOR_FENCED (52). A marker for a producer with no open transaction here is
still written; it completes nothing. Ongoing transactions are kept in first-offset order, so
the partition's first unstable offset (the start of the oldest open transaction) is O(1), and
their producers never expire.

The state is checkpointed in snapshot files ``<offset, 20 digits>.snapshot`` in the partition
directory: the state of all batches below ``offset``. They are written when a segment rolls and
on a clean close; on open, the latest snapshot at or below the log end offset is loaded and the
batches after it are replayed from the log by reading batch headers only (and the one record
of each control batch).

Where we differ from Kafka: the snapshot keeps all five batches of each producer (Kafka keeps
the last one), so duplicates of older in-flight batches are still found after a restart; the
file format is our own (below). With a single replica the high watermark follows the log end
offset, so there is no separate set of completed-but-unreplicated transactions.

Snapshot format (big-endian)::

    magic b"ARPS" | version int16 = 2 | crc32c uint32 of everything after it
    | offset int64 | producer count int32
    then per producer:  producer_id int64 | epoch int16 | last_timestamp int64
                        | coordinator_epoch int32 | current_txn_first_offset int64 (-1: none)
                        | batch count int8
    then per batch:     first_seq int32 | last_seq int32 | first_offset int64 | last_offset int64
                        | max_timestamp int64

Version 1 (before transactions) files are treated as unreadable: they are deleted and the
state is replayed from the log, from an older readable snapshot or the log start.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crc32c import crc32c

from artesian.protocol.record_codec import EndTransactionMarker
from artesian.protocol.records import (
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    NO_SEQUENCE,
    BatchHeader,
    read_batch_header,
)
from artesian.storage.errors import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    TransactionCoordinatorFencedError,
)

__all__ = [
    "DEFAULT_PRODUCER_ID_EXPIRATION_MS",
    "MAX_BATCHES_PER_PRODUCER",
    "NO_PRODUCER_EPOCH",
    "SNAPSHOT_SUFFIX",
    "BatchMetadata",
    "CompletedTxn",
    "ProducerAppend",
    "ProducerStateEntry",
    "ProducerStateManager",
    "producer_batches",
]

MAX_BATCHES_PER_PRODUCER = (
    5  # Kafka's NUM_BATCHES_TO_RETAIN: max.in.flight of an idempotent producer
)
NO_PRODUCER_EPOCH = -1
INT32_MAX = 2**31 - 1
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86_400_000  # producer.id.expiration.ms
SNAPSHOT_SUFFIX = ".snapshot"

_MAGIC = b"ARPS"
_VERSION = 2
_FILE_HEADER = struct.Struct(">4shI")  # magic, version, crc
_BODY_HEADER = struct.Struct(">qi")  # offset, producer count
_ENTRY = struct.Struct(">qhqiqb")
_BATCH = struct.Struct(">iiqqq")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


@dataclass(slots=True, frozen=True)
class BatchMetadata:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    max_timestamp: int


@dataclass(slots=True, frozen=True)
class CompletedTxn:
    """A transaction a marker ended; ``last_offset`` is the marker's offset."""

    producer_id: int
    first_offset: int
    last_offset: int
    is_aborted: bool


@dataclass(slots=True)
class ProducerStateEntry:
    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    batches: list[BatchMetadata] = field(default_factory=list)  # oldest first
    last_timestamp: int = -1
    current_txn_first_offset: int | None = None  # its open transaction in this partition
    coordinator_epoch: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        if epoch != self.producer_epoch:
            return None
        for b in self.batches:
            if b.first_seq == first_seq and b.last_seq == last_seq:
                return b
        return None

    def maybe_update_epoch(self, epoch: int) -> None:
        if epoch != self.producer_epoch:
            # A new epoch restarts the sequence: older batches can no longer be duplicates.
            self.batches = []
            self.producer_epoch = epoch

    def add_batch(self, epoch: int, batch: BatchMetadata) -> None:
        self.maybe_update_epoch(epoch)
        self.batches.append(batch)
        if len(self.batches) > MAX_BATCHES_PER_PRODUCER:
            del self.batches[0]
        self.last_timestamp = batch.max_timestamp

    def copy(self) -> ProducerStateEntry:
        return ProducerStateEntry(
            self.producer_id,
            self.producer_epoch,
            list(self.batches),
            self.last_timestamp,
            self.current_txn_first_offset,
            self.coordinator_epoch,
        )


@dataclass(slots=True)
class ProducerAppend:
    """The outcome of checking one append: the producers' entries as they will be once it is
    written, or the earlier batch it duplicates (then nothing is written). A marker's append
    carries the transaction it completes, if one was open."""

    updates: dict[int, ProducerStateEntry] = field(default_factory=dict)
    duplicate: BatchMetadata | None = None
    completed_txn: CompletedTxn | None = None


def in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


def producer_batches(buf: bytes | bytearray | memoryview) -> Iterator[BatchHeader]:
    """Headers of the batches in ``buf`` (already validated) that carry a producer id; the
    others cost one 8-byte read each."""
    pos = 0
    end = len(buf)
    while end - pos >= BATCH_HEADER_SIZE:
        length = _I32.unpack_from(buf, pos + 8)[0]
        if _I64.unpack_from(buf, pos + 43)[0] >= 0:
            yield read_batch_header(buf, pos)
        pos += length + LOG_OVERHEAD


def _metadata(h: BatchHeader) -> BatchMetadata:
    return BatchMetadata(
        h.base_sequence, h.last_sequence, h.base_offset, h.last_offset, h.max_timestamp
    )


def snapshot_file_name(offset: int) -> str:
    return f"{offset:020d}{SNAPSHOT_SUFFIX}"


def parse_snapshot_offset(name: str) -> int | None:
    if not name.endswith(SNAPSHOT_SUFFIX):
        return None
    stem = name[: -len(SNAPSHOT_SUFFIX)]
    return int(stem) if len(stem) == 20 and stem.isdigit() else None


class CorruptSnapshotError(ValueError):
    """A snapshot file that cannot be trusted (torn write, wrong magic, CRC mismatch)."""


def encode_snapshot(offset: int, producers: Iterable[ProducerStateEntry]) -> bytes:
    body = bytearray()
    count = 0
    for e in producers:
        txn_first = e.current_txn_first_offset
        body += _ENTRY.pack(
            e.producer_id,
            e.producer_epoch,
            e.last_timestamp,
            e.coordinator_epoch,
            -1 if txn_first is None else txn_first,
            len(e.batches),
        )
        for b in e.batches:
            body += _BATCH.pack(
                b.first_seq, b.last_seq, b.first_offset, b.last_offset, b.max_timestamp
            )
        count += 1
    payload = _BODY_HEADER.pack(offset, count) + body
    return _FILE_HEADER.pack(_MAGIC, _VERSION, crc32c(payload)) + payload


def decode_snapshot(data: bytes) -> tuple[int, dict[int, ProducerStateEntry]]:
    if len(data) < _FILE_HEADER.size + _BODY_HEADER.size:
        raise CorruptSnapshotError("truncated snapshot")
    magic, version, crc = _FILE_HEADER.unpack_from(data, 0)
    if magic != _MAGIC or version != _VERSION:
        raise CorruptSnapshotError(f"not a v{_VERSION} producer snapshot")
    payload = memoryview(data)[_FILE_HEADER.size :]
    if crc32c(payload) != crc:
        raise CorruptSnapshotError("CRC mismatch")
    try:
        offset, count = _BODY_HEADER.unpack_from(payload, 0)
        pos = _BODY_HEADER.size
        producers: dict[int, ProducerStateEntry] = {}
        for _ in range(count):
            pid, epoch, last_ts, coordinator_epoch, txn_first, n = _ENTRY.unpack_from(payload, pos)
            pos += _ENTRY.size
            batches = []
            for _ in range(n):
                batches.append(BatchMetadata(*_BATCH.unpack_from(payload, pos)))
                pos += _BATCH.size
            producers[pid] = ProducerStateEntry(
                pid,
                epoch,
                batches,
                last_ts,
                txn_first if txn_first >= 0 else None,
                coordinator_epoch,
            )
    except struct.error as e:
        raise CorruptSnapshotError(str(e)) from None
    if pos != len(payload):
        raise CorruptSnapshotError("trailing bytes")
    return offset, producers


class ProducerStateManager:
    """State of one partition's producers, as of ``map_end_offset`` (Kafka's lastMapOffset:
    every batch below it has been applied). Not thread-safe: the Log calls it under its lock."""

    def __init__(
        self, directory: Path, expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS
    ) -> None:
        self.dir = directory
        self.expiration_ms = expiration_ms
        self.producers: dict[int, ProducerStateEntry] = {}
        self.map_end_offset = 0
        # first offset -> producer id of every open transaction, oldest first. Transactions
        # start in offset order, so appending keeps it sorted; an OrderedDict (unlike a dict)
        # finds its first key in O(1) however many were removed before it.
        self.ongoing_txns: OrderedDict[int, int] = OrderedDict()

    # -- the append path ------------------------------------------------------------------------

    def prepare_append(
        self, records: bytes | bytearray | memoryview, check_sequence: bool = True
    ) -> ProducerAppend:
        """Check a client's validated batches (offsets assigned) without changing the state.
        Raises OutOfOrderSequenceError, InvalidProducerEpochError or InvalidTxnStateError.
        Without ``check_sequence`` (a coordinator's writes, which have no sequence) only the
        epoch is checked and nothing is a duplicate, as Kafka's COORDINATOR origin."""
        result = ProducerAppend()
        updates = result.updates
        for h in producer_batches(records):
            pid = h.producer_id
            current = self.producers.get(pid)
            if current is not None and check_sequence:
                dup = current.find_duplicate(h.producer_epoch, h.base_sequence, h.last_sequence)
                if dup is not None:
                    # As Kafka: the whole request is answered as that duplicate.
                    return ProducerAppend(duplicate=dup)
            entry = updates.get(pid)
            if entry is None:
                entry = current.copy() if current is not None else ProducerStateEntry(pid)
                updates[pid] = entry
            self._check(entry, h, check_sequence)
            entry.add_batch(h.producer_epoch, _metadata(h))
            if entry.current_txn_first_offset is not None:
                if not h.is_transactional:
                    raise InvalidTxnStateError(
                        f"non-transactional batch at offset {h.base_offset} from producer {pid}, "
                        f"whose transaction from offset {entry.current_txn_first_offset} is open"
                    )
            elif h.is_transactional:
                entry.current_txn_first_offset = h.base_offset
        return result

    @staticmethod
    def _check(entry: ProducerStateEntry, h: BatchHeader, check_sequence: bool) -> None:
        epoch, first_seq = h.producer_epoch, h.base_sequence
        if epoch < entry.producer_epoch:
            raise InvalidProducerEpochError(
                f"epoch {epoch} of producer {h.producer_id} at offset {h.base_offset} is older "
                f"than its latest epoch {entry.producer_epoch}"
            )
        if not check_sequence:
            return
        if epoch != entry.producer_epoch:
            if first_seq != 0 and entry.producer_epoch != NO_PRODUCER_EPOCH:
                raise OutOfOrderSequenceError(
                    f"new epoch {epoch} of producer {h.producer_id} starts at sequence "
                    f"{first_seq}, not 0"
                )
        elif not in_sequence(entry.last_seq, first_seq):
            raise OutOfOrderSequenceError(
                f"out of order sequence for producer {h.producer_id} at offset {h.base_offset}: "
                f"{first_seq} (incoming), {entry.last_seq} (current last sequence)"
            )

    def prepare_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        offset: int,
        timestamp: int,
    ) -> ProducerAppend:
        """Check a COMMIT/ABORT marker about to be written at ``offset`` (Kafka's
        appendEndTxnMarker). Raises InvalidProducerEpochError or
        TransactionCoordinatorFencedError; changes nothing until :meth:`complete_append`."""
        current = self.producers.get(producer_id)
        entry = current.copy() if current is not None else ProducerStateEntry(producer_id)
        if producer_epoch < entry.producer_epoch:
            raise InvalidProducerEpochError(
                f"marker epoch {producer_epoch} of producer {producer_id} is older than its "
                f"latest epoch {entry.producer_epoch}"
            )
        if coordinator_epoch < entry.coordinator_epoch:
            raise TransactionCoordinatorFencedError(
                f"marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, "
                f"older than {entry.coordinator_epoch}"
            )
        completed = self._end_txn(entry, producer_epoch, commit, coordinator_epoch, offset)
        entry.last_timestamp = timestamp
        return ProducerAppend({producer_id: entry}, completed_txn=completed)

    @staticmethod
    def _end_txn(
        entry: ProducerStateEntry, epoch: int, commit: bool, coordinator_epoch: int, offset: int
    ) -> CompletedTxn | None:
        first = entry.current_txn_first_offset
        # A marker with no transaction open here (e.g. a retry) completes nothing: it moves
        # neither the LSO nor the transaction index.
        completed = (
            CompletedTxn(entry.producer_id, first, offset, not commit)
            if first is not None
            else None
        )
        entry.maybe_update_epoch(epoch)
        entry.current_txn_first_offset = None
        entry.coordinator_epoch = coordinator_epoch
        return completed

    def complete_append(self, append: ProducerAppend, end_offset: int) -> None:
        """The append was written: make its updates the state. A transaction it completed
        stays ongoing until :meth:`complete_txn` (the caller first indexes it)."""
        updates = append.updates
        if updates:
            producers = self.producers
            for pid, entry in updates.items():
                first = entry.current_txn_first_offset
                if first is not None:
                    old = producers.get(pid)
                    if old is None or old.current_txn_first_offset != first:
                        self._add_ongoing(first, pid)
            producers.update(updates)
        self.map_end_offset = end_offset

    def complete_txn(self, txn: CompletedTxn) -> int:
        """Forget a completed transaction; returns the partition's last stable offset right
        after it (what its aborted-transaction index entry records)."""
        if self.ongoing_txns.get(txn.first_offset) == txn.producer_id:
            del self.ongoing_txns[txn.first_offset]
        first = self.first_unstable_offset()
        return txn.last_offset + 1 if first is None else first

    def _add_ongoing(self, first_offset: int, producer_id: int) -> None:
        ongoing = self.ongoing_txns
        ongoing[first_offset] = producer_id
        if len(ongoing) > 1 and first_offset < next(reversed(ongoing)):
            # Only if offsets went backwards (never on the append path): restore the order.
            self.ongoing_txns = OrderedDict(sorted(ongoing.items()))

    def first_unstable_offset(self) -> int | None:
        """First offset of the oldest open transaction (Kafka's firstUnstableOffset)."""
        return next(iter(self.ongoing_txns), None)

    def note_end_offset(self, end_offset: int) -> None:
        self.map_end_offset = end_offset

    def apply_from_log(
        self, h: BatchHeader, marker: EndTransactionMarker | None = None
    ) -> CompletedTxn | None:
        """Replay a batch already in the log: no checks (Kafka's REPLICATION/recovery origin).
        For a control batch pass its ``marker``; the transaction it completes is returned and
        stays ongoing until the caller passes it to :meth:`complete_txn`."""
        pid = h.producer_id
        if pid < 0:
            return None
        entry = self.producers.get(pid)
        if h.is_control:
            if marker is None:
                return None  # not a transaction marker
            if entry is None:
                entry = self.producers[pid] = ProducerStateEntry(pid)
            completed = self._end_txn(
                entry, h.producer_epoch, marker.commit, marker.coordinator_epoch, h.base_offset
            )
            entry.last_timestamp = h.max_timestamp
            self.map_end_offset = h.next_offset
            return completed
        if entry is None:
            entry = self.producers[pid] = ProducerStateEntry(pid)
        elif h.producer_epoch < entry.producer_epoch:
            return None
        entry.add_batch(h.producer_epoch, _metadata(h))
        if h.is_transactional and entry.current_txn_first_offset is None:
            entry.current_txn_first_offset = h.base_offset
            self._add_ongoing(h.base_offset, pid)
        self.map_end_offset = h.next_offset
        return None

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        return self.producers.get(producer_id)

    # -- expiration -------------------------------------------------------------------------

    def remove_expired(self, now_ms: int) -> int:
        """Forget producers whose last batch is older than producer.id.expiration.ms, unless
        their transaction is still open (it holds the LSO back; forgetting it would free it)."""
        limit = now_ms - self.expiration_ms
        expired = [
            pid
            for pid, e in self.producers.items()
            if e.last_timestamp <= limit and e.current_txn_first_offset is None
        ]
        for pid in expired:
            del self.producers[pid]
        return len(expired)

    # -- snapshots --------------------------------------------------------------------------

    def snapshot_offsets(self) -> list[int]:
        out = []
        for entry in os.scandir(self.dir):
            off = parse_snapshot_offset(entry.name)
            if off is not None:
                out.append(off)
        out.sort()
        return out

    def take_snapshot(self, now_ms: int | None = None, fsync: bool = False) -> int:
        """Write the state as of ``map_end_offset``; returns that offset. Written to a temp
        file and renamed, so a crash leaves the old file or the new one, never a torn one."""
        if now_ms is not None:
            self.remove_expired(now_ms)
        offset = self.map_end_offset
        path = self.dir / snapshot_file_name(offset)
        tmp = path.with_name(path.name + ".tmp")
        data = encode_snapshot(offset, self.producers.values())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return offset

    def delete_snapshots_before(self, offset: int) -> None:
        """Remove snapshots below ``offset`` (the log's first segment), but keep the newest
        one: it still describes producers whose batches retention removed."""
        offsets = self.snapshot_offsets()
        for off in offsets[:-1]:
            if off < offset:
                self._unlink(off)

    def delete_snapshots_in(self, start: int, end: int) -> None:
        """Remove snapshots at offsets in [start, end): the cleaner rewrote those segments, and
        a snapshot there may know of transactions whose markers it removed."""
        for off in self.snapshot_offsets():
            if start <= off < end:
                self._unlink(off)

    def delete_snapshots_after(self, offset: int) -> None:
        for off in self.snapshot_offsets():
            if off > offset:
                self._unlink(off)

    def _unlink(self, offset: int) -> None:
        try:
            os.unlink(self.dir / snapshot_file_name(offset))
        except FileNotFoundError:
            pass

    def load_latest_snapshot(self, upper_offset: int) -> int | None:
        """Load the newest readable snapshot at or below ``upper_offset`` (the LEO, or the
        first segment recovery replays; newer ones are deleted: the log was truncated below
        them, or is replayed past them). Returns its offset, or None (empty state)."""
        self.delete_snapshots_after(upper_offset)
        for off in reversed(self.snapshot_offsets()):
            path = self.dir / snapshot_file_name(off)
            try:
                snap_offset, producers = decode_snapshot(path.read_bytes())
                if snap_offset != off:
                    raise CorruptSnapshotError(f"file name says {off}, contents {snap_offset}")
            except (OSError, CorruptSnapshotError):
                self._unlink(off)  # a torn or foreign file: fall back to an older one
                continue
            self._set_state(producers, off)
            return off
        self._set_state({}, 0)
        return None

    def _set_state(self, producers: dict[int, ProducerStateEntry], map_end_offset: int) -> None:
        self.producers = producers
        self.map_end_offset = map_end_offset
        self.ongoing_txns = OrderedDict(
            sorted(
                (e.current_txn_first_offset, pid)
                for pid, e in producers.items()
                if e.current_txn_first_offset is not None
            )
        )
