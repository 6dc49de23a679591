"""Feature levels (KIP-584, KIP-778): which records a cluster's metadata log may hold.

A rolling upgrade runs old and new brokers side by side, and an old broker cannot read a
record kind added after it. So, as KRaft gates on ``metadata.version``, a record kind that
needs a newer level is refused (UNSUPPORTED_VERSION) until the cluster's finalized level
allows it. A level is finalized with UpdateFeatures, and only to one that every registered
broker supports; once a level is finalized, a broker that does not support it may not join.
A new cluster starts at the newest level (``artesian.metadata.version.bootstrap``).

The feature is Artesian's own, ``artesian.metadata.version``, not Kafka's
``metadata.version``: its levels describe our metadata records, not KRaft's, and Kafka's
tools would print a Kafka release for Kafka's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from artesian.metadata.records import (
    DelegationTokenRecord,
    LogicalClusterBindingRecord,
    LogicalClusterQuotaRecord,
    MetadataRecord,
    RegisterBrokerRecord,
    RemoveDelegationTokenRecord,
)

__all__ = [
    "LATEST",
    "LEVELS",
    "METADATA_VERSION",
    "SUPPORTED_FEATURES",
    "level_needed",
    "refused_records",
    "registered_features",
]

METADATA_VERSION = "artesian.metadata.version"
# What each level adds.
LEVELS: Mapping[int, str] = {
    1: "the records of Artesian before feature levels",
    2: "logical clusters (LogicalClusterBindingRecord, LogicalClusterQuotaRecord)",
    3: "delegation tokens (DelegationTokenRecord, RemoveDelegationTokenRecord)",
}
LATEST = max(LEVELS)
# (lowest, highest) level this version supports, by feature.
SUPPORTED_FEATURES: Mapping[str, tuple[int, int]] = {METADATA_VERSION: (1, LATEST)}

_NEEDS: Mapping[type, int] = {
    LogicalClusterBindingRecord: 2,
    LogicalClusterQuotaRecord: 2,
    DelegationTokenRecord: 3,
    RemoveDelegationTokenRecord: 3,
}


def level_needed(record: MetadataRecord) -> int:
    return _NEEDS.get(type(record), 1)


def refused_records(records: Iterable[MetadataRecord], finalized: int) -> str | None:
    """Why ``records`` may not be written at the ``finalized`` level; None when they may."""
    for record in records:
        needed = level_needed(record)
        if needed > finalized:
            return (
                f"{type(record).__name__} needs {METADATA_VERSION} {needed} ({LEVELS[needed]}); "
                f"the cluster is at {finalized}: once every broker runs a version that supports "
                f"it, upgrade it with `artesian cluster features --upgrade`"
            )
    return None


def registered_features(registration: RegisterBrokerRecord) -> dict[str, tuple[int, int]]:
    """The levels a registered broker supports, by feature: a registration from before
    feature levels supports the first level of ours, nothing newer."""
    supported = {name: (lowest, highest) for name, lowest, highest in registration.features}
    return supported or {METADATA_VERSION: (1, 1)}
