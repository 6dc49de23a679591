"""Share groups' records in ``__consumer_offsets`` (KIP-932), in Kafka's formats.

Keys (fixed-width, the key version naming the record type): ShareGroupMemberMetadataKey (10),
ShareGroupMetadataKey (11), ShareGroupTargetAssignmentMetadataKey (12),
ShareGroupTargetAssignmentMemberKey (13), ShareGroupCurrentMemberAssignmentKey (14). Values
are flexible version 0; partitions are stored by topic id. A null value deletes. The target
epoch and a member's target have the consumer group records' shapes, so those encoders serve
both; the group's record carries Kafka 4.1's MetadataHash as a plain field (the consumer
group's is tagged), written 0: a reload here recomputes instead. Kafka's ShareGroupStatePartitionMetadata (15), which tracks the topics
whose share state was initialized, is not written: the share coordinators are asked instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from artesian.coordinator.group.assignors import Assignment
from artesian.coordinator.group.consumer_group_records import (
    TopicId,
    TopicName,
    modern_key,
    read_modern_key,
    read_partitions,
    write_partitions,
)
from artesian.coordinator.serde import Reader, Writer

MEMBER_METADATA = 10
GROUP_METADATA = 11
TARGET_ASSIGNMENT_METADATA = 12
TARGET_ASSIGNMENT_MEMBER = 13
CURRENT_MEMBER_ASSIGNMENT = 14
KINDS = frozenset(
    {
        MEMBER_METADATA,
        GROUP_METADATA,
        TARGET_ASSIGNMENT_METADATA,
        TARGET_ASSIGNMENT_MEMBER,
        CURRENT_MEMBER_ASSIGNMENT,
    }
)
PER_MEMBER = (CURRENT_MEMBER_ASSIGNMENT, TARGET_ASSIGNMENT_MEMBER, MEMBER_METADATA)
_STABLE = 0  # Kafka's MemberState.STABLE: a share group member takes its target at once


@dataclass(slots=True, frozen=True)
class ShareGroupKey:
    kind: int
    group: str
    member: str | None = None


@dataclass(slots=True, frozen=True)
class ShareMemberValue:
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class ShareAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    assigned: Assignment


def key(kind: int, group: str, member: str | None = None) -> bytes:
    return modern_key(kind, group, member, PER_MEMBER)


def parse_key(kind: int, r: Reader) -> ShareGroupKey:
    """The rest of a key whose version ``kind`` was read already."""
    return ShareGroupKey(kind, *read_modern_key(kind, r, PER_MEMBER))


def group_value(epoch: int) -> bytes:
    """ShareGroupMetadataValue: the group epoch and the subscribed topics' metadata hash."""
    return bytes(Writer().i16(0).i32(epoch).i64(0).no_tagged_fields().out)


def parse_group_value(data: bytes) -> int:
    """The group epoch (a record from before the hash, with none, reads too)."""
    r = Reader(data)
    r.i16()
    return r.i32()


def member_value(v: ShareMemberValue) -> bytes:
    w = Writer().i16(0).compact_string(v.rack_id)
    w.compact_string(v.client_id).compact_string(v.client_host)
    w.compact_length(len(v.subscribed_topic_names))
    for name in v.subscribed_topic_names:
        w.compact_string(name)
    return bytes(w.no_tagged_fields().out)


def parse_member_value(data: bytes) -> ShareMemberValue:
    r = Reader(data)
    r.i16()
    rack = r.compact_string()
    client_id, client_host = r.compact_string() or "", r.compact_string() or ""
    names = tuple(r.compact_string() or "" for _ in range(max(r.compact_length(), 0)))
    r.skip_tagged_fields()
    return ShareMemberValue(rack, client_id, client_host, names)


def assignment_value(v: ShareAssignmentValue, topic_id: TopicId) -> bytes:
    w = Writer().i16(0).i32(v.member_epoch).i32(v.previous_member_epoch).i8(_STABLE)
    write_partitions(w, v.assigned, topic_id)
    return bytes(w.no_tagged_fields().out)


def parse_assignment_value(data: bytes, topic_name: TopicName) -> ShareAssignmentValue:
    r = Reader(data)
    r.i16()
    epoch, previous = r.i32(), r.i32()
    r.i8()
    assigned = read_partitions(r, topic_name)
    r.skip_tagged_fields()
    return ShareAssignmentValue(epoch, previous, assigned)
