"""The self-balancing optimizer: runs the goals in priority order over a copy of the cluster's
load model and turns what changed into per-partition reassignment proposals.

Sans-I/O: the runtime builds the model, calls ``optimize`` and hands the proposals to the
executor; ``violated_goals`` tells it whether the load is uneven enough to act on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from artesian.balancer.goals import (
    GOAL_NAMES,
    HARD_GOAL_NAMES,
    BalancingState,
    GoalConfig,
    build_goals,
)
from artesian.balancer.model import ClusterModel

__all__ = [
    "GOAL_NAMES",
    "HARD_GOAL_NAMES",
    "GoalConfig",
    "OptimizerResult",
    "PartitionProposal",
    "optimize",
    "violated_goals",
]


@dataclass(slots=True)
class PartitionProposal:
    topic: str
    partition: int
    old_replicas: tuple[int, ...]
    """As it was; ``old_replicas[0]`` was the leader."""
    new_replicas: tuple[int, ...]
    """As it should be; ``new_replicas[0]`` will lead."""


@dataclass(slots=True)
class OptimizerResult:
    proposals: list[PartitionProposal]
    """Only partitions whose replica list changed (order counts), sorted by (topic, partition)."""
    violated_before: list[str]
    """Goal names the input model violated, in priority order."""
    violated_after: list[str]
    """Goal names still violated once the proposals are carried out."""
    unfixable: dict[str, str]
    """Hard goal name -> why it could not be met (an operator has to act: add brokers or
    racks, raise capacity, or wait for a reassignment in flight)."""


def violated_goals(model: ClusterModel, config: GoalConfig = GoalConfig()) -> list[str]:
    """The goals ``model`` violates, in priority order (read-only)."""
    state = BalancingState(model, config)
    return [g.name for g in build_goals(state) if g.violated(state)]


def optimize(model: ClusterModel, config: GoalConfig = GoalConfig()) -> OptimizerResult:
    """Satisfy the hard goals, then balance by the soft goals in order, without changing the
    caller's model."""
    work = _copy(model)
    state = BalancingState(work, config)
    goals = build_goals(state)
    violated_before = [g.name for g in goals if g.violated(state)]
    # Hard goals guard every action from the start; a soft goal guards the later ones once
    # it has been optimized, so lower priorities never undo higher ones.
    state.vetoes = [g for g in goals if g.hard]
    for goal in goals:
        state.run(goal)
        if not goal.hard:
            state.vetoes.append(goal)
    violated_after = [g.name for g in goals if g.violated(state)]

    unfixable: dict[str, str] = {}
    for name in violated_after:
        if name not in HARD_GOAL_NAMES:
            continue
        reasons = state.unfixable.get(name, [])
        if not reasons:
            unfixable[name] = "no action satisfies it within the other hard goals"
        elif len(reasons) == 1:
            unfixable[name] = reasons[0]
        else:
            unfixable[name] = f"{reasons[0]} (and {len(reasons) - 1} more)"

    proposals = [
        PartitionProposal(key[0], key[1], tuple(model.partitions[key].replicas), tuple(p.replicas))
        for key, p in sorted(work.partitions.items())
        if p.replicas != model.partitions[key].replicas
    ]
    return OptimizerResult(proposals, violated_before, violated_after, unfixable)


def _copy(model: ClusterModel) -> ClusterModel:
    """A deep copy of what the optimizer mutates (replica lists, ISRs, where followers serve
    consumers), much cheaper than ``copy.deepcopy`` on tens of thousands of partitions."""
    return ClusterModel(
        brokers={b: dataclasses.replace(s) for b, s in model.brokers.items()},
        partitions={
            key: dataclasses.replace(
                p,
                replicas=list(p.replicas),
                in_sync=set(p.in_sync),
                follower_bytes_out=dict(p.follower_bytes_out),
            )
            for key, p in model.partitions.items()
        },
    )
