"""What a logical cluster's principals may set on their topics (Kora's topic policy).

Their topics live on brokers other tenants share, so the settings that cost those brokers
(tiny segments mean many files and index maps, flush.messages=1 an fsync per record, huge
records memory) or that belong to the platform (tiering, replication, throttles, unclean
elections) are not theirs to change. The editable ones are the settings a Kafka user tunes
for their data, some within bounds; Confluent Cloud's list and limits, near enough. A
request outside the policy gets POLICY_VIOLATION, as Kafka's create-topic and alter-config
policies answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "partition_limit_refusal",
    "replication_factor_violation",
    "set_by_the_platform",
    "topic_config_violation",
]

_MIB = 1024 * 1024
# Editable topic configs, with the (lowest, highest) value allowed where bounded.
_EDITABLE: Mapping[str, tuple[int | None, int | None]] = {
    "cleanup.policy": (None, None),
    "compression.type": (None, None),
    "compression.gzip.level": (None, None),
    "compression.lz4.level": (None, None),
    "compression.zstd.level": (None, None),
    "delete.retention.ms": (None, 60566400000),
    "max.compaction.lag.ms": (21600000, None),
    "max.message.bytes": (None, 8 * _MIB),
    "message.timestamp.after.max.ms": (None, None),
    "message.timestamp.before.max.ms": (None, None),
    "message.timestamp.type": (None, None),
    "min.compaction.lag.ms": (None, None),
    "min.insync.replicas": (None, None),
    "retention.bytes": (None, None),
    "retention.ms": (None, None),
    "segment.bytes": (50 * _MIB, 1024 * _MIB),
    "segment.ms": (600000, None),
}


def topic_config_violation(
    configs: Mapping[str, str | None], named: Iterable[str] | None = None
) -> str | None:
    """Why a logical cluster may not set ``named`` of its topic's configs (all of them by
    default) to ``configs`` (normalized values; a name absent from ``configs`` is being
    deleted); None when it may."""
    for name in configs if named is None else named:
        bounds = _EDITABLE.get(name)
        if bounds is None:
            return (
                f"Config '{name}' is set by the platform for a logical cluster's topics; "
                f"those it may set are: {', '.join(_EDITABLE)}"
            )
        value = configs.get(name)
        lowest, highest = bounds
        if value is None or (lowest is None and highest is None):
            continue
        number = int(value)
        if lowest is not None and number < lowest:
            return f"Config '{name}' with value '{value}' is below the lowest allowed, {lowest}"
        if highest is not None and number > highest:
            return f"Config '{name}' with value '{value}' is above the highest allowed, {highest}"
    return None


def replication_factor_violation(replication_factor: int, platforms: int) -> str | None:
    """A logical cluster's topics are replicated as the platform replicates its own (the
    factor asked for, -1 already read as the default)."""
    if replication_factor == platforms:
        return None
    return (
        f"A logical cluster's topics have the platform's replication factor, {platforms}: "
        "send -1 for it"
    )


def partition_limit_refusal(
    prefix: str, topics: Mapping[str, Any], limit: int, adding: int
) -> str | None:
    """Why a logical cluster (its names begin ``prefix``) may not have ``adding`` more
    partitions under ``artesian.logical.cluster.max.partitions``; None when it may. Counted
    from the image a plan is made from, so a commit on a stale one is planned again."""
    used = sum(len(t.partitions) for name, t in topics.items() if name.startswith(prefix))
    if used + adding <= limit:
        return None
    return (
        f"A logical cluster may have {limit} partitions; it has {used}, and {adding} more "
        "would pass that (artesian.logical.cluster.max.partitions)"
    )


def set_by_the_platform(name: str) -> bool:
    """A topic config a logical cluster may not change (DescribeConfigs shows it
    read-only to its principals)."""
    return name not in _EDITABLE
