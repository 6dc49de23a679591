"""A share group (KIP-932, queues for Kafka): Kafka's ShareGroup and ShareGroupMember, and
its ``simple`` assignor.

Sans-I/O. Members of a share group may share partitions: records are handed out one by one
by the partition leaders (SharePartition), so the assignment only spreads the members over
the partitions. There is no revocation step: a member takes its target at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from artesian.coordinator.group.assignors import Assignment, TopicPartition

EMPTY: Assignment = frozenset()


@dataclass(slots=True, eq=False)
class ShareGroupMember:
    member_id: str
    client_id: str
    client_host: str
    rack_id: str | None = None
    subscribed_topic_names: tuple[str, ...] = ()
    member_epoch: int = 0
    previous_member_epoch: int = 0
    assigned: Assignment = EMPTY
    session_timer: asyncio.TimerHandle | None = None


@dataclass(slots=True, eq=False)
class ShareGroup:
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ShareGroupMember] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    subscription_metadata: dict[str, int] = field(default_factory=dict)
    """Subscribed topic -> partition count, as of the last group epoch."""
    metadata_version: int = -1
    reloaded: bool = False
    """Loaded from __consumer_offsets, which does not keep the subscription metadata."""
    dirty: bool = False
    """A write to __consumer_offsets failed: the next one stores the whole group."""
    unwritten_removals: set[str] = field(default_factory=set)
    """Members removed whose tombstones may not be in the log yet."""

    def state(self) -> str:
        """Kafka's ShareGroupState names (ListGroups, ShareGroupDescribe)."""
        return "Stable" if self.members else "Empty"

    def subscribed_topics(self) -> set[str]:
        return {t for m in self.members.values() for t in m.subscribed_topic_names}


def simple_assign(
    subscriptions: Mapping[str, frozenset[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Kafka's SimpleAssignor for share groups: every partition goes to at least one member
    subscribed to it; with more members than partitions, a partition is shared by up to
    ceil(members / partitions) of them. Balance comes first, then what members had.

    Per topic, each subscriber gets a quota of the topic's partition slots (partitions times
    the sharing factor, split as evenly as the members allow); members keep what they had
    within their quota, and the remaining slots are dealt round-robin, never twice the same
    partition to one member."""
    assignment: dict[str, set[TopicPartition]] = {m: set() for m in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts if partition_counts.get(t)})
    for topic in topics:
        count = partition_counts[topic]
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        sharing = math.ceil(len(members) / count)
        slots = sharing * count
        # Member i's quota: ceil(precise * (i + 1)) - ceil(precise * i), summing to slots.
        precise = slots / len(members)
        quota = {
            m: math.ceil(precise * (i + 1)) - math.ceil(precise * i) for i, m in enumerate(members)
        }
        holders: dict[int, set[str]] = {p: set() for p in range(count)}
        for m in members:
            kept = sorted(tp[1] for tp in previous.get(m, ()) if tp[0] == topic and tp[1] < count)
            for p in kept:
                if len(holders[p]) < sharing and quota[m] > 0:
                    holders[p].add(m)
                    assignment[m].add((topic, p))
                    quota[m] -= 1
        # Partitions with the fewest holders first, members with the most room first.
        for p in sorted(range(count), key=lambda p: (len(holders[p]), p)):
            while len(holders[p]) < sharing:
                candidates = [m for m in members if quota[m] > 0 and m not in holders[p]]
                if not candidates:
                    break
                m = max(candidates, key=lambda m: (quota[m], -members.index(m)))
                holders[p].add(m)
                assignment[m].add((topic, p))
                quota[m] -= 1
    return {m: frozenset(tps) for m, tps in assignment.items()}
