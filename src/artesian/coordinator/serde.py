"""Kafka's serialization of internal-topic records (``__consumer_offsets`` and
``__transaction_state``), and the hash that picks a coordinator's partition.

Keys and the classic records are fixed-width; the consumer group protocol's values are
"flexible" (compact strings and arrays, tagged fields), written by the ``compact_*`` methods.
"""

from __future__ import annotations

import struct
import uuid
from typing import Protocol

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class Writer:
    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def i8(self, v: int) -> Writer:
        self.out += v.to_bytes(1, "big", signed=True)
        return self

    def i16(self, v: int) -> Writer:
        self.out += _I16.pack(v)
        return self

    def i32(self, v: int) -> Writer:
        self.out += _I32.pack(v)
        return self

    def i64(self, v: int) -> Writer:
        self.out += _I64.pack(v)
        return self

    def string(self, s: str | None) -> Writer:
        if s is None:
            return self.i16(-1)
        b = s.encode()
        self.i16(len(b))
        self.out += b
        return self

    def bytes_(self, b: bytes) -> Writer:
        self.i32(len(b))
        self.out += b
        return self

    def uvarint(self, v: int) -> Writer:
        while v >= 0x80:
            self.out.append((v & 0x7F) | 0x80)
            v >>= 7
        self.out.append(v)
        return self

    def compact_string(self, s: str | None) -> Writer:
        if s is None:
            return self.uvarint(0)
        b = s.encode()
        self.uvarint(len(b) + 1)
        self.out += b
        return self

    def compact_length(self, n: int) -> Writer:
        """The length prefix of a compact array."""
        return self.uvarint(n + 1)

    def uuid(self, u: uuid.UUID) -> Writer:
        self.out += u.bytes
        return self

    def no_tagged_fields(self) -> Writer:
        return self.uvarint(0)


class Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        return self._take(n)

    def skip(self, n: int) -> None:
        self._take(n)

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("record truncated")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return int.from_bytes(self._take(1), "big", signed=True)

    def i16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self._take(8))[0])

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self._take(n).decode()

    def bytes_(self) -> bytes:
        n = self.i32()
        return b"" if n < 0 else self._take(n)

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise ValueError("varint too long")

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode()

    def compact_length(self) -> int:
        """A compact array's length (-1 for null)."""
        return self.uvarint() - 1

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._take(16))

    def skip_tagged_fields(self) -> None:
        """Tagged fields we do not read (later Kafka versions add some)."""
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())


def java_string_hash(s: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), which picks the partition."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, num_partitions: int) -> int:
    # Kafka's Utils.abs is `n & 0x7fffffff`, not Math.abs.
    return (java_string_hash(key) & 0x7FFFFFFF) % num_partitions


def parse_marker_key(data: bytes) -> bool:
    """The key of a transaction marker's record (Kafka's ControlRecordType, version 0):
    True for COMMIT, False for ABORT."""
    r = Reader(data)
    r.i16()  # version: later versions only append fields
    kind = r.i16()
    if kind not in (0, 1):
        raise ValueError(f"not a transaction marker (control record type {kind})")
    return kind == 1


class LoggedRecord(Protocol):
    """A record of an internal topic as the coordinators replay it."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def producer_id(self) -> int:
        """Set for records of a transactional batch, else -1."""

    @property
    def control(self) -> bool:
        """A transaction marker."""
