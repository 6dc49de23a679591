"""GroupCoordinator: Kafka's classic consumer-group protocol.

Members join (JoinGroup), the leader assigns (SyncGroup), everyone heartbeats; a member that
misses its session timeout, leaves, or joins with new protocols triggers a rebalance, and each
rebalance bumps the generation, fencing stale members with Kafka's error codes. Committed
offsets and group metadata are written to ``__consumer_offsets`` in Kafka's record format and
replayed at start-up.

All state lives on the event loop; a JoinGroup or SyncGroup that must wait is a future the
handler awaits. Timers (session expiry, delayed joins) are loop timers, reset on activity.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from kio.schema.errors import ErrorCode

from artesian.coordinator.group import records as rec
from artesian.coordinator.group.consumer_coordinator import (
    ConsumerGroupConfig,
    ConsumerGroupCoordinator,
    TopicsView,
)
from artesian.coordinator.group.consumer_group_records import ConsumerGroupKey
from artesian.coordinator.group.group_metadata import (
    GroupMetadata,
    GroupState,
    JoinResult,
    MemberMetadata,
    OffsetAndMetadata,
    leaving_member_id,
)
from artesian.coordinator.group.online_migration import classic_group_from_consumer
from artesian.coordinator.group.share_group_coordinator import (
    ShareGroupConfig,
    ShareGroupCoordinator,
)
from artesian.coordinator.group.share_group_records import ShareGroupKey
from artesian.coordinator.serde import LoggedRecord, parse_marker_key

log = logging.getLogger("artesian.group_coordinator")

E = ErrorCode


class OffsetsTopic(Protocol):
    """The coordinator's view of ``__consumer_offsets``."""

    def append(
        self,
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        producer_id: int = -1,
        producer_epoch: int = -1,
    ) -> None:
        """Append key/value records durably as one batch (a transactional one for a producer
        id); raises on failure."""

    def read(self, partition: int) -> Iterator[LoggedRecord]:
        """Every record in the partition, in offset order, markers included."""

    def ensure(self) -> None:
        """Create the topic if it does not exist yet; raises if it cannot."""


@dataclass(slots=True, frozen=True)
class GroupConfig:
    num_partitions: int = 50
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1800000
    initial_rebalance_delay_ms: int = 3000
    max_size: int = 2**31 - 1
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offset_metadata_max_bytes: int = 4096


@dataclass(slots=True, frozen=True)
class JoinRequest:
    """What a JoinGroup asks, whatever its version."""

    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    require_known_member_id: bool
    supports_skip_assignment: bool = False  # JoinGroup v9+ (KIP-814)

    def new_member(self, member_id: str) -> MemberMetadata:
        return MemberMetadata(
            member_id,
            self.group_instance_id,
            self.client_id,
            self.client_host,
            self.rebalance_timeout_ms,
            self.session_timeout_ms,
            self.protocol_type,
            self.protocols,
        )


@dataclass(slots=True)
class SyncResult:
    error: int
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


class _NoTopics:
    """A TopicsView with no topics (callers that have no metadata image)."""

    def partition_count(self, topic: str) -> int:
        return 0

    def names(self) -> Iterable[str]:
        return ()

    def version(self) -> int:
        return 0

    def viewer(self) -> str | None:
        return None

    def describable(self, names: frozenset[str]) -> frozenset[str]:
        return names


NO_TOPICS: TopicsView = _NoTopics()


def _now_ms() -> int:
    return int(time.time() * 1000)


