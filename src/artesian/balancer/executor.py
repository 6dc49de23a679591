"""The executor: turns the optimizer's proposal into partition reassignments (KIP-455) and
leadership transfers, a few at a time.

Nothing here is remembered between rounds. Each round the self-balancer plans again from the
metadata image, in which moves in flight already show as their targets, and the executor
starts what the per-broker limit leaves room for. A new active controller therefore just
carries on, and a move that finished makes room for the next one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from artesian.balancer.optimizer import PartitionProposal
from artesian.metadata.image import MetadataImage


@dataclass(slots=True)
class ExecutionPlan:
    reassignments: list[tuple[str, int, tuple[int, ...]]] = field(default_factory=list)
    """(topic, partition, target replicas, preferred leader first)."""
    leader_transfers: list[tuple[str, int, tuple[int, ...]]] = field(default_factory=list)
    """(topic, partition, the same replicas reordered, new leader first)."""
    deferred: int = 0
    """Moves left for later rounds by artesian.balancer.max.concurrent.moves.per.broker."""


def moves_in_flight(image: MetadataImage) -> Counter[int]:
    """Per broker, the reassignments in flight that copy data to or from it."""
    busy: Counter[int] = Counter()
    for _topic, p in image.reassigning():
        busy.update(set(p.adding_replicas) | set(p.removing_replicas))
    return busy


def plan_execution(
    proposals: Iterable[PartitionProposal], image: MetadataImage, max_moves_per_broker: int
) -> ExecutionPlan:
    """Replica moves first, within the limit on each broker they touch; leadership transfers
    need no copying and go at once."""
    plan = ExecutionPlan()
    busy = moves_in_flight(image)
    for prop in proposals:
        old, new = set(prop.old_replicas), set(prop.new_replicas)
        if old == new:
            plan.leader_transfers.append((prop.topic, prop.partition, prop.new_replicas))
            continue
        involved = (new - old) | (old - new)
        if any(busy[b] >= max_moves_per_broker for b in involved):
            plan.deferred += 1
            continue
        busy.update(involved)
        plan.reassignments.append((prop.topic, prop.partition, prop.new_replicas))
    return plan
