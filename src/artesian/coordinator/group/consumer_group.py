"""A consumer group on the KIP-848 protocol (Kafka's ConsumerGroup and ConsumerGroupMember).

The group epoch moves whenever membership, a subscription, or the subscribed topics'
partitions change; the target assignment is recomputed for it; each member then converges
on its share through CurrentAssignmentBuilder, one heartbeat at a time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from artesian.coordinator.group.assignors import Assignment, TopicPartition
from artesian.coordinator.group.current_assignment_builder import (
    EMPTY,
    UNASSIGNED,
    MemberAssignment,
    MemberState,
)

# Member epochs with a meaning of their own (ConsumerGroupHeartbeat).
JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2


@dataclass(slots=True, frozen=True)
class ClassicMember:
    """What a member on the classic protocol inside a consumer group brought with its last
    JoinGroup (Kafka's ClassicMemberMetadata): it heartbeats on its own session timeout, and
    a group going back to the classic protocol needs its protocols."""

    session_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]

    def first_protocol(self) -> str:
        """The member's preferred assignor: the name a consumer group answers it with."""
        return self.protocols[0][0] if self.protocols else ""

    def metadata_for(self, protocol: str) -> bytes | None:
        return next((m for name, m in self.protocols if name == protocol), None)


@dataclass(slots=True, eq=False)
class ConsumerGroupMember:
    member_id: str
    client_id: str
    client_host: str
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = 300_000
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    reconciliation: MemberAssignment = UNASSIGNED
    classic: ClassicMember | None = None
    """Set for a member on the classic protocol (JoinGroup, SyncGroup, Heartbeat)."""
    session_timer: asyncio.TimerHandle | None = None
    revocation_timer: asyncio.TimerHandle | None = None
    """A consumer-protocol member's rebalance timeout while it revokes; a classic member's
    join or sync timeout (the rebalance timeout of its JoinGroup), whichever is due."""

    @property
    def member_epoch(self) -> int:
        return self.reconciliation.member_epoch

    @property
    def left_temporarily(self) -> bool:
        """A static member that left with epoch -2: its partitions wait for its next
        incarnation until its session times out."""
        return self.reconciliation.member_epoch == STATIC_LEAVE_EPOCH

    @property
    def assigned(self) -> Assignment:
        return self.reconciliation.assigned

    def held(self) -> Assignment:
        """Every partition the member may still be consuming: assigned or being revoked."""
        return self.reconciliation.assigned | self.reconciliation.pending_revocation

    def subscribed(self, resolve: Callable[[str], frozenset[str]]) -> frozenset[str]:
        """The topics this member subscribes to, by name or by regex (``resolve`` gives the
        existing topics a regex matches)."""
        names = frozenset(self.subscribed_topic_names)
        if self.subscribed_topic_regex:
            return names | resolve(self.subscribed_topic_regex)
        return names


@dataclass(slots=True, eq=False)
class ConsumerGroup:
    group_epoch: int = 0
    members: dict[str, ConsumerGroupMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    """instance id -> member id"""
    assignment_epoch: int = 0
    target: dict[str, Assignment] = field(default_factory=dict)
    owners: dict[TopicPartition, str] = field(default_factory=dict)
    """Partition -> the member holding it (assigned, or pending its revocation)."""
    subscription_metadata: dict[str, int] = field(default_factory=dict)
    """Subscribed topic -> partition count, as of the last group epoch."""
    subscription_ids: dict[str, uuid.UUID | None] = field(default_factory=dict)
    """Subscribed topic -> its id, as of the last group epoch."""
    metadata_version: int = -1
    """The topics' version (the metadata image offset) subscription_metadata was computed
    at: a heartbeat changing nothing skips computing it again."""
    dirty: bool = False
    """A write to __consumer_offsets failed: the next one stores the whole state."""
    unwritten_removals: set[str] = field(default_factory=set)
    """Members removed since the last successful write (tombstoned again if dirty)."""
    reloaded: bool = False
    """Loaded from __consumer_offsets, and no heartbeat since: the next one recomputes the
    subscription metadata (the log does not keep it)."""

    def state(self) -> str:
        """Kafka's ConsumerGroupState names (ListGroups, ConsumerGroupDescribe)."""
        if not self.members:
            return "Empty"
        if self.assignment_epoch != self.group_epoch:
            return "Assigning"
        for member in self.members.values():
            rec = member.reconciliation
            if rec.member_epoch != self.assignment_epoch or rec.state is not MemberState.STABLE:
                return "Reconciling"
        return "Stable"

    def assignor(self, configured: tuple[str, ...]) -> str:
        """The configured assignor most members ask for; the first configured one when none
        asks (Kafka)."""
        chosen = [m.server_assignor for m in self.members.values() if m.server_assignor]
        chosen = [name for name in chosen if name in configured]
        return max(sorted(set(chosen)), key=chosen.count) if chosen else configured[0]

    def subscribed_topics(self, resolve: Callable[[str], frozenset[str]]) -> set[str]:
        topics: set[str] = set()
        for member in self.members.values():
            topics.update(member.subscribed(resolve))
        return topics

    def held_elsewhere(self, member_id: str, tp: TopicPartition) -> bool:
        holder = self.owners.get(tp)
        return holder is not None and holder != member_id

    def update_owners(self, member: ConsumerGroupMember, before: Assignment = EMPTY) -> None:
        """Record which partitions the member holds now that it held ``before``."""
        now = member.held()
        self._release(member.member_id, before - now)
        for tp in now:
            self.owners[tp] = member.member_id

    def release(self, member: ConsumerGroupMember) -> None:
        """The member is gone: what it held is free."""
        self._release(member.member_id, member.held())

    def _release(self, member_id: str, partitions: Assignment) -> None:
        for tp in partitions:
            if self.owners.get(tp) == member_id:
                del self.owners[tp]
