"""The consumer group protocol (KIP-848): ConsumerGroupHeartbeat, on the group coordinator.

Members heartbeat; the coordinator answers each at once with the member's epoch and, when it
changed, the partitions it may consume. Assignment is the broker's job (``uniform`` or
``range``); no member ever waits for the others in a join barrier. Partitions change hands
in two steps, revoke then assign, so two members never hold one partition at the same
time.

Groups live in the GroupCoordinator's table, next to classic groups: a group is of one type
at a time. An empty group changes type when a member of the other protocol arrives; one with
members migrates online (KIP-848, ``group.consumer.migration.policy``): a classic group that a
consumer-protocol member joins becomes a consumer group, its classic members carrying on
through JoinGroup, SyncGroup and Heartbeat (the "classic members" section below), and a
consumer group left with classic members only becomes classic again. Committed offsets are
shared by both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import re2
from kio.schema.errors import ErrorCode

from artesian.coordinator.group import consumer_group_records as cgr
from artesian.coordinator.group import records as rec
from artesian.coordinator.group.assignors import ASSIGNORS, Assignment, TopicPartition
from artesian.coordinator.group.consumer_group import (
    JOIN_EPOCH,
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    ClassicMember,
    ConsumerGroup,
    ConsumerGroupMember,
)
from artesian.coordinator.group.consumer_protocol import (
    assignment_bytes,
    parse_subscription,
    version_of,
)
from artesian.coordinator.group.current_assignment_builder import (
    EMPTY,
    UNASSIGNED,
    MemberState,
    reconcile,
)
from artesian.coordinator.group.group_metadata import (
    GroupMetadata,
    GroupState,
    JoinResult,
    leaving_member_id,
)
from artesian.coordinator.group.online_migration import consumer_group_from_classic
from artesian.coordinator.group.share_group import ShareGroup
from artesian.regex import compile_regex, regex_error_reason
from artesian.tenancy.logical_cluster import namespace_of

if TYPE_CHECKING:
    from artesian.coordinator.group.coordinator import GroupCoordinator, JoinRequest

log = logging.getLogger("artesian.group_coordinator")

E = ErrorCode


class GroupTimeouts:
    """A group's session timeout and heartbeat interval: its own (``timeouts``, from its
    GROUP resource configs) or the broker's. For the consumer and share group configs."""

    __slots__ = ()
    session_timeout_ms: int
    heartbeat_interval_ms: int
    timeouts: Callable[[str], tuple[int, int]] | None

    def session_timeout_for(self, group_id: str) -> int:
        return self.timeouts(group_id)[0] if self.timeouts else self.session_timeout_ms

    def heartbeat_interval_for(self, group_id: str) -> int:
        return self.timeouts(group_id)[1] if self.timeouts else self.heartbeat_interval_ms


@dataclass(slots=True, frozen=True)
class ConsumerGroupConfig(GroupTimeouts):
    """Kafka's group.consumer.* settings, and each group's own (``timeouts``: its session
    timeout and heartbeat interval in ms, from its GROUP resource configs)."""

    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 5_000
    max_size: int = 2**31 - 1
    assignors: tuple[str, ...] = ("uniform", "range")
    timeouts: Callable[[str], tuple[int, int]] | None = None
    migration_policy: str = "bidirectional"

    @property
    def upgrades(self) -> bool:
        """Whether a classic group with members becomes a consumer group (KIP-848)."""
        return self.migration_policy in ("bidirectional", "upgrade")

    @property
    def downgrades(self) -> bool:
        """Whether a consumer group left with classic members only becomes classic."""
        return self.migration_policy in ("bidirectional", "downgrade")


class TopicsView(Protocol):
    """What the coordinator needs of the metadata image."""

    def partition_count(self, topic: str) -> int:
        """Partitions of ``topic``; 0 when it does not exist."""

    def names(self) -> Iterable[str]:
        """Every topic's name (for regex subscriptions)."""

    def version(self) -> int:
        """Changes whenever the topics may have (regex matches are cached against it)."""

    def viewer(self) -> str | None:
        """Whose rights limit what a regex sees (KAFKA-18813); None: nobody's, all topics."""

    def describable(self, names: frozenset[str]) -> frozenset[str]:
        """Those of ``names`` the viewer may DESCRIBE."""


@dataclass(slots=True, frozen=True)
class ConsumerHeartbeat:
    """What a ConsumerGroupHeartbeat asks, whatever its version; None means unchanged."""

    group_id: str
    member_id: str
    member_epoch: int
    client_id: str
    client_host: str
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: Assignment | None = None
    member_id_from_client: bool = True  # v1+ (KIP-1082); v0 lets the coordinator make one


@dataclass(slots=True)
class HeartbeatResult:
    error: int
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None


Record = tuple[bytes, bytes | None]


class StoreFailed(Exception):
    """A change could not be written to __consumer_offsets."""


@dataclass(slots=True, frozen=True)
class ModernKinds:
    """The record kinds (key versions) a modern group type (consumer, share) writes."""

    group_metadata: int
    target_metadata: int
    member_metadata: int
    target_member: int
    parse_group_epoch: Callable[[bytes], int]


CONSUMER_KINDS = ModernKinds(
    cgr.GROUP_METADATA,
    cgr.TARGET_ASSIGNMENT_METADATA,
    cgr.MEMBER_METADATA,
    cgr.TARGET_ASSIGNMENT_MEMBER,
    cgr.parse_epoch_value,
)


def replay_shared(
    group: ConsumerGroup | ShareGroup,
    kinds: ModernKinds,
    kind: int,
    member_id: str,
    value: bytes | None,
    topic_name: cgr.TopicName,
) -> bool:
    """Replay what the modern group types' records share into ``group`` (a ConsumerGroup
    or ShareGroup): the group and target epochs, each member's target, and the tombstones of
    a member's records. False for the records each type reads its own way."""
    if kind == kinds.group_metadata:
        group.group_epoch = kinds.parse_group_epoch(value or b"")
    elif kind == kinds.target_metadata:
        group.assignment_epoch = cgr.parse_epoch_value(value) if value is not None else 0
    elif value is None:
        if kind == kinds.member_metadata:
            group.members.pop(member_id, None)
        elif kind == kinds.target_member:
            group.target.pop(member_id, None)
    elif kind == kinds.target_member:
        group.target[member_id] = cgr.parse_target_member_value(value, topic_name)
    else:
        return False
    return True


