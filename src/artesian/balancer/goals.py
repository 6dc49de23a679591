"""The self-balancer's goals, in priority order (Cruise Control's goal-based optimizer).

Each goal says whether the model violates it, fixes itself greedily with the model's two
actions (move a replica, move leadership; resource goals also swap two replicas, i.e. two moves
judged together), and judges actions taken for other goals. Hard goals veto every action that
would break them, whoever takes it; a soft goal, once optimized, vetoes actions that would push
a broker out of its bounds or further out, so a later goal never undoes an earlier one. Every
action a goal takes strictly improves it and the search is budgeted, so optimizing terminates
quickly even on large clusters.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass

from artesian.balancer.model import BrokerLoad, ClusterModel, PartitionLoad

Key = tuple[str, int]

REPLICA_EXCLUSION = "ReplicaExclusion"
RACK_AWARE = "RackAware"
DISK_CAPACITY = "DiskCapacity"
NETWORK_INBOUND_CAPACITY = "NetworkInboundCapacity"
NETWORK_OUTBOUND_CAPACITY = "NetworkOutboundCapacity"
REPLICA_DISTRIBUTION = "ReplicaDistribution"
LEADER_DISTRIBUTION = "LeaderDistribution"
DISK_USAGE_DISTRIBUTION = "DiskUsageDistribution"
NETWORK_INBOUND_USAGE_DISTRIBUTION = "NetworkInboundUsageDistribution"
NETWORK_OUTBOUND_USAGE_DISTRIBUTION = "NetworkOutboundUsageDistribution"

GOAL_NAMES: tuple[str, ...] = (
    REPLICA_EXCLUSION,
    RACK_AWARE,
    DISK_CAPACITY,
    NETWORK_INBOUND_CAPACITY,
    NETWORK_OUTBOUND_CAPACITY,
    REPLICA_DISTRIBUTION,
    LEADER_DISTRIBUTION,
    DISK_USAGE_DISTRIBUTION,
    NETWORK_INBOUND_USAGE_DISTRIBUTION,
    NETWORK_OUTBOUND_USAGE_DISTRIBUTION,
)
"""Priority order: the first five are hard goals, the rest soft."""

HARD_GOAL_NAMES: frozenset[str] = frozenset(GOAL_NAMES[:5])

# What an action shifts from its source broker to its destination, indexed like BrokerLoad.
REPLICAS, LEADERS, DISK, NETWORK_IN, NETWORK_OUT = range(5)
_LOAD_FIELDS = ("replicas", "leaders", "disk", "network_in", "network_out")
_CAPACITY_FIELDS = {
    DISK: "disk_capacity",
    NETWORK_IN: "network_in_capacity",
    NETWORK_OUT: "network_out_capacity",
}
_UNITS = {DISK: "disk bytes", NETWORK_IN: "network-in B/s", NETWORK_OUT: "network-out B/s"}

_REL_EPS = 1e-9
"""Float slack, relative to the quantity compared, so rounding never counts as a violation."""

CHECK_BUDGET_PER_GOAL = 50_000
"""Candidate actions one goal may evaluate: bounds the work on large clusters where the
greedy search keeps finding nothing (a check costs a few microseconds)."""

CHECK_BUDGET_SOFT_GOALS = 120_000
"""Candidate actions all soft goals together may evaluate, so a pathological model still
stops within seconds (about 1 s for 10,000 partitions on 20 brokers here, 11 s for a
20,000-partition worst case); the earlier (more important) goals come first, and the next
round carries on where this one stopped."""

SWAP_TRIES_PER_REPLICA = 4
"""Replicas tried in exchange for each one a swap would send."""

SWAP_SCAN_LIMIT = 100
"""Replicas a swap between two brokers may try to send before trying the next broker."""

PAIR_SCAN_LIMIT = 400
"""Candidates tried between one source and one destination broker before trying the next
broker: past this many refusals (rack awareness, an earlier goal's bounds) more are unlikely to
help and another broker may."""


@dataclass(frozen=True, slots=True)
class GoalConfig:
    balance_threshold: float = 0.10
    """A broker is balanced within average*(1 +/- t); counts use floor/ceil so +/-1 always
    tolerated."""
    low_utilization_threshold: float = 0.0
    """A resource distribution goal is satisfied outright while cluster-wide use / capacity is
    below this: spreading an idle cluster's load only costs data movement."""


@dataclass(frozen=True, slots=True)
class Action:
    key: Key
    source: int
    destination: int
    leadership: bool
    """True: ``destination`` (an in-sync follower) takes over leadership from ``source``.
    False: the replica on ``source`` moves to ``destination``."""


def shift(p: PartitionLoad, action: Action) -> tuple[float, float, float, float, float]:
    """The load an action moves from its source to its destination broker (RF is unchanged,
    so a leader's network-out cost moves whole; a follower's consumers move with it)."""
    if action.leadership:
        return (0.0, 1.0, 0.0, 0.0, p.leader_network_out())
    leads = 1.0 if p.replicas[0] == action.source else 0.0
    return (1.0, leads, p.size_bytes, p.bytes_in_rate, p.network_out_on(action.source))


def partition_name(key: Key) -> str:
    return f"{key[0]}-{key[1]}"


class BalancingState:
    """The model being optimized plus what the goals share: which brokers may receive
    replicas, a broker -> hosted partitions index, the goals that may veto actions, and the
    reasons hard goals could not be met."""

    def __init__(self, model: ClusterModel, config: GoalConfig) -> None:
        self.model = model
        self.config = config
        self._loads: dict[int, BrokerLoad] = {}
        self.eligible: list[int] = sorted(b for b, s in model.brokers.items() if s.eligible)
        self.eligible_set: frozenset[int] = frozenset(self.eligible)
        self.leaving: frozenset[int] = frozenset(
            b for b, st in model.brokers.items() if st.excluded
        ) | frozenset(
            b for p in model.partitions.values() for b in p.replicas if b not in model.brokers
        )
        """Brokers whose replicas must go: excluded ones, and ids no longer registered. A
        broker that is only down keeps its replicas (it is likely back soon; the
        healing threshold excludes it otherwise) but receives none."""
        self.rank: dict[Key, int] = {key: i for i, key in enumerate(sorted(model.partitions))}
        """Partition order, for ties: the same cluster always gets the same proposal."""
        self.hosted: dict[int, dict[Key, None]] = {b: {} for b in model.brokers}
        for key, p in model.partitions.items():
            for b in p.replicas:
                self.hosted.setdefault(b, {})[key] = None
        self.racks: dict[int, str | None] = {b: s.rack for b, s in model.brokers.items()}
        racks = [self.racks[b] for b in self.eligible]
        self.rack_aware = bool(racks) and all(r is not None for r in racks)
        self.eligible_racks: frozenset[str] = frozenset(r for r in racks if r is not None)
        leaders = sum(1 for p in model.partitions.values() if p.replicas)
        self.average_leaders = leaders / len(self.eligible) if self.eligible else 0.0
        self.vetoes: list[Goal] = []
        self.unfixable: dict[str, list[str]] = {}
        self.checks_left = CHECK_BUDGET_PER_GOAL
        self.soft_checks_left = CHECK_BUDGET_SOFT_GOALS
        self.actions = 0
        self.arrived: dict[int, list[Key]] = {}
        """Per broker, the partitions whose replica or leadership actions brought to it."""
        self.departed: dict[int, list[Key]] = {}

    def value(self, b: int, resource: int) -> float:
        load = self._loads.get(b)
        if load is None:  # the model updates a broker's BrokerLoad in place: keep it at hand
            load = self._loads[b] = self.model.load(b)
        v: float = getattr(load, _LOAD_FIELDS[resource])
        return v

    def rack(self, b: int) -> str | None:
        return self.racks.get(b)

    def distinct_racks(self, replicas: Iterable[int]) -> int:
        racks = {self.racks.get(b) for b in replicas}
        racks.discard(None)
        return len(racks)

    def required_racks(self, p: PartitionLoad) -> int:
        return min(len(p.replicas), len(self.eligible_racks))

    def rack_safe(self, p: PartitionLoad, source: int, destination: int) -> bool:
        """Whether moving ``p``'s replica from ``source`` to ``destination`` keeps it rack
        aware (or, if it is not yet, no less spread)."""
        if not self.rack_aware:
            return True
        racks = self.racks
        source_rack = racks.get(source)
        destination_rack = racks.get(destination)
        if source_rack == destination_rack:
            return True
        used = [racks.get(b) for b in p.replicas]
        if destination_rack not in used or source_rack is None or used.count(source_rack) > 1:
            return True  # no rack lost
        distinct = len(set(used)) - (None in used)
        return distinct - 1 >= min(len(used), len(self.eligible_racks))

    def partitions_on(self, b: int) -> list[PartitionLoad]:
        parts = self.model.partitions
        return [parts[k] for k in self.hosted.get(b, ())]

    def note(self, goal: str, reason: str) -> None:
        self.unfixable.setdefault(goal, []).append(reason)

    def run(self, goal: Goal) -> None:
        """Optimize ``goal`` within its share of the search budget."""
        budget = CHECK_BUDGET_PER_GOAL
        if not goal.hard:
            budget = min(budget, self.soft_checks_left)
        self.checks_left = budget
        goal.optimize(self)
        if not goal.hard:
            self.soft_checks_left -= budget - max(self.checks_left, 0)

    def try_apply(self, action: Action, goal: DistributionGoal | None = None) -> bool:
        """Carry out ``action`` if it is valid, improves ``goal`` (when given) and no veto
        objects; the caller has already chosen it as worth trying."""
        self.checks_left -= 1
        p = self.model.partitions[action.key]
        if not p.movable or action.source == action.destination:
            return False
        if p.pinned and goal is not None and not action.leadership:
            return False  # balance never moves a pinned partition's replicas
        if action.leadership:
            if (
                p.replicas[0] != action.source
                or action.destination not in p.in_sync
                or action.destination not in p.replicas
            ):
                return False
        elif action.source not in p.replicas or action.destination in p.replicas:
            return False
        w = shift(p, action)
        if goal is not None and not goal.improves(self, action, w):
            return False
        for veto in self.vetoes:
            if not veto.accepts(self, action, p, w):
                return False
        if action.leadership:
            self.model.move_leadership(action.key, action.destination)
        else:
            self.model.move_replica(action.key, action.source, action.destination)
            del self.hosted[action.source][action.key]
            self.hosted.setdefault(action.destination, {})[action.key] = None
        self.actions += 1
        self.arrived.setdefault(action.destination, []).append(action.key)
        self.departed.setdefault(action.source, []).append(action.key)
        return True

    def try_swap(
        self, source: int, destination: int, out: Key, back: Key, goal: DistributionGoal
    ) -> bool:
        """Swap replicas: ``out`` moves from ``source`` to ``destination`` and ``back`` the
        other way, judged as one action shifting the difference (replica counts stay put, so a
        resource can balance when the count bounds allow no plain move)."""
        self.checks_left -= 1
        parts = self.model.partitions
        p, q = parts[out], parts[back]
        if (
            not (p.movable and q.movable)
            or p.pinned
            or q.pinned
            or source not in p.replicas
            or destination in p.replicas
            or destination not in q.replicas
            or source in q.replicas
            or source not in self.eligible_set
            or not self.rack_safe(q, destination, source)
        ):
            return False
        action = Action(out, source, destination, leadership=False)
        w_out = shift(p, action)
        w_back = shift(q, Action(back, destination, source, leadership=False))
        w = tuple(a - b for a, b in zip(w_out, w_back, strict=True))
        if not goal.improves(self, action, w):
            return False
        for veto in self.vetoes:
            if not veto.accepts(self, action, p, w):
                return False
        self.model.move_replica(out, source, destination)
        self.model.move_replica(back, destination, source)
        for key, frm, to in ((out, source, destination), (back, destination, source)):
            del self.hosted[frm][key]
            self.hosted.setdefault(to, {})[key] = None
            self.arrived.setdefault(to, []).append(key)
            self.departed.setdefault(frm, []).append(key)
        self.actions += 2
        return True


class Goal:
    name: str = ""
    hard: bool = False

    def violated(self, state: BalancingState) -> bool:
        raise NotImplementedError

    def optimize(self, state: BalancingState) -> None:
        raise NotImplementedError

    def accepts(
        self, state: BalancingState, action: Action, p: PartitionLoad, w: tuple[float, ...]
    ) -> bool:
        """Whether an action taken for another goal keeps this one as good as it is."""
        return True


class ReplicaExclusionGoal(Goal):
    """Excluded brokers are being decommissioned: no replica may stay on them. Neither they
    nor dead brokers may receive one."""

    name = REPLICA_EXCLUSION
    hard = True

    def violated(self, state: BalancingState) -> bool:
        out = state.leaving
        return bool(out) and any(
            b in out for p in state.model.partitions.values() for b in p.replicas
        )

    def accepts(
        self, state: BalancingState, action: Action, p: PartitionLoad, w: tuple[float, ...]
    ) -> bool:
        return action.destination in state.eligible_set

    def optimize(self, state: BalancingState) -> None:
        out = state.leaving
        for key in sorted(state.model.partitions):
            p = state.model.partitions[key]
            for b in [b for b in p.replicas if b in out]:
                if not p.movable:
                    state.note(
                        self.name,
                        f"{partition_name(key)} is being reassigned; its replica on broker {b} "
                        "stays until that finishes",
                    )
                    continue
                self._evacuate(state, p, b)

    def _evacuate(self, state: BalancingState, p: PartitionLoad, b: int) -> None:
        candidates = sorted(
            (d for d in state.eligible if d not in p.replicas),
            key=lambda d: (state.value(d, REPLICAS), d),
        )
        for d in candidates:
            if state.try_apply(Action(p.key, b, d, leadership=False)):
                return
        rf = len(p.replicas)
        if not candidates:
            state.note(
                self.name,
                f"{rf} replicas of {partition_name(p.key)} need {rf} eligible brokers, "
                f"{len(state.eligible)} remain",
            )
        else:
            state.note(
                self.name,
                f"no eligible broker can take {partition_name(p.key)}'s replica from broker "
                f"{b} within rack awareness and capacity",
            )
        if p.replicas[0] == b:  # it must stay, but it need not lead
            followers = sorted(
                (f for f in p.replicas[1:] if f in p.in_sync and f in state.eligible_set),
                key=lambda f: (state.value(f, LEADERS), f),
            )
            for f in followers:
                if state.try_apply(Action(p.key, b, f, leadership=True)):
                    break


class RackAwareGoal(Goal):
    """A rack (power, switch, zone) can fail as a unit: a partition's replicas span as many
    racks as it has replicas, or all racks if it has more. Applies only when every eligible
    broker names its rack."""

    name = RACK_AWARE
    hard = True

    def _short(self, state: BalancingState, p: PartitionLoad) -> bool:
        return state.distinct_racks(p.replicas) < state.required_racks(p)

    def violated(self, state: BalancingState) -> bool:
        if not state.rack_aware:
            return False
        return any(self._short(state, p) for p in state.model.partitions.values())

    def accepts(
        self, state: BalancingState, action: Action, p: PartitionLoad, w: tuple[float, ...]
    ) -> bool:
        return action.leadership or state.rack_safe(p, action.source, action.destination)

    def optimize(self, state: BalancingState) -> None:
        if not state.rack_aware:
            return
        for key in sorted(state.model.partitions):
            p = state.model.partitions[key]
            if not self._short(state, p):
                continue
            if not p.movable:
                state.note(self.name, f"{partition_name(key)} is being reassigned")
                continue
            self._spread(state, p)
            if self._short(state, p):
                state.note(
                    self.name,
                    f"{partition_name(key)} spans {state.distinct_racks(p.replicas)} racks of "
                    f"the {state.required_racks(p)} it needs; no eligible broker on another rack "
                    "can take a replica within capacity",
                )

    def _spread(self, state: BalancingState, p: PartitionLoad) -> None:
        """Move replicas sharing a rack (followers first) to the least-loaded brokers on racks
        the partition does not use yet."""
        while self._short(state, p):
            seen: set[str | None] = set()
            surplus: list[int] = []
            for b in p.replicas:
                r = state.rack(b)
                if r is None or r in seen:
                    surplus.append(b)
                seen.add(r)
            targets = sorted(
                (d for d in state.eligible if state.rack(d) not in seen and d not in p.replicas),
                key=lambda d: (state.value(d, REPLICAS), d),
            )
            if not any(
                state.try_apply(Action(p.key, s, d, leadership=False))
                for s in reversed(surplus)
                for d in targets
            ):
                return


class CapacityGoal(Goal):
    """A broker past its disk or network capacity fails or throttles everyone on it: no
    broker's load may exceed its capacity."""

    hard = True

    def __init__(self, name: str, resource: int, model: ClusterModel) -> None:
        self.name = name
        self.resource = resource
        field = _CAPACITY_FIELDS[resource]
        self.caps: dict[int, float] = {
            b: float(getattr(s, field))
            for b, s in model.brokers.items()
            if math.isfinite(getattr(s, field))
        }

    def _over(self, state: BalancingState, b: int) -> bool:
        cap = self.caps[b]
        return state.value(b, self.resource) > cap + _REL_EPS * max(1.0, cap)

    def violated(self, state: BalancingState) -> bool:
        return any(self._over(state, b) for b in self.caps)

    def accepts(
        self, state: BalancingState, action: Action, p: PartitionLoad, w: tuple[float, ...]
    ) -> bool:
        dw = w[self.resource]
        if dw == 0:
            return True
        # A single action only adds to its destination; a swap's net shift may go either way.
        gainer, gain = (action.destination, dw) if dw > 0 else (action.source, -dw)
        cap = self.caps.get(gainer)
        if cap is None:
            return True
        return state.value(gainer, self.resource) + gain <= cap + _REL_EPS * max(1.0, cap)

    def optimize(self, state: BalancingState) -> None:
        over = [b for b in self.caps if self._over(state, b)]
        over.sort(key=lambda b: (self.caps[b] - state.value(b, self.resource), b))
        for b in over:
            if self.resource == NETWORK_OUT:
                self._shed_leadership(state, b)
            if self._over(state, b):
                self._shed_replicas(state, b)
            if self._over(state, b):
                why = (
                    "nothing more can move off it within the hard goals"
                    if state.checks_left > 0
                    else "the search budget ran out"
                )
                state.note(
                    self.name,
                    f"broker {b} uses {state.value(b, self.resource):.4g} {_UNITS[self.resource]}"
                    f" of its {self.caps[b]:.4g}; {why}",
                )

    def _headroom_order(self, state: BalancingState, brokers: Iterable[int]) -> list[int]:
        def order(d: int) -> tuple[float, float, int]:
            load = state.value(d, self.resource)
            return (-(self.caps.get(d, math.inf) - load), load, d)

        return sorted(brokers, key=order)

    def _shed_leadership(self, state: BalancingState, b: int) -> None:
        """A leader's network-out is consumers plus followers: handing leadership to an
        in-sync follower sheds it without copying any data."""
        led = [p for p in state.partitions_on(b) if p.replicas[0] == b and p.movable]
        led.sort(key=lambda p: (-p.leader_network_out(), p.key))
        for p in led:
            if not self._over(state, b):
                return
            followers = [f for f in p.replicas[1:] if f in p.in_sync and f in state.eligible_set]
            for f in self._headroom_order(state, followers):
                if state.checks_left <= 0:
                    return
                if state.try_apply(Action(p.key, b, f, leadership=True)):
                    break

    def _shed_replicas(self, state: BalancingState, b: int) -> None:
        def weight(p: PartitionLoad) -> float:
            return shift(p, Action(p.key, b, b, leadership=False))[self.resource]

        candidates = [p for p in state.partitions_on(b) if p.movable and weight(p) > 0]
        candidates.sort(key=lambda p: (-weight(p), p.key))
        for p in candidates:
            if not self._over(state, b):
                return
            dsts = [d for d in state.eligible if d not in p.replicas]
            for d in self._headroom_order(state, dsts):
                if state.checks_left <= 0:
                    return
                if state.try_apply(Action(p.key, b, d, leadership=False)):
                    break


class DistributionGoal(Goal):
    """Keeps one kind of load on every eligible broker within average*(1 +/- threshold), so
    no broker is the cluster's hot spot (counts: floor/ceil of those bounds)."""

    def __init__(
        self,
        name: str,
        resource: int,
        state: BalancingState,
        *,
        replica_moves: bool,
        leadership: bool,
    ) -> None:
        self.name = name
        self.resource = resource
        self.replica_moves = replica_moves
        self.leadership = leadership
        self.count = resource in (REPLICAS, LEADERS)
        t = state.config.balance_threshold
        parts = state.model.partitions.values()
        total: float
        if resource == REPLICAS:
            total = sum(len(p.replicas) for p in parts)
        elif resource == LEADERS:
            total = sum(1 for p in parts if p.replicas)
        elif resource == DISK:
            total = sum(p.size_bytes * len(p.replicas) for p in parts)
        elif resource == NETWORK_IN:
            total = sum(p.bytes_in_rate * len(p.replicas) for p in parts)
        else:
            total = sum(p.total_network_out() for p in parts if p.replicas)
        n = len(state.eligible)
        avg = total / n if n else 0.0
        self.eps = _REL_EPS * max(1.0, avg)
        if self.count:
            self.lo = float(math.floor(avg * (1 - t) + _REL_EPS))
            self.hi = float(math.ceil(avg * (1 + t) - _REL_EPS))
        else:
            self.lo = avg * (1 - t)
            self.hi = avg * (1 + t)
        self.skipped = n == 0
        self._pools: dict[tuple[str, int, str | None], _Pool] = {}
        field = _CAPACITY_FIELDS.get(resource)
        if field is not None and n:
            capacity = sum(float(getattr(state.model.brokers[b], field)) for b in state.eligible)
            if math.isfinite(capacity) and capacity > 0:
                self.skipped = total / capacity < state.config.low_utilization_threshold

    def excess(self, x: float) -> float:
        """How far a broker is out of bounds (0 when within)."""
        if x > self.hi + self.eps:
            return x - self.hi
        if x < self.lo - self.eps:
            return self.lo - x
        return 0.0

    def violated(self, state: BalancingState) -> bool:
        if self.skipped:
            return False
        return any(self.excess(state.value(b, self.resource)) > 0 for b in state.eligible)

    def shift_change(
        self, state: BalancingState, source: int, destination: int, dw: float
    ) -> float | None:
        """The change in total excess when ``dw`` of this load moves from ``source`` to
        ``destination``, or None if either would leave the bounds or get further out."""
        if dw == 0:
            return 0.0
        total = 0.0
        for b, delta in ((source, -dw), (destination, dw)):
            if b not in state.eligible_set:
                continue
            x = state.value(b, self.resource)
            before = self.excess(x)
            after = self.excess(x + delta)
            if after > before + self.eps:
                return None
            total += after - before
        return total

    def accepts(
        self, state: BalancingState, action: Action, p: PartitionLoad, w: tuple[float, ...]
    ) -> bool:
        return (
            self.skipped
            or self.shift_change(state, action.source, action.destination, w[self.resource])
            is not None
        )

    def improves(self, state: BalancingState, action: Action, w: tuple[float, ...]) -> bool:
        change = self.shift_change(state, action.source, action.destination, w[self.resource])
        return change is not None and change < -self.eps

    # --- greedy search -------------------------------------------------------------------

    def optimize(self, state: BalancingState) -> None:
        if self.skipped:
            return
        for _ in range(3):  # later rounds retry brokers whose loads others' moves changed
            progress = False
            stuck: set[int] = set()
            while state.checks_left > 0:
                worst, worst_excess = -1, 0.0
                for b in state.eligible:
                    if b not in stuck:
                        e = self.excess(state.value(b, self.resource))
                        if e > worst_excess:
                            worst, worst_excess = b, e
                if worst_excess == 0:
                    break
                if self._fix(state, worst):
                    progress = True
                else:
                    stuck.add(worst)
            if not progress or state.checks_left <= 0:
                return

    def _fix(self, state: BalancingState, b: int) -> bool:
        over = state.value(b, self.resource) > self.hi
        if self.leadership and (
            self._shed_leadership(state, b) if over else self._pull_leadership(state, b)
        ):
            return True
        if not self.replica_moves:
            return False
        if self._shed_replicas(state, b) if over else self._pull_replicas(state, b):
            return True
        if self.count:  # a swap leaves counts as they are
            return False
        partners = sorted(
            (x for x in state.eligible if x != b),
            key=lambda x: (state.value(x, self.resource) * (1 if over else -1), x),
        )
        for x in partners:
            source, destination = (b, x) if over else (x, b)
            if self._room(state, source, destination) <= self.eps:
                break  # the rest are further from balance still
            if self._try_swaps(state, source, destination):
                return True
        return False

    def max_shift(self, state: BalancingState, source: int, destination: int) -> float:
        """The most of this load one action may move from ``source`` to ``destination``
        before either broker leaves the bounds or gets further out: a cheap pre-check, a hair
        generous (``shift_change`` decides)."""
        limit = math.inf
        if source in state.eligible_set:
            x = state.value(source, self.resource)
            if x < self.lo - self.eps:
                limit = 0.0
            elif x > self.hi + self.eps:
                limit = 2 * x - self.hi - self.lo  # may overshoot below lo by as much as over
            else:
                limit = x - self.lo
        if destination in state.eligible_set:
            x = state.value(destination, self.resource)
            if x > self.hi + self.eps:
                limit = 0.0
            elif x < self.lo - self.eps:
                limit = min(limit, self.lo + self.hi - 2 * x)
            else:
                limit = min(limit, self.hi - x)
        return limit + 2 * self.eps

    def _room(self, state: BalancingState, source: int, destination: int) -> float:
        """The most load one action may shift while both brokers stay within (or get closer
        to) the bounds."""
        room = self.hi - state.value(destination, self.resource)
        if source in state.eligible_set:
            room = min(room, state.value(source, self.resource) - self.lo)
        return room + self.eps

    def _pool(self, state: BalancingState, kind: str, b: int, toward: int = -1) -> _Pool:
        """Candidates for ``kind`` of action on broker ``b``, sorted once and then kept up to
        date from what arrives at and departs from the broker (re-sorting a broker's replicas
        for every action would dominate the run time); entries found stale are dropped as the
        search meets them. Replica moves ``toward`` a broker on another rack get their own
        pool of only the rack-safe ones: rescanning the rest on every action would make the
        search quadratic."""
        # Candidates appear as replicas and leaderships arrive, and (followers) as
        # leaderships leave.
        arrived = state.arrived.get(b, []) if kind != "pull-leadership" else []
        departed = state.departed.get(b, []) if kind.startswith(("pull", "move-f")) else []
        rack = None
        if toward >= 0 and state.rack_aware and state.racks.get(toward) != state.racks.get(b):
            rack = state.racks.get(toward)
        else:
            toward = -1
        pool = self._pools.get((kind, b, rack))
        parts = state.model.partitions
        if pool is None:
            if toward >= 0:  # the rack-safe part of the full pool
                full = self._pool(state, kind, b)
                items = [
                    (neg, key)
                    for neg, key in zip(full.negs, full.keys, strict=True)
                    if state.rack_safe(parts[key], b, toward)
                ]
            else:
                # Biggest first; ties (all of them, for counts) in partition order, which is
                # as good as random for size, so moves for counts leave disk and network
                # about as balanced as they were.
                rank = state.rank
                ranked = []
                for p in state.partitions_on(b):
                    w = self._candidate(state, kind, b, toward, p)
                    if w > 0:
                        ranked.append((-w, rank[p.key], p.key))
                ranked.sort()
                items = [(neg, key) for neg, _, key in ranked]
            pool = _Pool(
                len(arrived),
                len(departed),
                [neg for neg, _ in items],
                [key for _, key in items],
                {key for _, key in items},
            )
            self._pools[(kind, b, rack)] = pool
            return pool
        if pool.arrived < len(arrived) or pool.departed < len(departed):
            for key in arrived[pool.arrived :] + departed[pool.departed :]:
                if key in pool.members:
                    continue
                w = self._candidate(state, kind, b, toward, parts[key])
                if w > 0:
                    i = bisect.bisect_right(pool.negs, -w)
                    pool.negs.insert(i, -w)
                    pool.keys.insert(i, key)
                    pool.members.add(key)
            pool.arrived, pool.departed = len(arrived), len(departed)
        return pool

    def _candidate(
        self, state: BalancingState, kind: str, b: int, toward: int, p: PartitionLoad
    ) -> float:
        """The load ``p`` would shift as a ``kind`` candidate on ``b``; 0 if it is none."""
        if not p.movable or b not in p.replicas:
            return 0.0
        if p.pinned and not kind.endswith("leadership"):
            return 0.0
        leads = p.replicas[0] == b
        if kind == "shed-leadership":
            if not leads:
                return 0.0
        elif kind == "pull-leadership":
            if leads or b not in p.in_sync:
                return 0.0
        elif (
            (kind == "move-leader" and not leads)
            or (kind == "move-follower" and leads)
            or (toward >= 0 and not state.rack_safe(p, b, toward))
        ):
            return 0.0
        leadership = kind.endswith("leadership")
        r = self.resource
        if r == REPLICAS:
            return 0.0 if leadership else 1.0
        if r == LEADERS:
            return 1.0 if leads or leadership else 0.0
        if r == NETWORK_OUT:
            return p.leader_network_out() if leadership else p.network_out_on(b)
        if leadership:
            return 0.0
        return p.size_bytes if r == DISK else p.bytes_in_rate

    def _blocked(self, state: BalancingState, source: int, destination: int, resource: int) -> bool:
        """Whether an earlier count goal refuses one more replica (or leader) moving between
        the two brokers: then no candidate of that kind between them can pass."""
        for veto in state.vetoes:
            if (
                isinstance(veto, DistributionGoal)
                and veto.resource == resource
                and not veto.skipped
                and veto.shift_change(state, source, destination, 1.0) is None
            ):
                return True
        return False

    def _try_moves(self, state: BalancingState, source: int, destination: int) -> bool:
        room = self._room(state, source, destination)
        if room <= self.eps or self._blocked(state, source, destination, REPLICAS):
            return False
        leaders_ok = not self._blocked(state, source, destination, LEADERS)
        limits = [
            (veto.resource, veto.max_shift(state, source, destination))
            for veto in state.vetoes
            if isinstance(veto, DistributionGoal) and not veto.skipped and not veto.count
        ]
        kinds: tuple[str, ...] = ("move",)
        if self.resource == REPLICAS:
            # Any replica will do: move a leader where that also evens out leaderships (a
            # moved replica leads on arrival, while leadership can only go to in-sync
            # replicas, which brand-new ones are not), a follower otherwise.
            leaders = state.value(destination, LEADERS)
            if leaders < state.average_leaders and state.value(source, LEADERS) > leaders + 1:
                kinds = ("move-leader", "move-follower")
            else:
                kinds = ("move-follower", "move-leader")
        on_source = state.hosted.get(source, {})
        parts = state.model.partitions
        for kind in kinds:
            pool = self._pool(state, kind, source, destination)
            negs, keys = pool.negs, pool.keys
            want_leader = {"move-leader": True, "move-follower": False}.get(kind)
            i = bisect.bisect_left(negs, -room)
            scan = PAIR_SCAN_LIMIT  # a hopeless pair must not eat the goal's budget
            while i < len(keys) and scan > 0 and state.checks_left > 0:
                key = keys[i]
                p = parts[key]
                leads = p.replicas[0] == source
                if key not in on_source or (want_leader is not None and leads != want_leader):
                    pool.drop(i)
                    continue
                i += 1
                if destination in p.replicas or (leads and not leaders_ok):
                    continue  # refused at a glance: not worth counting
                scan -= 1
                action = Action(key, source, destination, leadership=False)
                if limits:
                    w = shift(p, action)
                    if any(w[r] > limit for r, limit in limits):
                        state.checks_left -= 1  # an earlier goal would refuse it
                        continue
                if not state.rack_safe(p, source, destination):
                    state.checks_left -= 1
                elif state.try_apply(action, self):
                    return True
        return False

    def _try_swaps(self, state: BalancingState, source: int, destination: int) -> bool:
        """Swap a big replica on ``source`` for a smaller one on ``destination``: the biggest
        net shift that fits the room first."""
        room = self._room(state, source, destination)
        if room <= self.eps:
            return False
        limits = [
            (
                veto.resource,
                -veto.max_shift(state, destination, source),
                veto.max_shift(state, source, destination),
            )
            for veto in state.vetoes
            if isinstance(veto, DistributionGoal) and not veto.skipped
        ]
        give = self._pool(state, "move", source, destination)
        takes: dict[bool | None, _Pool] = {None: self._pool(state, "move", destination, source)}
        if self._blocked(state, source, destination, LEADERS) or self._blocked(
            state, destination, source, LEADERS
        ):  # leader counts are at a bound: swap a leader only for a leader
            takes = {
                leads: self._pool(state, kind, destination, source)
                for leads, kind in ((True, "move-leader"), (False, "move-follower"))
            }
        on_source = state.hosted.get(source, {})
        on_destination = state.hosted.get(destination, {})
        parts = state.model.partitions
        heaviest_back = max((-t.negs[0] for t in takes.values() if t.negs), default=0.0)
        # Nothing can come back for a replica heavier than that plus the room: start below.
        start = bisect.bisect_left(give.negs, -(heaviest_back + room))
        scan = SWAP_SCAN_LIMIT
        for k in range(start, len(give.keys)):
            if scan <= 0 or state.checks_left <= 0:
                return False
            out = give.keys[k]
            if out not in on_source or out in on_destination:
                continue
            scan -= 1
            w_out = -give.negs[k]
            p = parts[out]
            take = takes.get(p.replicas[0] == source) or takes[None]
            # Candidates coming back weigh in [w_out - room, w_out): smallest (biggest net) first.
            first = bisect.bisect_right(take.negs, self.eps - w_out)
            j = bisect.bisect_right(take.negs, room - w_out) - 1
            tries = SWAP_TRIES_PER_REPLICA
            lowest = max(first, j - 4 * SWAP_TRIES_PER_REPLICA)  # past those, try another
            while j >= lowest and tries > 0:
                back = take.keys[j]
                j -= 1
                if back not in on_destination or back in on_source:
                    continue
                tries -= 1
                scan -= 1
                q = parts[back]
                net = [
                    a - b
                    for a, b in zip(
                        shift(p, Action(out, source, destination, leadership=False)),
                        shift(q, Action(back, destination, source, leadership=False)),
                        strict=True,
                    )
                ]
                if any(not low <= net[r] <= high for r, low, high in limits):
                    state.checks_left -= 1  # an earlier goal would refuse it
                    continue
                if not state.rack_safe(p, source, destination):
                    state.checks_left -= 1
                    break  # so would every other swap sending it
                if state.try_swap(source, destination, out, back, self):
                    return True
        return False

    def _shed_replicas(self, state: BalancingState, b: int) -> bool:
        emptiest = sorted((state.value(d, self.resource), d) for d in state.eligible if d != b)
        for _, d in emptiest:
            if self._room(state, b, d) <= self.eps:
                break  # the rest are fuller still
            if self._try_moves(state, b, d):
                return True
        return False

    def _pull_replicas(self, state: BalancingState, b: int) -> bool:
        fullest = sorted((-state.value(s, self.resource), s) for s in state.eligible if s != b)
        for _, s in fullest:
            if self._room(state, s, b) <= self.eps:
                break  # the rest are emptier still
            if self._try_moves(state, s, b):
                return True
        return False

    def _shed_leadership(self, state: BalancingState, b: int) -> bool:
        pool = self._pool(state, "shed-leadership", b)
        parts = state.model.partitions
        rooms: dict[int, float] = {}  # per follower broker: loads only change on success
        negs, keys = pool.negs, pool.keys
        i = 0
        while i < len(keys):
            p = parts[keys[i]]
            if p.replicas[0] != b:
                pool.drop(i)
                continue
            w = -negs[i]
            i += 1
            for f in p.replicas[1:]:
                if f not in p.in_sync or f not in state.eligible_set:
                    continue
                room = rooms.get(f)
                if room is None:
                    room = rooms[f] = (
                        -1.0 if self._blocked(state, b, f, LEADERS) else self._room(state, b, f)
                    )
                if w > room:
                    continue
                if state.checks_left <= 0:
                    return False
                if state.try_apply(Action(p.key, b, f, leadership=True), self):
                    return True
        return False

    def _pull_leadership(self, state: BalancingState, b: int) -> bool:
        pool = self._pool(state, "pull-leadership", b)
        parts = state.model.partitions
        rooms: dict[int, float] = {}  # per leader broker: loads only change on success
        negs, keys = pool.negs, pool.keys
        i = 0
        while i < len(keys):
            p = parts[keys[i]]
            leader = p.replicas[0]
            if leader == b or b not in p.in_sync:
                pool.drop(i)
                continue
            w = -negs[i]
            i += 1
            room = rooms.get(leader)
            if room is None:
                room = rooms[leader] = (
                    -1.0
                    if self._blocked(state, leader, b, LEADERS)
                    else self._room(state, leader, b)
                )
            if w > room:
                continue
            if state.checks_left <= 0:
                return False
            if state.try_apply(Action(p.key, leader, b, leadership=True), self):
                return True
        return False


@dataclass(slots=True)
class _Pool:
    arrived: int
    """How much of the broker's arrival log it has taken in."""
    departed: int
    """Likewise its departure log (a leadership leaving makes a follower)."""
    negs: list[float]
    """Negated weights, ascending (so biggest first)."""
    keys: list[Key]
    members: set[Key]

    def drop(self, i: int) -> None:
        self.members.discard(self.keys[i])
        del self.negs[i], self.keys[i]


def build_goals(state: BalancingState) -> list[Goal]:
    """The goals in priority order, their bounds fixed from the model as it is now (actions
    never change the cluster-wide totals the averages come from)."""
    model = state.model
    return [
        ReplicaExclusionGoal(),
        RackAwareGoal(),
        CapacityGoal(DISK_CAPACITY, DISK, model),
        CapacityGoal(NETWORK_INBOUND_CAPACITY, NETWORK_IN, model),
        CapacityGoal(NETWORK_OUTBOUND_CAPACITY, NETWORK_OUT, model),
        DistributionGoal(
            REPLICA_DISTRIBUTION, REPLICAS, state, replica_moves=True, leadership=False
        ),
        DistributionGoal(LEADER_DISTRIBUTION, LEADERS, state, replica_moves=False, leadership=True),
        DistributionGoal(
            DISK_USAGE_DISTRIBUTION, DISK, state, replica_moves=True, leadership=False
        ),
        DistributionGoal(
            NETWORK_INBOUND_USAGE_DISTRIBUTION,
            NETWORK_IN,
            state,
            replica_moves=True,
            leadership=False,
        ),
        DistributionGoal(
            NETWORK_OUTBOUND_USAGE_DISTRIBUTION,
            NETWORK_OUT,
            state,
            replica_moves=True,
            leadership=True,
        ),
    ]
