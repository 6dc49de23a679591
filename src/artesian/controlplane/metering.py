"""Usage metering. Each data plane measures its clusters from their brokers' Prometheus
counters and appends one ``UsageRecord`` per cluster and interval to the usage ledger (a Kafka
topic); the control plane sums the ledger per cluster and hour, which is what a bill is made
from.

Nothing is counted twice or lost when the agent restarts: each record carries the counters it
was measured up to, and a restarted agent resumes from the last record of each cluster. A
record that could not be appended is sent again as it was, and the ledger's readers count each
of a cluster's record numbers once, so a write that timed out but landed counts once.
A broker that restarted (a new process start time, or counters that went back) counts from
zero; its traffic between the last scrape and the restart is the one thing lost, as with any
Prometheus counter. A broker first seen counts from zero if it started since the meter began
on its cluster; an older one (metering starting on a running cluster, a lost record) is only
measured from now on: a little lost, never billed twice. Time within a process is measured on
the monotonic clock; the wall clock labels records and spans an agent's absence.
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass, fields
from typing import Any

from artesian.controlplane.documents import BrokerCounters, UsageRecord

log = logging.getLogger("artesian.metering")
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class BrokerSample:
    """What one scrape of a broker says: its process start (wall-clock seconds), its client
    bytes in and out so far, and the bytes retained in the partitions it leads."""

    started: float
    bytes_in: int
    bytes_out: int
    storage_bytes: int


@dataclass(slots=True)
class Usage:
    """What a cluster used over some time: the four quantities a bill is made of."""

    bytes_in: int = 0
    bytes_out: int = 0
    broker_seconds: float = 0.0
    storage_byte_seconds: float = 0.0

    def add(self, other: Usage | UsageRecord) -> None:
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.broker_seconds += other.broker_seconds
        self.storage_byte_seconds += other.storage_byte_seconds


@dataclass(slots=True)
class _Window:
    start_ms: int
    used: Usage
    seconds: float = 0.0  # accounted so far


class UsageMeter:
    """One cell's meter, without I/O: fed every pass with each cluster's broker samples, it
    answers the records to append, oldest first. A closed window's record is answered again,
    unchanged, until ``written`` says it is in the ledger."""

    def __init__(self, cell: str, interval_ms: int = 60_000) -> None:
        self.cell = cell
        self.interval_ms = interval_ms
        self._windows: dict[str, _Window] = {}
        self._pending: dict[str, list[UsageRecord]] = {}
        self._baselines: dict[str, dict[int, BrokerCounters]] = {}
        # Up to when (wall ms, monotonic s or None after a resume) each cluster is accounted.
        self._clock: dict[str, tuple[int, float | None]] = {}
        # Since when (wall ms) the meter has accounted each cluster, and its last record number.
        self._since: dict[str, int] = {}
        self._seq: dict[str, int] = {}

    def resume(self, record: UsageRecord) -> None:
        """Continue from the cluster's last record in the ledger."""
        self._baselines[record.id] = {c.id: c for c in record.counters}
        self._windows[record.id] = _Window(record.end_ms, Usage())
        self._clock[record.id] = (record.end_ms, None)
        self._since[record.id] = record.end_ms
        self._seq[record.id] = record.seq

    def observe(
        self,
        cluster_id: str,
        tenant: str,
        samples: dict[int, BrokerSample | None],
        running_brokers: int,
        now_ms: int,
        mono: float,
        final: bool = False,
        brokers_billed: bool = True,
    ) -> list[UsageRecord]:
        """Account for the time since the last pass and the traffic since each broker's last
        scrape; the records to append (the unwritten one first), if any. A logical cluster
        (``brokers_billed`` False) pays for its traffic and storage on brokers it shares,
        not for broker time."""
        known = self._clock.get(cluster_id)
        since = self._since.setdefault(cluster_id, now_ms)
        window = self._windows.setdefault(cluster_id, _Window(now_ms, Usage()))
        if known is None:
            elapsed = 0.0
        elif known[1] is not None:
            elapsed = max(0.0, mono - known[1])
        else:  # resumed: the time since the last record, per broker no longer than it has run
            elapsed = max(0.0, (now_ms - known[0]) / 1000)
        self._clock[cluster_id] = (now_ms, mono)
        window.seconds += elapsed
        used = window.used
        baseline = self._baselines.setdefault(cluster_id, {})

        # A broker that did not answer stores what it stored at its last answer.
        storage = sum(
            s.storage_bytes if s is not None else getattr(baseline.get(n), "storage_bytes", 0)
            for n, s in samples.items()
        )
        used.storage_byte_seconds += storage * elapsed

        answered = 0
        for node, sample in samples.items():
            if sample is None:
                continue  # not answering: its traffic counts at its next answer
            answered += 1
            before = baseline.get(node)
            steady = before is not None and before.started == sample.started
            if steady and known is not None and known[1] is not None:
                used.broker_seconds += elapsed
            else:  # new, restarted, or across the agent's absence: no longer than it ran
                used.broker_seconds += min(elapsed, max(0.0, now_ms / 1000 - sample.started))
            if (
                before is not None
                and steady
                and sample.bytes_in >= before.bytes_in
                and sample.bytes_out >= before.bytes_out
            ):
                used.bytes_in += sample.bytes_in - before.bytes_in
                used.bytes_out += sample.bytes_out - before.bytes_out
            elif before is not None or (known is not None and sample.started * 1000 >= since):
                # Restarted since its last scrape, or started since the cluster was last
                # accounted: all it counted is new.
                used.bytes_in += sample.bytes_in
                used.bytes_out += sample.bytes_out
            # else: older than what the meter knows; measured from here on
            baseline[node] = BrokerCounters(
                node, sample.started, sample.bytes_in, sample.bytes_out, sample.storage_bytes
            )
        used.broker_seconds += max(0, running_brokers - answered) * elapsed
        if not brokers_billed:
            used.broker_seconds = 0.0
        for node in set(baseline) - set(samples):
            del baseline[node]  # removed from the cluster

        pending = self._pending.setdefault(cluster_id, [])
        due = final or window.seconds >= self.interval_ms / 1000
        # While a record waits to be written, its successor's window stays open: one waits at
        # most, and a final record follows only once it is written.
        if due and not pending:
            # Increasing, and at least the wall clock's ms: an agent that could not resume
            # (its cluster's last record lay beyond the horizon) still numbers past the old.
            seq = self._seq[cluster_id] = max(self._seq.get(cluster_id, 0) + 1, now_ms)
            end_ms = max(window.start_ms, now_ms)  # a wall clock that went back
            pending.append(
                UsageRecord(
                    id=cluster_id,
                    tenant=tenant,
                    cell=self.cell,
                    start_ms=window.start_ms,
                    end_ms=end_ms,
                    bytes_in=used.bytes_in,
                    bytes_out=used.bytes_out,
                    broker_seconds=round(used.broker_seconds, 3),
                    storage_byte_seconds=round(used.storage_byte_seconds, 3),
                    counters=tuple(sorted(baseline.values(), key=lambda c: c.id)),
                    seq=seq,
                )
            )
            self._windows[cluster_id] = _Window(end_ms, Usage())
        return list(pending)

    def written(self, record: UsageRecord) -> None:
        """The record is in the ledger."""
        pending = self._pending.get(record.id, [])
        if record in pending:
            pending.remove(record)

    def nodes(self, cluster_id: str) -> set[int]:
        """The brokers last measured."""
        return set(self._baselines.get(cluster_id, {}))

    def forget(self, cluster_id: str) -> None:
        self._windows.pop(cluster_id, None)
        self._pending.pop(cluster_id, None)
        self._baselines.pop(cluster_id, None)
        self._clock.pop(cluster_id, None)
        self._since.pop(cluster_id, None)
        self._seq.pop(cluster_id, None)


