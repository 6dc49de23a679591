"""Share-partition state records in ``__share_group_state``, in Kafka's formats: key
ShareSnapshotKey (key version 0: group id, topic id, partition), value ShareSnapshotValue
(flexible version 0: snapshot epoch, state epoch, leader epoch, start offset, state
batches). Artesian writes a whole snapshot each time; Kafka's ShareUpdate records (key
version 1) are read as snapshots of what they carry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from artesian.coordinator.serde import Reader, Writer
from artesian.share.share_partition import RecordState, StateBatch

SNAPSHOT = 0
UPDATE = 1


@dataclass(slots=True, frozen=True)
class ShareStateKey:
    group_id: str
    topic_id: uuid.UUID
    partition: int

    def coordinator_key(self) -> str:
        """What picks the state topic's partition (Kafka's SharePartitionKey)."""
        return f"{self.group_id}:{self.topic_id}:{self.partition}"


@dataclass(slots=True, frozen=True)
class ShareState:
    state_epoch: int
    leader_epoch: int
    start_offset: int
    batches: tuple[StateBatch, ...]

    @property
    def deleted(self) -> bool:
        """A deleted state, kept for its state epoch: a leader that still caches the state
        from before the delete is refused its writes, and the next start is at a newer
        epoch (no start offset, as Kafka answers for a partition without state)."""
        return self.start_offset < 0


def delivery_complete_count(state: ShareState) -> int:
    """How many offsets past the start offset are done with (acknowledged or archived):
    what a share group's lag leaves out (ReadShareGroupStateSummary v1)."""
    return sum(
        b.last_offset - max(b.first_offset, state.start_offset) + 1
        for b in state.batches
        if b.state in (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)
        and b.last_offset >= state.start_offset
    )


def state_batch_of(b: Any) -> StateBatch:
    """A StateBatch of ReadShareGroupState's or WriteShareGroupState's (raises ValueError
    for an unknown delivery state)."""
    return StateBatch(
        int(b.first_offset),
        int(b.last_offset),
        RecordState(int(b.delivery_state)),
        int(b.delivery_count),
    )


def key_bytes(key: ShareStateKey) -> bytes:
    w = Writer().i16(SNAPSHOT).string(key.group_id).uuid(key.topic_id).i32(key.partition)
    return bytes(w.out)


def parse_key(data: bytes) -> ShareStateKey:
    r = Reader(data)
    kind = r.i16()
    if kind not in (SNAPSHOT, UPDATE):
        raise ValueError(f"not a share state record (key version {kind})")
    return ShareStateKey(r.string() or "", r.uuid(), r.i32())


def value_bytes(state: ShareState, snapshot_epoch: int = 0) -> bytes:
    w = Writer().i16(0).i32(snapshot_epoch).i32(state.state_epoch).i32(state.leader_epoch)
    w.i64(state.start_offset).compact_length(len(state.batches))
    for b in state.batches:
        w.i64(b.first_offset).i64(b.last_offset).i8(int(b.state)).i16(b.delivery_count)
        w.no_tagged_fields()
    return bytes(w.no_tagged_fields().out)


def parse_value(data: bytes) -> ShareState:
    r = Reader(data)
    r.i16()
    r.i32()  # snapshot epoch
    state_epoch, leader_epoch, start = r.i32(), r.i32(), r.i64()
    batches = []
    for _ in range(max(r.compact_length(), 0)):
        first, last, state, count = r.i64(), r.i64(), r.i8(), r.i16()
        r.skip_tagged_fields()
        batches.append(StateBatch(first, last, RecordState(state), count))
    return ShareState(state_epoch, leader_epoch, start, tuple(batches))
