"""KIP-848's online migration: a group with members changes protocol without stopping.

Sans-I/O. A classic group that a consumer-protocol member joins becomes a consumer group
whose classic members keep their partitions (Kafka's ConsumerGroup.fromClassicGroup); a
consumer group left with classic members only goes back to the classic protocol (Kafka's
ClassicGroup.fromConsumerGroup). The coordinators write the records and run the timers.
"""

from __future__ import annotations

from collections.abc import Callable

from artesian.coordinator.group.consumer_group import (
    ClassicMember,
    ConsumerGroup,
    ConsumerGroupMember,
)
from artesian.coordinator.group.consumer_protocol import (
    assignment_bytes,
    parse_assignment,
    parse_subscription,
    version_of,
)
from artesian.coordinator.group.current_assignment_builder import (
    EMPTY,
    MemberAssignment,
    MemberState,
)
from artesian.coordinator.group.group_metadata import GroupMetadata, GroupState, MemberMetadata

CUSTOM_ASSIGNOR = (
    "an unsupported custom assignor is in use. Please refer to the documentation or switch "
    "to a default assignor before re-attempting the upgrade"
)
MALFORMED = "the embedded consumer protocol is malformed"


def consumer_group_from_classic(
    group: GroupMetadata, topic_exists: Callable[[str], bool]
) -> ConsumerGroup | str:
    """The consumer group a classic group's last generation becomes, or why it cannot.

    Each member keeps what that generation assigned it, at an epoch of the generation (its
    target too, so nothing moves until the group's epoch does); partitions of topics that no
    longer exist are dropped. An assignment carrying user data came from a custom assignor
    the broker cannot stand in for."""
    assert group.protocol_name is not None
    generation = group.generation_id
    cg = ConsumerGroup(group_epoch=generation, assignment_epoch=generation)
    for m in group.members.values():
        try:
            subscription = parse_subscription(m.metadata_for(group.protocol_name))
            assignment = parse_assignment(m.assignment) if m.assignment else None
        except (KeyError, ValueError):
            return MALFORMED
        if assignment is not None and assignment.user_data:
            return CUSTOM_ASSIGNOR
        partitions = (
            frozenset(tp for tp in assignment.partitions if topic_exists(tp[0]))
            if assignment is not None
            else EMPTY
        )
        member = ConsumerGroupMember(
            m.member_id,
            m.client_id,
            m.client_host,
            instance_id=m.group_instance_id,
            rack_id=subscription.rack_id,
            rebalance_timeout_ms=m.rebalance_timeout_ms,
            subscribed_topic_names=tuple(sorted(set(subscription.topics))),
            reconciliation=MemberAssignment(
                generation, generation, MemberState.STABLE, partitions, EMPTY
            ),
            classic=ClassicMember(m.session_timeout_ms, tuple(m.protocols)),
        )
        cg.members[m.member_id] = member
        if m.group_instance_id is not None:
            cg.static_members[m.group_instance_id] = m.member_id
        cg.target[m.member_id] = partitions
        cg.update_owners(member)
    return cg


def classic_group_from_consumer(group: GroupMetadata, cg: ConsumerGroup, now_ms: int) -> None:
    """Turn ``group`` back into a classic group of ``cg``'s (classic) members, Stable at a
    generation of the group epoch, each with its target assignment in its own version of
    the consumer protocol. The caller starts a rebalance: the members rejoin and their
    leader assigns."""
    group.consumer = None
    group.members.clear()
    group.static_members.clear()
    group.pending_members.clear()
    for m in cg.members.values():
        assert m.classic is not None
        group.members[m.member_id] = MemberMetadata(
            m.member_id,
            m.instance_id,
            m.client_id,
            m.client_host,
            m.rebalance_timeout_ms,
            m.classic.session_timeout_ms,
            "consumer",
            list(m.classic.protocols),
        )
        if m.instance_id is not None:
            group.static_members[m.instance_id] = m.member_id
    group.protocol_type = "consumer"
    group.generation_id = cg.group_epoch
    group.protocol_name = group.select_protocol()
    group.leader_id = next(iter(group.members))
    group.state = GroupState.STABLE
    group.state_timestamp = now_ms
    for m in cg.members.values():
        metadata = group.members[m.member_id].metadata_for(group.protocol_name)
        group.members[m.member_id].assignment = assignment_bytes(
            cg.target.get(m.member_id, EMPTY), version_of(metadata)
        )
