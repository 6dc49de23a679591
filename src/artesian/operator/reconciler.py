"""The reconciler, sans I/O: from the declared cluster and what is observed, the next steps.

It is level-triggered, as Kubernetes controllers are: it keeps no memory between passes, and
every pass looks at the whole picture again. A step that failed, or an operator that
restarted, is therefore just the next pass. The order is the one a careful person would take:

1. **Start** declared brokers that are not running, and cancel any removal of them (a
   scale-in that was reverted). A broker that keeps exiting soon after it starts waits out a
   growing delay first, as Kubernetes' CrashLoopBackOff does; from the third crash in a row
   the cluster is Degraded, and the report carries the broker's last words.
2. **Scale in.** Ask the self-balancer to remove each broker above the declared count. Wait
   while it drains them, and stop each one once it is DRAINED. The cluster then unregisters it.
   A removal that FAILED (nowhere to put the replicas) needs a person; it is asked for again
   now and then, since topics or brokers may have changed meanwhile.
3. **Roll** brokers whose revision is out of date, one at a time, and only while the cluster
   is healthy: every declared broker live, no under-replicated partition on any broker (the
   Kafka metric kafka_server_replica_manager_under_replicated_partitions), and nothing else
   to do first (no broker to start, drain or stop), and the self-balancer idle. The active
   controller goes last: elections and the self-balancer move away from it only once every
   other broker runs the new revision.
4. **Finalize** the newest ``artesian.metadata.version`` the brokers support (or the spec's
   ``metadata_version``, if lower) once every broker runs the declared revision and is live,
   as Strimzi moves ``metadata.version`` on after a roll: what the new version brings may
   be used only then, since an old broker could not read its records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from artesian.operator.spec import ClusterSpec

DRAINING = ("PENDING", "IN_PROGRESS")
CRASH_LOOP = 3
"""Crashes in a row after which a broker needs a person (the cluster is Degraded)."""


@dataclass(slots=True)
class BrokerObservation:
    node_id: int
    running: bool = False
    revision: str | None = None
    """The revision the running process was started with."""
    live: bool = False
    """Holds a session in the cluster (listed by Metadata)."""
    under_replicated: int | None = None
    """Its kafka_server_replica_manager_under_replicated_partitions; None when unread."""
    removal: str | None = None
    registered: bool = False
    """In the cluster's metadata (live or not)."""
    crashes: int = 0
    """Times in a row it exited on its own soon after being started (kept while it runs,
    until it has run long enough to clear the record)."""
    restart_in: float = 0.0
    """Seconds before it may be started again (the crash-loop backoff)."""
    last_exit: str | None = None
    """How it last exited: the exit code and the last line it logged."""
    removal_retry_due: bool = False
    """Its removal FAILED long enough ago to ask again (the cluster may have changed)."""


@dataclass(slots=True)
class Observation:
    brokers: dict[int, BrokerObservation] = field(default_factory=dict)
    reachable: bool = False
    """Some broker answered: live, removal and controller are known."""
    controller: int | None = None
    balancer_state: str | None = None
    """IDLE, REBALANCING, REMOVING_BROKERS or DISABLED (DescribeBalancer); None if unread."""
    metadata_version: int | None = None
    """The cluster's finalized artesian.metadata.version (ApiVersions); None if unread."""
    metadata_version_supported: int | None = None
    """The newest level the answering broker supports; None if unread."""
    replication_factor: int = 0
    """The largest replication factor among the cluster's topics; 0 if unread."""

    def broker(self, node: int) -> BrokerObservation:
        return self.brokers.setdefault(node, BrokerObservation(node))


@dataclass(frozen=True, slots=True)
class Action:
    kind: str
    """start, stop, restart, remove (ask the balancer to drain), cancel_removal,
    finalize (the newest metadata version, through the controller)."""
    node_id: int
    reason: str
    level: int | None = None
    """finalize: the level."""


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    phase: str = "Ready"
    """Ready (as declared), Reconciling (steps taken or awaited), Degraded (needs a person)."""
    waiting_for: str | None = None


