"""A __consumer_offsets append that fails (an ISR below min.insync.replicas, a full disk):
the admin APIs answer COORDINATOR_NOT_AVAILABLE, as Kafka maps those errors, and forget
nothing the log still holds, so memory and a reload agree."""

from __future__ import annotations

import asyncio

from artesian.coordinator.group.coordinator import GroupConfig, GroupCoordinator
from artesian.coordinator.group.group_metadata import OffsetAndMetadata
from tests.coordinator.test_consumer_group_store import FlakyTopic

NONE, COORDINATOR_NOT_AVAILABLE = 0, 15
NOW = 1_800_000_000_000


def _coordinator(topic: FlakyTopic, clock: list[int]) -> GroupCoordinator:
    gc = GroupCoordinator(
        GroupConfig(num_partitions=1, initial_rebalance_delay_ms=0, offsets_retention_ms=1000),
        topic,
        clock=lambda: clock[0],
    )
    gc.load([0])
    return gc


def _offsets(gc: GroupCoordinator, group: str) -> dict[tuple[str, int], int]:
    return {tp: om.offset for tp, om in gc.fetch_offsets(group, None).items() if om is not None}


def test_failed_deletes_and_expiries_forget_nothing() -> None:
    async def run() -> None:
        topic, clock = FlakyTopic(), [NOW]
        gc = _coordinator(topic, clock)
        committed = {("t", p): OffsetAndMetadata(10 + p, -1, "", NOW) for p in range(2)}
        assert set(gc.commit_offsets("g", "", None, -1, committed).values()) == {NONE}
        assert set(gc.commit_offsets("h", "", None, -1, committed).values()) == {NONE}

        topic.fail = 1
        assert gc.delete_offsets("g", [("t", 0)]) == (COORDINATOR_NOT_AVAILABLE, {})
        assert _offsets(gc, "g") == {("t", 0): 10, ("t", 1): 11}
        topic.fail = 1
        assert gc.delete_groups(["h"]) == {"h": COORDINATOR_NOT_AVAILABLE}
        assert "h" in gc.groups

        clock[0] = NOW + 2000  # past offsets.retention: both groups' offsets are due
        topic.fail = 1  # the first group's expiry fails; the second's goes through
        assert gc.expire_offsets() == 2
        assert sorted(gc.groups) == ["g"] and _offsets(gc, "g") == {("t", 0): 10, ("t", 1): 11}
        reloaded = _coordinator(topic, clock)
        assert sorted(reloaded.groups) == ["g"] and _offsets(reloaded, "g") == _offsets(gc, "g")

        assert gc.expire_offsets() == 2  # the log works again
        assert gc.groups == {} and _coordinator(topic, clock).groups == {}
        gc.shutdown()

    asyncio.run(run())