@dataclass(slots=True)
class HourlyUsage:
    cluster: str
    tenant: str
    hour_start_ms: int
    used: Usage

    def as_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "tenant": self.tenant,
            "hour_start_ms": self.hour_start_ms,
            "bytes_in": self.used.bytes_in,
            "bytes_out": self.used.bytes_out,
            "broker_seconds": round(self.used.broker_seconds, 3),
            "storage_byte_seconds": round(self.used.storage_byte_seconds, 3),
        }


class UsageLedger:
    """The ledger summed per tenant, cluster and UTC hour (a record counts in the hour its
    interval ends in). Fed by the usage topic's reader thread; read by the API's."""

    def __init__(self) -> None:
        # hour -> (tenant, cluster) -> what was used; the hours in order, for range queries.
        self._hours: dict[int, dict[tuple[str, str], Usage]] = {}
        self._order: list[int] = []
        self._seq: dict[str, int] = {}  # per cluster: the last record number counted
        self._lock = threading.Lock()

    def add(self, key: str, record: UsageRecord | None) -> None:
        if record is None:
            log.warning("a usage record of %s cannot be read; it is not counted", key)
            return
        with self._lock:
            if record.seq <= self._seq.get(record.id, 0):
                return  # sent again after a write that timed out but landed
            self._seq[record.id] = record.seq
            hour = record.end_ms - record.end_ms % HOUR_MS
            if hour not in self._hours:
                self._hours[hour] = {}
                bisect.insort(self._order, hour)
            self._hours[hour].setdefault((record.tenant, record.id), Usage()).add(record)

    def hours(
        self,
        tenant: str | None = None,
        cluster: str | None = None,
        start_ms: int = 0,
        end_ms: int | None = None,
    ) -> list[HourlyUsage]:
        """The hours from the one holding ``start_ms`` up to ``end_ms`` (exclusive), by hour
        then cluster; a tenant's clusters' hours stay its own after the clusters are deleted."""
        first_hour = start_ms - start_ms % HOUR_MS
        with self._lock:
            hours = self._order[bisect.bisect_left(self._order, first_hour) :]
            found = [
                HourlyUsage(c, t, h, Usage(*(getattr(u, f.name) for f in fields(Usage))))
                for h in hours
                if end_ms is None or h < end_ms
                for (t, c), u in self._hours[h].items()
                if (tenant is None or t == tenant) and (cluster is None or c == cluster)
            ]
        return sorted(found, key=lambda h: (h.hour_start_ms, h.cluster))
