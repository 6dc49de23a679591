"""Validate a produce request's records and assign offsets (Kafka's LogValidator).

Per batch: the 61-byte header (CRC, sizes, offset-count sanity, timestamps), then every record's
structure, as Kafka reads each record before it appends: lengths that add up, exactly as many
records as the header claims, nothing left over (``_walk_records``). A batch that passes is
given its offsets in place (``baseOffset`` and ``partitionLeaderEpoch`` are not CRC-covered);
nothing is copied or re-encoded unless the topic's ``compression.type`` asks for another codec.
The walk is what stops a hostile batch from burning offsets (a count of 2^31 over a few bytes)
or leaving records in the log that every consumer chokes on; compressed batches are
decompressed for it, to at most DEFAULT_MAX_DECOMPRESSED_SIZE.

Where we differ from Kafka: timestamps are checked at batch granularity (base and max timestamp,
which bound every record's timestamp for a well-formed batch). ``offset_of_max_timestamp`` is
the last offset of the batch holding the largest max timestamp (Kafka's "shallow" offset of max
timestamp).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from artesian.protocol.compression import (
    DEFAULT_MAX_DECOMPRESSED_SIZE,
    CompressionError,
    DecompressedSizeExceeded,
    UnsupportedCodec,
    compress,
    decompress,
)
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

__all__ = ["LogAppendInfo", "check_compressed_batch", "validate_and_assign_offsets"]

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
    checked: bytes | None = None,
) -> LogAppendInfo:
    """Validate whole v2 batches in ``records`` (mutated in place) and give them offsets
    starting at ``base_offset``. Raises a StorageError subclass naming the Kafka error.
    ``from_client`` is False for a coordinator's own writes, which carry no sequence.
    ``checked``: the records of ``records``' one compressed batch, decompressed and walked
    already (``check_compressed_batch``, off the event loop)."""
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
        if checked is not None and pos == 0 and h.compression:
            raw: bytes | None = checked
        else:
            raw = _check_records(buf, pos, h, config.compact_enabled)
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
            rebuilt.append(_recompress(buf, pos, h, raw, target, config))
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
    if from_client and h.base_offset != 0:
        raise InvalidRecordError(
            f"The baseOffset of the record batch should be 0, but it is {h.base_offset}"
        )
    if from_client and h.is_log_append_time:
        raise InvalidTimestampError(
            "Invalid timestamp type in the batch. Producer should not set timestamp type to "
            "LogAppendTime."
        )
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


def check_compressed_batch(records: memoryview, keys_required: bool) -> bytes | None:
    """Decompress and walk the records of a compressed batch before its append, for a
    caller that runs this off the event loop: a hostile batch of a few kilobytes may hold
    hundreds of megabytes of tiny records. Returns its records for
    ``validate_and_assign_offsets(checked=...)``, None when the batch is not one to check
    here (uncompressed, or a header the append refuses anyway); raises a StorageError."""
    try:
        h = read_batch_header(records, 0)
    except InvalidBatch:
        return None
    if not h.compression or h.size != len(records) or not batch_crc_ok(records, 0, h):
        return None
    return _check_records(memoryview(records).cast("B"), 0, h, keys_required)


# A record's body at its smallest: attributes, timestamp delta, offset delta, key length,
# value length and header count, one byte each.
MIN_RECORD_BODY = 6
# zigzag-decoded one-byte varints: most lengths and deltas fit in one byte.
_ZIGZAG = tuple((b >> 1) ^ -(b & 1) for b in range(0x80))


def _check_records(buf: memoryview, pos: int, h: BatchHeader, keys_required: bool) -> bytes | None:
    """Walk every record of the batch at ``pos``; a compressed batch's records are
    decompressed for it, and returned for reuse."""
    payload = buf[pos + BATCH_HEADER_SIZE : pos + h.size]
    raw = None
    if h.compression:
        try:
            raw = decompress(h.compression, payload, DEFAULT_MAX_DECOMPRESSED_SIZE)
        except UnsupportedCodec as e:
            raise InvalidRecordError(f"batch at byte {pos}: {e}") from None
        except DecompressedSizeExceeded as e:
            raise InvalidRecordError(f"batch at byte {pos}: {e}") from None
        except CompressionError as e:
            raise CorruptRecordError(f"batch at byte {pos}: {e}") from None
    try:
        _walk_records(payload if raw is None else raw, h.records_count, keys_required)
    except InvalidRecordError as e:
        raise InvalidRecordError(f"batch at byte {pos}: {e}") from None
    return raw


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos``: (value, position after it). Five bytes at most, as
    Kafka's ByteUtils.readVarint reads them."""
    z = shift = 0
    while True:
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 28:
            raise InvalidRecordError("varint is too long")


