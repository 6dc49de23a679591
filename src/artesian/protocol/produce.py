"""Produce request decoder: the produce hot path (sans-IO).

Hand-written rather than schema-driven so that the records of each partition come out as
memoryviews into the received frame: the batches are validated and written to the log without
ever being copied or decoded in Python.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from artesian.protocol.codec import DecodeError, read_uvarint

__all__ = ["PartitionProduce", "ProduceRequestView", "TopicProduce", "decode_produce_request"]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")


@dataclass(slots=True)
class PartitionProduce:
    index: int
    records: memoryview | None


@dataclass(slots=True)
class TopicProduce:
    name: str
    topic_id: uuid.UUID | None
    partitions: list[PartitionProduce]


@dataclass(slots=True)
class ProduceRequestView:
    transactional_id: str | None
    acks: int
    timeout_ms: int
    topics: list[TopicProduce]


class _Cursor:
    __slots__ = ("buf", "flexible", "pos")

    def __init__(self, buf: memoryview, pos: int, flexible: bool) -> None:
        self.buf = buf
        self.pos = pos
        self.flexible = flexible

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise DecodeError("produce request truncated")

    def length(self, wide: bool) -> int:
        if self.flexible:
            n, self.pos = read_uvarint(self.buf, self.pos)
            return n - 1
        size = 4 if wide else 2
        self.need(size)
        n = (_I32 if wide else _I16).unpack_from(self.buf, self.pos)[0]
        self.pos += size
        return int(n)

    def count(self) -> int:
        if self.flexible:
            n, self.pos = read_uvarint(self.buf, self.pos)
            n -= 1
        else:
            self.need(4)
            n = _I32.unpack_from(self.buf, self.pos)[0]
            self.pos += 4
        if n < 0:
            return 0
        if n > len(self.buf) - self.pos:
            raise DecodeError(f"array count {n} exceeds the frame")
        return int(n)

    def string(self) -> str | None:
        n = self.length(wide=False)
        if n < 0:
            return None
        self.need(n)
        try:
            s = str(self.buf[self.pos : self.pos + n], "utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("invalid UTF-8 in produce request") from e
        self.pos += n
        return s

    def skip_tags(self) -> None:
        if not self.flexible:
            return
        count, self.pos = read_uvarint(self.buf, self.pos)
        for _ in range(count):
            _tag, self.pos = read_uvarint(self.buf, self.pos)
            size, self.pos = read_uvarint(self.buf, self.pos)
            self.need(size)
            self.pos += size


def decode_produce_request(
    frame: memoryview, pos: int, version: int, flexible: bool
) -> ProduceRequestView:
    c = _Cursor(frame, pos, flexible)
    transactional_id = c.string() if version >= 3 else None
    c.need(6)
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(frame, c.pos)
    c.pos += 6
    topics: list[TopicProduce] = []
    for _ in range(c.count()):
        if version >= 13:
            c.need(16)
            topic_id = uuid.UUID(bytes=bytes(frame[c.pos : c.pos + 16]))
            c.pos += 16
            name = ""
        else:
            topic_id = None
            name = c.string() or ""
        partitions: list[PartitionProduce] = []
        for _ in range(c.count()):
            c.need(4)
            index = _I32.unpack_from(frame, c.pos)[0]
            c.pos += 4
            n = c.length(wide=True)
            records: memoryview | None = None
            if n >= 0:
                c.need(n)
                records = frame[c.pos : c.pos + n]
                c.pos += n
            c.skip_tags()
            partitions.append(PartitionProduce(index, records))
        c.skip_tags()
        topics.append(TopicProduce(name, topic_id, partitions))
    c.skip_tags()
    return ProduceRequestView(transactional_id, acks, timeout_ms, topics)
