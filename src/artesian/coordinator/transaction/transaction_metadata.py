"""One transactional id's state, as Kafka's TransactionMetadata keeps it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
# Kafka bumps to a new producer id before the epoch can reach Short.MAX_VALUE, which is kept
# for fencing.
MAX_PRODUCER_EPOCH = 2**15 - 2


class TransactionState(IntEnum):
    """Kafka's states, with the ids its ``__transaction_state`` records use."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def display_name(self) -> str:
        """The name DescribeTransactions and ListTransactions use (``PrepareCommit``)."""
        return "".join(w.capitalize() for w in self.name.split("_"))

    @classmethod
    def from_display_name(cls, name: str) -> TransactionState | None:
        for s in cls:
            if s.display_name == name:
                return s
        return None


# The states a transaction can be ended from, and the one it then prepares.
COMPLETED = frozenset({TransactionState.COMPLETE_COMMIT, TransactionState.COMPLETE_ABORT})
PREPARING = frozenset({TransactionState.PREPARE_COMMIT, TransactionState.PREPARE_ABORT})


@dataclass(slots=True)
class TransactionMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TransactionState = TransactionState.EMPTY
    partitions: set[tuple[str, int]] = field(default_factory=set)
    start_ms: int = -1
    last_update_ms: int = -1
    # The epoch before the last bump by InitProducerId: a retried InitProducerId that still
    # carries it gets the current epoch back (KIP-360) instead of being fenced.
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    # The Prepare state's markers are all out, the Complete state not yet stored: a retry
    # stores it without writing the markers again.
    markers_written: bool = False

    def sorted_partitions(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return by_topic(self.partitions)


def by_topic(partitions: set[tuple[str, int]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Partitions grouped by topic, sorted: the shape the records and the admin APIs use."""
    grouped: dict[str, list[int]] = {}
    for topic, p in sorted(partitions):
        grouped.setdefault(topic, []).append(p)
    return tuple((t, tuple(ps)) for t, ps in grouped.items())
