"""Batch compression codecs (gzip, snappy, lz4, zstd) through cramjam.

The broker decompresses a batch to check its records on produce (as Kafka does), to recompress
it when a topic's ``compression.type`` differs from the producer's codec, and to compact; fetch
never decompresses.

Wire formats, as Kafka's clients write and read them:

- gzip: RFC 1952, possibly several members.
- snappy: the Java client writes xerial framing (``b"\\x82SNAPPY\\x00"``, int32 version, int32
  compatible version, then int32-length-prefixed raw snappy blocks); librdkafka writes one raw
  snappy block. Both clients read both, so we read both and write xerial like Java, which also
  keeps very old Java consumers working.
- lz4: the LZ4 frame format with independent blocks and no content checksum, as
  ``KafkaLZ4BlockOutputStream`` writes it (Java's reader rejects linked blocks).
- zstd: a zstd frame.

Decompression is bounded: ``max_output_size`` caps the decompressed size so a small hostile batch
cannot exhaust memory; exceeding it raises :class:`DecompressedSizeExceeded`.
"""

from __future__ import annotations

import struct

import cramjam

from artesian.protocol.records import CompressionType

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "CompressionError",
    "DecompressedSizeExceeded",
    "DecompressionError",
    "UnsupportedCodec",
    "compress",
    "decompress",
]

Buf = bytes | bytearray | memoryview

# Generous compared to max.message.bytes (1 MiB), but far from exhausting memory.
DEFAULT_MAX_DECOMPRESSED_SIZE = 256 * 1024 * 1024

XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")
_INT32 = struct.Struct(">i")
# Block size of Java's SnappyOutputStream default, as Kafka's producer uses it.
XERIAL_BLOCK_SIZE = 32 * 1024

GZIP_DEFAULT_LEVEL = 6  # what Java's Deflater uses for level -1


class CompressionError(Exception):
    """A codec failed."""


class UnsupportedCodec(CompressionError):
    def __init__(self, codec: int) -> None:
        super().__init__(f"unsupported compression codec {codec}")
        self.codec = codec


class DecompressionError(CompressionError):
    """The input is not valid data for its codec."""


class DecompressedSizeExceeded(DecompressionError):
    def __init__(self, codec: int, limit: int) -> None:
        name = CompressionType.NAMES[codec] if 0 <= codec < 5 else str(codec)
        super().__init__(f"{name} data decompresses to more than {limit} bytes")
        self.codec = codec
        self.limit = limit


def compress(codec: int, data: Buf, level: int | None = None) -> bytes:
    """Compress ``data`` with a Kafka codec id; ``level`` None or -1 means the codec's default."""
    if level == -1:
        level = None
    if codec == CompressionType.NONE:
        return bytes(data)
    if codec == CompressionType.GZIP:
        return bytes(
            cramjam.gzip.compress(data, level=GZIP_DEFAULT_LEVEL if level is None else level)
        )
    if codec == CompressionType.SNAPPY:
        return _xerial_compress(data)
    if codec == CompressionType.LZ4:
        c = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
        # cramjam's streaming compressor takes only bytes.
        c.compress(data if isinstance(data, bytes) else bytes(data))
        return bytes(c.finish())
    if codec == CompressionType.ZSTD:
        return bytes(cramjam.zstd.compress(data, level=3 if level is None else level))
    raise UnsupportedCodec(codec)


def decompress(
    codec: int, data: Buf, max_output_size: int = DEFAULT_MAX_DECOMPRESSED_SIZE
) -> bytes:
    """Decompress ``data``; raises DecompressedSizeExceeded past ``max_output_size`` bytes and
    DecompressionError on malformed input."""
    if codec == CompressionType.NONE:
        if len(data) > max_output_size:
            raise DecompressedSizeExceeded(codec, max_output_size)
        return bytes(data)
    if codec == CompressionType.SNAPPY:
        return _snappy_decompress(data, max_output_size)
    if codec == CompressionType.GZIP:
        return _bounded(cramjam.gzip.decompress_into, codec, data, max_output_size)
    if codec == CompressionType.LZ4:
        return _bounded(cramjam.lz4.decompress_into, codec, data, max_output_size)
    if codec == CompressionType.ZSTD:
        return _bounded(cramjam.zstd.decompress_into, codec, data, max_output_size)
    raise UnsupportedCodec(codec)


