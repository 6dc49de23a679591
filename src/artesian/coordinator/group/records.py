"""The record formats of ``__consumer_offsets``, byte-compatible with Kafka's.

Keys: OffsetCommitKey (version 1: group, topic, partition) and GroupMetadataKey (version 2:
group). Values: OffsetCommitValue version 3 and GroupMetadataValue version 3; a null value is a
tombstone. Kafka's tools can read what we write, and we read Kafka's older value versions.
"""

from __future__ import annotations

from dataclasses import dataclass

from artesian.coordinator.group import consumer_group_records as consumer_records
from artesian.coordinator.group import share_group_records as share_records
from artesian.coordinator.group.consumer_group_records import ConsumerGroupKey
from artesian.coordinator.group.share_group_records import ShareGroupKey
from artesian.coordinator.serde import Reader as _Reader
from artesian.coordinator.serde import Writer as _Writer
from artesian.coordinator.serde import partition_for as partition_for

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2


@dataclass(slots=True, frozen=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(slots=True, frozen=True)
class GroupKey:
    group: str


@dataclass(slots=True, frozen=True)
class OffsetValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int | None = None


@dataclass(slots=True, frozen=True)
class MemberValue:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(slots=True, frozen=True)
class GroupValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    state_timestamp: int
    members: tuple[MemberValue, ...]


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return bytes(_Writer().i16(OFFSET_KEY_VERSION).string(group).string(topic).i32(partition).out)


def group_key(group: str) -> bytes:
    return bytes(_Writer().i16(GROUP_KEY_VERSION).string(group).out)


def offset_value(v: OffsetValue) -> bytes:
    if v.expire_timestamp is not None:
        # Version 1 is the one that carries an explicit expiry (OffsetCommit v2-4 retention).
        w = _Writer().i16(1).i64(v.offset).string(v.metadata).i64(v.commit_timestamp)
        return bytes(w.i64(v.expire_timestamp).out)
    w = _Writer().i16(3).i64(v.offset).i32(v.leader_epoch).string(v.metadata)
    return bytes(w.i64(v.commit_timestamp).out)


def group_value(v: GroupValue) -> bytes:
    w = _Writer().i16(3).string(v.protocol_type).i32(v.generation).string(v.protocol)
    w.string(v.leader).i64(v.state_timestamp).i32(len(v.members))
    for m in v.members:
        w.string(m.member_id).string(m.group_instance_id).string(m.client_id)
        w.string(m.client_host).i32(m.rebalance_timeout_ms).i32(m.session_timeout_ms)
        w.bytes_(m.subscription).bytes_(m.assignment)
    return bytes(w.out)


def parse_key(data: bytes) -> OffsetKey | GroupKey | ConsumerGroupKey | ShareGroupKey | None:
    """None for key versions we do not know (Kafka's other coordinator records)."""
    r = _Reader(data)
    version = r.i16()
    if version in (0, 1):
        return OffsetKey(r.string() or "", r.string() or "", r.i32())
    if version == GROUP_KEY_VERSION:
        return GroupKey(r.string() or "")
    if version in consumer_records.KINDS:
        return consumer_records.parse_key(version, r)
    if version in share_records.KINDS:
        return share_records.parse_key(version, r)
    return None


def parse_offset_value(data: bytes) -> OffsetValue:
    r = _Reader(data)
    version = r.i16()
    offset = r.i64()
    leader_epoch = r.i32() if version >= 3 else -1
    metadata = r.string() or ""
    commit_ts = r.i64()
    expire = r.i64() if version == 1 else None
    return OffsetValue(offset, leader_epoch, metadata, commit_ts, expire)


def parse_group_value(data: bytes) -> GroupValue:
    r = _Reader(data)
    version = r.i16()
    protocol_type = r.string() or ""
    generation = r.i32()
    protocol = r.string()
    leader = r.string()
    state_ts = r.i64() if version >= 2 else -1
    members = []
    for _ in range(r.i32()):
        member_id = r.string() or ""
        instance = r.string() if version >= 3 else None
        client_id = r.string() or ""
        client_host = r.string() or ""
        rebalance = r.i32() if version >= 1 else 0
        session = r.i32()
        members.append(
            MemberValue(
                member_id,
                instance,
                client_id,
                client_host,
                rebalance,
                session,
                r.bytes_(),
                r.bytes_(),
            )
        )
    return GroupValue(protocol_type, generation, protocol, leader, state_ts, tuple(members))
