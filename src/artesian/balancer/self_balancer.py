"""The self-balancer (Confluent's Self-Balancing Clusters): on the active controller, it
watches the brokers' load and moves replicas and leaderships to keep them even, drains
brokers asked to leave, and heals after a broker is lost for good.

Desired state is in the metadata log (a BrokerRemovalRecord asked for, a BalancerTaskRecord
for a requested rebalance); observed state goes back there (removal and task states) and is
reported by every broker (``describe``). A round:

1. moves the records along: PENDING removals and tasks start; a drained broker that stopped
   is unregistered and its removal COMPLETE;
2. builds the load model (``load.build_model``) with the brokers to empty excluded: those
   being removed and those dead past artesian.balancer.heal.broker.failure.threshold.ms;
3. decides whether to act: brokers to empty still hold replicas, a task is in progress, or
   the trigger (artesian.balancer.heal.uneven.load.trigger) fires: a broker joined empty, or
   any goal is off (ANY_UNEVEN_LOAD);
4. optimizes and starts what the executor allows, or, with nothing left to do, closes the
   task (COMPLETED or FAILED) and reports drained removals (DRAINED) or failed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Set
from dataclasses import dataclass, replace
from typing import Any, Protocol

from artesian.balancer.executor import moves_in_flight, plan_execution
from artesian.balancer.load import BrokerSample, build_model, parse_samples
from artesian.balancer.model import ClusterModel
from artesian.balancer.optimizer import GoalConfig, OptimizerResult, optimize, violated_goals
from artesian.config.broker import BrokerConfig
from artesian.metadata.controller import Controller, ControllerError
from artesian.metadata.image import MetadataImage
from artesian.metadata.records import (
    BalancerTaskRecord,
    BrokerRemovalRecord,
    MetadataRecord,
    UnregisterBrokerRecord,
)
from artesian.metadata.store import MetadataStore

log = logging.getLogger("artesian.balancer")

ACTIVE_REMOVAL = ("PENDING", "IN_PROGRESS", "DRAINED")


class BalancerHost(Protocol):
    """What the self-balancer needs of the broker it runs in."""

    node_id: int
    image: MetadataImage
    live_brokers: frozenset[int]
    config: BrokerConfig
    controller: Controller | None

    @property
    def active_controller(self) -> int: ...

    def commit(self, records: list[MetadataRecord]) -> None: ...

    def in_store_thread(self, call: Callable[[MetadataStore], Any]) -> Awaitable[Any]: ...


@dataclass(slots=True)
class RoundReport:
    """What the last round on this broker saw and did (the status adds it when this broker is
    the active controller)."""

    time_ms: int
    proposed_moves: int
    started_moves: int
    leader_transfers: int
    deferred_moves: int
    violated_goals: list[str]
    unfixable: dict[str, str]


def goal_config(config: BrokerConfig) -> GoalConfig:
    return GoalConfig(balance_threshold=config.get_float("artesian.balancer.balance.threshold"))


def _fingerprint(
    image: MetadataImage, live: Set[int], excluded: Set[int]
) -> tuple[int, Set[int], Set[int]]:
    """Changes whenever a replica, a leader, a broker or a task does: a model the optimizer
    could not improve is not optimized again until one of these changes (or a while passes,
    for loads that moved on their own)."""
    return (image.offset, live, excluded)


_RECHECK_MS = 60_000


class SelfBalancer:
    def __init__(self, host: BalancerHost) -> None:
        self.host = host
        self.last_round: RoundReport | None = None
        self._dead_since: dict[int, int] = {}
        self._settled: tuple[tuple[int, Set[int], Set[int]], int] | None = None
        # While a rebalance or a drain runs: partitions it moved, or whose placement changed
        # otherwise (a user's reassignment or cancel), are not moved again for balance. A
        # partition moved twice costs two copies of its log, and one the optimizer moved
        # back and forth as its load samples caught up costs many.
        self._pinned: set[tuple[str, int]] = set()
        self._placements: dict[tuple[str, int], tuple[int, ...]] = {}

    # --- the round --------------------------------------------------------------------

    async def run_round(self) -> None:
        h = self.host
        if (
            h.active_controller != h.node_id
            or h.controller is None
            or not h.config.get_bool("artesian.balancer.enable")
        ):
            self._dead_since.clear()  # a new controller starts counting afresh
            return
        now = int(time.time() * 1000)
        image, live = h.image, h.live_brokers
        if self._advance_records(image, live):
            return  # the next round plans from the image the records made
        excluded = self.excluded(image, live, now)
        fingerprint = _fingerprint(image, live, excluded)
        settled = self._settled
        if settled is not None and settled[0] == fingerprint and now - settled[1] < _RECHECK_MS:
            return  # nothing changed since a round found nothing to do
        raw: dict[int, str] = await h.in_store_thread(lambda store: store.broker_loads())
        if h.image.offset != fingerprint[0]:
            return  # the image moved on while the store answered: plan next round
        task = image.balancer_task
        in_progress = task is not None and task.state == "IN_PROGRESS"
        # Brokers to empty still hold replicas, or a removal waits to be reported drained.
        draining = any(image.replicas_on(b) for b in excluded) or any(
            r.state == "IN_PROGRESS" for r in image.removals.values()
        )
        self._pin_moved(image, active=in_progress or draining)
        model = build_model(image, live, parse_samples(raw), excluded, self._pinned)
        cfg = goal_config(h.config)
        trigger = None
        if not (in_progress or draining):
            trigger = self._trigger(model, cfg)
            if trigger is None:
                self._settled = (fingerprint, now)
                return
        epochs = _partition_epochs(image)
        result = await asyncio.to_thread(optimize, model, cfg)
        if h.live_brokers != live:
            return  # planned for brokers that changed meanwhile: plan next round
        if h.image.offset != fingerprint[0]:
            # Partitions that changed while the optimizer ran (ISR changes, finished moves)
            # wait for the next round; the rest of the plan stands.
            now_epochs = _partition_epochs(h.image)
            kept = [
                prop
                for prop in result.proposals
                if now_epochs.get((prop.topic, prop.partition))
                == epochs.get((prop.topic, prop.partition))
            ]
            if len(kept) < len(result.proposals):
                result.proposals = kept
                if not kept:
                    return
                self._execute(image, live, result, now, may_close=False)
                return
        if trigger is not None:
            if not result.proposals:
                self._settled = (fingerprint, now)
                self._report(now, result, 0, 0, 0)
                return
            task = BalancerTaskRecord(uuid.uuid4().hex[:12], trigger, "IN_PROGRESS")
            log.info("self-balancer: starting rebalance %s (%s)", task.task_id, trigger)
            self._commit([task])
            return
        self._execute(image, live, result, now)

    def _execute(
        self,
        image: MetadataImage,
        live: frozenset[int],
        result: OptimizerResult,
        now: int,
        may_close: bool = True,
    ) -> None:
        h = self.host
        assert h.controller is not None
        limit = h.config.get_int("artesian.balancer.max.concurrent.moves.per.broker")
        plan = plan_execution(result.proposals, image, limit)
        records: list[MetadataRecord] = []
        for topic, partition, target in plan.reassignments:
            try:
                records += h.controller.plan_reassignment(topic, partition, target)
            except ControllerError as e:
                log.warning("self-balancer: cannot move %s-%d: %s", topic, partition, e.message)
            else:
                self._pinned.add((topic, partition))
        for topic, partition, order in plan.leader_transfers:
            records += h.controller.plan_leader_transfer(topic, partition, order, live)
        self._report(
            now, result, len(plan.reassignments), len(plan.leader_transfers), plan.deferred
        )
        if records:
            log.info(
                "self-balancer: moving %d partition(s) and %d leadership(s); %d move(s) wait "
                "for room (artesian.balancer.max.concurrent.moves.per.broker)",
                len(plan.reassignments),
                len(plan.leader_transfers),
                plan.deferred,
            )
            self._commit(records)
            return
        if moves_in_flight(image) or not may_close:
            return  # the moves started earlier finish first
        self._close(image, result)
        self._settled = (_fingerprint(image, live, self.excluded(image, live, now)), now)

    def _pin_moved(self, image: MetadataImage, active: bool) -> None:
        """Pin, while the balancer is at work, each partition whose placement changed since
        the last round; forget the pins once it is idle."""
        placements = {
            (t.name, p.partition): tuple(p.target_replicas)
            for t in image.topics.values()
            for p in t.partitions.values()
        }
        if not active:
            self._pinned.clear()
        else:
            self._pinned |= {
                key
                for key, replicas in placements.items()
                if key in self._placements and self._placements[key] != replicas
            }
        self._placements = placements

    def _close(self, image: MetadataImage, result: OptimizerResult) -> None:
        """Nothing left to start and nothing in flight: report the outcome."""
        records: list[MetadataRecord] = []
        reason = "; ".join(f"{goal}: {why}" for goal, why in result.unfixable.items()) or None
        for node, removal in sorted(image.removals.items()):
            if removal.state != "IN_PROGRESS":
                continue
            if not image.replicas_on(node):
                log.info(
                    "self-balancer: broker %d is drained; stop it and it is unregistered", node
                )
                records.append(BrokerRemovalRecord(node, "DRAINED"))
            else:
                why = result.unfixable.get("ReplicaExclusion") or reason or "replicas remain"
                log.warning("self-balancer: broker %d cannot be drained: %s", node, why)
                records.append(BrokerRemovalRecord(node, "FAILED", why))
        task = image.balancer_task
        if task is not None and task.state == "IN_PROGRESS":
            state = "FAILED" if result.unfixable else "COMPLETED"
            if state == "COMPLETED" and result.violated_after:
                # Done, yet uneven: no move within the hard limits (capacity, racks, the
                # in-sync replicas leadership may go to) evens these out. Say so.
                reason = "balanced as far as the hard goals allow; still off: " + ", ".join(
                    result.violated_after
                )
            log.info("self-balancer: rebalance %s %s", task.task_id, state.lower())
            records.append(replace(task, state=state, reason=reason))
        if records:
            self._commit(records)

    def _advance_records(self, image: MetadataImage, live: frozenset[int]) -> bool:
        records: list[MetadataRecord] = []
        for node, removal in sorted(image.removals.items()):
            if removal.state == "PENDING":
                log.info("self-balancer: draining broker %d", node)
                records.append(BrokerRemovalRecord(node, "IN_PROGRESS"))
            elif removal.state == "DRAINED" and node not in live:
                if image.replicas_on(node):  # given some since, by an explicit assignment
                    log.warning("self-balancer: drained broker %d holds replicas again", node)
                    records.append(BrokerRemovalRecord(node, "IN_PROGRESS"))
                    continue
                log.info("self-balancer: broker %d stopped after draining; unregistering it", node)
                records += [UnregisterBrokerRecord(node), BrokerRemovalRecord(node, "COMPLETE")]
        task = image.balancer_task
        if task is not None and task.state == "PENDING":
            log.info("self-balancer: starting requested rebalance %s", task.task_id)
            records.append(replace(task, state="IN_PROGRESS"))
        records += self._cancel_stuck_moves(image, live)
        if records:
            self._commit(records)
        return bool(records)

    def _cancel_stuck_moves(self, image: MetadataImage, live: Set[int]) -> list[MetadataRecord]:
        """A move whose joining replica's broker died cannot finish (the ISR never takes it
        in): cancel it, and the next round plans the partition afresh."""
        controller = self.host.controller
        assert controller is not None
        records: list[MetadataRecord] = []
        for t, p in image.reassigning():
            dead = [r for r in p.adding_replicas if r not in live]
            if dead:
                log.info(
                    "self-balancer: canceling the move of %s-%d: broker(s) %s are down",
                    t.name,
                    p.partition,
                    dead,
                )
                with contextlib.suppress(ControllerError):
                    records += controller.plan_reassignment(t.name, p.partition, None)
        return records

    def excluded(self, image: MetadataImage, live: Set[int], now: int) -> frozenset[int]:
        """Brokers to empty: those being removed, and those dead past the healing threshold
        (counted from when this controller first saw them dead)."""
        for b in list(self._dead_since):
            if b in live or b not in image.brokers:
                del self._dead_since[b]
        for b in image.brokers:
            if b not in live:
                self._dead_since.setdefault(b, now)
        threshold = self.host.config.get_int("artesian.balancer.heal.broker.failure.threshold.ms")
        lost = (
            {b for b, since in self._dead_since.items() if now - since >= threshold}
            if threshold >= 0
            else set()
        )
        return image.removing() | lost

    def _trigger(self, model: ClusterModel, cfg: GoalConfig) -> str | None:
        violated = violated_goals(model, cfg)
        if not violated:
            return None
        mode = self.host.config.get("artesian.balancer.heal.uneven.load.trigger")
        if mode == "ANY_UNEVEN_LOAD":
            return "ANY_UNEVEN_LOAD"
        movable = any(p.movable for p in model.partitions.values())
        empty = [
            b
            for b, state in model.brokers.items()
            if state.eligible and model.load(b).replicas == 0
        ]
        return "EMPTY_BROKER" if empty and movable else None

    def _report(
        self, now: int, result: OptimizerResult, started: int, transfers: int, deferred: int
    ) -> None:
        self.last_round = RoundReport(
            now,
            len(result.proposals),
            started,
            transfers,
            deferred,
            list(result.violated_after),
            dict(result.unfixable),
        )

    def _commit(self, records: list[MetadataRecord]) -> None:
        try:
            self.host.commit(records)
        except ControllerError:
            pass  # the log moved on: the next round plans from the new image


def _partition_epochs(image: MetadataImage) -> dict[tuple[str, int], int]:
    return {
        (t.name, p.partition): p.partition_epoch
        for t in image.topics.values()
        for p in t.partitions.values()
    }


def describe(
    image: MetadataImage,
    live: Set[int],
    samples: Mapping[int, BrokerSample],
    config: BrokerConfig,
    controller: int,
    last_round: RoundReport | None,
) -> dict[str, Any]:
    """The balancer's status as any broker sees it (DescribeBalancer's document)."""
    model = build_model(image, live, samples, image.removing())
    in_flight = [f"{t.name}-{p.partition}" for t, p in image.reassigning()]
    task = image.balancer_task
    brokers = []
    for node in sorted(set(image.brokers) | set(live)):
        load = model.load(node)
        state = model.brokers.get(node)
        removal = image.removals.get(node)
        sample = samples.get(node)
        brokers.append(
            {
                "id": node,
                "rack": state.rack if state else None,
                "alive": node in live,
                "removal": removal.state if removal else None,
                "replicas": load.replicas,
                "leaders": load.leaders,
                "disk_bytes": int(load.disk),
                "disk_capacity_bytes": _finite(state.disk_capacity) if state else None,
                "network_in_bytes_per_second": round(load.network_in, 1),
                "network_out_bytes_per_second": round(load.network_out, 1),
                "sampled_ms_ago": int(time.time() * 1000) - sample.time_ms if sample else None,
            }
        )
    removals = [
        {
            "broker": node,
            "state": r.state,
            "reason": r.reason,
            "replicas_left": image.replicas_on(node),
        }
        for node, r in sorted(image.removals.items())
    ]
    doc: dict[str, Any] = {
        "enabled": config.get_bool("artesian.balancer.enable"),
        "trigger": config.get("artesian.balancer.heal.uneven.load.trigger"),
        "controller": controller,
        "state": _overall_state(config, task, image, in_flight),
        "task": (
            {
                "id": task.task_id,
                "trigger": task.trigger,
                "state": task.state,
                "reason": task.reason,
            }
            if task
            else None
        ),
        "moves_in_flight": len(in_flight),
        "partitions_moving": in_flight[:100],
        "violated_goals": violated_goals(model, goal_config(config)),
        "brokers": brokers,
        "removals": removals,
    }
    if last_round is not None:
        doc["last_round"] = {
            "time_ms": last_round.time_ms,
            "proposed_moves": last_round.proposed_moves,
            "started_moves": last_round.started_moves,
            "leader_transfers": last_round.leader_transfers,
            "deferred_moves": last_round.deferred_moves,
            "unfixable": last_round.unfixable,
        }
    return doc


def _finite(x: float) -> int | None:
    return None if x == float("inf") else int(x)


def _overall_state(
    config: BrokerConfig,
    task: BalancerTaskRecord | None,
    image: MetadataImage,
    in_flight: list[str],
) -> str:
    if not config.get_bool("artesian.balancer.enable"):
        return "DISABLED"
    if any(r.state in ("PENDING", "IN_PROGRESS") for r in image.removals.values()):
        return "REMOVING_BROKERS"
    if (task is not None and task.state in ("PENDING", "IN_PROGRESS")) or in_flight:
        return "REBALANCING"
    return "IDLE"
