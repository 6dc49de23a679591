"""Encode and decode the records inside a RecordBatch v2 (sans-IO).

Off the hot paths only: the broker's own internal topics (``__consumer_offsets``), log
compaction, transaction markers, and tools. Produce and Fetch never come here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from artesian.protocol.compression import compress, decompress
from artesian.protocol.records import (
    ATTR_COMPRESSION_MASK,
    ATTR_CONTROL,
    ATTR_TRANSACTIONAL,
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    InvalidBatch,
    set_crc,
)

__all__ = [
    "CONTROL_TYPE_ABORT",
    "CONTROL_TYPE_COMMIT",
    "EndTransactionMarker",
    "Record",
    "decode_end_txn_marker",
    "decode_records",
    "encode_batch",
    "encode_control_batch",
    "read_varint",
    "write_varint",
]

_HEADER = struct.Struct(">qiibIhiqqqhii")
# Control records (Kafka's ControlRecordType / EndTransactionMarker): key = version, type;
# value of a COMMIT or ABORT = version, coordinator epoch.
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")
CONTROL_TYPE_ABORT = 0
CONTROL_TYPE_COMMIT = 1


RecordTuple = tuple[bytes | None, bytes | None, int, Sequence[tuple[str, bytes | None]]]
"""(key, value, timestamp, headers)"""


@dataclass(slots=True, frozen=True)
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def write_varint(out: bytearray, n: int) -> None:
    """Zigzag varint, as records use."""
    z = (n << 1) ^ (n >> 63)
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    z = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise InvalidBatch("truncated varint in record")
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if not b & 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise InvalidBatch("varint too long in record")


def _write_bytes(out: bytearray, b: bytes | None) -> None:
    if b is None:
        write_varint(out, -1)
    else:
        write_varint(out, len(b))
        out += b


def _read_bytes(buf: bytes | memoryview, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_varint(buf, pos)
    if n < 0:
        return None, pos
    if pos + n > len(buf):
        raise InvalidBatch("record field runs past the batch")
    return bytes(buf[pos : pos + n]), pos + n


def encode_batch(
    records: Sequence[RecordTuple],
    *,
    base_offset: int = 0,
    codec: int = 0,
    attributes: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    offset_deltas: Sequence[int] | None = None,
) -> bytearray:
    """A complete batch from (key, value, timestamp, headers) tuples, CRC set."""
    if not records:
        raise ValueError("a batch needs at least one record")
    base_ts = min(r[2] for r in records)
    max_ts = max(r[2] for r in records)
    body = bytearray()
    for i, r in enumerate(records):
        key, value, ts, headers = r
        rec = bytearray(b"\x00")
        write_varint(rec, ts - base_ts)
        write_varint(rec, offset_deltas[i] if offset_deltas is not None else i)
        _write_bytes(rec, key)
        _write_bytes(rec, value)
        write_varint(rec, len(headers))
        for hk, hv in headers:
            _write_bytes(rec, hk.encode())
            _write_bytes(rec, hv)
        write_varint(body, len(rec))
        body += rec
    payload = compress(codec, bytes(body)) if codec else bytes(body)
    last_delta = offset_deltas[-1] if offset_deltas is not None else len(records) - 1
    size = BATCH_HEADER_SIZE + len(payload)
    out = bytearray(size)
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        size - LOG_OVERHEAD,
        -1,
        2,
        0,
        (attributes & ~ATTR_COMPRESSION_MASK) | codec,
        last_delta,
        base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    out[BATCH_HEADER_SIZE:] = payload
    set_crc(out, 0, size)
    return out


@dataclass(slots=True, frozen=True)
class EndTransactionMarker:
    """The record of a COMMIT or ABORT control batch."""

    commit: bool
    coordinator_epoch: int


def encode_control_batch(
    marker: EndTransactionMarker,
    *,
    producer_id: int,
    producer_epoch: int,
    timestamp: int,
    base_offset: int = 0,
    attributes: int = 0,
) -> bytearray:
    """A transaction marker: a transactional control batch of one record, no sequence.
    ``attributes`` may add the timestamp type bit."""
    control_type = CONTROL_TYPE_COMMIT if marker.commit else CONTROL_TYPE_ABORT
    return encode_batch(
        [
            (
                _CONTROL_KEY.pack(0, control_type),
                _END_TXN_VALUE.pack(0, marker.coordinator_epoch),
                timestamp,
                (),
            )
        ],
        base_offset=base_offset,
        attributes=attributes | ATTR_TRANSACTIONAL | ATTR_CONTROL,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
    )


def decode_end_txn_marker(record: Record) -> EndTransactionMarker | None:
    """The marker in a control record; None for other control types (e.g. LEADER_CHANGE),
    which say nothing about transactions."""
    key, value = record.key, record.value
    if key is None or len(key) < _CONTROL_KEY.size:
        raise InvalidBatch("control record without a valid key")
    _, control_type = _CONTROL_KEY.unpack_from(key)
    if control_type not in (CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT):
        return None
    if value is None or len(value) < _END_TXN_VALUE.size:
        raise InvalidBatch("transaction marker without a valid value")
    _, coordinator_epoch = _END_TXN_VALUE.unpack_from(value)
    return EndTransactionMarker(control_type == CONTROL_TYPE_COMMIT, coordinator_epoch)


def decode_records(
    batch: bytes | bytearray | memoryview, header: BatchHeader, max_size: int = 256 << 20
) -> Iterator[Record]:
    """Every record of one batch (``batch`` starts at the batch header)."""
    payload = memoryview(batch)[BATCH_HEADER_SIZE : header.size]
    data: bytes | memoryview = (
        decompress(header.compression, payload, max_size) if header.compression else payload
    )
    pos = 0
    for _ in range(header.records_count):
        length, pos = read_varint(data, pos)
        end = pos + length
        if length < 0 or end > len(data):
            raise InvalidBatch("record length runs past the batch")
        pos += 1  # attributes
        ts_delta, pos = read_varint(data, pos)
        offset_delta, pos = read_varint(data, pos)
        key, pos = _read_bytes(data, pos)
        value, pos = _read_bytes(data, pos)
        n_headers, pos = read_varint(data, pos)
        headers = []
        for _ in range(max(0, n_headers)):
            hk, pos = _read_bytes(data, pos)
            hv, pos = _read_bytes(data, pos)
            headers.append(((hk or b"").decode("utf-8", "replace"), hv))
        if pos != end:
            raise InvalidBatch("record size does not match its length prefix")
        timestamp = (
            header.max_timestamp if header.is_log_append_time else header.base_timestamp + ts_delta
        )
        yield Record(header.base_offset + offset_delta, timestamp, key, value, tuple(headers))
