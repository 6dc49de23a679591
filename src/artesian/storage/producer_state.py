"""Per-partition state of idempotent producers (Kafka's ProducerStateManager).

For every producer id seen in the partition we keep its epoch and the metadata of its last five
batches (``BatchMetadata``). A produce request is checked against it before anything is written:

- a batch equal (epoch, first and last sequence) to one of the last five is a duplicate: the log
  appends nothing and answers with the original offsets (Kafka answers NONE with them);
- an epoch lower than the producer's latest is a zombie: INVALID_PRODUCER_EPOCH (47);
- a new epoch must start at sequence 0, and within an epoch each batch must continue the last
  sequence (wrapping after Int32.MAX): otherwise OUT_OF_ORDER_SEQUENCE_NUMBER (45);
- a producer id with no state accepts any sequence. Since KIP-360 (Kafka 2.5) the broker no
  longer answers UNKNOWN_PRODUCER_ID (59): state may be gone because retention or DeleteRecords
  removed the producer's batches, or because it expired, and the client's epoch bump recovers.

The state is checkpointed in snapshot files ``<offset, 20 digits>.snapshot`` in the partition
directory: the state of all batches below ``offset``. They are written when a segment rolls and
on a clean close; on open, the latest snapshot at or below the log end offset is loaded and the
batches after it are replayed from the log by reading batch headers only.

Where we differ from Kafka: the snapshot keeps all five batches of each producer (Kafka keeps
the last one), so duplicates of older in-flight batches are still found after a restart; the
file format is our own (below); transactions are not implemented, so there is no transaction
state and transactional batches are refused with INVALID_TXN_STATE (48).

Snapshot format (big-endian)::

    magic b"ARPS" | version int16 = 1 | crc32c uint32 of everything after it
    | offset int64 | producer count int32
    then per producer:  producer_id int64 | epoch int16 | last_timestamp int64 | batch count int8
    then per batch:     first_seq int32 | last_seq int32 | first_offset int64 | last_offset int64
                        | max_timestamp int64
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crc32c import crc32c

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
)

__all__ = [
    "DEFAULT_PRODUCER_ID_EXPIRATION_MS",
    "MAX_BATCHES_PER_PRODUCER",
    "NO_PRODUCER_EPOCH",
    "SNAPSHOT_SUFFIX",
    "BatchMetadata",
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
_VERSION = 1
_FILE_HEADER = struct.Struct(">4shI")  # magic, version, crc
_BODY_HEADER = struct.Struct(">qi")  # offset, producer count
_ENTRY = struct.Struct(">qhqb")
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


@dataclass(slots=True)
class ProducerStateEntry:
    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    batches: list[BatchMetadata] = field(default_factory=list)  # oldest first
    last_timestamp: int = -1

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

    def add_batch(self, epoch: int, batch: BatchMetadata) -> None:
        if epoch != self.producer_epoch:
            # A new epoch restarts the sequence: older batches can no longer be duplicates.
            self.batches = []
            self.producer_epoch = epoch
        self.batches.append(batch)
        if len(self.batches) > MAX_BATCHES_PER_PRODUCER:
            del self.batches[0]
        self.last_timestamp = batch.max_timestamp

    def copy(self) -> ProducerStateEntry:
        return ProducerStateEntry(
            self.producer_id, self.producer_epoch, list(self.batches), self.last_timestamp
        )


@dataclass(slots=True)
class ProducerAppend:
    """The outcome of checking one append: the producers' entries as they will be once it is
    written, or the earlier batch it duplicates (then nothing is written)."""

    updates: dict[int, ProducerStateEntry] = field(default_factory=dict)
    duplicate: BatchMetadata | None = None


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
        body += _ENTRY.pack(e.producer_id, e.producer_epoch, e.last_timestamp, len(e.batches))
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
            pid, epoch, last_ts, n = _ENTRY.unpack_from(payload, pos)
            pos += _ENTRY.size
            batches = []
            for _ in range(n):
                batches.append(BatchMetadata(*_BATCH.unpack_from(payload, pos)))
                pos += _BATCH.size
            producers[pid] = ProducerStateEntry(pid, epoch, batches, last_ts)
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

    # -- the append path ------------------------------------------------------------------------

    def prepare_append(self, records: bytes | bytearray | memoryview) -> ProducerAppend:
        """Check a client's validated batches (offsets assigned) without changing the state.
        Raises OutOfOrderSequenceError, InvalidProducerEpochError or InvalidTxnStateError."""
        result = ProducerAppend()
        updates = result.updates
        for h in producer_batches(records):
            if h.is_transactional:
                raise InvalidTxnStateError(
                    f"transactional batch from producer {h.producer_id}: this broker does not "
                    "support transactions"
                )
            pid = h.producer_id
            current = self.producers.get(pid)
            if current is not None:
                dup = current.find_duplicate(h.producer_epoch, h.base_sequence, h.last_sequence)
                if dup is not None:
                    # As Kafka: the whole request is answered as that duplicate.
                    return ProducerAppend(duplicate=dup)
            entry = updates.get(pid)
            if entry is None:
                entry = current.copy() if current is not None else ProducerStateEntry(pid)
                updates[pid] = entry
            self._check(entry, h)
            entry.add_batch(h.producer_epoch, _metadata(h))
        return result

    @staticmethod
    def _check(entry: ProducerStateEntry, h: BatchHeader) -> None:
        epoch, first_seq = h.producer_epoch, h.base_sequence
        if epoch < entry.producer_epoch:
            raise InvalidProducerEpochError(
                f"epoch {epoch} of producer {h.producer_id} at offset {h.base_offset} is older "
                f"than its latest epoch {entry.producer_epoch}"
            )
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

    def complete_append(self, append: ProducerAppend, end_offset: int) -> None:
        """The append was written: make its updates the state."""
        self.producers.update(append.updates)
        self.map_end_offset = end_offset

    def note_end_offset(self, end_offset: int) -> None:
        self.map_end_offset = end_offset

    def apply_from_log(self, h: BatchHeader) -> None:
        """Replay a batch already in the log: no checks (Kafka's REPLICATION/recovery origin)."""
        if h.producer_id < 0 or h.is_control:
            return
        entry = self.producers.get(h.producer_id)
        if entry is None:
            entry = self.producers[h.producer_id] = ProducerStateEntry(h.producer_id)
        elif h.producer_epoch < entry.producer_epoch:
            return
        entry.add_batch(h.producer_epoch, _metadata(h))
        self.map_end_offset = h.next_offset

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        return self.producers.get(producer_id)

    # -- expiration -------------------------------------------------------------------------

    def remove_expired(self, now_ms: int) -> int:
        """Forget producers whose last batch is older than producer.id.expiration.ms."""
        limit = now_ms - self.expiration_ms
        expired = [pid for pid, e in self.producers.items() if e.last_timestamp <= limit]
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

    def delete_snapshots_after(self, offset: int) -> None:
        for off in self.snapshot_offsets():
            if off > offset:
                self._unlink(off)

    def _unlink(self, offset: int) -> None:
        try:
            os.unlink(self.dir / snapshot_file_name(offset))
        except FileNotFoundError:
            pass

    def load_latest_snapshot(self, log_end_offset: int) -> int | None:
        """Load the newest readable snapshot at or below ``log_end_offset`` (newer ones are
        deleted: the log was truncated below them). Returns its offset, or None (empty state)."""
        self.delete_snapshots_after(log_end_offset)
        for off in reversed(self.snapshot_offsets()):
            path = self.dir / snapshot_file_name(off)
            try:
                snap_offset, producers = decode_snapshot(path.read_bytes())
                if snap_offset != off:
                    raise CorruptSnapshotError(f"file name says {off}, contents {snap_offset}")
            except (OSError, CorruptSnapshotError):
                self._unlink(off)  # a torn or foreign file: fall back to an older one
                continue
            self.producers = producers
            self.map_end_offset = off
            return off
        self.producers = {}
        self.map_end_offset = 0
        return None
