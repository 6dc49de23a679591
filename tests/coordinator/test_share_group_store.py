"""Share groups (KIP-932) in process, against an in-memory __consumer_offsets that can fail:
what the coordinator writes, what a reload makes of it, and how a failed write is repaired by
the next one."""

from __future__ import annotations

import asyncio
import uuid

from artesian.coordinator.group import records as rec
from artesian.coordinator.group import share_group_records as sgr
from artesian.coordinator.group.coordinator import GroupConfig, GroupCoordinator
from artesian.coordinator.group.share_group_coordinator import ShareGroupConfig, ShareHeartbeat
from tests.coordinator.test_consumer_group_store import FlakyTopic

NONE, COORDINATOR_NOT_AVAILABLE = 0, 15
TOPIC_ID = uuid.UUID(int=7)


class Topics:
    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions

    def partition_count(self, topic: str) -> int:
        return self.partitions if topic == "t" else 0

    def names(self) -> list[str]:
        return ["t"]

    def version(self) -> int:
        return self.partitions

    def viewer(self) -> str | None:
        return None

    def describable(self, names: frozenset[str]) -> frozenset[str]:
        return names


def _coordinator(topic: FlakyTopic) -> GroupCoordinator:
    gc = GroupCoordinator(
        GroupConfig(num_partitions=1, initial_rebalance_delay_ms=0),
        topic,
        topic_id={"t": TOPIC_ID}.get,
        topic_name={TOPIC_ID: "t"}.get,
        share=ShareGroupConfig(),
    )
    gc.load([0])
    return gc


def _heartbeat(
    gc: GroupCoordinator, member: str, epoch: int | None = None, topics: Topics | None = None
) -> int:
    sg = gc.groups["g"].share if "g" in gc.groups else None
    known = sg.members.get(member) if sg is not None else None
    if epoch is None:
        epoch = known.member_epoch if known is not None else 0
    hb = ShareHeartbeat("g", member, epoch, "c", "h", subscribed_topic_names=("t",))
    return gc.share_groups.heartbeat(hb, topics or Topics()).error


def _state(gc: GroupCoordinator) -> tuple[int, int, dict[str, tuple[int, int, frozenset]]]:
    sg = gc.groups["g"].share
    assert sg is not None
    return (
        sg.group_epoch,
        sg.assignment_epoch,
        {
            m.member_id: (m.member_epoch, m.previous_member_epoch, m.assigned)
            for m in sg.members.values()
        },
    )


def test_a_failed_write_is_repaired_by_the_next_one() -> None:
    async def run() -> None:
        topic = FlakyTopic()
        gc = _coordinator(topic)
        topic.fail = 1
        assert _heartbeat(gc, "a", 0) == COORDINATOR_NOT_AVAILABLE
        share = gc.groups["g"].share
        assert share is not None and share.dirty and topic.log == []
        # The client retries its join: nothing looks changed in memory, yet all is written.
        assert _heartbeat(gc, "a", 0) == NONE
        kinds = {getattr(rec.parse_key(r.key), "kind", None) for r in topic.log if r.key}
        assert kinds == set(sgr.KINDS)
        assert _state(_coordinator(topic)) == _state(gc) == (1, 1, {"a": (1, 0, _all(4))})

        # b joins, then leaves while the log fails: the next write tombstones it.
        assert _heartbeat(gc, "b", 0) == NONE
        topic.fail = 1
        assert _heartbeat(gc, "b", -1) == NONE  # gone in memory; the log is behind
        assert "b" in _state(_coordinator(topic))[2]
        assert _heartbeat(gc, "a") == NONE
        assert _state(_coordinator(topic)) == _state(gc)
        assert list(_state(gc)[2]) == ["a"] and _state(gc)[0] == 3
        gc.shutdown()

    asyncio.run(run())


def test_a_reload_keeps_the_epoch_unless_the_topics_changed() -> None:
    async def run() -> None:
        topic = FlakyTopic()
        gc = _coordinator(topic)
        assert _heartbeat(gc, "a", 0) == NONE
        assert _heartbeat(gc, "b", 0) == NONE
        assert _heartbeat(gc, "a") == NONE
        gc.shutdown()
        written = len(topic.log)

        reloaded = _coordinator(topic)
        assert _state(reloaded) == _state(gc)
        assert _heartbeat(reloaded, "a") == NONE and _heartbeat(reloaded, "b") == NONE
        assert len(topic.log) == written  # a steady heartbeat writes nothing
        assert _state(reloaded)[:2] == (2, 2)
        reloaded.shutdown()

        # Two partitions more while the coordinator was away: a new epoch hands them out.
        grown = _coordinator(topic)
        assert _heartbeat(grown, "a", topics=Topics(6)) == NONE
        epoch, assignment_epoch, members = _state(grown)
        assert (epoch, assignment_epoch, members["a"][0]) == (3, 3, 3)
        assert _heartbeat(grown, "b", topics=Topics(6)) == NONE
        held = sorted(p for m in _state(grown)[2].values() for _, p in m[2])
        assert held == list(range(6))
        grown.shutdown()

    asyncio.run(run())


def _all(partitions: int) -> frozenset[tuple[str, int]]:
    return frozenset(("t", p) for p in range(partitions))


def test_records_are_written_as_kafka_writes_them() -> None:
    assert rec.parse_key(sgr.key(10, "g", "m")) == sgr.ShareGroupKey(10, "g", "m")
    assert rec.parse_key(sgr.key(11, "g")) == sgr.ShareGroupKey(11, "g", None)
    assert sgr.key(14, "g", "m") == b"\x00\x0e\x00\x01g\x00\x01m"
    assert sgr.key(11, "g") == b"\x00\x0b\x00\x01g"
    # ShareGroupMetadataValue: version 0, Epoch (int32), MetadataHash (int64, not tagged).
    assert sgr.group_value(5) == b"\x00\x00" + b"\x00\x00\x00\x05" + bytes(8) + b"\x00"
    assert sgr.parse_group_value(sgr.group_value(5)) == 5
    member = sgr.ShareMemberValue(None, "c", "h", ("t",))
    # Version 0; a null rack (0), compact strings (length + 1), one topic; no tagged fields.
    assert sgr.member_value(member) == b"\x00\x00\x00\x02c\x02h\x02\x02t\x00"
    assert sgr.parse_member_value(sgr.member_value(member)) == member
    assignment = sgr.ShareAssignmentValue(3, 2, frozenset({("t", 1), ("t", 0)}))
    data = sgr.assignment_value(assignment, {"t": TOPIC_ID}.get)
    # Epochs, state STABLE (0), one topic id with partitions [0, 1].
    assert (
        data
        == (b"\x00\x00" + b"\x00\x00\x00\x03\x00\x00\x00\x02\x00" + b"\x02" + TOPIC_ID.bytes)
        + b"\x03\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00"
    )
    assert sgr.parse_assignment_value(data, {TOPIC_ID: "t"}.get) == assignment
