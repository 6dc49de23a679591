"""Share groups' membership (KIP-932): ShareGroupHeartbeat, on the group coordinator.

Members join with epoch 0 and heartbeat; a new member, a changed subscription, a member
leaving or timing out, or a change in the subscribed topics' partition counts bumps the group
epoch, and the ``simple`` assignor spreads the members over the partitions. A member takes
its target at once (members of a share group may share partitions, so nothing is revoked
first). The records themselves are handed out by the partitions' leaders (SharePartition).

Share groups live in the GroupCoordinator's table with the other groups, and in
``__consumer_offsets`` as Kafka writes them (share_group_records.py): the group's epoch, each
member's subscription, target and current assignment. A group outlives its members (it never
expires, as in Kafka), and after a coordinator moves or restarts its members carry on with
their epochs. What they consumed is kept by the share partitions' state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from artesian.coordinator.group import consumer_group_records as cgr
from artesian.coordinator.group import share_group_records as sgr
from artesian.coordinator.group.assignors import Assignment
from artesian.coordinator.group.consumer_coordinator import (
    GroupTimeouts,
    ModernKinds,
    Record,
    StoreFailed,
    replay_shared,
)
from artesian.coordinator.group.group_metadata import GroupMetadata
from artesian.coordinator.group.share_group import (
    EMPTY,
    ShareGroup,
    ShareGroupMember,
    simple_assign,
)

if TYPE_CHECKING:
    from artesian.coordinator.group.consumer_coordinator import TopicsView
    from artesian.coordinator.group.coordinator import GroupCoordinator

log = logging.getLogger("artesian.group_coordinator")

SHARE_KINDS = ModernKinds(
    sgr.GROUP_METADATA,
    sgr.TARGET_ASSIGNMENT_METADATA,
    sgr.MEMBER_METADATA,
    sgr.TARGET_ASSIGNMENT_MEMBER,
    sgr.parse_group_value,
)

E = ErrorCode
JOIN_EPOCH, LEAVE_EPOCH = 0, -1


@dataclass(slots=True, frozen=True)
class ShareGroupConfig(GroupTimeouts):
    """Kafka's group.share.* membership settings; ``timeouts`` gives a group's own
    (session timeout, heartbeat interval) in ms, from its GROUP resource configs."""

    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 5_000
    max_size: int = 200
    timeouts: Callable[[str], tuple[int, int]] | None = None


@dataclass(slots=True, frozen=True)
class ShareHeartbeat:
    group_id: str
    member_id: str
    member_epoch: int
    client_id: str
    client_host: str
    rack_id: str | None = None
    subscribed_topic_names: tuple[str, ...] | None = None


@dataclass(slots=True)
class ShareHeartbeatResult:
    error: int
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None


class ShareGroupCoordinator:
    def __init__(self, coordinator: GroupCoordinator, config: ShareGroupConfig) -> None:
        self.coordinator = coordinator
        self.config = config

    def heartbeat(self, req: ShareHeartbeat, topics: TopicsView) -> ShareHeartbeatResult:
        invalid = _validate(req)
        if invalid is not None:
            return invalid
        if not self.coordinator.owns(req.group_id):
            return ShareHeartbeatResult(E.not_coordinator)
        try:
            return self._heartbeat(req, topics)
        except StoreFailed as e:
            return ShareHeartbeatResult(E.coordinator_not_available, str(e))

    def _heartbeat(self, req: ShareHeartbeat, topics: TopicsView) -> ShareHeartbeatResult:
        group = self.coordinator.groups.get(req.group_id)
        if req.member_epoch == LEAVE_EPOCH:
            return self._leave(group, req)
        if group is None:
            if req.member_epoch != JOIN_EPOCH:
                return _not_found(req.group_id)
            group = self.coordinator.groups[req.group_id] = GroupMetadata(req.group_id)
        records: list[Record] = []
        if group.share is None:
            if group.consumer is not None or group.protocol_type or group.members or group.offsets:
                # A group of another type, even an empty one with committed offsets.
                return ShareHeartbeatResult(
                    E.group_id_not_found, f"Group {req.group_id} is not a share group."
                )
            if req.member_epoch != JOIN_EPOCH:
                return _not_found(req.group_id)
            group.share = ShareGroup()
            group.protocol_type = "share"
        sg = group.share
        member = sg.members.get(req.member_id)
        new = False
        if member is None:
            if req.member_epoch != JOIN_EPOCH:
                return ShareHeartbeatResult(
                    E.unknown_member_id,
                    f"Member {req.member_id} is not a member of group {req.group_id}.",
                )
            if len(sg.members) >= self.config.max_size:
                return ShareHeartbeatResult(
                    E.group_max_size_reached,
                    f"The share group has reached its maximum capacity of "
                    f"{self.config.max_size} members.",
                )
            member = sg.members[req.member_id] = ShareGroupMember(
                req.member_id, req.client_id, req.client_host
            )
            new = True
            log.info("member %s joined share group %s", req.member_id, req.group_id)
        elif req.member_epoch not in (member.member_epoch, member.previous_member_epoch):
            return ShareHeartbeatResult(
                E.fenced_member_epoch,
                f"The share group member has a greater member epoch ({member.member_epoch}) "
                f"than the one known by the client ({req.member_epoch}); it must rejoin."
                if req.member_epoch < member.member_epoch
                else f"The member epoch {req.member_epoch} is newer than the group's "
                f"({member.member_epoch}); it must rejoin.",
            )
        described = _description(member)
        member.client_id, member.client_host = req.client_id, req.client_host
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        subscribed = new
        if req.subscribed_topic_names is not None:
            names = tuple(sorted(set(req.subscribed_topic_names)))
            if names != member.subscribed_topic_names:
                member.subscribed_topic_names = names
                subscribed = True
        if new or _description(member) != described:
            records.append(self._member_record(group.group_id, member))
        records.extend(self._maybe_new_epoch(group, sg, topics, subscribed))
        before = member.assigned
        reconciled = _reconciliation(member)
        target = sg.target.get(member.member_id, EMPTY)
        if member.member_epoch != sg.assignment_epoch:
            member.previous_member_epoch = member.member_epoch
            member.member_epoch = sg.assignment_epoch
        member.assigned = frozenset(
            tp for tp in target if tp[0] in set(member.subscribed_topic_names)
        )
        if new or _reconciliation(member) != reconciled:
            records.append(self._assignment_record(group.group_id, member))
        self._arm_timer(group, member)
        self._write(group, records)
        full = req.member_epoch == JOIN_EPOCH or req.subscribed_topic_names is not None
        return ShareHeartbeatResult(
            E.none,
            member_id=member.member_id,
            member_epoch=member.member_epoch,
            heartbeat_interval_ms=self.config.heartbeat_interval_for(group.group_id),
            assignment=member.assigned if full or member.assigned != before else None,
        )

    def _maybe_new_epoch(
        self, group: GroupMetadata, sg: ShareGroup, topics: TopicsView, changed: bool
    ) -> list[Record]:
        """A new group epoch and target when members, subscriptions or partition counts
        changed; the records saying so."""
        version = topics.version()
        if (
            not changed
            and not sg.reloaded
            and sg.group_epoch == sg.assignment_epoch
            and sg.metadata_version == version
        ):
            return []
        sg.metadata_version = version
        metadata = {}
        for topic in sorted(sg.subscribed_topics()):
            count = topics.partition_count(topic)
            if count > 0:
                metadata[topic] = count
        if sg.reloaded:
            # The log does not keep the metadata the last epoch was computed for: a new epoch
            # only if today's gives another target (partitions added, a topic deleted).
            sg.reloaded = False
            sg.subscription_metadata = metadata
            if sg.assignment_epoch == sg.group_epoch:
                changed |= _target(sg, metadata) != sg.target
        records: list[Record] = []
        if changed or metadata != sg.subscription_metadata:
            sg.group_epoch += 1
            sg.subscription_metadata = metadata
            records.append(self._epoch_record(group.group_id, sg))
        if sg.group_epoch > sg.assignment_epoch:
            previous, sg.target = sg.target, _target(sg, metadata)
            sg.assignment_epoch = sg.group_epoch
            records.extend(
                self._target_record(group.group_id, sg, m)
                for m in sorted(sg.target)
                if sg.target[m] != previous.get(m)
            )
            records.append(self._target_epoch_record(group.group_id, sg))
            log.info(
                "computed target assignment of share group %s at epoch %d (simple, %d member(s))",
                group.group_id,
                sg.group_epoch,
                len(sg.members),
            )
        return records

    def _leave(self, group: GroupMetadata | None, req: ShareHeartbeat) -> ShareHeartbeatResult:
        if group is None or group.share is None:
            return ShareHeartbeatResult(
                E.group_id_not_found,
                f"Group {req.group_id} not found."
                if group is None
                else f"Group {req.group_id} is not a share group.",
            )
        member = group.share.members.get(req.member_id)
        if member is None:
            return ShareHeartbeatResult(
                E.unknown_member_id,
                f"Member {req.member_id} is not a member of group {req.group_id}.",
            )
        self.remove_member(group, member, "the member left")
        return ShareHeartbeatResult(E.none, member_id=req.member_id, member_epoch=LEAVE_EPOCH)

    def remove_member(self, group: GroupMetadata, member: ShareGroupMember, why: str) -> None:
        sg = group.share
        assert sg is not None
        if member.session_timer is not None:
            member.session_timer.cancel()
            member.session_timer = None
        if sg.members.get(member.member_id) is not member:
            return
        del sg.members[member.member_id]
        sg.target.pop(member.member_id, None)
        sg.group_epoch += 1
        sg.unwritten_removals.add(member.member_id)
        log.info(
            "member %s left share group %s (%s); group epoch %d",
            member.member_id,
            group.group_id,
            why,
            sg.group_epoch,
        )
        records = [*self._member_tombstones(group.group_id, member.member_id)]
        records.append(self._epoch_record(group.group_id, sg))
        with contextlib.suppress(StoreFailed):  # logged; the group's next write repairs it
            self._write(group, records)

    def _arm_timer(self, group: GroupMetadata, member: ShareGroupMember) -> None:
        if member.session_timer is not None:
            member.session_timer.cancel()
        timeout = self.config.session_timeout_for(group.group_id)
        member.session_timer = asyncio.get_running_loop().call_later(
            timeout / 1000, self._on_session_expired, group, member, timeout
        )

    def _on_session_expired(
        self, group: GroupMetadata, member: ShareGroupMember, timeout: int
    ) -> None:
        member.session_timer = None
        log.info(
            "member %s of share group %s has failed: no heartbeat for %d ms "
            "(group.share.session.timeout.ms, or the group's share.session.timeout.ms)",
            member.member_id,
            group.group_id,
            timeout,
        )
        self.remove_member(group, member, "session timeout")

    def create(self, group_id: str) -> GroupMetadata:
        """A share group without members (AlterShareGroupOffsets makes one, as in Kafka);
        raises StoreFailed when it cannot be written."""
        group = GroupMetadata(group_id)
        group.share = ShareGroup()
        group.protocol_type = "share"
        self._write(group, [self._epoch_record(group_id, group.share)])
        self.coordinator.groups[group_id] = group
        return group

    # --- records in __consumer_offsets ---------------------------------------------------

    def _write(self, group: GroupMetadata, records: list[Record]) -> None:
        """Append the group's changes; StoreFailed if that fails. The state in memory is
        changed already, so the group is marked dirty and its next write is all of it."""
        sg = group.share
        assert sg is not None
        if sg.dirty:
            records = self._snapshot(group.group_id, sg)
        if not records:
            return
        try:
            self.coordinator.topic.append(self.coordinator.partition_for(group.group_id), records)
        except Exception as e:
            sg.dirty = True
            log.warning(
                "could not store the state of share group %s (its next write stores all of it): %s",
                group.group_id,
                e,
            )
            raise StoreFailed(f"Could not store the state of group {group.group_id}: {e}") from e
        sg.dirty = False
        sg.unwritten_removals.clear()

    def _snapshot(self, group_id: str, sg: ShareGroup) -> list[Record]:
        records = [self._epoch_record(group_id, sg)]
        for member_id in sorted(sg.unwritten_removals - sg.members.keys()):
            records.extend(self._member_tombstones(group_id, member_id))
        for member in sg.members.values():
            records.append(self._member_record(group_id, member))
            records.append(self._target_record(group_id, sg, member.member_id))
            records.append(self._assignment_record(group_id, member))
        records.append(self._target_epoch_record(group_id, sg))
        return records

    def _epoch_record(self, group_id: str, sg: ShareGroup) -> Record:
        return sgr.key(sgr.GROUP_METADATA, group_id), sgr.group_value(sg.group_epoch)

    def _target_epoch_record(self, group_id: str, sg: ShareGroup) -> Record:
        return (
            sgr.key(sgr.TARGET_ASSIGNMENT_METADATA, group_id),
            cgr.epoch_value(sg.assignment_epoch),
        )

    def _member_record(self, group_id: str, member: ShareGroupMember) -> Record:
        return (
            sgr.key(sgr.MEMBER_METADATA, group_id, member.member_id),
            sgr.member_value(_description(member)),
        )

    def _target_record(self, group_id: str, sg: ShareGroup, member_id: str) -> Record:
        return (
            sgr.key(sgr.TARGET_ASSIGNMENT_MEMBER, group_id, member_id),
            cgr.target_member_value(sg.target.get(member_id, EMPTY), self._topic_id),
        )

    def _assignment_record(self, group_id: str, member: ShareGroupMember) -> Record:
        return (
            sgr.key(sgr.CURRENT_MEMBER_ASSIGNMENT, group_id, member.member_id),
            sgr.assignment_value(_reconciliation(member), self._topic_id),
        )

    def _member_tombstones(self, group_id: str, member_id: str) -> list[Record]:
        return [(sgr.key(kind, group_id, member_id), None) for kind in sgr.PER_MEMBER]

    def group_tombstones(self, group: GroupMetadata) -> list[Record]:
        """What deletes a share group's records (its members' too, should it have any)."""
        sg = group.share
        assert sg is not None
        records: list[Record] = []
        for member_id in sorted(sg.members.keys() | sg.unwritten_removals):
            records.extend(self._member_tombstones(group.group_id, member_id))
        records.append((sgr.key(sgr.TARGET_ASSIGNMENT_METADATA, group.group_id), None))
        records.append((sgr.key(sgr.GROUP_METADATA, group.group_id), None))
        return records

    def replay(self, key: sgr.ShareGroupKey, value: bytes | None) -> None:
        """One record of ``__consumer_offsets`` at load, the latest per key winning."""
        groups = self.coordinator.groups
        group = groups.get(key.group)
        if value is None and (group is None or group.share is None):
            return
        if key.kind == sgr.GROUP_METADATA and value is None:
            assert group is not None
            group.share, group.protocol_type = None, None
            if not group.offsets and not group.pending_txn_offsets and group.consumer is None:
                del groups[key.group]
            return
        if group is None:
            group = groups[key.group] = GroupMetadata(key.group)
        if group.share is None:
            # The latest record wins: whatever the group was before is gone.
            group.forget_classic_state()
            group.consumer = None
            group.share = ShareGroup(reloaded=True)
            group.protocol_type = "share"
        sg = group.share
        member_id = key.member or ""
        if replay_shared(sg, SHARE_KINDS, key.kind, member_id, value, self._topic_name):
            return
        assert value is not None  # tombstones are all shared records
        member = sg.members.get(member_id)
        if member is None:
            member = sg.members[member_id] = ShareGroupMember(member_id, "", "")
        if key.kind == sgr.MEMBER_METADATA:
            v = sgr.parse_member_value(value)
            member.rack_id, member.client_id, member.client_host = (
                v.rack_id,
                v.client_id,
                v.client_host,
            )
            member.subscribed_topic_names = v.subscribed_topic_names
        elif key.kind == sgr.CURRENT_MEMBER_ASSIGNMENT:
            a = sgr.parse_assignment_value(value, self._topic_name)
            member.member_epoch, member.previous_member_epoch = (
                a.member_epoch,
                a.previous_member_epoch,
            )
            member.assigned = a.assigned

    def loaded(self, group: GroupMetadata) -> None:
        """After a load: start the members' clocks (a member that no longer heartbeats
        times out)."""
        if group.share is not None:
            for member in group.share.members.values():
                self._arm_timer(group, member)

    def _topic_id(self, name: str) -> uuid.UUID | None:
        return self.coordinator.consumer_groups.topic_id(name)

    def _topic_name(self, topic_id: uuid.UUID) -> str | None:
        return self.coordinator.consumer_groups.topic_name(topic_id)

    def abandon(self, group: GroupMetadata) -> None:
        """The coordinator lost the group: stop its timers."""
        if group.share is not None:
            for member in group.share.members.values():
                if member.session_timer is not None:
                    member.session_timer.cancel()
                    member.session_timer = None


def _target(sg: ShareGroup, metadata: dict[str, int]) -> dict[str, Assignment]:
    subscriptions = {
        m.member_id: frozenset(m.subscribed_topic_names) & metadata.keys()
        for m in sg.members.values()
    }
    return simple_assign(subscriptions, metadata, sg.target)


def _description(member: ShareGroupMember) -> sgr.ShareMemberValue:
    return sgr.ShareMemberValue(
        member.rack_id, member.client_id, member.client_host, member.subscribed_topic_names
    )


def _reconciliation(member: ShareGroupMember) -> sgr.ShareAssignmentValue:
    return sgr.ShareAssignmentValue(
        member.member_epoch, member.previous_member_epoch, member.assigned
    )


def _not_found(group_id: str) -> ShareHeartbeatResult:
    return ShareHeartbeatResult(E.group_id_not_found, f"Group {group_id} not found.")


def _validate(req: ShareHeartbeat) -> ShareHeartbeatResult | None:
    """Kafka's throwIfShareGroupHeartbeatRequestIsInvalid."""

    def bad(message: str) -> ShareHeartbeatResult:
        return ShareHeartbeatResult(E.invalid_request, message)

    if not req.member_id.strip():
        return bad("MemberId can't be empty.")
    if not req.group_id.strip():
        return bad("GroupId can't be empty.")
    if req.rack_id is not None and not req.rack_id.strip():
        return bad("RackId can't be empty.")
    if req.member_epoch == JOIN_EPOCH and not req.subscribed_topic_names:
        return bad("SubscribedTopicNames must be set in first request.")
    if req.member_epoch < LEAVE_EPOCH:
        return bad("MemberEpoch is invalid.")
    return None
