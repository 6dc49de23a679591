"""A group's state (Kafka's GroupMetadata and MemberMetadata, classic protocol).

A group on the consumer protocol (KIP-848) keeps its members in ``consumer`` instead; its
committed offsets live here either way.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from artesian.coordinator.group.consumer_group import ConsumerGroup
from artesian.coordinator.group.consumer_protocol import parse_subscription
from artesian.coordinator.group.share_group import ShareGroup


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(slots=True)
class JoinResult:
    """What a member's pending JoinGroup is answered with."""

    error: int
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    member_id: str = ""
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass(slots=True, eq=False)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    awaiting_join: asyncio.Future[JoinResult] | None = None
    awaiting_sync: asyncio.Future[tuple[int, bytes]] | None = None
    heartbeat_timer: asyncio.TimerHandle | None = None

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata_for(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise KeyError(protocol)

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols


def leaving_member_id(
    static_members: dict[str, str], member_id: str, instance_id: str | None
) -> str | int:
    """The member a LeaveGroup entry names (a static one by its instance id; an empty member
    id with it is an admin's removal), or the error code it gets: UNKNOWN_MEMBER_ID for an
    unknown instance id, FENCED_INSTANCE_ID for another member's."""
    if instance_id is None:
        return member_id
    holder = static_members.get(instance_id)
    if holder is None:
        return int(ErrorCode.unknown_member_id)
    if member_id and holder != member_id:
        return int(ErrorCode.fenced_instance_id)
    return holder


@dataclass(slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int | None = None


@dataclass(slots=True, eq=False)
class GroupMetadata:
    group_id: str
    state: GroupState = GroupState.EMPTY
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, MemberMetadata] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    """group.instance.id -> member id"""
    pending_members: dict[str, asyncio.TimerHandle | None] = field(default_factory=dict)
    """Member ids handed out with MEMBER_ID_REQUIRED, not yet joined."""
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)
    # Offsets committed inside a transaction (TxnOffsetCommit), per producer id: they take
    # effect when the transaction's COMMIT marker reaches __consumer_offsets.
    pending_txn_offsets: dict[int, dict[tuple[str, int], OffsetAndMetadata]] = field(
        default_factory=dict
    )
    state_timestamp: int = -1
    join_timer: asyncio.TimerHandle | None = None
    join_deadline: float = 0.0
    initial_rebalance: bool = False
    pending_sync: set[str] = field(default_factory=set)
    """Members of the current generation that have not sent SyncGroup yet."""
    sync_timer: asyncio.TimerHandle | None = None
    new_member_added: bool = False
    consumer: ConsumerGroup | None = None
    """Set while the group is on the consumer protocol (KIP-848)."""
    share: ShareGroup | None = None
    """Set for a share group (KIP-932)."""
    unwritten_tombstones: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    """Consumer-protocol records of a group gone back to classic whose deletion could not be
    written yet: its next classic record carries them."""

    @property
    def group_type(self) -> str:
        """ListGroups' GroupType."""
        if self.share is not None:
            return "share"
        return "consumer" if self.consumer is not None else "classic"

    def forget_classic_state(self) -> None:
        """A modern group's record replayed over a classic one's: the latest record wins."""
        self.members.clear()
        self.static_members.clear()
        self.state, self.protocol_name, self.leader_id = GroupState.EMPTY, None, None

    def is_empty(self) -> bool:
        return (
            not self.members
            and not (self.consumer is not None and self.consumer.members)
            and not (self.share is not None and self.share.members)
        )

    def has(self, member_id: str) -> bool:
        return member_id in self.members

    def all_joined(self) -> bool:
        return all(m.awaiting_join is not None for m in self.members.values()) and not (
            self.pending_members
        )

    def not_yet_rejoined(self) -> list[MemberMetadata]:
        return [m for m in self.members.values() if m.awaiting_join is None]

    def supports(self, protocol_type: str, protocols: list[str]) -> bool:
        if self.is_empty():
            return bool(protocol_type) and bool(protocols)
        if protocol_type != self.protocol_type:
            return False
        candidates = self.candidate_protocols()
        return any(p in candidates for p in protocols)

    def candidate_protocols(self) -> set[str]:
        """Protocols every member supports."""
        sets = [set(m.protocol_names()) for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def select_protocol(self) -> str:
        """Kafka's vote: each member votes for its most preferred candidate protocol."""
        candidates = self.candidate_protocols()
        votes: Counter[str] = Counter()
        for m in self.members.values():
            for name in m.protocol_names():
                if name in candidates:
                    votes[name] += 1
                    break
        return max(sorted(votes), key=lambda p: votes[p])

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def subscribed_topics(self) -> set[str] | None:
        """Topics of a 'consumer' group's subscriptions; None when they cannot be read."""
        if self.consumer is not None:
            # Named topics, and those a regex matched at the last heartbeat; unknowable for a
            # regex right after a load.
            cg = self.consumer
            if cg.reloaded and any(m.subscribed_topic_regex for m in cg.members.values()):
                return None
            named = {t for m in cg.members.values() for t in m.subscribed_topic_names}
            return named | set(cg.subscription_metadata)
        if self.protocol_type != "consumer" or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            try:
                topics.update(parse_subscription(m.metadata_for(self.protocol_name)).topics)
            except (KeyError, ValueError, IndexError):
                return None
        return topics

    def describe_state(self) -> str:
        if self.share is not None:
            return self.share.state()
        return self.consumer.state() if self.consumer is not None else self.state.value
