"""The record format of ``__transaction_state``, byte-compatible with Kafka's.

Key (version 0): the transactional id. Value (version 0): producer id and epoch, transaction
timeout, state, the partitions of the ongoing transaction, and its last-update and start
times. A null value is a tombstone (an expired transactional id). We write value version 0,
which every Kafka version reads, and read it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from artesian.coordinator.serde import Reader, Writer

KEY_VERSION = 0
VALUE_VERSION = 0


@dataclass(slots=True, frozen=True)
class TransactionLogValue:
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: int  # TransactionState's id
    partitions: tuple[tuple[str, tuple[int, ...]], ...]
    last_update_ms: int
    start_ms: int


def key(transactional_id: str) -> bytes:
    return bytes(Writer().i16(KEY_VERSION).string(transactional_id).out)


def parse_key(data: bytes) -> str:
    r = Reader(data)
    version = r.i16()
    if version != KEY_VERSION:
        raise ValueError(f"unknown __transaction_state key version {version}")
    tid = r.string()
    if tid is None:
        raise ValueError("null transactional id")
    return tid


def value(v: TransactionLogValue) -> bytes:
    w = Writer().i16(VALUE_VERSION).i64(v.producer_id).i16(v.producer_epoch)
    w.i32(v.timeout_ms).i8(v.state).i32(len(v.partitions))
    for topic, partitions in v.partitions:
        w.string(topic).i32(len(partitions))
        for p in partitions:
            w.i32(p)
    return bytes(w.i64(v.last_update_ms).i64(v.start_ms).out)


def parse_value(data: bytes) -> TransactionLogValue:
    r = Reader(data)
    version = r.i16()
    if version != VALUE_VERSION:
        raise ValueError(f"unknown __transaction_state value version {version}")
    pid, epoch, timeout, state = r.i64(), r.i16(), r.i32(), r.i8()
    count = r.i32()
    partitions = []
    for _ in range(max(count, 0)):
        topic = r.string() or ""
        n = r.i32()
        partitions.append((topic, tuple(r.i32() for _ in range(max(n, 0)))))
    return TransactionLogValue(pid, epoch, timeout, state, tuple(partitions), r.i64(), r.i64())