def _walk_records(
    data: bytes | memoryview, count: int, keys_required: bool, zigzag: tuple[int, ...] = _ZIGZAG
) -> None:
    """Check that ``data`` holds exactly ``count`` well-formed records, as Kafka's
    DefaultRecord.readFrom reads them: each one's fields fill its length exactly, lengths are
    -1 (null) or more, header keys are not null, and no byte is left over.

    The produce hot path, a few hundred nanoseconds a record: one- and two-byte varints (the
    lengths of records and values up to 8 KiB) are read inline, the deltas skipped undecoded,
    and a read past the end is the IndexError that says the structure is short."""
    pos = 0
    try:
        for _ in range(count):
            b = data[pos]
            if b < 0x80:
                length = zigzag[b]
                pos += 1
            elif data[pos + 1] < 0x80:
                z = (b & 0x7F) | (data[pos + 1] << 7)
                length = (z >> 1) ^ -(z & 1)
                pos += 2
            else:
                length, pos = _varint(data, pos)
            if length < MIN_RECORD_BODY:
                raise InvalidRecordError(f"invalid record length {length}")
            record_end = pos + length
            pos += 1  # attributes
            if data[pos] > 0x7F:  # a timestamp delta of more than a byte: 10 at most
                start = pos
                while data[pos] > 0x7F:
                    pos += 1
                if pos - start > 9:
                    raise InvalidRecordError("varlong is too long")
            pos += 1
            if data[pos] > 0x7F:  # an offset delta of more than a byte: 5 at most
                start = pos
                while data[pos] > 0x7F:
                    pos += 1
                if pos - start > 4:
                    raise InvalidRecordError("varint is too long")
            pos += 1
            b = data[pos]
            if b < 0x80:
                key = zigzag[b]
                pos += 1
            elif data[pos + 1] < 0x80:
                z = (b & 0x7F) | (data[pos + 1] << 7)
                key = (z >> 1) ^ -(z & 1)
                pos += 2
            else:
                key, pos = _varint(data, pos)
            if key > 0:
                pos += key
            elif key < 0 and (key < -1 or keys_required):
                raise InvalidRecordError(
                    "Compacted topic cannot accept message without key"
                    if key == -1
                    else f"invalid key length {key}"
                )
            b = data[pos]
            if b < 0x80:
                value = zigzag[b]
                pos += 1
            elif data[pos + 1] < 0x80:
                z = (b & 0x7F) | (data[pos + 1] << 7)
                value = (z >> 1) ^ -(z & 1)
                pos += 2
            else:
                value, pos = _varint(data, pos)
            if value > 0:
                pos += value
            elif value < -1:
                raise InvalidRecordError(f"invalid value length {value}")
            if data[pos]:
                headers, pos = _varint(data, pos)
                if headers < 0:
                    raise InvalidRecordError(f"Found invalid number of record headers {headers}")
                for _ in range(headers):
                    key, pos = _varint(data, pos)
                    if key < 0:
                        raise InvalidRecordError(f"Invalid negative header key size {key}")
                    value, pos = _varint(data, pos + key)
                    if value > 0:
                        pos += value
                    elif value < -1:
                        raise InvalidRecordError(f"invalid header value length {value}")
            else:
                pos += 1
            if pos != record_end:
                if pos > len(data):
                    raise IndexError
                raise InvalidRecordError(
                    f"Invalid record size: expected to read {length} bytes in record payload, "
                    f"but instead read {pos - record_end + length}"
                )
    except IndexError:
        raise InvalidRecordError("Found invalid record structure") from None
    if pos != len(data):
        raise InvalidRecordError("Incorrect declared batch size, records still remaining in file")


def _recompress(
    buf: memoryview,
    pos: int,
    h: BatchHeader,
    raw: bytes | None,
    target: int,
    config: LogConfig,
) -> bytes:
    """Rebuild one batch with its records part in the ``target`` codec; ``raw``: its records
    decompressed, None when they are not compressed."""
    if raw is None:
        raw = bytes(buf[pos + BATCH_HEADER_SIZE : pos + h.size])
    try:
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
