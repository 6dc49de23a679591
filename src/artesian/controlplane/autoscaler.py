"""The autoscaler's policy, sans-I/O: from a cluster's desire and its latest report, the broker
count it should have next, or None to leave it.

Load is produce plus consume bytes per second against what ``autoscale.broker_bytes_per_second``
says one broker carries. Above ``scale_out_above`` of capacity it grows at once to the size that
puts utilisation at the middle of the band; below ``scale_in_below`` it shrinks one broker at a
time, since each removal drains a broker first, and never below the largest replication factor
among the cluster's topics (a drain that leaves too few brokers for a partition's replicas
fails, and the cluster would sit Degraded). It only decides on a report of the desire's own
generation in phase Ready (never mid-change), and not within ``cooldown_ms`` of its last change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from artesian.controlplane.documents import ClusterDesire, ClusterReport


@dataclass(frozen=True, slots=True)
class AutoscalePolicy:
    scale_out_above: float = 0.7
    scale_in_below: float = 0.3
    cooldown_ms: int = 60_000
    # A report older than this says nothing about the load now (its data plane may be down).
    max_report_age_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class Decision:
    brokers: int
    reason: str


def reports_load_now(report: ClusterReport, now_ms: int, max_age_ms: int) -> bool:
    """A Ready cluster's report recent enough to say what it carries now: an older one (its
    data plane may be down), or one from a clock far ahead, says nothing."""
    return report.phase == "Ready" and abs(now_ms - report.time_ms) <= max_age_ms


def decide(
    desire: ClusterDesire,
    report: ClusterReport | None,
    now_ms: int,
    last_change_ms: int,
    policy: AutoscalePolicy = AutoscalePolicy(),
) -> Decision | None:
    auto = desire.autoscale
    if auto is None or desire.deleted or report is None:
        return None
    if report.observed_generation != desire.generation:
        return None
    if not reports_load_now(report, now_ms, policy.max_report_age_ms):
        return None
    if now_ms - last_change_ms < policy.cooldown_ms:
        return None
    load = report.bytes_in_per_second + report.bytes_out_per_second
    capacity = desire.brokers * auto.broker_bytes_per_second
    utilisation = load / capacity
    target = (policy.scale_out_above + policy.scale_in_below) / 2
    wanted = max(1, math.ceil(load / (auto.broker_bytes_per_second * target)))
    wanted = min(max(wanted, auto.min_brokers), auto.max_brokers)
    if utilisation > policy.scale_out_above and wanted > desire.brokers:
        return Decision(
            wanted,
            f"load {load:.0f} B/s is {utilisation:.0%} of {desire.brokers} broker(s)' capacity",
        )
    if (
        utilisation < policy.scale_in_below
        and wanted < desire.brokers
        and desire.brokers - 1 >= report.replication_factor
    ):
        return Decision(
            desire.brokers - 1,
            f"load {load:.0f} B/s is {utilisation:.0%} of {desire.brokers} broker(s)' capacity",
        )
    return None
