"""Usage metering. Each data plane measures its clusters from their brokers' Prometheus
counters and appends one ``UsageRecord`` per cluster and interval to the usage ledger (a Kafka
topic); the control plane sums the ledger per cluster and hour, which is what a bill is made
from.

Nothing is counted twice or lost when the agent restarts: each record carries the counters it
was measured up to, and a restarted agent resumes from the last record of each cluster. A
broker that restarted (a new process start time, or counters that went back) counts from
zero; its traffic between the last scrape and the restart is the one thing lost, as with any
Prometheus counter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from artesian.controlplane.documents import BrokerCounters, UsageRecord

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class BrokerSample:
    """What one scrape of a broker says: its process start, its client bytes in and out so
    far, and the bytes retained in the partitions it leads."""

    started: float
    bytes_in: int
    bytes_out: int
    storage_bytes: int


@dataclass(slots=True)
class _Window:
    start_ms: int
    last_ms: int
    bytes_in: int = 0
    bytes_out: int = 0
    broker_seconds: float = 0.0
    storage_byte_seconds: float = 0.0


class UsageMeter:
    """One cell's meter, without I/O: fed every pass with each cluster's broker samples, it
    answers the record to append once an interval has passed. A window is closed only by
    ``written``, so a record that could not be appended is carried into the next one."""

    def __init__(self, cell: str, interval_ms: int = 60_000) -> None:
        self.cell = cell
        self.interval_ms = interval_ms
        self._windows: dict[str, _Window] = {}
        self._baselines: dict[str, dict[int, BrokerCounters]] = {}

    def resume(self, record: UsageRecord) -> None:
        """Continue from the cluster's last record in the ledger."""
        self._baselines[record.id] = {c.id: c for c in record.counters}
        self._windows[record.id] = _Window(record.end_ms, record.end_ms)

    def observe(
        self,
        cluster_id: str,
        tenant: str,
        samples: dict[int, BrokerSample | None],
        running_brokers: int,
        now_ms: int,
        final: bool = False,
    ) -> UsageRecord | None:
        """Account for the time since the last pass and the traffic since the last scrape of
        each broker; the record to append if the interval is over (or ``final``)."""
        window = self._windows.setdefault(cluster_id, _Window(now_ms, now_ms))
        elapsed = max(0, now_ms - window.last_ms) / 1000
        window.last_ms = max(window.last_ms, now_ms)
        window.broker_seconds += running_brokers * elapsed
        storage = sum(s.storage_bytes for s in samples.values() if s is not None)
        window.storage_byte_seconds += storage * elapsed
        baseline = self._baselines.setdefault(cluster_id, {})
        for node, sample in samples.items():
            if sample is None:
                continue  # not answering: its traffic counts at its next answer
            before = baseline.get(node)
            # A broker first seen, restarted, or whose counters went back counts from zero.
            base_in = base_out = 0
            if (
                before is not None
                and before.started == sample.started
                and sample.bytes_in >= before.bytes_in
                and sample.bytes_out >= before.bytes_out
            ):
                base_in, base_out = before.bytes_in, before.bytes_out
            window.bytes_in += sample.bytes_in - base_in
            window.bytes_out += sample.bytes_out - base_out
            baseline[node] = BrokerCounters(node, sample.started, sample.bytes_in, sample.bytes_out)
        for node in set(baseline) - set(samples):
            del baseline[node]  # removed from the cluster
        if not final and window.last_ms - window.start_ms < self.interval_ms:
            return None
        return UsageRecord(
            id=cluster_id,
            tenant=tenant,
            cell=self.cell,
            start_ms=window.start_ms,
            end_ms=window.last_ms,
            bytes_in=window.bytes_in,
            bytes_out=window.bytes_out,
            broker_seconds=round(window.broker_seconds, 3),
            storage_byte_seconds=round(window.storage_byte_seconds, 3),
            counters=tuple(sorted(baseline.values(), key=lambda c: c.id)),
        )

    def written(self, record: UsageRecord) -> None:
        """The record is in the ledger: the next window starts where it ended."""
        self._windows[record.id] = _Window(record.end_ms, record.end_ms)

    def nodes(self, cluster_id: str) -> set[int]:
        """The brokers last measured."""
        return set(self._baselines.get(cluster_id, {}))

    def forget(self, cluster_id: str) -> None:
        self._windows.pop(cluster_id, None)
        self._baselines.pop(cluster_id, None)


@dataclass(slots=True)
class HourlyUsage:
    cluster: str
    tenant: str
    hour_start_ms: int
    bytes_in: int = 0
    bytes_out: int = 0
    broker_seconds: float = 0.0
    storage_byte_seconds: float = 0.0

    def add(self, record: UsageRecord) -> None:
        self.bytes_in += record.bytes_in
        self.bytes_out += record.bytes_out
        self.broker_seconds += record.broker_seconds
        self.storage_byte_seconds += record.storage_byte_seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "tenant": self.tenant,
            "hour_start_ms": self.hour_start_ms,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "broker_seconds": round(self.broker_seconds, 3),
            "storage_byte_seconds": round(self.storage_byte_seconds, 3),
        }


class UsageLedger:
    """The ledger summed per cluster and UTC hour (a record counts in the hour its interval
    ends in). Fed by the usage topic's reader thread; read by the API's."""

    def __init__(self) -> None:
        self._hours: dict[tuple[str, int], HourlyUsage] = {}
        self._lock = threading.Lock()

    def add(self, _key: str, record: UsageRecord | None) -> None:
        if record is None:
            return
        hour = record.end_ms - record.end_ms % HOUR_MS
        with self._lock:
            bucket = self._hours.get((record.id, hour))
            if bucket is None:
                bucket = self._hours[(record.id, hour)] = HourlyUsage(
                    record.id, record.tenant, hour
                )
            bucket.add(record)

    def hours(
        self,
        tenant: str | None = None,
        cluster: str | None = None,
        start_ms: int = 0,
        end_ms: int | None = None,
    ) -> list[HourlyUsage]:
        """Hours that start within [start_ms, end_ms), by hour then cluster; a tenant's
        clusters' hours stay its own after the clusters are deleted."""
        with self._lock:
            found = [
                HourlyUsage(**{f: getattr(h, f) for f in HourlyUsage.__slots__})
                for h in self._hours.values()
                if (tenant is None or h.tenant == tenant)
                and (cluster is None or h.cluster == cluster)
                and h.hour_start_ms >= start_ms - start_ms % HOUR_MS
                and (end_ms is None or h.hour_start_ms < end_ms)
            ]
        return sorted(found, key=lambda h: (h.hour_start_ms, h.cluster))
