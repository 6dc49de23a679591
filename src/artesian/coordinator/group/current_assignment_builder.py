"""CurrentAssignmentBuilder: how one member moves towards its target assignment (KIP-848).

Sans-I/O. A member never gains a partition that another member still holds, and never
moves to a new epoch while it holds a partition it must give up: it first revokes
(UNREVOKED_PARTITIONS, epoch unchanged), then takes the free part of its target at the
target epoch, waiting for the rest (UNRELEASED_PARTITIONS) until their owners let go.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from artesian.coordinator.group.assignors import Assignment, TopicPartition


class MemberState(enum.Enum):
    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127


@dataclass(slots=True, frozen=True)
class MemberAssignment:
    """A member's reconciliation state: what it may consume now, and at which epoch.
    ``assignment_epochs``: the epoch at which the member got each partition it holds
    (KIP-1251), so that a commit made at an older epoch still counts for a partition it held
    since then; a partition without one (reloaded state) counts from the member's epoch."""

    member_epoch: int
    previous_member_epoch: int
    state: MemberState
    assigned: Assignment
    pending_revocation: Assignment
    assignment_epochs: Mapping[TopicPartition, int] = field(default_factory=dict, compare=False)

    def held_since(self, tp: TopicPartition) -> int | None:
        """The epoch since which the member holds ``tp`` (None: it does not)."""
        if tp not in self.assigned and tp not in self.pending_revocation:
            return None
        return self.assignment_epochs.get(tp, self.member_epoch)


EMPTY: Assignment = frozenset()
UNASSIGNED = MemberAssignment(0, -1, MemberState.STABLE, EMPTY, EMPTY)
"""A member that has joined (or starts over): epoch 0, nothing held."""


def reconcile(
    current: MemberAssignment,
    target_epoch: int,
    target: Assignment,
    owned: Assignment | None,
    held_elsewhere: Callable[[TopicPartition], bool],
) -> MemberAssignment:
    """The member's next state. ``owned`` is what its heartbeat says it holds (None when
    unchanged since its last heartbeat); ``held_elsewhere`` says whether another member
    still holds a partition (assigned to it or pending its revocation)."""
    if current.state is MemberState.UNREVOKED_PARTITIONS:
        if owned is not None and not owned & current.pending_revocation:
            return _next(current, target_epoch, target, owned, held_elsewhere)
        return current
    if current.state is MemberState.UNRELEASED_PARTITIONS:
        return _next(current, target_epoch, target, owned, held_elsewhere)
    if current.member_epoch != target_epoch:
        return _next(current, target_epoch, target, owned, held_elsewhere)
    return current


def _next(
    current: MemberAssignment,
    target_epoch: int,
    target: Assignment,
    owned: Assignment | None,
    held_elsewhere: Callable[[TopicPartition], bool],
) -> MemberAssignment:
    keep = current.assigned & target
    revoking = current.assigned - target
    if revoking and (owned is None or owned & revoking):
        # Give up first; the epoch only moves once the member confirms. A member that says
        # it no longer holds them (a static member's new incarnation) has nothing to give up.
        return replace(
            current,
            state=MemberState.UNREVOKED_PARTITIONS,
            assigned=keep,
            pending_revocation=revoking,
        )
    new = target - current.assigned
    unreleased = frozenset(tp for tp in new if held_elsewhere(tp))
    moved = current.member_epoch != target_epoch
    gained = new - unreleased
    since = {tp: current.assignment_epochs.get(tp, current.member_epoch) for tp in keep}
    since.update(dict.fromkeys(gained, target_epoch))
    return MemberAssignment(
        member_epoch=target_epoch,
        previous_member_epoch=current.member_epoch if moved else current.previous_member_epoch,
        state=MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE,
        assigned=keep | gained,
        pending_revocation=EMPTY,
        assignment_epochs=since,
    )
