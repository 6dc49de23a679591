"""Replication quotas (KIP-73): moving replicas copy at a bounded byte rate, so that a
reassignment or a rebalance does not starve producers and consumers.

One ``ReplicationThrottle`` per side and broker:
- **Leader side:** ``leader.replication.throttled.rate`` caps the bytes the leader sends to
  replicas listed in the topic's ``leader.replication.throttled.replicas``.
- **Follower side:** ``follower.replication.throttled.rate`` caps the bytes the follower
  fetches for replicas listed in ``follower.replication.throttled.replicas``.

Either list may be ``*``. As in Kafka, only replicas outside the ISR are ever held back: a
follower that is in sync keeps acks=all latency whatever the quota. Once the bytes moved
exceed the rate, the throttled partitions are left out of fetches (follower side) or get no
records in the answer (leader side) until the quota allows more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from artesian.tiered.quota import ByteRateQuota


@lru_cache(maxsize=256)
def _parse(value: str) -> frozenset[tuple[int, int]] | None:
    """None for ``*`` (every replica), else the (partition, broker) pairs."""
    if value.strip() == "*":
        return None
    pairs = set()
    for item in value.split(","):
        partition, _, broker = item.strip().partition(":")
        if partition.isdigit() and broker.isdigit():
            pairs.add((int(partition), int(broker)))
    return frozenset(pairs)


def replica_listed(configs: Mapping[str, str], name: str, partition: int, broker: int) -> bool:
    """Is ``partition:broker`` in the topic's ``name`` list (Kafka's throttled replicas)?"""
    value = configs.get(name)
    if not value:
        return False
    pairs = _parse(value)
    return pairs is None or (partition, broker) in pairs


@dataclass(slots=True)
class ReplicationThrottle:
    quota: ByteRateQuota
    listed: Callable[[str, int], bool]
    """Whether this broker's replica of (topic, partition) is throttled on this side."""

    def holds_back(self, topic: str, partition: int, in_sync: bool) -> bool:
        """True: leave this partition's data out of this fetch."""
        if in_sync or self.quota.unlimited or not self.listed(topic, partition):
            return False
        return self.quota.throttle_seconds() > 0

    def moved(self, topic: str, partition: int, in_sync: bool, nbytes: int) -> None:
        if nbytes and not in_sync and not self.quota.unlimited and self.listed(topic, partition):
            self.quota.record(nbytes)
