"""The consumer group protocol's records in ``__consumer_offsets``, in Kafka's formats.

Keys (fixed-width, the key version naming the record type): ConsumerGroupMetadataKey (3),
ConsumerGroupMemberMetadataKey (5), ConsumerGroupTargetAssignmentMetadataKey (6),
ConsumerGroupTargetAssignmentMemberKey (7), ConsumerGroupCurrentMemberAssignmentKey (8).
Values are flexible version 0; partitions are stored by topic id. A null value deletes.
Kafka's subscription metadata record (4) is not written: the coordinator recomputes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass

from artesian.coordinator.group.assignors import Assignment
from artesian.coordinator.group.consumer_group import ClassicMember
from artesian.coordinator.group.current_assignment_builder import MemberAssignment, MemberState
from artesian.coordinator.serde import Reader, Writer

GROUP_METADATA = 3
MEMBER_METADATA = 5
TARGET_ASSIGNMENT_METADATA = 6
TARGET_ASSIGNMENT_MEMBER = 7
CURRENT_MEMBER_ASSIGNMENT = 8
KINDS = frozenset(
    {
        GROUP_METADATA,
        MEMBER_METADATA,
        TARGET_ASSIGNMENT_METADATA,
        TARGET_ASSIGNMENT_MEMBER,
        CURRENT_MEMBER_ASSIGNMENT,
    }
)
_CLASSIC_MEMBER_TAG = 0  # ConsumerGroupMemberMetadataValue's ClassicMemberMetadata
_PER_MEMBER = frozenset({MEMBER_METADATA, TARGET_ASSIGNMENT_MEMBER, CURRENT_MEMBER_ASSIGNMENT})

TopicId = Callable[[str], uuid.UUID | None]
TopicName = Callable[[uuid.UUID], str | None]


@dataclass(slots=True, frozen=True)
class ConsumerGroupKey:
    kind: int
    group: str
    member: str | None = None


@dataclass(slots=True, frozen=True)
class MemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None
    classic: ClassicMember | None = None


def key(kind: int, group: str, member: str | None = None) -> bytes:
    return modern_key(kind, group, member, _PER_MEMBER)


def parse_key(kind: int, r: Reader) -> ConsumerGroupKey:
    """The rest of a key whose version ``kind`` was read already."""
    return ConsumerGroupKey(kind, *read_modern_key(kind, r, _PER_MEMBER))


def modern_key(kind: int, group: str, member: str | None, per_member: Container[int]) -> bytes:
    """A consumer or share group record's key: its kind (the key version), the group, and
    the member for the kinds ``per_member`` names."""
    w = Writer().i16(kind).string(group)
    if kind in per_member:
        w.string(member or "")
    return bytes(w.out)


def read_modern_key(kind: int, r: Reader, per_member: Container[int]) -> tuple[str, str | None]:
    """(group, member) of a key whose kind was read already."""
    group = r.string() or ""
    return group, r.string() or "" if kind in per_member else None


def epoch_value(epoch: int) -> bytes:
    """ConsumerGroupMetadataValue (group epoch) and TargetAssignmentMetadataValue
    (assignment epoch) have the same shape."""
    return bytes(Writer().i16(0).i32(epoch).no_tagged_fields().out)


def parse_epoch_value(data: bytes) -> int:
    r = Reader(data)
    r.i16()
    epoch = r.i32()
    r.skip_tagged_fields()
    return epoch


def member_metadata_value(v: MemberMetadataValue) -> bytes:
    w = Writer().i16(0).compact_string(v.instance_id).compact_string(v.rack_id)
    w.compact_string(v.client_id).compact_string(v.client_host)
    w.compact_length(len(v.subscribed_topic_names))
    for name in v.subscribed_topic_names:
        w.compact_string(name)
    w.compact_string(v.subscribed_topic_regex).i32(v.rebalance_timeout_ms)
    w.compact_string(v.server_assignor)
    if v.classic is None:
        return bytes(w.no_tagged_fields().out)
    # ClassicMemberMetadata is tagged field 0, a nullable struct: a presence byte (1), then
    # the struct, as Kafka's generated code writes it.
    c = Writer().i8(1).i32(v.classic.session_timeout_ms).compact_length(len(v.classic.protocols))
    for name, metadata in v.classic.protocols:
        c.compact_string(name).compact_length(len(metadata))
        c.out += metadata
        c.no_tagged_fields()
    c.no_tagged_fields()
    w.uvarint(1).uvarint(_CLASSIC_MEMBER_TAG).uvarint(len(c.out))
    w.out += c.out
    return bytes(w.out)


def parse_member_metadata_value(data: bytes) -> MemberMetadataValue:
    r = Reader(data)
    r.i16()
    instance, rack = r.compact_string(), r.compact_string()
    client_id, client_host = r.compact_string() or "", r.compact_string() or ""
    names = tuple(r.compact_string() or "" for _ in range(max(r.compact_length(), 0)))
    regex = r.compact_string()
    rebalance = r.i32()
    assignor = r.compact_string()
    classic = None
    for _ in range(r.uvarint()):
        tag, size = r.uvarint(), r.uvarint()
        if tag != _CLASSIC_MEMBER_TAG:
            r.skip(size)
            continue
        c = Reader(r.take(size))
        if c.i8() < 0:
            continue  # present but null
        session_timeout = c.i32()
        protocols = []
        for _ in range(max(c.compact_length(), 0)):
            name = c.compact_string() or ""
            protocols.append((name, c.take(max(c.compact_length(), 0))))
            c.skip_tagged_fields()
        classic = ClassicMember(session_timeout, tuple(protocols))
    return MemberMetadataValue(
        instance, rack, client_id, client_host, names, regex, rebalance, assignor, classic
    )


def write_partitions(w: Writer, partitions: Assignment, topic_id: TopicId) -> None:
    by_topic: dict[uuid.UUID, list[int]] = {}
    for topic, index in partitions:
        found = topic_id(topic)
        if found is not None:  # a topic deleted meanwhile has no partitions to keep
            by_topic.setdefault(found, []).append(index)
    w.compact_length(len(by_topic))
    for tid, indexes in sorted(by_topic.items()):
        w.uuid(tid).compact_length(len(indexes))
        for index in sorted(indexes):
            w.i32(index)
        w.no_tagged_fields()


def read_partitions(r: Reader, topic_name: TopicName) -> Assignment:
    out: list[tuple[str, int]] = []
    for _ in range(max(r.compact_length(), 0)):
        name = topic_name(r.uuid())
        indexes = [r.i32() for _ in range(max(r.compact_length(), 0))]
        r.skip_tagged_fields()
        if name is not None:
            out.extend((name, i) for i in indexes)
    return frozenset(out)


def target_member_value(partitions: Assignment, topic_id: TopicId) -> bytes:
    w = Writer().i16(0)
    write_partitions(w, partitions, topic_id)
    return bytes(w.no_tagged_fields().out)


def parse_target_member_value(data: bytes, topic_name: TopicName) -> Assignment:
    r = Reader(data)
    r.i16()
    partitions = read_partitions(r, topic_name)
    r.skip_tagged_fields()
    return partitions


def current_assignment_value(a: MemberAssignment, topic_id: TopicId) -> bytes:
    w = Writer().i16(0).i32(a.member_epoch).i32(a.previous_member_epoch).i8(a.state.value)
    write_partitions(w, a.assigned, topic_id)
    write_partitions(w, a.pending_revocation, topic_id)
    return bytes(w.no_tagged_fields().out)


def parse_current_assignment_value(data: bytes, topic_name: TopicName) -> MemberAssignment:
    r = Reader(data)
    r.i16()
    epoch, previous = r.i32(), r.i32()
    state_code = r.i8()
    state = next((s for s in MemberState if s.value == state_code), MemberState.UNKNOWN)
    assigned = read_partitions(r, topic_name)
    pending = read_partitions(r, topic_name)
    return MemberAssignment(epoch, previous, state, assigned, pending)