class ConsumerGroupCoordinator:
    def __init__(
        self,
        coordinator: GroupCoordinator,
        config: ConsumerGroupConfig,
        topic_id: cgr.TopicId,
        topic_name: cgr.TopicName,
    ) -> None:
        self.coordinator = coordinator
        self.config = config
        # The records name partitions by topic id; the coordinator works on names.
        self.topic_id = topic_id
        self.topic_name = topic_name
        # Regex -> (topics version, the topics it matches): heartbeats of a group subscribed
        # by regex would otherwise match every topic name, every time.
        # Keyed by whose rights limit the matches too: one principal's view is not another's.
        self._regex_matches: dict[
            tuple[str | None, str, str | None], tuple[int, frozenset[str]]
        ] = {}

    # --- ConsumerGroupHeartbeat -----------------------------------------------------------

    def heartbeat(self, req: ConsumerHeartbeat, topics: TopicsView) -> HeartbeatResult:
        invalid = self._validate(req)
        if invalid is not None:
            return invalid
        if not self.coordinator.owns(req.group_id):
            return HeartbeatResult(E.not_coordinator)
        try:
            return self._heartbeat(req, topics)
        except StoreFailed as e:
            return HeartbeatResult(E.coordinator_not_available, str(e))

    def _heartbeat(self, req: ConsumerHeartbeat, topics: TopicsView) -> HeartbeatResult:
        group = self.coordinator.groups.get(req.group_id)
        if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(group, req)
        if group is None:
            if req.member_epoch != JOIN_EPOCH:
                return HeartbeatResult(
                    E.group_id_not_found, f"Consumer group {req.group_id} not found."
                )
            group = self.coordinator.groups[req.group_id] = GroupMetadata(req.group_id)
        records: list[Record] = []
        upgrading: ConsumerGroup | None = None
        cg = group.consumer
        if cg is None:
            if req.member_epoch != JOIN_EPOCH or group.share is not None:
                return HeartbeatResult(
                    E.group_id_not_found, f"Group {req.group_id} is not a consumer group."
                )
            if group.members:
                converted = self._converted(group)
                if isinstance(converted, HeartbeatResult):
                    return converted
                # Installed once the member is in: a refused join leaves the group classic.
                cg = upgrading = group.consumer = converted
            else:
                if group.generation_id > 0 or group.protocol_type:
                    # An empty classic group becomes a consumer group: its classic record
                    # goes (Kafka deletes the old group); its committed offsets stay.
                    records.append((rec.group_key(group.group_id), None))
                self.coordinator.abandon(group, E.rebalance_in_progress)  # members-to-be
                cg = group.consumer = ConsumerGroup()
                group.protocol_type = "consumer"
        if req.member_epoch == JOIN_EPOCH:
            joined = self._join(group, cg, req, records)
            if isinstance(joined, HeartbeatResult):
                if upgrading is not None:
                    group.consumer = None
                return joined
            member, new = joined
            if upgrading is not None:
                self._install_upgrade(group, upgrading)
        else:
            found = self._existing_member(cg, req)
            if isinstance(found, HeartbeatResult):
                return found
            member, new = found, False
        described, subscribed = self._update_member(member, req)
        if member.instance_id is not None:
            cg.static_members[member.instance_id] = member.member_id
        if new or described or subscribed:
            records.append(self._member_record(group.group_id, member))
        self._maybe_new_epoch(group, cg, topics, new or subscribed, records)
        before = member.reconciliation
        member.reconciliation = reconcile(
            before,
            cg.assignment_epoch,
            cg.target.get(member.member_id, EMPTY),
            req.owned,
            lambda tp: cg.held_elsewhere(member.member_id, tp),
        )
        now = member.reconciliation
        cg.update_owners(member, before.assigned | before.pending_revocation)
        if now != before:
            records.append(self._current_assignment_record(group.group_id, member))
        try:
            self._write(group, records)
        finally:  # in memory the member is in the group either way: its clocks run
            self._arm_timers(group, member, now.pending_revocation != before.pending_revocation)
        full = req.member_epoch == JOIN_EPOCH or (
            req.rebalance_timeout_ms != -1
            and (req.subscribed_topic_names is not None or req.subscribed_topic_regex is not None)
            and req.owned is not None
        )
        send = full or now.assigned != before.assigned or req.member_epoch != now.member_epoch
        return HeartbeatResult(
            E.none,
            member_id=member.member_id,
            member_epoch=now.member_epoch,
            heartbeat_interval_ms=self.config.heartbeat_interval_for(group.group_id),
            assignment=now.assigned if send else None,
        )

    def _validate(self, req: ConsumerHeartbeat) -> HeartbeatResult | None:
        """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid: INVALID_REQUEST, with the
        field named, for anything a client could not have meant."""

        def bad(message: str) -> HeartbeatResult:
            return HeartbeatResult(E.invalid_request, message)

        if not req.group_id:
            return bad("GroupId can't be empty.")
        if req.instance_id is not None and not req.instance_id:
            return bad("InstanceId can't be empty.")
        if req.rack_id is not None and not req.rack_id:
            return bad("RackId can't be empty.")
        if req.member_id_from_client and not req.member_id:
            return bad("MemberId can't be empty.")
        if req.member_epoch == JOIN_EPOCH:
            if req.rebalance_timeout_ms == -1:
                return bad("RebalanceTimeoutMs must be provided in first request.")
            if req.owned is None or req.owned:
                return bad("TopicPartitions must be empty when (re-)joining.")
            if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
                return bad(
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
                    "when (re-)joining."
                )
        elif req.member_epoch == STATIC_LEAVE_EPOCH:
            if req.instance_id is None:
                return bad("InstanceId can't be null when MemberEpoch is -2.")
        elif req.member_epoch < STATIC_LEAVE_EPOCH:
            return bad(f"MemberEpoch {req.member_epoch} is not valid.")
        elif req.member_epoch != JOIN_EPOCH and not req.member_id:
            return bad("MemberId can't be empty.")
        if req.rebalance_timeout_ms < -1 or req.rebalance_timeout_ms == 0:
            return bad(f"RebalanceTimeoutMs {req.rebalance_timeout_ms} is not valid.")
        if req.server_assignor is not None and req.server_assignor not in self.config.assignors:
            return HeartbeatResult(
                E.unsupported_assignor,
                f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                f"{', '.join(self.config.assignors)}.",
            )
        if req.subscribed_topic_regex:
            try:
                compile_regex(req.subscribed_topic_regex)
            except re2.error as e:
                return HeartbeatResult(
                    E.invalid_regular_expression,
                    f"SubscribedTopicRegex `{req.subscribed_topic_regex}` is not a valid "
                    f"regular expression: {regex_error_reason(e)}.",
                )
        return None

    def _join(
        self, group: GroupMetadata, cg: ConsumerGroup, req: ConsumerHeartbeat, records: list[Record]
    ) -> tuple[ConsumerGroupMember, bool] | HeartbeatResult:
        """A member joins with epoch 0: a new member, a static member's new incarnation, or
        a member that was fenced and starts over with nothing."""
        member_id = req.member_id or uuid.uuid4().hex
        member = cg.members.get(member_id)
        if req.instance_id is not None:
            previous_id = cg.static_members.get(req.instance_id)
            if previous_id is not None and previous_id != member_id:
                previous = cg.members[previous_id]
                if previous.classic is None and not previous.left_temporarily:
                    return HeartbeatResult(
                        E.unreleased_instance_id,
                        f"Static member {previous_id} with instance id {req.instance_id} is "
                        "still a member; it must leave first.",
                    )
                if member is not None:  # its id was another member's: that one is gone
                    self.remove_member(
                        group, member, "its member id rejoined as static", downgrade=False
                    )
                replaced = self._replace_static_member(
                    cg, previous, member_id, req.client_id, req.client_host
                )
                replaced.classic = None
                records.extend(self._member_tombstones(group.group_id, previous.member_id))
                records.append(self._member_record(group.group_id, replaced))
                records.append(self._target_record(group.group_id, cg, member_id))
                return replaced, False
        if member is not None:
            # Fenced (or restarted with the same id, perhaps off the classic protocol): its
            # partitions are gone; it starts over.
            held = member.held()
            member.reconciliation = UNASSIGNED
            member.classic = None
            self._cancel_timers(member)
            cg.update_owners(member, held)
            return member, False
        if len(cg.members) >= self.config.max_size:
            return HeartbeatResult(
                E.group_max_size_reached,
                f"The consumer group has reached its maximum capacity of "
                f"{self.config.max_size} members.",
            )
        member = ConsumerGroupMember(member_id, req.client_id, req.client_host)
        cg.members[member_id] = member
        log.info("member %s joined consumer group %s", member_id, group.group_id)
        return member, True

    def _replace_static_member(
        self,
        cg: ConsumerGroup,
        previous: ConsumerGroupMember,
        member_id: str,
        client_id: str,
        client_host: str,
    ) -> ConsumerGroupMember:
        """A static member came back as a new incarnation: it takes over its predecessor's
        epoch and partitions, and the group does not rebalance (KIP-345 for KIP-848)."""
        self._cancel_timers(previous)
        del cg.members[previous.member_id]
        # It keeps the partitions, at epoch 0: reconciling moves it to the target epoch.
        member = replace(
            previous,
            member_id=member_id,
            client_id=client_id,
            client_host=client_host,
            reconciliation=replace(
                previous.reconciliation, member_epoch=0, previous_member_epoch=0
            ),
            session_timer=None,
            revocation_timer=None,
        )
        cg.members[member_id] = member
        assert member.instance_id is not None
        cg.static_members[member.instance_id] = member_id
        if previous.member_id in cg.target:
            cg.target[member_id] = cg.target.pop(previous.member_id)
        cg.update_owners(member)
        return member

    def _existing_member(
        self, cg: ConsumerGroup, req: ConsumerHeartbeat
    ) -> ConsumerGroupMember | HeartbeatResult:
        fenced = _static_member_check(cg, req)
        if fenced is not None:
            return fenced
        member = cg.members.get(req.member_id)
        if member is None:
            return _unknown_member(req)
        rec = member.reconciliation
        stale_but_known = (
            req.member_epoch == rec.previous_member_epoch
            and req.owned is not None
            and req.owned <= rec.assigned
        )
        if req.member_epoch > rec.member_epoch or (
            req.member_epoch < rec.member_epoch and not stale_but_known
        ):
            return HeartbeatResult(
                E.fenced_member_epoch,
                f"The consumer group member has a greater member epoch ({rec.member_epoch}) "
                f"than the one known by the client ({req.member_epoch}); it must rejoin."
                if req.member_epoch < rec.member_epoch
                else f"The member epoch {req.member_epoch} is newer than the group's "
                f"({rec.member_epoch}); it must rejoin.",
            )
        return member

    def _update_member(
        self, member: ConsumerGroupMember, req: ConsumerHeartbeat
    ) -> tuple[bool, bool]:
        """Apply the fields the heartbeat carries: whether the member's description changed
        (a record to write) and whether its subscription or assignor did (a new group
        epoch)."""
        before = _description(member)
        subscribed = False
        member.client_id, member.client_host = req.client_id, req.client_host
        if req.instance_id is not None and member.instance_id is None:
            member.instance_id = req.instance_id
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        if req.rebalance_timeout_ms > 0:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.subscribed_topic_names is not None:
            names = tuple(sorted(set(req.subscribed_topic_names)))
            if names != member.subscribed_topic_names:
                member.subscribed_topic_names = names
                subscribed = True
        if req.subscribed_topic_regex is not None:
            regex = req.subscribed_topic_regex or None
            if regex != member.subscribed_topic_regex:
                member.subscribed_topic_regex = regex
                subscribed = True
        if req.server_assignor is not None and req.server_assignor != member.server_assignor:
            member.server_assignor = req.server_assignor
            subscribed = True
        return _description(member) != before, subscribed

    def _maybe_new_epoch(
        self,
        group: GroupMetadata,
        cg: ConsumerGroup,
        topics: TopicsView,
        changed: bool,
        records: list[Record],
    ) -> None:
        """Bump the group epoch when membership, a subscription or the subscribed topics'
        partitions changed, and compute the target assignment for it."""
        version = topics.version()
        if (
            not changed
            and not cg.reloaded
            and cg.group_epoch == cg.assignment_epoch
            and cg.metadata_version == version
        ):
            return  # no member, subscription or topic changed: a steady heartbeat
        cg.metadata_version = version
        resolve = self._resolver(topics, namespace_of(group.group_id))
        metadata = {}
        for topic in sorted(cg.subscribed_topics(resolve)):
            count = topics.partition_count(topic)
            if count > 0:
                metadata[topic] = count
        # A topic deleted and created again under its name is another topic (Kafka's
        # metadata hash covers topic ids too): its members must hear of its new id.
        ids = {topic: self.topic_id(topic) for topic in metadata}
        if cg.reloaded:
            # The log does not keep the metadata the last epoch was computed for: a new epoch
            # if today's metadata gives another target (partitions added, or a topic deleted
            # or recreated: targets are stored by topic id, so an old id names nothing).
            cg.reloaded = False
            cg.subscription_metadata, cg.subscription_ids = metadata, ids
            if cg.assignment_epoch == cg.group_epoch:  # else a new target is due anyway
                changed |= self._target_for(cg, resolve) != cg.target
        if changed or metadata != cg.subscription_metadata or ids != cg.subscription_ids:
            cg.group_epoch += 1
            cg.subscription_metadata, cg.subscription_ids = metadata, ids
            records.append(self._epoch_record(group.group_id, cg))
        if cg.group_epoch > cg.assignment_epoch:
            before = cg.target
            cg.target = self._target_for(cg, resolve)
            cg.assignment_epoch = cg.group_epoch
            log.info(
                "computed target assignment of consumer group %s at epoch %d (%s, %d member(s))",
                group.group_id,
                cg.group_epoch,
                cg.assignor(self.config.assignors),
                len(cg.members),
            )
            records.extend(
                self._target_record(group.group_id, cg, member_id)
                for member_id, target in cg.target.items()
                if before.get(member_id) != target
            )
            records.append(
                (
                    cgr.key(cgr.TARGET_ASSIGNMENT_METADATA, group.group_id),
                    cgr.epoch_value(cg.assignment_epoch),
                )
            )

    def _resolver(
        self, topics: TopicsView, namespace: str | None
    ) -> Callable[[str], frozenset[str]]:
        """The existing topics a subscription regex matches (the whole name; internal topics
        never), cached until the topics change. A logical cluster's group (``namespace``, its
        prefix) matches the names its members know, and only its own topics. With an
        authorizer, only those the viewer (the member whose request resolves it) may
        DESCRIBE, and cached per viewer."""
        version = topics.version()
        skip = len(namespace or "")
        viewer = topics.viewer()

        def resolve(pattern: str) -> frozenset[str]:
            cached = self._regex_matches.get((namespace, pattern, viewer))
            if cached is not None and cached[0] == version:
                return cached[1]
            try:
                regex = compile_regex(pattern)
            except re2.error:
                return frozenset()  # only a record from elsewhere could hold one
            found = frozenset(
                t
                for t in topics.names()
                if (namespace is None or t.startswith(namespace))
                and not t.startswith("__", skip)
                and regex.fullmatch(t[skip:])
            )
            if viewer is not None:  # the matches only: authorizing every topic costs more
                found = topics.describable(found)
            if len(self._regex_matches) >= 1024:
                self._regex_matches.clear()
            self._regex_matches[(namespace, pattern, viewer)] = (version, found)
            return found

        return resolve

    def _target_for(
        self, cg: ConsumerGroup, resolve: Callable[[str], frozenset[str]]
    ) -> dict[str, Assignment]:
        """What the group's assignor makes of its members and metadata, sticking to the
        current target."""
        subscriptions = {
            member_id: frozenset(m.subscribed(resolve) & cg.subscription_metadata.keys())
            for member_id, m in cg.members.items()
        }
        assignor = ASSIGNORS[cg.assignor(self.config.assignors)]
        return assignor(subscriptions, cg.subscription_metadata, cg.target)

    # --- records in __consumer_offsets ---------------------------------------------------

    def _write(self, group: GroupMetadata, records: list[Record]) -> None:
        """Append the group's changes to __consumer_offsets; StoreFailed if that fails. The
        state in memory is already changed then, so the group is marked dirty, and its next
        write is its whole state (which rewriting makes right whatever was lost)."""
        cg = group.consumer
        assert cg is not None
        if cg.dirty:
            records = self._snapshot(group.group_id, cg)
        if not records:
            return
        try:
            self.coordinator.topic.append(self.coordinator.partition_for(group.group_id), records)
        except Exception as e:
            cg.dirty = True
            log.warning(
                "could not store the state of consumer group %s (its next write stores all "
                "of it): %s",
                group.group_id,
                e,
            )
            raise StoreFailed(f"Could not store the state of group {group.group_id}: {e}") from e
        cg.dirty = False
        cg.unwritten_removals.clear()

    def _snapshot(self, group_id: str, cg: ConsumerGroup) -> list[Record]:
        """Every record of the group's current state, and tombstones for the members whose
        removal may not be in the log and for a classic record it may have had (it was
        upgraded)."""
        records = [(rec.group_key(group_id), None), self._epoch_record(group_id, cg)]
        for member_id in sorted(cg.unwritten_removals - cg.members.keys()):
            records.extend(self._member_tombstones(group_id, member_id))
        for member in cg.members.values():
            records.append(self._member_record(group_id, member))
            records.append(self._target_record(group_id, cg, member.member_id))
            records.append(self._current_assignment_record(group_id, member))
        records.append(
            (
                cgr.key(cgr.TARGET_ASSIGNMENT_METADATA, group_id),
                cgr.epoch_value(cg.assignment_epoch),
            )
        )
        return records

    def _epoch_record(self, group_id: str, cg: ConsumerGroup) -> Record:
        return cgr.key(cgr.GROUP_METADATA, group_id), cgr.epoch_value(cg.group_epoch)

    def _member_record(self, group_id: str, m: ConsumerGroupMember) -> Record:
        return (
            cgr.key(cgr.MEMBER_METADATA, group_id, m.member_id),
            cgr.member_metadata_value(_description(m)),
        )

    def _target_record(self, group_id: str, cg: ConsumerGroup, member_id: str) -> Record:
        return (
            cgr.key(cgr.TARGET_ASSIGNMENT_MEMBER, group_id, member_id),
            cgr.target_member_value(cg.target.get(member_id, EMPTY), self.topic_id),
        )

    def _current_assignment_record(self, group_id: str, m: ConsumerGroupMember) -> Record:
        return (
            cgr.key(cgr.CURRENT_MEMBER_ASSIGNMENT, group_id, m.member_id),
            cgr.current_assignment_value(m.reconciliation, self.topic_id),
        )

    def _member_tombstones(self, group_id: str, member_id: str) -> list[Record]:
        return [
            (cgr.key(kind, group_id, member_id), None)
            for kind in (
                cgr.CURRENT_MEMBER_ASSIGNMENT,
                cgr.TARGET_ASSIGNMENT_MEMBER,
                cgr.MEMBER_METADATA,
            )
        ]

    def group_tombstones(self, group_id: str) -> list[Record]:
        """What deletes an empty consumer group's own records."""
        return [
            (cgr.key(cgr.TARGET_ASSIGNMENT_METADATA, group_id), None),
            (cgr.key(cgr.GROUP_METADATA, group_id), None),
        ]

    def replay(self, key: cgr.ConsumerGroupKey, value: bytes | None) -> None:
        """One record of ``__consumer_offsets`` at load, the latest per key winning."""
        groups = self.coordinator.groups
        group = groups.get(key.group)
        if key.kind == cgr.GROUP_METADATA and value is None:
            if group is not None:
                group.consumer = None
            return
        if value is None and (group is None or group.consumer is None):
            return
        if group is None:
            group = groups[key.group] = GroupMetadata(key.group)
        if group.consumer is None:
            # The latest record wins: a classic state replayed before is gone (upgraded).
            group.forget_classic_state()
            group.consumer = ConsumerGroup(reloaded=True)
            group.protocol_type = "consumer"
        cg = group.consumer
        member_id = key.member or ""
        if replay_shared(cg, CONSUMER_KINDS, key.kind, member_id, value, self.topic_name):
            return
        assert value is not None  # tombstones are all shared records
        member = cg.members.get(member_id)
        if member is None:
            member = cg.members[member_id] = ConsumerGroupMember(member_id, "", "")
        if key.kind == cgr.MEMBER_METADATA:
            v = cgr.parse_member_metadata_value(value)
            member.instance_id, member.rack_id = v.instance_id, v.rack_id
            member.client_id, member.client_host = v.client_id, v.client_host
            member.subscribed_topic_names = v.subscribed_topic_names
            member.rebalance_timeout_ms = v.rebalance_timeout_ms
            member.server_assignor = v.server_assignor
            member.subscribed_topic_regex = v.subscribed_topic_regex
            member.classic = v.classic
        elif key.kind == cgr.CURRENT_MEMBER_ASSIGNMENT:
            member.reconciliation = cgr.parse_current_assignment_value(value, self.topic_name)

    def loaded(self, group: GroupMetadata) -> None:
        """After a load: rebuild what the records imply, and start the members' clocks (a
        member that no longer heartbeats times out)."""
        cg = group.consumer
        if cg is None:
            return
        cg.owners.clear()
        cg.static_members.clear()
        for member in cg.members.values():
            cg.update_owners(member)
            if member.instance_id is not None:
                cg.static_members[member.instance_id] = member.member_id
            self._arm_timers(group, member)

    # --- online migration (KIP-848) -------------------------------------------------------

    def _converted(self, group: GroupMetadata) -> ConsumerGroup | HeartbeatResult:
        """The consumer group a classic group with members becomes when a consumer-protocol
        member joins it (Kafka's convertToConsumerGroup: its members keep their partitions
        at an epoch of its generation), or why it cannot. Nothing changes yet."""
        why = None
        if not self.config.upgrades:
            why = "the online upgrade is disabled"
        elif group.protocol_type != "consumer":  # Kafka Connect's, say: never ours
            why = "the group does not use the consumer embedded protocol"
        elif len(group.members) > self.config.max_size:
            why = "the group size exceeds the consumer group maximum size"
        elif group.protocol_name is None:
            # Its first generation is still forming: nothing to carry over yet. Retriable
            # (Kafka fails the heartbeat outright), so the member joins once it has formed.
            return HeartbeatResult(
                E.coordinator_load_in_progress,
                f"Classic group {group.group_id} is forming its first generation; the "
                "upgrade to a consumer group waits until it has.",
            )
        converted: ConsumerGroup | str | None = None
        if why is None:
            converted = consumer_group_from_classic(
                group, lambda topic: self.topic_id(topic) is not None
            )
            if isinstance(converted, str):
                why = converted
        if why is not None or not isinstance(converted, ConsumerGroup):
            message = (
                f"Cannot upgrade classic group {group.group_id} to consumer group because {why}."
            )
            log.info("%s", message)
            return HeartbeatResult(E.group_id_not_found, message)
        return converted

    def _install_upgrade(self, group: GroupMetadata, cg: ConsumerGroup) -> None:
        """The joining member is in: waiters in JoinGroup or SyncGroup are told to rejoin,
        the classic state goes, and the group's next write is its whole state (the classic
        record's tombstone first). The joining member's epoch bump then sends every classic
        member through a rejoin (REBALANCE_IN_PROGRESS at its next heartbeat) to its
        share."""
        self.coordinator.abandon(group, E.rebalance_in_progress)
        group.members.clear()
        group.static_members.clear()
        group.pending_sync.clear()
        group.state, group.protocol_name, group.leader_id = GroupState.EMPTY, None, None
        group.generation_id = 0
        group.consumer = cg
        cg.dirty = True
        for member in cg.members.values():
            if member.classic is not None:
                self._arm_timers(group, member)
        log.info(
            "upgraded classic group %s to a consumer group at epoch %d with %d classic member(s)",
            group.group_id,
            cg.group_epoch,
            sum(1 for m in cg.members.values() if m.classic is not None),
        )

    def _downgrade(self, group: GroupMetadata, leaving: set[str]) -> bool:
        """If the members ``leaving`` leave classic members only, the group goes back to the
        classic protocol with them, at a generation of its epoch (Kafka's
        convertToClassicGroup; the leavers need no epoch of their own), unless the policy or
        group.max.size says no. Whether it did."""
        cg = group.consumer
        assert cg is not None
        staying = [m for m in cg.members.values() if m.member_id not in leaving]
        if not staying or any(m.classic is None for m in staying):
            return False
        if not self.config.downgrades:
            log.info(
                "Cannot downgrade consumer group %s to classic group because the online "
                "downgrade is disabled.",
                group.group_id,
            )
            return False
        if len(staying) > self.coordinator.config.max_size:
            log.info(
                "Cannot downgrade consumer group %s to classic group because its group size "
                "is greater than classic group max size.",
                group.group_id,
            )
            return False
        for member in cg.members.values():
            self._cancel_timers(member)
        tombstones = [
            record
            for member_id in sorted(cg.members.keys() | cg.unwritten_removals)
            for record in self._member_tombstones(group.group_id, member_id)
        ]
        for member_id in leaving:
            del cg.members[member_id]
        self.coordinator.downgrade(group, [*tombstones, *self.group_tombstones(group.group_id)])
        return True

    # --- classic members (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) ---------------------

    def classic_join(
        self, group: GroupMetadata, req: JoinRequest, topics: TopicsView
    ) -> JoinResult:
        """A classic member's JoinGroup to a consumer group (Kafka's
        classicGroupJoinToConsumerGroup). It is answered at once: the broker assigns, so
        the member is never the leader, and its generation is its member epoch. Partitions
        it must give up are left out of its SyncGroup answer; it rejoins without them (as a
        cooperative consumer does after revoking) before others get them."""
        cg = group.consumer
        assert cg is not None
        member_id = req.member_id or uuid.uuid4().hex
        if len(cg.members) >= self.config.max_size and member_id not in cg.members:
            return JoinResult(E.group_max_size_reached)
        if not self._supports_classic(cg, req):
            return JoinResult(E.inconsistent_group_protocol)
        if not req.member_id and req.group_instance_id is None and req.require_known_member_id:
            return JoinResult(E.member_id_required, member_id=member_id)
        try:
            subscription = parse_subscription(req.protocols[0][1])
        except ValueError:
            # Kafka fails with UNKNOWN_SERVER_ERROR here.
            return JoinResult(E.inconsistent_group_protocol)
        records: list[Record] = []
        found = self._classic_member_for_join(group, cg, req, member_id, records)
        if isinstance(found, int):
            return JoinResult(found)
        member, new = found
        before_description = _description(member)
        names = tuple(sorted(set(subscription.topics)))
        subscribed = (
            new
            or names != member.subscribed_topic_names
            or member.subscribed_topic_regex is not None
        )
        member.subscribed_topic_names, member.subscribed_topic_regex = names, None
        member.client_id, member.client_host = req.client_id, req.client_host
        if req.group_instance_id is not None:
            member.instance_id = req.group_instance_id
            cg.static_members[req.group_instance_id] = member.member_id
        if subscription.rack_id is not None:
            member.rack_id = subscription.rack_id
        if req.rebalance_timeout_ms > 0:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.classic = ClassicMember(req.session_timeout_ms, tuple(req.protocols))
        if new or _description(member) != before_description:
            records.append(self._member_record(group.group_id, member))
        try:
            self._maybe_new_epoch(group, cg, topics, subscribed, records)
            before = member.reconciliation
            owned = frozenset(tp for tp in subscription.owned if topics.partition_count(tp[0]))
            member.reconciliation = reconcile(
                before,
                cg.assignment_epoch,
                cg.target.get(member.member_id, EMPTY),
                owned,
                lambda tp: cg.held_elsewhere(member.member_id, tp),
            )
            cg.update_owners(member, before.assigned | before.pending_revocation)
            if member.reconciliation != before:
                records.append(self._current_assignment_record(group.group_id, member))
            self._write(group, records)
        except StoreFailed:
            if new:  # not kept in memory either: the group's next write must not need it
                self.remove_member(group, member, "its join could not be stored")
                return JoinResult(E.coordinator_not_available)
            self._arm_timers(group, member)
            return JoinResult(E.coordinator_not_available, member_id=member.member_id)
        self._arm_timers(group, member)
        # It must send SyncGroup within its rebalance timeout.
        self._classic_deadline(group, member, "sync", replace_pending=True)
        return JoinResult(
            E.none,
            member.member_epoch,
            "consumer",
            member.classic.first_protocol(),
            "",
            member.member_id,
        )

    def _supports_classic(self, cg: ConsumerGroup, req: JoinRequest) -> bool:
        """Kafka's supportsClassicProtocols: the consumer protocol type, and a protocol every
        other classic member supports too."""
        if req.protocol_type != "consumer" or not req.protocols:
            return False
        names = {name for name, _ in req.protocols}
        for m in cg.members.values():
            if m.classic is not None and m.member_id != req.member_id:
                names &= {name for name, _ in m.classic.protocols}
        return bool(names)

    def _classic_member_for_join(
        self,
        group: GroupMetadata,
        cg: ConsumerGroup,
        req: JoinRequest,
        member_id: str,
        records: list[Record],
    ) -> tuple[ConsumerGroupMember, bool] | int:
        """The member a JoinGroup speaks for (and whether it is new), or an error code. A
        dynamic member with an id the group does not know is simply added (Kafka)."""
        instance = req.group_instance_id
        if instance is not None:
            holder = cg.static_members.get(instance)
            if req.member_id:
                if holder is None:
                    return int(E.unknown_member_id)
                if holder != req.member_id:
                    return int(E.fenced_instance_id)
                return cg.members[holder], False
            if holder is not None:
                # A static member's new incarnation takes its predecessor's place and
                # partitions; the group's epoch moves only if its subscription does.
                previous = cg.members[holder]
                replaced = self._replace_static_member(
                    cg, previous, member_id, req.client_id, req.client_host
                )
                records.extend(self._member_tombstones(group.group_id, previous.member_id))
                records.append(self._member_record(group.group_id, replaced))
                records.append(self._target_record(group.group_id, cg, member_id))
                return replaced, False
        member = cg.members.get(member_id)
        if member is not None:
            return member, False
        member = ConsumerGroupMember(member_id, req.client_id, req.client_host)
        cg.members[member_id] = member
        log.info(
            "member %s joined consumer group %s on the classic protocol", member_id, group.group_id
        )
        return member, True

    def classic_sync(
        self,
        group: GroupMetadata,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
    ) -> tuple[int, bytes]:
        """A classic member's SyncGroup in a consumer group: what it may consume now, in its
        own version of the consumer protocol (Kafka's classicGroupSyncToConsumerGroup)."""
        found = self._classic_member(group, generation_id, member_id, instance_id)
        if isinstance(found, int):
            return found, b""
        member = found
        assert member.classic is not None
        if (protocol_type is not None and protocol_type != "consumer") or (
            protocol_name is not None and protocol_name != member.classic.first_protocol()
        ):
            return int(E.inconsistent_group_protocol), b""
        cg = group.consumer
        assert cg is not None
        if (
            cg.group_epoch > member.member_epoch
            and member.reconciliation.state is not MemberState.UNREVOKED_PARTITIONS
        ):
            self._classic_deadline(group, member, "join")
            return int(E.rebalance_in_progress), b""
        self._cancel_revocation_timer(member)
        self._arm_timers(group, member)
        version = version_of(member.classic.protocols[0][1]) if member.classic.protocols else 0
        return int(E.none), assignment_bytes(member.assigned, version)

    def classic_heartbeat(
        self, group: GroupMetadata, generation_id: int, member_id: str, instance_id: str | None
    ) -> int:
        """A classic member's Heartbeat in a consumer group: REBALANCE_IN_PROGRESS whenever
        it has something to catch up on (a newer group epoch, partitions to give up, or
        partitions now free to take), which it does by rejoining."""
        found = self._classic_member(group, generation_id, member_id, instance_id)
        if isinstance(found, int):
            return found
        member = found
        cg = group.consumer
        assert cg is not None
        self._arm_timers(group, member)
        rec_ = member.reconciliation
        waiting = rec_.state is MemberState.UNRELEASED_PARTITIONS and any(
            cg.held_elsewhere(member.member_id, tp)
            for tp in cg.target.get(member.member_id, EMPTY) - rec_.assigned
        )
        if (
            member.member_epoch < cg.group_epoch
            or rec_.state is MemberState.UNREVOKED_PARTITIONS
            or (rec_.state is MemberState.UNRELEASED_PARTITIONS and not waiting)
        ):
            self._classic_deadline(group, member, "join")
            return int(E.rebalance_in_progress)
        return int(E.none)

    def classic_leave(
        self, group: GroupMetadata, leaving: list[tuple[str, str | None]]
    ) -> list[tuple[str, str | None, int]]:
        """LeaveGroup on a consumer group: each member named (a static one by its instance
        id; consumer-protocol members too, as an admin removes them) is fenced; one new
        epoch, and a group left with classic members only goes back to classic."""
        cg = group.consumer
        assert cg is not None
        results: list[tuple[str, str | None, int]] = []
        removed: list[ConsumerGroupMember] = []
        for requested_id, instance_id in leaving:
            member_id = leaving_member_id(cg.static_members, requested_id, instance_id)
            if isinstance(member_id, int):
                results.append((requested_id, instance_id, member_id))
                continue
            member = cg.members.get(member_id)
            if member is None:
                results.append((member_id, instance_id, E.unknown_member_id))
                continue
            removed.append(member)
            results.append((member_id, instance_id, E.none))
        if removed and self._downgrade(group, {m.member_id for m in removed}):
            return results
        for member in removed:
            self.remove_member(group, member, "the member left", downgrade=False)
        return results

    def _classic_member(
        self, group: GroupMetadata, generation_id: int, member_id: str, instance_id: str | None
    ) -> ConsumerGroupMember | int:
        """The classic member a SyncGroup or Heartbeat speaks for, at its generation (Kafka's
        validateConsumerGroupMember), or an error code."""
        cg = group.consumer
        assert cg is not None
        if instance_id is not None:
            holder = cg.static_members.get(instance_id)
            if holder is None:
                return int(E.unknown_member_id)
            if holder != member_id:
                return int(E.fenced_instance_id)
        member = cg.members.get(member_id)
        if member is None or member.classic is None:
            return int(E.unknown_member_id)
        if generation_id != member.member_epoch:
            return int(E.illegal_generation)
        return member

    def _classic_deadline(
        self,
        group: GroupMetadata,
        member: ConsumerGroupMember,
        awaited: str,
        replace_pending: bool = False,
    ) -> None:
        """A classic member told to rejoin (``awaited`` "join"), or one answered JoinGroup
        ("sync"), is fenced unless it does so within its rebalance timeout."""
        if member.revocation_timer is not None:
            if not replace_pending:
                return
            member.revocation_timer.cancel()
        member.revocation_timer = asyncio.get_running_loop().call_later(
            member.rebalance_timeout_ms / 1000,
            self._on_classic_deadline,
            group,
            member,
            awaited,
        )

    def _on_classic_deadline(
        self, group: GroupMetadata, member: ConsumerGroupMember, awaited: str
    ) -> None:
        member.revocation_timer = None
        log.info(
            "classic member %s of consumer group %s did not %s within its rebalance timeout "
            "(%d ms); removing it",
            member.member_id,
            group.group_id,
            "rejoin" if awaited == "join" else "send SyncGroup",
            member.rebalance_timeout_ms,
        )
        self.remove_member(group, member, f"no {awaited} within the rebalance timeout")

    # --- offsets ---------------------------------------------------------------------------

    def validate_commit(
        self,
        cg: ConsumerGroup,
        member_id: str,
        member_epoch: int,
        api_version: int | None,
        partitions: Iterable[TopicPartition],
    ) -> int | dict[TopicPartition, int] | None:
        """Kafka's ConsumerGroup.validateOffsetCommit: anyone may commit to a group without
        members (admin tools, manual assignment); otherwise a member, with OffsetCommit v9+
        (``api_version``; None for TxnOffsetCommit), at its current epoch, or (KIP-1251) at
        an older one for ``partitions`` it has held since that epoch. An error for every
        partition, or the partitions refused (STALE_MEMBER_EPOCH), or None."""
        if member_epoch < 0 and not cg.members:
            return None
        member = cg.members.get(member_id)
        if member is None:
            return int(E.unknown_member_id)
        if member.classic is not None:
            # A classic member commits with its generation: its member epoch.
            return int(E.illegal_generation) if member_epoch != member.member_epoch else None
        if api_version is not None and api_version < 9:
            return int(E.unsupported_version)
        if member_epoch == member.member_epoch:
            return None
        if api_version is None:
            # TxnOffsetCommit has no STALE_MEMBER_EPOCH: Kafka answers ILLEGAL_GENERATION.
            return int(E.illegal_generation)
        if member_epoch > member.member_epoch:
            return int(E.stale_member_epoch)
        # A member whose epoch moved on since it fetched (its next heartbeat tells it) still
        # owns what it held then and holds now: no false fencing of its commit (KIP-1251).
        reconciliation = member.reconciliation
        stale: dict[TopicPartition, int] = {}
        for tp in partitions:
            since = reconciliation.held_since(tp)
            if since is None or since > member_epoch:
                stale[tp] = int(E.stale_member_epoch)
        return stale or None

    def validate_offset_fetch(
        self, cg: ConsumerGroup, member_id: str | None, member_epoch: int
    ) -> int | None:
        """OffsetFetch v9+ naming a member: it must be known and at its current epoch."""
        if member_id is None and member_epoch < 0:
            return None
        member = cg.members.get(member_id or "")
        if member is None:
            return int(E.unknown_member_id)
        if member_epoch != member.member_epoch:
            return int(E.stale_member_epoch)
        return None

    # --- leaving, timers ------------------------------------------------------------------

    def _leave(self, group: GroupMetadata | None, req: ConsumerHeartbeat) -> HeartbeatResult:
        if group is None or group.consumer is None:
            return HeartbeatResult(
                E.group_id_not_found,
                f"Consumer group {req.group_id} not found."
                if group is None
                else f"Group {req.group_id} is not a consumer group.",
            )
        cg = group.consumer
        fenced = _static_member_check(cg, req)
        if fenced is not None:
            return fenced
        member = cg.members.get(req.member_id)
        if member is None:
            return _unknown_member(req)
        if req.member_epoch == STATIC_LEAVE_EPOCH:
            # It keeps what it is assigned for a new incarnation, until its session times
            # out; what it was revoking is released now.
            held = member.held()
            member.reconciliation = replace(
                member.reconciliation,
                member_epoch=STATIC_LEAVE_EPOCH,
                state=MemberState.STABLE,
                pending_revocation=EMPTY,
            )
            cg.update_owners(member, held)
            self._cancel_revocation_timer(member)
            self._write(group, [self._current_assignment_record(group.group_id, member)])
            return HeartbeatResult(
                E.none, member_id=member.member_id, member_epoch=STATIC_LEAVE_EPOCH
            )
        self.remove_member(group, member, "the member left")
        return HeartbeatResult(E.none, member_id=member.member_id, member_epoch=LEAVE_EPOCH)

    def remove_member(
        self, group: GroupMetadata, member: ConsumerGroupMember, why: str, downgrade: bool = True
    ) -> None:
        """Fence ``member`` out of the group (a new group epoch); with ``downgrade``, a group
        it leaves with classic members only goes back to the classic protocol instead."""
        cg = group.consumer
        assert cg is not None
        self._cancel_timers(member)
        if cg.members.get(member.member_id) is not member:
            return
        if downgrade and self._downgrade(group, {member.member_id}):
            log.info("member %s left consumer group %s (%s)", member.member_id, group.group_id, why)
            return
        del cg.members[member.member_id]
        if member.instance_id is not None and cg.static_members.get(member.instance_id) == (
            member.member_id
        ):
            del cg.static_members[member.instance_id]
        cg.release(member)
        cg.target.pop(member.member_id, None)
        cg.group_epoch += 1
        records = [
            *self._member_tombstones(group.group_id, member.member_id),
            self._epoch_record(group.group_id, cg),
        ]
        cg.unwritten_removals.add(member.member_id)  # until a write succeeds
        with contextlib.suppress(StoreFailed):  # logged; the group's next write repairs it
            self._write(group, records)
        log.info(
            "member %s left consumer group %s (%s); group epoch %d",
            member.member_id,
            group.group_id,
            why,
            cg.group_epoch,
        )

    def _arm_timers(
        self, group: GroupMetadata, member: ConsumerGroupMember, new_revocation: bool = False
    ) -> None:
        """Restart the session timer; run the rebalance timeout while the member revokes,
        from the start of each new revocation."""
        loop = asyncio.get_running_loop()
        if member.session_timer is not None:
            member.session_timer.cancel()
        member.session_timer = loop.call_later(
            self._session_timeout_ms(group, member) / 1000,
            self._on_session_expired,
            group,
            member,
        )
        if member.classic is not None:
            return  # its join and sync deadlines are its rebalance timeout (below)
        if new_revocation:
            self._cancel_revocation_timer(member)
        if member.reconciliation.state is MemberState.UNREVOKED_PARTITIONS:
            if member.revocation_timer is None:
                member.revocation_timer = loop.call_later(
                    member.rebalance_timeout_ms / 1000, self._on_revocation_timeout, group, member
                )
        else:
            self._cancel_revocation_timer(member)

    def _session_timeout_ms(self, group: GroupMetadata, member: ConsumerGroupMember) -> int:
        """A classic member keeps the session timeout of its JoinGroup."""
        if member.classic is not None:
            return member.classic.session_timeout_ms
        return self.config.session_timeout_for(group.group_id)

    def _on_session_expired(self, group: GroupMetadata, member: ConsumerGroupMember) -> None:
        member.session_timer = None
        log.info(
            "member %s of consumer group %s has failed: no heartbeat for %d ms (%s)",
            member.member_id,
            group.group_id,
            self._session_timeout_ms(group, member),
            "the session.timeout.ms of its JoinGroup"
            if member.classic is not None
            else "group.consumer.session.timeout.ms, or the group's consumer.session.timeout.ms",
        )
        self.remove_member(group, member, "session timeout")

    def _on_revocation_timeout(self, group: GroupMetadata, member: ConsumerGroupMember) -> None:
        member.revocation_timer = None
        if member.reconciliation.state is not MemberState.UNREVOKED_PARTITIONS:
            return
        log.info(
            "member %s of consumer group %s did not revoke its partitions within its "
            "rebalance timeout (%d ms); fencing it",
            member.member_id,
            group.group_id,
            member.rebalance_timeout_ms,
        )
        self.remove_member(group, member, "rebalance timeout")

    def _cancel_revocation_timer(self, member: ConsumerGroupMember) -> None:
        if member.revocation_timer is not None:
            member.revocation_timer.cancel()
            member.revocation_timer = None

    def _cancel_timers(self, member: ConsumerGroupMember) -> None:
        if member.session_timer is not None:
            member.session_timer.cancel()
            member.session_timer = None
        self._cancel_revocation_timer(member)

    def abandon(self, group: GroupMetadata) -> None:
        """The coordinator lost the group: stop its timers."""
        if group.consumer is not None:
            for member in group.consumer.members.values():
                self._cancel_timers(member)


def _unknown_member(req: ConsumerHeartbeat) -> HeartbeatResult:
    return HeartbeatResult(
        E.unknown_member_id, f"Member {req.member_id} is not a member of group {req.group_id}."
    )


def _static_member_check(cg: ConsumerGroup, req: ConsumerHeartbeat) -> HeartbeatResult | None:
    """A heartbeat or leave naming an instance id must come from the member holding it."""
    if req.instance_id is None:
        return None
    holder = cg.static_members.get(req.instance_id)
    if holder is None:
        return HeartbeatResult(E.unknown_member_id, f"Instance id {req.instance_id} is unknown.")
    if holder != req.member_id:
        return HeartbeatResult(
            E.fenced_instance_id,
            f"Static member {req.member_id} with instance id {req.instance_id} was fenced by "
            f"member {holder}.",
        )
    return None


def _description(m: ConsumerGroupMember) -> cgr.MemberMetadataValue:
    """What a member's metadata record holds."""
    return cgr.MemberMetadataValue(
        m.instance_id,
        m.rack_id,
        m.client_id,
        m.client_host,
        m.subscribed_topic_names,
        m.subscribed_topic_regex,
        m.rebalance_timeout_ms,
        m.server_assignor,
        m.classic,
    )
