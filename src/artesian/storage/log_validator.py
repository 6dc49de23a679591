"""Validate a produce request's records and assign offsets (Kafka's LogValidator).

The normal path (``compression.type=producer``) never decodes records: per batch it parses the
61-byte header, checks the CRC, sizes, offset-count sanity and timestamps, then patches
``baseOffset`` and ``partitionLeaderEpoch`` in place (neither is CRC-covered).

Where we differ from Kafka: timestamps are checked at batch granularity (base and max timestamp,
which bound every record's timestamp for a well-formed batch), and compressed batches are not
decompressed to check each record. ``offset_of_max_timestamp`` is the last offset of the batch
holding the largest max timestamp (Kafka's "shallow" offset of max timestamp).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from artesian.protocol.compression import (
    DEFAULT_MAX_DECOMPRESSED_SIZE,
    CompressionError,
    DecompressedSizeExceeded,
    compress,
    decompress,
)
from artesian.protocol.record_codec import read_varint
from artesian.protocol.records import (
    ATTR_COMPRESSION_MASK,
    ATTR_TIMESTAMP_TYPE,
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    InvalidBatch,
    batch_crc_ok,
    patch_batch,
    read_batch_header,
    set_crc,
)
from artesian.storage.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    RecordTooLargeError,
)
from artesian.storage.log_config import LogConfig

__all__ = ["LogAppendInfo", "validate_and_assign_offsets"]

_ATTRS = struct.Struct(">h")
_MAX_TS = struct.Struct(">q")
_LENGTH = struct.Struct(">i")
NO_TIMESTAMP = -1


@dataclass(slots=True)
class LogAppendInfo:
    first_offset: int
    last_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    log_append_time: int  # -1 for CreateTime
    records: bytearray | memoryview  # what to append: the input, patched, or rebuilt batches
    batch_count: int
    records_count: int  # sum of the batch headers' counts
    first_batch_timestamp: int  # base timestamp of the first batch (segment.ms roll)
    log_start_offset: int = 0  # filled in by Log after the append
    recompressed: bool = False
    # A retried idempotent batch: nothing was appended; the offsets are the original ones.
    duplicate: bool = False

    @property
    def size(self) -> int:
        return len(self.records)


def validate_and_assign_offsets(
    records: bytearray | memoryview,
    *,
    base_offset: int,
    leader_epoch: int,
    config: LogConfig,
    now_ms: int,
    from_client: bool = True,
) -> LogAppendInfo:
    """Validate whole v2 batches in ``records`` (mutated in place) and give them offsets
    starting at ``base_offset``. Raises a StorageError subclass naming the Kafka error.
    ``from_client`` is False for a coordinator's own writes, which carry no sequence."""
    buf = memoryview(records).cast("B")
    end = len(buf)
    if end == 0:
        raise CorruptRecordError("empty records")
    target = config.target_codec
    log_append = config.log_append_time
    pos = 0
    offset = base_offset
    max_ts = NO_TIMESTAMP
    offset_of_max_ts = base_offset
    batch_count = 0
    records_count = 0
    first_ts = NO_TIMESTAMP
    rebuilt: list[bytes | memoryview] | None = None
    while pos < end:
        h = _check_batch(buf, pos, end, config, now_ms, log_append, from_client)
        if config.compact_enabled:
            _check_keys(buf, pos, h)  # only compacted topics pay for decoding records
        size = h.size
        patch_batch(buf, pos, offset, leader_epoch)
        if log_append:
            _ATTRS.pack_into(buf, pos + 21, h.attributes | ATTR_TIMESTAMP_TYPE)
            _MAX_TS.pack_into(buf, pos + 35, now_ms)
            set_crc(buf, pos, size)
        batch_max_ts = now_ms if log_append else h.max_timestamp
        if batch_count == 0:
            first_ts = h.base_timestamp
        last = offset + h.last_offset_delta
        if batch_max_ts > max_ts:
            max_ts = batch_max_ts
            offset_of_max_ts = offset if log_append else last
        if target is not None and h.compression != target:
            if rebuilt is None:
                rebuilt = [buf[:pos]]
            rebuilt.append(_recompress(buf, pos, h, target, config))
        elif rebuilt is not None:
            rebuilt.append(buf[pos : pos + size])
        records_count += h.records_count
        batch_count += 1
        offset = last + 1
        pos += size
    out: bytearray | memoryview = records
    if rebuilt is not None:
        out = bytearray().join(rebuilt)
    return LogAppendInfo(
        first_offset=base_offset,
        last_offset=offset - 1,
        max_timestamp=max_ts,
        offset_of_max_timestamp=offset_of_max_ts,
        log_append_time=now_ms if log_append else -1,
        records=out,
        batch_count=batch_count,
        records_count=records_count,
        first_batch_timestamp=now_ms if log_append else first_ts,
        recompressed=rebuilt is not None,
    )


