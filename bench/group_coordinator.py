#!/usr/bin/env python3
"""The consumer group coordinator (KIP-848) in process: what a heartbeat costs as groups grow.

    python bench/group_coordinator.py [--members 10,100,500] [--topics 100]

One group whose members all subscribe to TOPICS topics of 10 partitions each, on a
GroupCoordinator with an in-memory __consumer_offsets: the time for MEMBERS members to join
one by one (each join a new group epoch, a new target assignment and its records), and the
cost of a steady heartbeat once every member has reconciled (nothing to change, which is what
almost every heartbeat is). No broker, no network: the coordinator's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterable, Iterator

from artesian.coordinator.group.consumer_coordinator import ConsumerGroupConfig, ConsumerHeartbeat
from artesian.coordinator.group.coordinator import GroupConfig, GroupCoordinator
from artesian.coordinator.serde import LoggedRecord


class MemoryTopic:
    def __init__(self) -> None:
        self.records = 0

    def append(
        self,
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        producer_id: int = -1,
        producer_epoch: int = -1,
    ) -> None:
        self.records += len(records)

    def read(self, partition: int) -> Iterator[LoggedRecord]:
        return iter(())

    def ensure(self) -> None:
        pass


class Topics:
    def __init__(self, count: int) -> None:
        self.counts = {f"t{i}": 10 for i in range(count)}

    def partition_count(self, topic: str) -> int:
        return self.counts.get(topic, 0)

    def names(self) -> Iterable[str]:
        return self.counts.keys()

    def version(self) -> int:
        return 1


async def one(members: int, topic_count: int) -> dict[str, float]:
    log = MemoryTopic()
    gc = GroupCoordinator(GroupConfig(num_partitions=1), log, consumer=ConsumerGroupConfig())
    gc.owned.add(0)
    topics = Topics(topic_count)
    names = tuple(topics.counts)
    coordinator = gc.consumer_groups
    started = time.perf_counter()
    for m in range(members):
        joined = coordinator.heartbeat(
            ConsumerHeartbeat(
                "g",
                f"m{m}",
                0,
                "client",
                "host",
                rebalance_timeout_ms=60_000,
                subscribed_topic_names=names,
                owned=frozenset(),
            ),
            topics,
        )
        assert joined.error == 0, joined
    join_s = time.perf_counter() - started
    group = gc.groups["g"].consumer
    assert group is not None
    for _ in range(4):  # revoke, confirm, take up: everyone reconciles
        for member in list(group.members.values()):
            coordinator.heartbeat(
                ConsumerHeartbeat(
                    "g",
                    member.member_id,
                    member.member_epoch,
                    "client",
                    "host",
                    owned=member.assigned,
                ),
                topics,
            )
    assert group.state() == "Stable", group.state()
    rounds = 3
    started = time.perf_counter()
    for _ in range(rounds):
        for member in list(group.members.values()):
            coordinator.heartbeat(
                ConsumerHeartbeat("g", member.member_id, member.member_epoch, "client", "host"),
                topics,
            )
    steady_us = (time.perf_counter() - started) / (rounds * members) * 1e6
    for member in group.members.values():
        for timer in (member.session_timer, member.revocation_timer):
            if timer is not None:
                timer.cancel()
    return {
        "members": members,
        "partitions": topic_count * 10,
        "join_all_s": round(join_s, 3),
        "join_each_ms": round(join_s / members * 1000, 2),
        "steady_heartbeat_us": round(steady_us, 1),
        "records_written": log.records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="10,100,500")
    parser.add_argument("--topics", type=int, default=100)
    args = parser.parse_args()
    results = [asyncio.run(one(int(m), args.topics)) for m in args.members.split(",")]
    print(f"{'members':>8}{'partitions':>12}{'join each ms':>14}{'steady heartbeat us':>21}")
    for r in results:
        print(
            f"{r['members']:>8}{r['partitions']:>12}{r['join_each_ms']:>14.2f}"
            f"{r['steady_heartbeat_us']:>21.1f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
