"""RecordBatch v2 header view (sans-IO).

The broker never decodes records on its hot paths: it reads the 61-byte batch header, checks
the CRC32C (which covers everything from ``attributes`` to the end of the batch) and patches
``baseOffset`` and ``partitionLeaderEpoch``, which the CRC does not cover.

Layout (big-endian)::

    0  baseOffset int64        8  batchLength int32      12 partitionLeaderEpoch int32
    16 magic int8              17 crc uint32             21 attributes int16
    23 lastOffsetDelta int32   27 baseTimestamp int64    35 maxTimestamp int64
    43 producerId int64        51 producerEpoch int16    53 baseSequence int32
    57 recordsCount int32      61 records...
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from crc32c import crc32c

__all__ = [
    "BATCH_HEADER_SIZE",
    "LOG_OVERHEAD",
    "BatchHeader",
    "CompressionType",
    "InvalidBatch",
    "batch_crc_ok",
    "iter_batches",
    "patch_batch",
    "read_batch_header",
]

BATCH_HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: what batchLength does not count
CRC_START = 21

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_AND_EPOCH = struct.Struct(">q")
_EPOCH = struct.Struct(">i")

ATTR_COMPRESSION_MASK = 0x07
ATTR_TIMESTAMP_TYPE = 0x08  # 1 = LogAppendTime
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40

NO_PRODUCER_ID = -1
NO_SEQUENCE = -1


class CompressionType:
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4
    NAMES = ("none", "gzip", "snappy", "lz4", "zstd")


class InvalidBatch(ValueError):
    """The bytes are not a well-formed RecordBatch v2."""


@dataclass(slots=True, frozen=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_COMPRESSION_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & ATTR_TIMESTAMP_TYPE)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) % 0x80000000


def read_batch_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at ``pos``; raises InvalidBatch if it cannot be a v2 batch."""
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise InvalidBatch("truncated batch header")
    h = BatchHeader(*_HEADER.unpack_from(buf, pos))
    if h.magic != 2:
        raise InvalidBatch(f"unsupported magic {h.magic}")
    if h.batch_length < BATCH_HEADER_SIZE - LOG_OVERHEAD:
        raise InvalidBatch(f"batch length {h.batch_length} is too small")
    return h


def batch_crc_ok(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> bool:
    end = pos + header.size
    if end > len(buf):
        return False
    view = memoryview(buf)[pos + CRC_START : end]
    return crc32c(view) == header.crc


def iter_batches(
    buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) of each complete batch; stops silently at a partial one,
    raises InvalidBatch on a malformed header."""
    end = len(buf) if end is None else end
    while end - pos >= BATCH_HEADER_SIZE:
        h = read_batch_header(buf, pos)
        if pos + h.size > end:
            return
        yield pos, h
        pos += h.size


def patch_batch(buf: bytearray | memoryview, pos: int, base_offset: int, leader_epoch: int) -> None:
    """Set the fields the broker owns; neither is covered by the CRC."""
    _OFFSET_AND_EPOCH.pack_into(buf, pos, base_offset)
    _EPOCH.pack_into(buf, pos + 12, leader_epoch)


def compute_crc(buf: bytes | bytearray | memoryview, pos: int, size: int) -> int:
    return int(crc32c(memoryview(buf)[pos + CRC_START : pos + size]))


def set_crc(buf: bytearray | memoryview, pos: int, size: int) -> None:
    struct.pack_into(">I", buf, pos + 17, compute_crc(buf, pos, size))