def _check_batch(
    buf: memoryview,
    pos: int,
    end: int,
    config: LogConfig,
    now_ms: int,
    log_append: bool,
    from_client: bool,
) -> BatchHeader:
    try:
        h = read_batch_header(buf, pos)
    except InvalidBatch as e:
        raise CorruptRecordError(f"batch at byte {pos}: {e}") from None
    size = h.size
    if size > config.max_message_bytes:
        raise RecordTooLargeError(
            f"batch of {size} bytes exceeds max.message.bytes={config.max_message_bytes}"
        )
    if pos + size > end:
        raise CorruptRecordError(f"partial batch at byte {pos}: {size} bytes, {end - pos} left")
    if not batch_crc_ok(buf, pos, h):
        raise CorruptRecordError(f"CRC mismatch in batch at byte {pos}")
    if h.records_count < 1 or h.last_offset_delta != h.records_count - 1:
        raise InvalidRecordError(
            f"batch at byte {pos} has {h.records_count} records but "
            f"lastOffsetDelta {h.last_offset_delta}"
        )
    if h.is_control:
        raise InvalidRecordError("clients may not produce control batches")
    if from_client and h.producer_id >= 0 and h.base_sequence < 0:
        # A producer id promises sequence numbers: without one, duplicates go undetected.
        raise InvalidRecordError(
            f"invalid sequence number {h.base_sequence} in batch with producer id {h.producer_id}"
        )
    _check_record_count(buf, pos, h)
    if not log_append:
        for ts in (h.base_timestamp, h.max_timestamp):
            if ts == NO_TIMESTAMP:
                continue
            if now_ms - ts > config.message_timestamp_before_max_ms:
                raise InvalidTimestampError(
                    f"timestamp {ts} is more than message.timestamp.before.max.ms="
                    f"{config.message_timestamp_before_max_ms} before now ({now_ms})"
                )
            if ts - now_ms > config.message_timestamp_after_max_ms:
                raise InvalidTimestampError(
                    f"timestamp {ts} is more than message.timestamp.after.max.ms="
                    f"{config.message_timestamp_after_max_ms} after now ({now_ms})"
                )
    return h


# The smallest record: length, attributes, timestamp delta, offset delta, key length, value
# length and header count, one byte each.
MIN_RECORD_SIZE = 7


def _check_record_count(buf: memoryview, pos: int, h: BatchHeader) -> None:
    """A batch may not claim more records than its bytes can hold: the count decides how far
    the log end offset moves, so a lie would burn offsets (Kafka reads the records to check).
    Uncompressed: O(1). Compressed: the records are decompressed (in C), never parsed."""
    payload = buf[pos + BATCH_HEADER_SIZE : pos + h.size]
    available = len(payload)
    if h.compression and h.records_count * MIN_RECORD_SIZE > available:
        limit = h.records_count * MIN_RECORD_SIZE
        try:
            available = len(decompress(h.compression, payload, limit))
        except DecompressedSizeExceeded:
            return  # at least `limit` bytes of records: the count is plausible
        except CompressionError as e:
            raise CorruptRecordError(f"batch at byte {pos}: {e}") from None
    if h.records_count * MIN_RECORD_SIZE > available:
        raise InvalidRecordError(
            f"batch at byte {pos} claims {h.records_count} records in {available} bytes"
        )


def _check_keys(buf: memoryview, pos: int, h: BatchHeader) -> None:
    """Kafka refuses records without a key on compacted topics: compaction could not keep them."""
    body = buf[pos + BATCH_HEADER_SIZE : pos + h.size]
    try:
        data = (
            decompress(h.compression, body, DEFAULT_MAX_DECOMPRESSED_SIZE)
            if h.compression
            else body
        )
        rec = 0
        for _ in range(h.records_count):
            length, rec = read_varint(data, rec)
            end = rec + length
            _, p = read_varint(data, rec + 1)  # timestamp delta, after the attributes byte
            _, p = read_varint(data, p)  # offset delta
            key_length, _ = read_varint(data, p)
            if key_length < 0:
                raise InvalidRecordError(
                    f"Compacted topic cannot accept message without key in batch at byte {pos}"
                )
            rec = end
    except (InvalidBatch, CompressionError) as e:
        raise CorruptRecordError(f"batch at byte {pos}: {e}") from None


def _recompress(buf: memoryview, pos: int, h: BatchHeader, target: int, config: LogConfig) -> bytes:
    """Rebuild one batch with its records part in the ``target`` codec."""
    body = buf[pos + BATCH_HEADER_SIZE : pos + h.size]
    try:
        raw = decompress(h.compression, body, DEFAULT_MAX_DECOMPRESSED_SIZE)
        new_body = compress(target, raw, config.compression_level(target))
    except CompressionError as e:
        raise CorruptRecordError(f"batch at byte {pos}: {e}") from None
    out = bytearray(BATCH_HEADER_SIZE + len(new_body))
    out[:BATCH_HEADER_SIZE] = buf[pos : pos + BATCH_HEADER_SIZE]
    out[BATCH_HEADER_SIZE:] = new_body
    _LENGTH.pack_into(out, 8, len(out) - LOG_OVERHEAD)
    # The header as patched (LogAppendTime's flag), not as the producer sent it.
    (attributes,) = _ATTRS.unpack_from(out, 21)
    _ATTRS.pack_into(out, 21, (attributes & ~ATTR_COMPRESSION_MASK) | target)
    set_crc(out, 0, len(out))
    if len(out) > config.max_message_bytes:
        raise RecordTooLargeError(
            f"recompressed batch of {len(out)} bytes exceeds "
            f"max.message.bytes={config.max_message_bytes}"
        )
    return bytes(out)