def _bounded(fn: object, codec: int, data: Buf, limit: int) -> bytes:
    """Decompress into a growing buffer, never larger than limit + 1 bytes.

    cramjam refuses to write past the end of the output buffer, so a buffer of limit + 1 bytes
    that fills up proves the output is too big without ever holding more than that.
    """
    assert callable(fn)
    hint = _size_hint(codec, data)
    # A stated size is taken only as large as data could plausibly expand (deflate's ratio
    # tops out near 1032:1): a forged one must not make a tiny batch cost megabytes.
    if hint is not None and hint <= min(limit, _MAX_RATIO * len(data) + 64 * 1024):
        size = hint + 1  # one pass when the frame tells the truth (room to see the end)
    else:
        size = min(limit + 1, max(4 * len(data), 64 * 1024))
    while True:
        out = bytearray(size)
        try:
            n = int(fn(data, out))
        except cramjam.DecompressionError as e:
            if "failed to write whole buffer" not in str(e):
                raise DecompressionError(str(e)) from e
            if size > limit:
                raise DecompressedSizeExceeded(codec, limit) from None
            size = min(limit + 1, size * 4)
            continue
        if n > limit:
            raise DecompressedSizeExceeded(codec, limit)
        if n == size and size <= limit:
            # Exactly full: the output may have been cut; try again with room to spare.
            size = min(limit + 1, size * 4)
            continue
        return bytes(memoryview(out)[:n])


_MAX_RATIO = 1032
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _size_hint(codec: int, data: Buf) -> int | None:
    """The decompressed size the data says it has, if it says: gzip's trailer (the last
    member's size, modulo 2^32), a zstd frame's content size. Only a first guess: a wrong
    one costs another pass, never a wrong answer."""
    view = memoryview(data).cast("B")
    if codec == CompressionType.GZIP and len(view) >= 18:
        return int(_U32.unpack_from(view, len(view) - 4)[0])
    if codec == CompressionType.ZSTD and len(view) >= 6 and view[:4] == _ZSTD_MAGIC:
        descriptor = view[4]
        fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
        if fcs_flag == 0 and not single_segment:
            return None  # no content size in the header
        pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
        width = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
        if len(view) < pos + width:
            return None
        raw = bytes(view[pos : pos + width]) + bytes(8 - width)
        size = int(_U64.unpack(raw)[0])
        return size + 256 if width == 2 else size
    return None


def _xerial_compress(data: Buf) -> bytes:
    view = memoryview(data).cast("B")
    parts = [_XERIAL_HEADER.pack(XERIAL_MAGIC, 1, 1)]
    for pos in range(0, len(view), XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[pos : pos + XERIAL_BLOCK_SIZE]))
        parts.append(_INT32.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_block(block: Buf, room: int, limit: int) -> bytes:
    try:
        # The raw format starts with the uncompressed length: check it before allocating.
        n = int(cramjam.snappy.decompress_raw_len(block))
        if n > room:
            raise DecompressedSizeExceeded(CompressionType.SNAPPY, limit)
        return bytes(cramjam.snappy.decompress_raw(block))
    except cramjam.DecompressionError as e:
        raise DecompressionError(str(e)) from e


def _snappy_decompress(data: Buf, limit: int) -> bytes:
    view = memoryview(data).cast("B")
    if bytes(view[:8]) != XERIAL_MAGIC:
        return _snappy_block(view, limit, limit)
    if len(view) < _XERIAL_HEADER.size:
        raise DecompressionError("truncated xerial snappy header")
    pos = _XERIAL_HEADER.size
    out = bytearray()
    while pos < len(view):
        if len(view) - pos < 4:
            raise DecompressionError("truncated xerial snappy block length")
        (n,) = _INT32.unpack_from(view, pos)
        pos += 4
        if n < 0 or pos + n > len(view):
            raise DecompressionError("truncated xerial snappy block")
        out += _snappy_block(view[pos : pos + n], limit - len(out), limit)
        pos += n
    return bytes(out)
