"""Share groups' membership (KIP-932): ShareGroupHeartbeat, on the group coordinator.

Members join with epoch 0 and heartbeat; a new member, a changed subscription, a member
leaving or timing out, or a change in the subscribed topics' partition counts bumps the group
epoch, and the ``simple`` assignor spreads the members over the partitions. A member takes
its target at once (members of a share group may share partitions, so nothing is revoked
first). The records themselves are handed out by the partitions' leaders (SharePartition).

Share groups live in the GroupCoordinator's table with the other groups. Their membership is
kept in memory: after a coordinator moves or restarts, members rejoin (their heartbeats get
UNKNOWN_MEMBER_ID). What they consumed is kept by the share partitions' state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from artesian.coordinator.group.assignors import Assignment
from artesian.coordinator.group.consumer_coordinator import GroupTimeouts
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
        group = self.coordinator.groups.get(req.group_id)
        if req.member_epoch == LEAVE_EPOCH:
            return self._leave(group, req)
        if group is None:
            if req.member_epoch != JOIN_EPOCH:
                return _not_found(req.group_id)
            group = self.coordinator.groups[req.group_id] = GroupMetadata(req.group_id)
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
        member.client_id, member.client_host = req.client_id, req.client_host
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        subscribed = new
        if req.subscribed_topic_names is not None:
            names = tuple(sorted(set(req.subscribed_topic_names)))
            if names != member.subscribed_topic_names:
                member.subscribed_topic_names = names
                subscribed = True
        self._maybe_new_epoch(group, sg, topics, subscribed)
        before = member.assigned
        target = sg.target.get(member.member_id, EMPTY)
        if member.member_epoch != sg.assignment_epoch:
            member.previous_member_epoch = member.member_epoch
            member.member_epoch = sg.assignment_epoch
        member.assigned = frozenset(
            tp for tp in target if tp[0] in set(member.subscribed_topic_names)
        )
        self._arm_timer(group, member)
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
    ) -> None:
        version = topics.version()
        if not changed and sg.group_epoch == sg.assignment_epoch and sg.metadata_version == version:
            return
        sg.metadata_version = version
        metadata = {}
        for topic in sorted(sg.subscribed_topics()):
            count = topics.partition_count(topic)
            if count > 0:
                metadata[topic] = count
        if changed or metadata != sg.subscription_metadata:
            sg.group_epoch += 1
            sg.subscription_metadata = metadata
        if sg.group_epoch > sg.assignment_epoch:
            sg.target = simple_assign(
                {
                    m.member_id: frozenset(m.subscribed_topic_names) & metadata.keys()
                    for m in sg.members.values()
                },
                metadata,
                sg.target,
            )
            sg.assignment_epoch = sg.group_epoch
            log.info(
                "computed target assignment of share group %s at epoch %d (simple, %d member(s))",
                group.group_id,
                sg.group_epoch,
                len(sg.members),
            )

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
        log.info(
            "member %s left share group %s (%s); group epoch %d",
            member.member_id,
            group.group_id,
            why,
            sg.group_epoch,
        )

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

    def abandon(self, group: GroupMetadata) -> None:
        """The coordinator lost the group: stop its timers."""
        if group.share is not None:
            for member in group.share.members.values():
                if member.session_timer is not None:
                    member.session_timer.cancel()
                    member.session_timer = None


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
