"""Build and decode real RecordBatch v2 bytes for tests (independent of the broker's code)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from crc32c import crc32c

from artesian.protocol.compression import compress, decompress

_HEADER = struct.Struct(">qiibIhiqqqhii")


def zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    z = 0
    while True:
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (z >> 1) ^ -(z & 1), pos


@dataclass(frozen=True)
class Rec:
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...] = ()


def _bytes_field(b: bytes | None) -> bytes:
    return zigzag_varint(-1) if b is None else zigzag_varint(len(b)) + b


def encode_record(offset_delta: int, ts_delta: int, rec: Rec) -> bytes:
    body = bytearray(b"\x00")
    body += zigzag_varint(ts_delta) + zigzag_varint(offset_delta)
    body += _bytes_field(rec.key) + _bytes_field(rec.value)
    body += zigzag_varint(len(rec.headers))
    for hk, hv in rec.headers:
        body += _bytes_field(hk.encode()) + _bytes_field(hv)
    return zigzag_varint(len(body)) + bytes(body)


def make_batch(
    records: list[Rec] | None = None,
    *,
    n: int = 1,
    timestamp: int = 1_700_000_000_000,
    value_size: int = 10,
    codec: int = 0,
    base_offset: int = 0,
    attributes: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytearray:
    """A valid v2 batch. Without ``records``: ``n`` records with timestamps ``timestamp + i``
    and values ``b"v<i>"`` padded to ``value_size``."""
    if records is None:
        records = [
            Rec(f"k{i}".encode(), f"v{i}".encode().ljust(value_size, b"."), timestamp + i)
            for i in range(n)
        ]
    base_ts = records[0].timestamp
    raw = b"".join(encode_record(i, r.timestamp - base_ts, r) for i, r in enumerate(records))
    body = compress(codec, raw) if codec else raw
    attrs = attributes | codec
    max_ts = max(r.timestamp for r in records)
    length = 61 - 12 + len(body)
    header = bytearray(
        _HEADER.pack(
            base_offset,
            length,
            -1,
            2,
            0,
            attrs,
            len(records) - 1,
            base_ts,
            max_ts,
            producer_id,
            producer_epoch,
            base_sequence,
            len(records),
        )
    )
    out = header + body
    struct.pack_into(">I", out, 17, crc32c(bytes(out[21:])))
    return out


def batch_of(
    raw: bytes,
    count: int,
    *,
    codec: int = 0,
    attributes: int = 0,
    base_offset: int = 0,
    timestamp: int = 1_700_000_000_000,
) -> bytearray:
    """A batch around ``raw`` record bytes, claiming ``count`` records, with a good CRC:
    what a broken or hostile client may send. ``raw`` is taken as already compressed."""
    out = bytearray(
        _HEADER.pack(
            base_offset,
            61 - 12 + len(raw),
            -1,
            2,
            0,
            attributes | codec,
            count - 1,
            timestamp,
            timestamp,
            -1,
            -1,
            -1,
            count,
        )
    )
    out += raw
    struct.pack_into(">I", out, 17, crc32c(bytes(out[21:])))
    return out


def zstd_zeros(n: int) -> bytes:
    """A zstd frame of ``n`` zero bytes (a multiple of 128 KiB) in RLE blocks: 4 bytes each."""
    block = 128 * 1024
    blocks = n // block
    out = bytearray(b"\x28\xb5\x2f\xfd\x00\x38")  # magic; no content size; 128 KiB window
    for i in range(blocks):
        last = 1 if i == blocks - 1 else 0
        out += (last | 1 << 1 | block << 3).to_bytes(3, "little") + b"\x00"  # RLE of 0x00
    return bytes(out)


@dataclass(frozen=True)
class DecodedBatch:
    base_offset: int
    leader_epoch: int
    attributes: int
    max_timestamp: int
    records: list[tuple[int, int, bytes | None, bytes | None]]  # offset, ts, key, value


def decode_batches(buf: bytes) -> list[DecodedBatch]:
    """Full decode including records; checks every CRC."""
    out = []
    pos = 0
    while pos < len(buf):
        (base, length, epoch, magic, crc, attrs, lod, base_ts, max_ts, _pid, _pe, _bs, count) = (
            _HEADER.unpack_from(buf, pos)
        )
        assert magic == 2
        end = pos + 12 + length
        assert crc32c(bytes(buf[pos + 21 : end])) == crc, f"bad crc at {pos}"
        body = bytes(buf[pos + 61 : end])
        codec = attrs & 7
        raw = decompress(codec, body) if codec else body
        recs = []
        p = 0
        for _ in range(count):
            _len, p = read_varint(raw, p)
            p += 1  # attributes
            tsd, p = read_varint(raw, p)
            od, p = read_varint(raw, p)
            kl, p = read_varint(raw, p)
            key = None if kl < 0 else raw[p : p + kl]
            p += max(kl, 0)
            vl, p = read_varint(raw, p)
            value = None if vl < 0 else raw[p : p + vl]
            p += max(vl, 0)
            nh, p = read_varint(raw, p)
            for _ in range(nh):
                hkl, p = read_varint(raw, p)
                p += hkl
                hvl, p = read_varint(raw, p)
                p += max(hvl, 0)
            ts = max_ts if attrs & 8 else base_ts + tsd
            recs.append((base + od, ts, key, value))
        assert p == len(raw)
        assert lod == count - 1
        out.append(DecodedBatch(base, epoch, attrs, max_ts, recs))
        pos = end
    return out