def reconcile(spec: ClusterSpec, seen: Observation) -> Plan:
    plan = Plan()
    declared = range(1, spec.brokers + 1)

    for node in declared:
        b = seen.broker(node)
        if b.crashes >= CRASH_LOOP and not (b.running and b.live):
            plan.phase = "Degraded"  # until it serves again, not only while it waits
        if not b.running:
            if b.restart_in > 0:
                plan.waiting_for = (
                    f"broker {node} to be started again in {b.restart_in:.0f} s: it crashed "
                    f"{b.crashes} times in a row (last: {b.last_exit})"
                )
            elif b.crashes:
                plan.actions.append(Action("start", node, f"crashed ({b.last_exit})"))
            else:
                plan.actions.append(Action("start", node, "declared but not running"))
        if b.removal in (*DRAINING, "DRAINED", "FAILED"):
            plan.actions.append(Action("cancel_removal", node, "declared again"))

    extra = sorted((n for n, b in seen.brokers.items() if n > spec.brokers), reverse=True)
    for node in extra:
        b = seen.brokers[node]
        if b.removal == "COMPLETE" or not (b.running or b.registered):
            continue  # gone for good
        if not seen.reachable:
            plan.waiting_for = "a broker to answer before scaling in"
        elif b.removal == "DRAINED":
            if b.running:
                plan.actions.append(Action("stop", node, "drained"))
            else:
                plan.waiting_for = f"the cluster to unregister broker {node}"
        elif b.removal in DRAINING:
            plan.waiting_for = f"the self-balancer to drain broker {node}"
        elif b.removal == "FAILED":
            plan.phase = "Degraded"
            plan.waiting_for = (
                f"broker {node} cannot be drained (see `artesian rebalance status`); "
                "lower the replication factor or declare more brokers"
            )
            if b.removal_retry_due:
                plan.actions.append(Action("remove", node, "retrying a removal that failed"))
        else:
            plan.actions.append(Action("remove", node, "above the declared broker count"))

    if not plan.actions and plan.waiting_for is None:
        stale = [n for n in declared if seen.broker(n).revision != spec.revision(n)]
        if stale:
            unhealthy = _unhealthy(spec, seen)
            if unhealthy:
                plan.waiting_for = f"a healthy cluster before rolling ({unhealthy})"
            else:
                # The controller last: it moves to another broker once, not at every restart.
                stale.sort(key=lambda n: (n == seen.controller, n))
                plan.actions.append(Action("restart", stale[0], "revision out of date"))

    if not plan.actions and plan.waiting_for is None:
        absent = [n for n in declared if not seen.broker(n).live]
        if absent:
            plan.waiting_for = f"brokers {absent} to join the cluster"
        elif (target := _metadata_version_target(spec, seen)) is not None:
            plan.actions.append(
                Action(
                    "finalize",
                    # The request goes to whichever broker answers; the id only labels the event.
                    seen.controller
                    if seen.controller is not None and seen.controller >= 0
                    else declared[0],
                    f"every broker runs a version that supports artesian.metadata.version "
                    f"{target} (the cluster is at {seen.metadata_version})",
                    level=target,
                )
            )
    if plan.phase != "Degraded" and (plan.actions or plan.waiting_for):
        plan.phase = "Reconciling"
    return plan


def _metadata_version_target(spec: ClusterSpec, seen: Observation) -> int | None:
    """The level to finalize now (None: nothing to do): the newest the brokers support, or
    the spec's pin if lower."""
    if seen.metadata_version is None or seen.metadata_version_supported is None:
        return None
    target = seen.metadata_version_supported
    if spec.metadata_version is not None:
        target = min(target, spec.metadata_version)
    return target if target > seen.metadata_version else None


def _unhealthy(spec: ClusterSpec, seen: Observation) -> str | None:
    if not seen.reachable:
        return "no broker answers"
    for node in range(1, spec.brokers + 1):
        b = seen.broker(node)
        if not b.live:
            return f"broker {node} is not live yet"
        if b.under_replicated is None:
            return f"broker {node}'s metrics are unread"
        if b.under_replicated:
            return f"broker {node} has {b.under_replicated} under-replicated partitions"
    # Between two batches of moves nothing is under-replicated, yet the balancer is busy.
    if seen.balancer_state not in ("IDLE", "DISABLED"):
        return f"the self-balancer is {seen.balancer_state or 'not answering'}"
    return None
