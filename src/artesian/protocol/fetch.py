"""Fetch response encoder: the consume hot path (sans-IO).

Writes the response piecewise around the stored record bytes, which stay as opaque parts
(a bytes object, or a file region the connection sends with sendfile). The records are
never copied or decoded in Python.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from artesian.protocol.codec import write_uvarint

__all__ = ["FetchPartitionResult", "FetchTopicResult", "RecordsPart", "encode_fetch_response"]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_PART_HEAD = struct.Struct(">ihq")  # partition_index, error_code, high_watermark
_I64 = struct.Struct(">q")
_CURRENT_LEADER = struct.Struct(">iib")  # leader id, leader epoch, no tagged fields
_CURRENT_LEADER_TAG = 1
_NODE_ENDPOINTS_TAG = 0

NodeEndpoint = tuple[int, str, int, str | None]  # node id, host, port, rack


class RecordsPart(Protocol):
    """Anything with a size: bytes, or a file region sent with sendfile."""

    @property
    def size(self) -> int: ...


@dataclass(slots=True)
class FetchPartitionResult:
    partition: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    records: list[bytes | RecordsPart] = field(default_factory=list)
    records_size: int = 0
    aborted_transactions: list[tuple[int, int]] | None = None
    preferred_read_replica: int = -1
    # KIP-951 (v16+): (leader id, leader epoch) for a partition that moved; tagged field 1.
    current_leader: tuple[int, int] | None = None


@dataclass(slots=True)
class FetchTopicResult:
    name: str
    topic_id: uuid.UUID | None
    partitions: list[FetchPartitionResult]


def _array_len(out: bytearray, n: int, flexible: bool) -> None:
    if flexible:
        write_uvarint(out, n + 1)
    else:
        out += _I32.pack(n)


def encode_fetch_response(
    version: int,
    topics: list[FetchTopicResult],
    throttle_time_ms: int = 0,
    error_code: int = 0,
    session_id: int = 0,
    node_endpoints: list[NodeEndpoint] | None = None,
) -> tuple[list[bytes | bytearray | RecordsPart], int]:
    """Encode the body; returns (parts, total size). Records parts are passed through.
    ``node_endpoints`` (v16+, KIP-951): the brokers that partitions' current leaders name."""
    flexible = version >= 12
    parts: list[bytes | bytearray | RecordsPart] = []
    out = bytearray()
    size = 0
    if version >= 1:
        out += _I32.pack(throttle_time_ms)
    if version >= 7:
        out += _I16.pack(error_code)
        out += _I32.pack(session_id)
    _array_len(out, len(topics), flexible)
    for topic in topics:
        if version >= 13:
            out += (topic.topic_id or uuid.UUID(int=0)).bytes
        else:
            name = topic.name.encode()
            if flexible:
                write_uvarint(out, len(name) + 1)
            else:
                out += _I16.pack(len(name))
            out += name
        _array_len(out, len(topic.partitions), flexible)
        for p in topic.partitions:
            out += _PART_HEAD.pack(p.partition, p.error_code, p.high_watermark)
            if version >= 4:
                out += _I64.pack(p.last_stable_offset)
            if version >= 5:
                out += _I64.pack(p.log_start_offset)
            if version >= 4:
                aborted = p.aborted_transactions
                if aborted is None:
                    if flexible:
                        out.append(0)
                    else:
                        out += _I32.pack(-1)
                else:
                    _array_len(out, len(aborted), flexible)
                    for producer_id, first_offset in aborted:
                        out += _I64.pack(producer_id)
                        out += _I64.pack(first_offset)
                        if flexible:
                            out.append(0)
            if version >= 11:
                out += _I32.pack(p.preferred_read_replica)
            n = p.records_size
            if flexible:
                write_uvarint(out, n + 1)
            else:
                out += _I32.pack(n)
            if n:
                size += len(out) + n
                parts.append(out)
                parts.extend(p.records)
                out = bytearray()
            if flexible:
                if p.current_leader is not None and version >= 12:
                    out += b"\x01"  # one partition tagged field
                    write_uvarint(out, _CURRENT_LEADER_TAG)
                    write_uvarint(out, _CURRENT_LEADER.size)
                    out += _CURRENT_LEADER.pack(*p.current_leader, 0)
                else:
                    out.append(0)  # partition tagged fields
        if flexible:
            out.append(0)  # topic tagged fields
    if flexible:
        if node_endpoints and version >= 16:
            out += b"\x01"  # one response tagged field
            write_uvarint(out, _NODE_ENDPOINTS_TAG)
            field_bytes = _encode_node_endpoints(node_endpoints)
            write_uvarint(out, len(field_bytes))
            out += field_bytes
        else:
            out.append(0)  # response tagged fields
    size += len(out)
    parts.append(out)
    return parts, size


def _encode_node_endpoints(endpoints: list[NodeEndpoint]) -> bytearray:
    out = bytearray()
    write_uvarint(out, len(endpoints) + 1)
    for node_id, host, port, rack in endpoints:
        out += _I32.pack(node_id)
        name = host.encode()
        write_uvarint(out, len(name) + 1)
        out += name
        out += _I32.pack(port)
        if rack is None:
            out.append(0)
        else:
            encoded = rack.encode()
            write_uvarint(out, len(encoded) + 1)
            out += encoded
        out.append(0)  # tagged fields
    return out