class GroupCoordinator:
    def __init__(
        self,
        config: GroupConfig,
        topic: OffsetsTopic,
        clock: Callable[[], int] = _now_ms,
        consumer: ConsumerGroupConfig | None = None,
        topic_id: Callable[[str], uuid.UUID | None] = lambda name: None,
        topic_name: Callable[[uuid.UUID], str | None] = lambda topic_id: None,
        share: ShareGroupConfig | None = None,
    ) -> None:
        self.config = config
        self.topic = topic
        self.clock = clock
        self.groups: dict[str, GroupMetadata] = {}
        # Groups on the consumer protocol (KIP-848) share this table and its offsets.
        self.consumer_groups = ConsumerGroupCoordinator(
            self, consumer or ConsumerGroupConfig(), topic_id, topic_name
        )
        # Share groups (KIP-932) share it too.
        self.share_groups = ShareGroupCoordinator(self, share or ShareGroupConfig())
        # The __consumer_offsets partitions this broker leads: it coordinates their groups.
        self.owned: set[int] = set()

    # --- ownership ------------------------------------------------------------------------

    def owns(self, group_id: str) -> bool:
        """Whether this coordinator serves ``group_id``; others get NOT_COORDINATOR and ask
        FindCoordinator again."""
        if not self.owned:
            # First use (a client that skipped FindCoordinator): create the topic; its
            # partitions led here are loaded as their leadership arrives.
            try:
                self.topic.ensure()
            except Exception:
                return False
        return self.partition_for(group_id) in self.owned

    def load(self, partitions: Iterable[int] | None = None) -> None:
        """Take over ``partitions`` (default: all) of ``__consumer_offsets``: replay each,
        the latest record per key winning (Kafka's onElection)."""
        todo = range(self.config.num_partitions) if partitions is None else list(partitions)
        before = len(self.groups)
        for partition in todo:
            if partition not in self.owned:
                self._load_partition(partition)
        if partitions is None or len(self.groups) != before:
            log.info("loaded %d consumer group(s) from __consumer_offsets", len(self.groups))

    def unload(self, partition: int) -> None:
        """Another broker leads ``partition`` now (Kafka's onResignation): forget its groups;
        members waiting in a join or sync learn to look for the new coordinator."""
        self.owned.discard(partition)
        for group in [
            g for g in self.groups.values() if self.partition_for(g.group_id) == partition
        ]:
            self.abandon(group, E.not_coordinator)
            del self.groups[group.group_id]

    def _load_partition(self, partition: int) -> None:
        self.owned.add(partition)
        for record in self.topic.read(partition):
            key_bytes, value = record.key, record.value
            if key_bytes is None:
                continue
            try:
                if record.control:
                    commit = parse_marker_key(key_bytes)
                    self.complete_transaction(partition, record.producer_id, commit)
                    continue
                key = rec.parse_key(key_bytes)
                if isinstance(key, rec.OffsetKey):
                    self._load_offset(key, value, record.producer_id)
                elif isinstance(key, rec.GroupKey):
                    self._load_group(key, value)
                elif isinstance(key, ConsumerGroupKey):
                    self.consumer_groups.replay(key, value)
                elif isinstance(key, ShareGroupKey):
                    self.share_groups.replay(key, value)
            except (ValueError, UnicodeDecodeError) as e:
                log.warning("skipping unreadable __consumer_offsets record: %s", e)
        for group in [
            g for g in self.groups.values() if self.partition_for(g.group_id) == partition
        ]:
            if (
                group.is_empty()
                and not group.offsets
                and group.generation_id == 0
                and group.consumer is None
                and group.share is None
            ):
                del self.groups[group.group_id]
                continue
            for member in group.members.values():
                self._schedule_heartbeat(group, member)
            self.consumer_groups.loaded(group)
            self.share_groups.loaded(group)

    def _load_offset(self, key: rec.OffsetKey, value: bytes | None, producer_id: int) -> None:
        group = self.groups.get(key.group)
        if value is None:
            if group is not None:
                _drop_offsets(group, [(key.topic, key.partition)])
            return
        v = rec.parse_offset_value(value)
        group = self.groups.setdefault(key.group, GroupMetadata(key.group))
        om = OffsetAndMetadata(
            v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp
        )
        if producer_id >= 0:
            # Pending until its transaction's marker, later in this partition.
            group.pending_txn_offsets.setdefault(producer_id, {})[(key.topic, key.partition)] = om
        else:
            group.offsets[(key.topic, key.partition)] = om

    def _load_group(self, key: rec.GroupKey, value: bytes | None) -> None:
        if value is None:
            # The classic group is gone; offsets committed before it (tombstoned with it when
            # the group was deleted) or a consumer or share group it became stay.
            group = self.groups.get(key.group)
            if group is not None and group.share is None:
                group.members.clear()
                group.static_members.clear()
                group.generation_id, group.leader_id = 0, None
                group.protocol_name = None
                group.state, group.state_timestamp = GroupState.EMPTY, -1
                if group.consumer is None:
                    group.protocol_type = None
                if not group.offsets and not group.pending_txn_offsets and group.consumer is None:
                    del self.groups[key.group]
            return
        v = rec.parse_group_value(value)
        group = self.groups.setdefault(key.group, GroupMetadata(key.group))
        group.consumer = None  # the latest record wins: the group went back to classic
        group.protocol_type = v.protocol_type or None
        group.generation_id = v.generation
        group.protocol_name = v.protocol
        group.state_timestamp = v.state_timestamp
        group.members.clear()
        group.static_members.clear()
        group.leader_id = None
        group.state = GroupState.EMPTY
        if not v.members or not v.protocol:
            return
        # The last completed generation comes back with its members and assignments, as
        # Kafka's GroupMetadataManager loads it: members that keep heartbeating carry on
        # without a rebalance, and those that do not time out (load() starts their clocks).
        for m in v.members:
            group.members[m.member_id] = MemberMetadata(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                group.protocol_type or "",
                [(v.protocol, m.subscription)],
                m.assignment,
            )
            if m.group_instance_id is not None:
                group.static_members[m.group_instance_id] = m.member_id
        group.leader_id = v.leader
        group.state = GroupState.STABLE

    # --- JoinGroup ------------------------------------------------------------------------

    async def join_group(self, req: JoinRequest, topics: TopicsView = NO_TOPICS) -> JoinResult:
        member_id = req.member_id
        if not req.group_id:
            return JoinResult(E.invalid_group_id, member_id=member_id)
        if not self.owns(req.group_id):
            return JoinResult(E.not_coordinator, member_id=member_id)
        if not (
            self.config.min_session_timeout_ms
            <= req.session_timeout_ms
            <= self.config.max_session_timeout_ms
        ):
            return JoinResult(E.invalid_session_timeout, member_id=member_id)
        group = self.groups.get(req.group_id)
        if group is None:
            if member_id:
                return JoinResult(E.unknown_member_id, member_id=member_id)
            group = self.groups[req.group_id] = GroupMetadata(req.group_id)
        if group.state is GroupState.DEAD:
            return JoinResult(E.coordinator_not_available, member_id=member_id)
        if group.share is not None:  # Kafka: "Group ... is not a classic group."
            return JoinResult(E.inconsistent_group_protocol, member_id="")
        if group.consumer is not None:
            if group.consumer.members:
                # A classic member inside a consumer group (KIP-848's online migration).
                return self.consumer_groups.classic_join(group, req, topics)
            # An empty consumer group turns classic.
            try:
                self.topic.append(self.partition_for(group.group_id), self._group_tombstones(group))
            except Exception as e:
                log.warning("could not store group %s turning classic: %s", group.group_id, e)
                return JoinResult(E.coordinator_not_available, member_id=member_id)
            group.consumer = None
            group.protocol_type = None
        if not group.supports(req.protocol_type, [p for p, _ in req.protocols]):
            return JoinResult(E.inconsistent_group_protocol, member_id=member_id)
        if not member_id:
            return await self._join_unknown_member(group, req)
        return await self._join_known_member(group, req)

    async def _join_unknown_member(self, group: GroupMetadata, req: JoinRequest) -> JoinResult:
        new_id = f"{req.client_id}-{uuid.uuid4()}"
        if req.group_instance_id is not None:
            old_id = group.static_members.get(req.group_instance_id)
            if old_id is not None and old_id in group.members:
                return await self._replace_static_member(group, old_id, new_id, req)
        elif req.require_known_member_id:
            # KIP-394: hand out the id first; the member joins with it in its next request.
            if len(group.members) + len(group.pending_members) >= self.config.max_size:
                return JoinResult(E.group_max_size_reached)
            loop = asyncio.get_running_loop()
            group.pending_members[new_id] = loop.call_later(
                req.session_timeout_ms / 1000, self._expire_pending, group, new_id
            )
            return JoinResult(E.member_id_required, member_id=new_id)
        if len(group.members) >= self.config.max_size:
            return JoinResult(E.group_max_size_reached)
        return await self._add_member_and_rebalance(group, req.new_member(new_id))

    async def _join_known_member(self, group: GroupMetadata, req: JoinRequest) -> JoinResult:
        member_id, protocols = req.member_id, req.protocols
        if member_id in group.pending_members:
            timer = group.pending_members.pop(member_id)
            if timer is not None:
                timer.cancel()
            return await self._add_member_and_rebalance(group, req.new_member(member_id))
        invalid = self._validate_member(group, member_id, req.group_instance_id)
        if invalid is not None:
            return JoinResult(invalid, member_id=member_id)
        member = group.members[member_id]
        member.session_timeout_ms = req.session_timeout_ms
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if group.state is GroupState.PREPARING_REBALANCE:
            member.protocols = protocols
            return await self._await_join(group, member)
        if group.state is GroupState.COMPLETING_REBALANCE:
            if member.matches(protocols):
                # A retried join: answer with the generation already formed.
                return self._join_result(group, member)
            member.protocols = protocols
            self._prepare_rebalance(group, f"member {member_id} changed its protocols")
            return await self._await_join(group, member)
        if group.state is GroupState.STABLE:
            if member_id == group.leader_id or not member.matches(protocols):
                # The leader rejoining means it wants a new assignment (e.g. metadata change).
                member.protocols = protocols
                self._prepare_rebalance(group, f"member {member_id} rejoined")
                return await self._await_join(group, member)
            return self._join_result(group, member)
        return JoinResult(E.unknown_member_id, member_id=member_id)

    async def _replace_static_member(
        self, group: GroupMetadata, old_id: str, new_id: str, req: JoinRequest
    ) -> JoinResult:
        """A static member restarted: it takes its old place without a rebalance when the
        group is stable and its protocols are unchanged (KIP-345)."""
        current_leader = group.leader_id or ""
        old = group.members.pop(old_id)
        self._cancel_heartbeat(old)
        if old.awaiting_join is not None and not old.awaiting_join.done():
            old.awaiting_join.set_result(JoinResult(E.fenced_instance_id, member_id=old_id))
        if old.awaiting_sync is not None and not old.awaiting_sync.done():
            old.awaiting_sync.set_result((E.fenced_instance_id, b""))
        member = MemberMetadata(
            new_id,
            old.group_instance_id,
            old.client_id,
            old.client_host,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            old.protocol_type,
            req.protocols,
            assignment=old.assignment,
        )
        group.members[new_id] = member
        assert member.group_instance_id is not None
        group.static_members[member.group_instance_id] = new_id
        if group.leader_id == old_id:
            group.leader_id = new_id
        if group.state is GroupState.PREPARING_REBALANCE:
            # Already rebalancing: the new incarnation simply joins it (Kafka adds nothing).
            return await self._await_join(group, member)
        if group.state is GroupState.STABLE and group.select_protocol() == group.protocol_name:
            # KIP-345: no rebalance while the group's protocol stays the same. From JoinGroup
            # v9 a restarted leader is told it leads, with the members, and to skip the
            # assignment (KIP-814). Older versions get the leader as it was before the
            # replacement and no members, so the new incarnation does not run an assignment
            # that a stable group would never hand out (Kafka's answer below v9).
            self._schedule_heartbeat(group, member)
            try:
                self._persist_group(group)
            except Exception as e:
                # As Kafka: the old incarnation's place is given back, the new one is refused.
                log.warning("could not store group %s: %s", group.group_id, e)
                self._cancel_heartbeat(member)
                del group.members[new_id]
                group.members[old_id] = old
                group.static_members[member.group_instance_id] = old_id
                if group.leader_id == new_id:
                    group.leader_id = old_id
                self._schedule_heartbeat(group, old)
                return JoinResult(E.coordinator_not_available, member_id="")
            if req.supports_skip_assignment:
                result = self._join_result(group, member)
                result.skip_assignment = new_id == group.leader_id
                return result
            return JoinResult(
                E.none,
                group.generation_id,
                group.protocol_type,
                group.protocol_name,
                current_leader,
                new_id,
            )
        self._prepare_rebalance(group, f"static member {member.group_instance_id} rejoined")
        return await self._await_join(group, member)

    async def _add_member_and_rebalance(
        self, group: GroupMetadata, member: MemberMetadata
    ) -> JoinResult:
        if group.is_empty():
            group.protocol_type = member.protocol_type
        group.members[member.member_id] = member
        if member.group_instance_id is not None:
            group.static_members[member.group_instance_id] = member.member_id
        if group.leader_id is None:
            group.leader_id = member.member_id
        group.new_member_added = True
        if group.state is not GroupState.PREPARING_REBALANCE:
            self._prepare_rebalance(group, f"member {member.member_id} joined")
        return await self._await_join(group, member)

    async def _await_join(self, group: GroupMetadata, member: MemberMetadata) -> JoinResult:
        loop = asyncio.get_running_loop()
        if member.awaiting_join is not None and not member.awaiting_join.done():
            # A duplicate join from the same member replaces the older waiter.
            member.awaiting_join.set_result(
                JoinResult(E.rebalance_in_progress, member_id=member.member_id)
            )
        fut: asyncio.Future[JoinResult] = loop.create_future()
        member.awaiting_join = fut
        self._cancel_heartbeat(member)
        self._try_complete_join(group)
        return await fut

    def _prepare_rebalance(self, group: GroupMetadata, reason: str) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            # Members waiting in SyncGroup must rejoin, and from now on heartbeat. One whose
            # client went away (its wait cancelled) is no longer waiting either: its session
            # runs out, else it would hold this rebalance for the whole rebalance timeout.
            for m in group.members.values():
                if m.awaiting_sync is not None:
                    if not m.awaiting_sync.done():
                        m.awaiting_sync.set_result((E.rebalance_in_progress, b""))
                    m.awaiting_sync = None
                    self._schedule_heartbeat(group, m)
        was_empty = group.state is GroupState.EMPTY
        old_state = group.state
        group.state = GroupState.PREPARING_REBALANCE
        group.state_timestamp = self.clock()
        loop = asyncio.get_running_loop()
        if group.join_timer is not None:
            group.join_timer.cancel()
        group.new_member_added = False
        if was_empty and self.config.initial_rebalance_delay_ms > 0:
            # InitialDelayedJoin: give the other members of a starting group time to arrive.
            group.initial_rebalance = True
            delay = min(self.config.initial_rebalance_delay_ms, group.rebalance_timeout_ms())
        else:
            group.initial_rebalance = False
            delay = group.rebalance_timeout_ms()
        group.join_deadline = loop.time() + group.rebalance_timeout_ms() / 1000
        group.join_timer = loop.call_later(delay / 1000, self._on_join_timeout, group)
        log.info(
            "preparing to rebalance group %s in state %s with old generation %d (reason: %s)",
            group.group_id,
            old_state.value,
            group.generation_id,
            reason,
        )

    def _on_join_timeout(self, group: GroupMetadata) -> None:
        group.join_timer = None
        if group.state is not GroupState.PREPARING_REBALANCE:
            return
        loop = asyncio.get_running_loop()
        remaining = group.join_deadline - loop.time()
        if group.initial_rebalance and group.new_member_added and remaining > 0:
            # InitialDelayedJoin: while new members keep arriving, wait one more delay (up to
            # the rebalance timeout) so a starting group forms in one generation.
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms / 1000, remaining)
            group.join_timer = loop.call_later(delay, self._on_join_timeout, group)
            return
        self._complete_join(group, force=True)

    def _try_complete_join(self, group: GroupMetadata) -> None:
        if group.state is GroupState.PREPARING_REBALANCE and group.all_joined():
            if group.initial_rebalance:
                return  # the initial delay runs its course, as in Kafka
            self._complete_join(group, force=False)

    def _complete_join(self, group: GroupMetadata, force: bool) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None
        for m in group.not_yet_rejoined():
            # Dynamic members that did not rejoin within the rebalance timeout are out; static
            # ones keep their place until their session times out (KIP-345), as in Kafka.
            if m.group_instance_id is None:
                self._remove_member(group, m)
        joined = [m.member_id for m in group.members.values() if m.awaiting_join is not None]
        if group.members and not joined:
            # Only static members that have not rejoined: wait another rebalance timeout for
            # them (or for their session timeouts), as Kafka does.
            loop = asyncio.get_running_loop()
            group.join_timer = loop.call_later(
                group.rebalance_timeout_ms() / 1000, self._on_join_timeout, group
            )
            return
        for member_id, timer in list(group.pending_members.items()):
            if timer is not None:
                timer.cancel()
            del group.pending_members[member_id]
        group.generation_id += 1
        group.state_timestamp = self.clock()
        if group.is_empty():
            group.state = GroupState.EMPTY
            group.protocol_name = None
            group.leader_id = None
            try:
                self._persist_group(group)
            except Exception as e:  # in a timer: logged; the group's next record stores it
                log.warning("could not store empty group %s: %s", group.group_id, e)
            log.info("group %s is empty at generation %d", group.group_id, group.generation_id)
            return
        group.protocol_name = group.select_protocol()
        if group.leader_id not in joined:
            group.leader_id = joined[0]  # the leader must be a member that rejoined
        group.state = GroupState.COMPLETING_REBALANCE
        log.info(
            "stabilizing group %s generation %d (protocol %s) with %d member(s)",
            group.group_id,
            group.generation_id,
            group.protocol_name,
            len(group.members),
        )
        for m in group.members.values():
            fut = m.awaiting_join
            m.awaiting_join = None
            if fut is not None and not fut.done():
                fut.set_result(self._join_result(group, m))
            self._schedule_heartbeat(group, m)
        self._expect_syncs(group)

    def _expect_syncs(self, group: GroupMetadata) -> None:
        """Every member must send SyncGroup within the rebalance timeout; one that heartbeats
        but never syncs would otherwise hold the group (Kafka's pending-sync check)."""
        group.pending_sync = set(group.members)
        if group.sync_timer is not None:
            group.sync_timer.cancel()
        group.sync_timer = asyncio.get_running_loop().call_later(
            group.rebalance_timeout_ms() / 1000, self._on_sync_timeout, group, group.generation_id
        )

    def _on_sync_timeout(self, group: GroupMetadata, generation: int) -> None:
        group.sync_timer = None
        if generation != group.generation_id or not group.pending_sync:
            return
        if group.state not in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        missing = [group.members[m] for m in group.pending_sync if m in group.members]
        group.pending_sync.clear()
        for member in missing:
            log.info(
                "member %s in group %s did not send SyncGroup within the rebalance timeout; "
                "removing it",
                member.member_id,
                group.group_id,
            )
            self._remove_member(group, member)
        if missing:
            self._prepare_rebalance(group, "members did not sync")

    def _join_result(self, group: GroupMetadata, member: MemberMetadata) -> JoinResult:
        members: list[tuple[str, str | None, bytes]] = []
        if member.member_id == group.leader_id and group.protocol_name is not None:
            members = [
                (m.member_id, m.group_instance_id, m.metadata_for(group.protocol_name))
                for m in group.members.values()
            ]
        return JoinResult(
            E.none,
            group.generation_id,
            group.protocol_type,
            group.protocol_name,
            group.leader_id or "",
            member.member_id,
            members,
        )

    def _expire_pending(self, group: GroupMetadata, member_id: str) -> None:
        group.pending_members.pop(member_id, None)
        self._try_complete_join(group)

    # --- SyncGroup ------------------------------------------------------------------------

    async def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> SyncResult:
        if not self.owns(group_id):
            return SyncResult(E.not_coordinator)
        group = self.groups.get(group_id)
        if group is None:
            return SyncResult(E.unknown_member_id)
        if group.state is GroupState.DEAD:
            return SyncResult(E.coordinator_not_available)
        if group.consumer is not None:
            error, assignment = self.consumer_groups.classic_sync(
                group, generation_id, member_id, group_instance_id, protocol_type, protocol_name
            )
            if error:
                return SyncResult(error)
            return SyncResult(E.none, assignment, protocol_type, protocol_name)
        invalid = self._validate_member(group, member_id, group_instance_id)
        if invalid is not None:
            return SyncResult(invalid)
        if generation_id != group.generation_id:
            return SyncResult(E.illegal_generation)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return SyncResult(E.inconsistent_group_protocol)
        member = group.members[member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            return SyncResult(E.rebalance_in_progress)
        group.pending_sync.discard(member_id)
        if group.state is GroupState.STABLE:
            self._schedule_heartbeat(group, member)
            return SyncResult(E.none, member.assignment, group.protocol_type, group.protocol_name)
        if group.state is not GroupState.COMPLETING_REBALANCE:
            return SyncResult(E.unknown_member_id)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        member.awaiting_sync = fut
        self._schedule_heartbeat(group, member)
        if member_id == group.leader_id:
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            try:
                self._persist_group(group)
            except Exception:
                log.exception("could not store group %s; members will rejoin", group_id)
                self._prepare_rebalance(group, "failed to store the assignment")
                return SyncResult(E.coordinator_not_available)
            group.state = GroupState.STABLE
            group.state_timestamp = self.clock()
            for m in group.members.values():
                waiter = m.awaiting_sync
                m.awaiting_sync = None
                if waiter is not None and not waiter.done():
                    waiter.set_result((E.none, m.assignment))
            log.info(
                "assignment received from leader %s for group %s for generation %d",
                member_id,
                group_id,
                group.generation_id,
            )
        error, assignment = await fut
        if error != E.none:
            return SyncResult(error)
        return SyncResult(E.none, assignment, group.protocol_type, group.protocol_name)

    # --- Heartbeat and LeaveGroup ---------------------------------------------------------

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> int:
        if not self.owns(group_id):
            return E.not_coordinator
        group = self.groups.get(group_id)
        if group is None:
            return E.unknown_member_id
        if group.state is GroupState.DEAD:
            return E.coordinator_not_available
        if group.consumer is not None:
            return self.consumer_groups.classic_heartbeat(
                group, generation_id, member_id, group_instance_id
            )
        invalid = self._validate_member(group, member_id, group_instance_id)
        if invalid is not None:
            return invalid
        # The generation is checked before the state: a stale member gets ILLEGAL_GENERATION
        # even while the group prepares a rebalance.
        if generation_id != group.generation_id:
            return E.illegal_generation
        member = group.members[member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            self._schedule_heartbeat(group, member)
            return E.rebalance_in_progress
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._schedule_heartbeat(group, member)
            return E.none
        return E.unknown_member_id

    def leave_group(
        self, group_id: str, leaving: list[tuple[str, str | None]]
    ) -> tuple[int, list[tuple[str, str | None, int]]]:
        if not self.owns(group_id):
            return E.not_coordinator, []
        group = self.groups.get(group_id)
        if group is None:
            # Kafka: no group, so none of them is a member; the request itself is fine.
            return E.none, [(m, i, E.unknown_member_id) for m, i in leaving]
        if group.consumer is not None:
            return E.none, self.consumer_groups.classic_leave(group, leaving)
        results: list[tuple[str, str | None, int]] = []
        for requested_id, instance_id in leaving:
            member_id = leaving_member_id(group.static_members, requested_id, instance_id)
            if isinstance(member_id, int):
                results.append((requested_id, instance_id, member_id))
                continue
            if member_id in group.pending_members:
                timer = group.pending_members.pop(member_id)
                if timer is not None:
                    timer.cancel()
                results.append((member_id, instance_id, E.none))
                self._try_complete_join(group)
                continue
            member = group.members.get(member_id)
            if member is None:
                results.append((member_id, instance_id, E.unknown_member_id))
                continue
            log.info("member %s left group %s", member_id, group_id)
            self._remove_member_and_rebalance(group, member, "member left")
            results.append((member_id, instance_id, E.none))
        return E.none, results

    def _remove_member(self, group: GroupMetadata, member: MemberMetadata) -> None:
        group.members.pop(member.member_id, None)
        instance = member.group_instance_id
        if instance is not None and group.static_members.get(instance) == member.member_id:
            del group.static_members[instance]
        self._cancel_heartbeat(member)
        if member.awaiting_join is not None and not member.awaiting_join.done():
            member.awaiting_join.set_result(
                JoinResult(E.unknown_member_id, member_id=member.member_id)
            )
        if member.awaiting_sync is not None and not member.awaiting_sync.done():
            member.awaiting_sync.set_result((E.unknown_member_id, b""))
        if group.leader_id == member.member_id:
            group.leader_id = next(iter(group.members), None)

    def _remove_member_and_rebalance(
        self, group: GroupMetadata, member: MemberMetadata, reason: str
    ) -> None:
        self._remove_member(group, member)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, f"{reason}: {member.member_id}")
        elif group.state is GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group)

    def _validate_member(
        self, group: GroupMetadata, member_id: str, group_instance_id: str | None
    ) -> int | None:
        """Kafka's validateCurrentMember. The static-member check comes first: a replaced
        instance must get FENCED_INSTANCE_ID (fatal for the client), not UNKNOWN_MEMBER_ID,
        which would make it rejoin and fence its successor in turn."""
        if group_instance_id is not None:
            current = group.static_members.get(group_instance_id)
            if current is None:
                return int(E.unknown_member_id)
            if current != member_id:
                return int(E.fenced_instance_id)
        if member_id not in group.members:
            return int(E.unknown_member_id)
        return None

    def _schedule_heartbeat(self, group: GroupMetadata, member: MemberMetadata) -> None:
        self._cancel_heartbeat(member)
        loop = asyncio.get_running_loop()
        member.heartbeat_timer = loop.call_later(
            member.session_timeout_ms / 1000, self._on_session_expired, group, member
        )

    def _cancel_heartbeat(self, member: MemberMetadata) -> None:
        if member.heartbeat_timer is not None:
            member.heartbeat_timer.cancel()
            member.heartbeat_timer = None

    def _on_session_expired(self, group: GroupMetadata, member: MemberMetadata) -> None:
        member.heartbeat_timer = None
        if group.members.get(member.member_id) is not member:
            return
        if member.awaiting_join is not None or member.awaiting_sync is not None:
            self._schedule_heartbeat(group, member)  # blocked in a request: still alive
            return
        log.info(
            "member %s in group %s has failed, removing it (session timeout %d ms expired)",
            member.member_id,
            group.group_id,
            member.session_timeout_ms,
        )
        self._remove_member_and_rebalance(group, member, "session timeout")

    # --- offsets --------------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        offsets: dict[tuple[str, int], OffsetAndMetadata],
        api_version: int = 9,
    ) -> dict[tuple[str, int], int]:
        def all_(code: int) -> dict[tuple[str, int], int]:
            return dict.fromkeys(offsets, code)

        if not group_id:
            return all_(E.invalid_group_id)
        if not self.owns(group_id):
            return all_(E.not_coordinator)
        group = self.groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                return all_(E.illegal_generation)
            # A standalone consumer (assign + commit) creates a group with no members.
            group = self.groups[group_id] = GroupMetadata(group_id)
        elif group.state is GroupState.DEAD:
            return all_(E.coordinator_not_available)
        elif group.share is not None:  # Kafka: "Group ... is not a consumer group."
            return all_(E.group_id_not_found)
        elif group.consumer is not None:
            invalid = self.consumer_groups.validate_commit(
                group.consumer, member_id, generation_id, api_version, offsets
            )
            if isinstance(invalid, int):
                return all_(invalid)
            if invalid:  # an older epoch: only for what the member has held since
                offsets = {tp: om for tp, om in offsets.items() if tp not in invalid}
                results, accepted = self._store_offsets(group_id, offsets)
                group.offsets.update(accepted)
                return {**invalid, **results}
        elif generation_id < 0 and group.state is GroupState.EMPTY:
            # A standalone commit (an admin client, a consumer without group management) to a
            # group nobody is in: whatever member or instance id it names, as in Kafka.
            pass
        else:
            # Member and generation first, then the state (Kafka's validateOffsetCommit): a
            # zombie with a stale generation gets ILLEGAL_GENERATION, not REBALANCE_IN_PROGRESS,
            # during CompletingRebalance too.
            invalid = self._validate_member(group, member_id, group_instance_id)
            if invalid is not None:
                return all_(invalid)
            if generation_id != group.generation_id:
                return all_(E.illegal_generation)
            if group.state is GroupState.COMPLETING_REBALANCE:
                return all_(E.rebalance_in_progress)
            # Stable or PreparingRebalance with the current generation: members commit in
            # their revocation callbacks during a rebalance, so this must be accepted.
            self._schedule_heartbeat(group, group.members[member_id])
        results, accepted = self._store_offsets(group_id, offsets)
        group.offsets.update(accepted)
        return results

    def _store_offsets(
        self,
        group_id: str,
        offsets: dict[tuple[str, int], OffsetAndMetadata],
        producer_id: int = -1,
        producer_epoch: int = -1,
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], OffsetAndMetadata]]:
        """Write offsets to __consumer_offsets: the result per partition, and those stored."""
        results: dict[tuple[str, int], int] = {}
        to_store: list[tuple[bytes, bytes | None]] = []
        accepted: dict[tuple[str, int], OffsetAndMetadata] = {}
        for tp, om in offsets.items():
            if len(om.metadata.encode()) > self.config.offset_metadata_max_bytes:
                results[tp] = E.offset_metadata_too_large
                continue
            to_store.append(
                (
                    rec.offset_key(group_id, tp[0], tp[1]),
                    rec.offset_value(
                        rec.OffsetValue(
                            om.offset,
                            om.leader_epoch,
                            om.metadata,
                            om.commit_timestamp,
                            om.expire_timestamp,
                        )
                    ),
                )
            )
            accepted[tp] = om
        if to_store:
            try:
                self.topic.append(
                    self.partition_for(group_id), to_store, producer_id, producer_epoch
                )
            except Exception as e:
                # Kafka's mapping of a failed __consumer_offsets append: a commit too large
                # for one batch is not worth retrying.
                code = getattr(e, "error_code", None)
                error = (
                    E.invalid_commit_offset_size
                    if code in (E.message_too_large, E.record_list_too_large)
                    else E.coordinator_not_available
                )
                log.warning("could not store offsets of group %s: %s", group_id, e)
                for tp in accepted:
                    results[tp] = error
                return results, {}
        for tp in accepted:
            results[tp] = E.none
        return results, accepted

    # --- transactions ---------------------------------------------------------------------

    def commit_txn_offsets(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        offsets: dict[tuple[str, int], OffsetAndMetadata],
    ) -> dict[tuple[str, int], int]:
        """TxnOffsetCommit: offsets written in the producer's transaction, visible once it
        commits. Members are checked as OffsetCommit checks them when the request names one
        (v3+, KIP-447); a request without a member (v0-2) is not checked."""
        if not group_id:
            return dict.fromkeys(offsets, E.invalid_group_id)
        if not self.owns(group_id):
            return dict.fromkeys(offsets, E.not_coordinator)
        group = self.groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                return dict.fromkeys(offsets, E.illegal_generation)
            group = self.groups[group_id] = GroupMetadata(group_id)
        elif group.state is GroupState.DEAD:
            return dict.fromkeys(offsets, E.coordinator_not_available)
        elif group.share is not None:
            return dict.fromkeys(offsets, E.group_id_not_found)
        elif group.consumer is not None:
            invalid = self.consumer_groups.validate_commit(
                group.consumer, member_id, generation_id, None, offsets
            )
            if isinstance(invalid, int):
                return dict.fromkeys(offsets, invalid)
        elif generation_id >= 0 or member_id or group_instance_id is not None:
            invalid = self._validate_member(group, member_id, group_instance_id)
            if invalid is not None:
                return dict.fromkeys(offsets, invalid)
            if generation_id != group.generation_id:
                return dict.fromkeys(offsets, E.illegal_generation)
        results, accepted = self._store_offsets(group_id, offsets, producer_id, producer_epoch)
        if accepted:
            group.pending_txn_offsets.setdefault(producer_id, {}).update(accepted)
        return results

    def complete_transaction(self, partition: int, producer_id: int, commit: bool) -> None:
        """A marker reached ``__consumer_offsets``-``partition``: the producer's pending
        offsets in the groups of that partition take effect (commit) or are dropped."""
        for group in self.groups.values():
            pending = group.pending_txn_offsets.pop(producer_id, None)
            if pending is None:
                continue
            if self.partition_for(group.group_id) != partition:
                group.pending_txn_offsets[producer_id] = pending
                continue
            if commit:
                group.offsets.update(pending)

    def has_pending_offsets(self, group_id: str, partitions: Iterable[tuple[str, int]]) -> bool:
        """Whether an open transaction holds offsets for any of ``partitions`` (OffsetFetch
        with require_stable answers UNSTABLE_OFFSET_COMMIT then, KIP-447)."""
        group = self.groups.get(group_id)
        if group is None or not group.pending_txn_offsets:
            return False
        wanted = set(partitions)
        return any(wanted & pending.keys() for pending in group.pending_txn_offsets.values())

    def validate_offset_fetch(self, group_id: str, member_id: str | None, epoch: int) -> int | None:
        """OffsetFetch: GROUP_ID_NOT_FOUND for a share group, which keeps no offsets here;
        from v9 a consumer-protocol member's epoch (None: go on)."""
        group = self.groups.get(group_id)
        if group is not None and group.share is not None:
            return E.group_id_not_found
        if group is None or group.consumer is None:
            return None
        return self.consumer_groups.validate_offset_fetch(group.consumer, member_id, epoch)

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]] | None
    ) -> dict[tuple[str, int], OffsetAndMetadata | None]:
        group = self.groups.get(group_id)
        stored = group.offsets if group is not None else {}
        if partitions is None:
            return dict(stored)
        return {tp: stored.get(tp) for tp in partitions}

    def delete_offsets(
        self, group_id: str, partitions: list[tuple[str, int]]
    ) -> tuple[int, dict[tuple[str, int], int]]:
        if not self.owns(group_id):
            return E.not_coordinator, {}
        group = self.groups.get(group_id)
        if group is None or group.share is not None:
            return E.group_id_not_found, {}
        active = group.state is not GroupState.EMPTY or not group.is_empty()
        subscribed = group.subscribed_topics() if active else set()
        results: dict[tuple[str, int], int] = {}
        removed: list[tuple[str, int]] = []
        for tp in partitions:
            if subscribed is None or tp[0] in subscribed:
                results[tp] = E.group_subscribed_to_topic
                continue
            if tp in group.offsets:
                removed.append(tp)
            results[tp] = E.none
        if removed:
            try:
                self.topic.append(
                    self.partition_for(group_id),
                    [(rec.offset_key(group_id, t, p), None) for t, p in removed],
                )
            except Exception as e:  # nothing is forgotten that the log still holds
                log.warning("could not delete offsets of group %s: %s", group_id, e)
                return E.coordinator_not_available, {}
            _drop_offsets(group, removed)
        return E.none, results

    def delete_offsets_of_deleted_topics(self, topics: set[str]) -> int:
        """Kafka's onPartitionsDeleted: a deleted topic's committed offsets go (tombstoned),
        so that a topic created again under its name starts from auto.offset.reset, not from
        offsets of the old one. Returns how many went."""
        deleted = 0
        for group in list(self.groups.values()):
            # Pending transactional offsets too, or the transaction's commit would bring them
            # back (Kafka's removeOffsets takes both); a tombstone clears both on replay.
            due = [tp for tp in group.offsets if tp[0] in topics]
            pending = {
                tp for p in group.pending_txn_offsets.values() for tp in p if tp[0] in topics
            }
            due += sorted(pending - set(due))
            if not due:
                continue
            try:
                self._tombstone_offsets(group, due)
            except Exception as e:
                log.warning(
                    "could not delete the offsets of group %s for deleted topics %s: %s (they "
                    "stay until the group's offsets expire or are deleted)",
                    group.group_id,
                    sorted({t for t, _ in due}),
                    e,
                )
                continue
            deleted += len(due)
        return deleted

    def _tombstone_offsets(self, group: GroupMetadata, due: list[tuple[str, int]]) -> None:
        """Write tombstones for ``due``, and for the group when that leaves it empty (Kafka's
        cleanup marks it Dead), then forget them. A failed write raises and changes
        nothing."""
        tombstones: list[tuple[bytes, bytes | None]] = [
            (rec.offset_key(group.group_id, t, p), None) for t, p in due
        ]
        gone = _left_empty(group, due)
        if gone:
            tombstones.extend(self._group_tombstones(group))
        if not tombstones:
            return
        self.topic.append(self.partition_for(group.group_id), tombstones)
        _drop_offsets(group, due)
        if gone:
            del self.groups[group.group_id]

    def expire_offsets(self) -> int:
        """Drop offsets of empty groups older than offsets.retention.minutes (Kafka 2.1+)."""
        now = self.clock()
        expired = 0
        for group in list(self.groups.values()):
            if group.state is not GroupState.EMPTY or not group.is_empty():
                continue
            if group.share is not None:
                continue  # share groups keep no offsets here, and never expire (as in Kafka)
            due = []
            for tp, om in group.offsets.items():
                if om.expire_timestamp is not None:
                    expiring = om.expire_timestamp <= now
                else:
                    since = max(group.state_timestamp, om.commit_timestamp)
                    expiring = since + self.config.offsets_retention_ms <= now
                if expiring:
                    due.append(tp)
            try:
                self._tombstone_offsets(group, due)
            except Exception as e:  # the next pass tries again; nothing forgotten meanwhile
                log.warning("could not expire offsets of group %s: %s", group.group_id, e)
                continue
            expired += len(due)
        return expired

    # --- admin ----------------------------------------------------------------------------

    def delete_groups(self, group_ids: list[str]) -> dict[str, int]:
        results: dict[str, int] = {}
        for group_id in group_ids:
            if not self.owns(group_id):
                results[group_id] = E.not_coordinator
                continue
            group = self.groups.get(group_id)
            if group is None:
                results[group_id] = E.group_id_not_found
                continue
            if not group.is_empty() or group.state is not GroupState.EMPTY:
                results[group_id] = E.non_empty_group
                continue
            tombstones: list[tuple[bytes, bytes | None]] = [
                (rec.offset_key(group_id, t, p), None) for t, p in group.offsets
            ]
            tombstones.extend(self._group_tombstones(group))
            try:
                self.topic.append(self.partition_for(group_id), tombstones)
            except Exception as e:
                log.warning("could not delete group %s: %s", group_id, e)
                results[group_id] = E.coordinator_not_available
                continue
            group.state = GroupState.DEAD
            del self.groups[group_id]
            results[group_id] = E.none
        return results

    def remove_share_group(self, group: GroupMetadata) -> None:
        """Forget an empty share group whose state is deleted; raises if the deletion
        cannot be written."""
        self.topic.append(self.partition_for(group.group_id), self._group_tombstones(group))
        self.share_groups.abandon(group)
        del self.groups[group.group_id]

    def _group_tombstones(self, group: GroupMetadata) -> list[tuple[bytes, bytes | None]]:
        """What deletes an empty group's metadata, whichever protocol it is on."""
        if group.share is not None:
            return self.share_groups.group_tombstones(group)
        tombstones: list[tuple[bytes, bytes | None]] = [(rec.group_key(group.group_id), None)]
        if group.consumer is not None:
            tombstones.extend(self.consumer_groups.group_tombstones(group.group_id))
        return tombstones

    def partition_for(self, group_id: str) -> int:
        return rec.partition_for(group_id, self.config.num_partitions)

    def _persist_group(self, group: GroupMetadata) -> None:
        records = [*group.unwritten_tombstones, self._group_record(group)]
        self.topic.append(self.partition_for(group.group_id), records)
        group.unwritten_tombstones.clear()

    def _group_record(self, group: GroupMetadata) -> tuple[bytes, bytes | None]:
        value = rec.GroupValue(
            group.protocol_type or "",
            group.generation_id,
            group.protocol_name,
            group.leader_id,
            group.state_timestamp,
            tuple(
                rec.MemberValue(
                    m.member_id,
                    m.group_instance_id,
                    m.client_id,
                    m.client_host,
                    m.rebalance_timeout_ms,
                    m.session_timeout_ms,
                    m.metadata_for(group.protocol_name) if group.protocol_name else b"",
                    m.assignment,
                )
                for m in group.members.values()
            ),
        )
        return rec.group_key(group.group_id), rec.group_value(value)

    def downgrade(self, group: GroupMetadata, tombstones: list[tuple[bytes, bytes | None]]) -> None:
        """A consumer group left with classic members only becomes a classic group of them
        (``tombstones`` delete its consumer-protocol records) and rebalances at once, so
        its leader assigns again (Kafka's convertToClassicGroup)."""
        cg = group.consumer
        assert cg is not None
        classic_group_from_consumer(group, cg, self.clock())
        group.unwritten_tombstones = tombstones
        try:
            self._persist_group(group)
        except Exception as e:
            # In memory the group is classic now: its members rejoin, and the next
            # generation's record stores it, with the tombstones.
            log.warning("could not store group %s going back to classic: %s", group.group_id, e)
        log.info(
            "downgraded consumer group %s to a classic group at generation %d with %d member(s)",
            group.group_id,
            group.generation_id,
            len(group.members),
        )
        for member in group.members.values():
            self._schedule_heartbeat(group, member)
        self._prepare_rebalance(group, "the group went back to the classic protocol")

    def shutdown(self) -> None:
        """Answer every waiting JoinGroup and SyncGroup with COORDINATOR_NOT_AVAILABLE, so
        clients look for the coordinator again instead of waiting out their timeouts."""
        for group in self.groups.values():
            self.abandon(group, E.coordinator_not_available)

    def abandon(self, group: GroupMetadata, code: int) -> None:
        """Stop the group's timers and answer its waiting joins and syncs with ``code`` (the
        group moved to another coordinator, or to the other protocol)."""
        self.consumer_groups.abandon(group)
        self.share_groups.abandon(group)
        for timer in (group.join_timer, group.sync_timer, *group.pending_members.values()):
            if timer is not None:
                timer.cancel()
        group.pending_members.clear()
        for m in group.members.values():
            self._cancel_heartbeat(m)
            join, sync = m.awaiting_join, m.awaiting_sync
            if join is not None and not join.done():
                join.set_result(JoinResult(code, member_id=m.member_id))
            if sync is not None and not sync.done():
                sync.set_result((code, b""))


def _drop_offsets(group: GroupMetadata, tps: Iterable[tuple[str, int]]) -> None:
    """An offset tombstone's effect, live and on replay alike: the committed offset and any
    a transaction holds pending for the partition."""
    for tp in tps:
        group.offsets.pop(tp, None)
        for pending in group.pending_txn_offsets.values():
            pending.pop(tp, None)


def _left_empty(group: GroupMetadata, dropped: list[tuple[str, int]]) -> bool:
    """Whether an empty group has nothing left once ``dropped`` offsets go (none pending in
    a transaction either): Kafka's cleanup then deletes the group too."""
    gone = set(dropped)
    return (
        set(group.offsets) <= gone
        and group.share is None
        and group.state is GroupState.EMPTY
        and group.is_empty()
        and all(set(p) <= gone for p in group.pending_txn_offsets.values())
    )
