"""The classic consumer's embedded protocol (Kafka's ConsumerProtocol): the subscription a
member sends in JoinGroup and the assignment it gets in SyncGroup, versions 0-3.

Sans-I/O. The coordinator reads these only where the two group protocols meet (KIP-848's
online migration): a classic member inside a consumer group, and a group changing protocol.
Later versions only append fields, so anything newer than 3 is read as 3.
"""

from __future__ import annotations

from dataclasses import dataclass

from artesian.coordinator.group.assignors import Assignment
from artesian.coordinator.serde import Reader, Writer

HIGHEST_VERSION = 3


@dataclass(slots=True, frozen=True)
class Subscription:
    version: int
    topics: tuple[str, ...]
    user_data: bytes
    owned: Assignment  # v1+
    generation_id: int  # v2+, -1 before
    rack_id: str | None  # v3+


@dataclass(slots=True, frozen=True)
class ConsumerAssignment:
    version: int
    partitions: Assignment
    user_data: bytes


def _read_partitions(r: Reader) -> Assignment:
    out: list[tuple[str, int]] = []
    for _ in range(max(r.i32(), 0)):
        topic = r.string() or ""
        out.extend((topic, r.i32()) for _ in range(max(r.i32(), 0)))
    return frozenset(out)


def version_of(data: bytes) -> int:
    """The version a member writes its protocol metadata in (the first two bytes; 0 when
    there are none)."""
    return int.from_bytes(data[:2], "big", signed=True) if len(data) >= 2 else 0


def parse_subscription(data: bytes) -> Subscription:
    """Raises ValueError (or UnicodeDecodeError) for anything malformed."""
    r = Reader(data)
    version = r.i16()
    if version < 0:
        raise ValueError(f"consumer protocol subscription version {version}")
    topics = tuple(r.string() or "" for _ in range(max(r.i32(), 0)))
    user_data = r.bytes_()
    owned: Assignment = frozenset()
    generation, rack = -1, None
    if version >= 1:
        owned = _read_partitions(r)
    if version >= 2:
        generation = r.i32()
    if version >= 3:
        rack = r.string()
    return Subscription(version, topics, user_data, owned, generation, rack)


def parse_assignment(data: bytes) -> ConsumerAssignment:
    """Raises ValueError (or UnicodeDecodeError) for anything malformed."""
    r = Reader(data)
    version = r.i16()
    if version < 0:
        raise ValueError(f"consumer protocol assignment version {version}")
    return ConsumerAssignment(version, _read_partitions(r), r.bytes_())


def assignment_bytes(partitions: Assignment, version: int) -> bytes:
    """A ConsumerProtocolAssignment without user data, in the member's own version (Kafka
    answers a classic member in the version it subscribed with)."""
    by_topic: dict[str, list[int]] = {}
    for topic, index in partitions:
        by_topic.setdefault(topic, []).append(index)
    w = Writer().i16(min(max(version, 0), HIGHEST_VERSION)).i32(len(by_topic))
    for topic in sorted(by_topic):
        w.string(topic).i32(len(by_topic[topic]))
        for index in sorted(by_topic[topic]):
            w.i32(index)
    return bytes(w.i32(-1).out)
