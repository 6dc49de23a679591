"""ShareCoordinator: keeps share-partition state in ``__share_group_state`` (KIP-932).

The state of (group, topic, partition) lives on the state topic's partition its key hashes
to, as Kafka's share coordinator keeps it; the broker leading that partition is its
coordinator. It replays the partition when it takes it over and answers reads from memory;
a write appends a snapshot record. Partition leaders reach it through the persister
(``persister.py``): directly when it is this broker, with ReadShareGroupState and
WriteShareGroupState otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Protocol

from artesian.coordinator.serde import LoggedRecord, partition_for
from artesian.share import records
from artesian.share.records import ShareState, ShareStateKey

log = logging.getLogger("artesian.share_coordinator")

DELETED = -1  # the start offset of a deleted state


class StateTopic(Protocol):
    """The coordinator's view of ``__share_group_state``."""

    @property
    def num_partitions(self) -> int: ...

    def append(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None: ...

    def read(self, partition: int) -> Iterator[LoggedRecord]: ...

    def ensure(self) -> None: ...


class NotShareCoordinator(Exception):
    """This broker does not lead the state partition of a key (any more)."""


class ShareCoordinator:
    def __init__(self, topic: StateTopic) -> None:
        self.topic = topic
        self.states: dict[ShareStateKey, ShareState] = {}
        self.owned: set[int] = set()

    def partition_for(self, key: ShareStateKey) -> int:
        return partition_for(key.coordinator_key(), self.topic.num_partitions)

    def owns(self, key: ShareStateKey) -> bool:
        return self.partition_for(key) in self.owned

    def load(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            if partition in self.owned:
                continue
            self.owned.add(partition)
            loaded = 0
            for record in self.topic.read(partition):
                if record.key is None or record.control:
                    continue
                try:
                    key = records.parse_key(record.key)
                    if record.value is None:
                        self.states.pop(key, None)
                    else:
                        self.states[key] = records.parse_value(record.value)
                        loaded += 1
                except (ValueError, UnicodeDecodeError) as e:
                    log.warning("skipping unreadable __share_group_state record: %s", e)
            if loaded:
                log.info(
                    "loaded %d share partition state(s) from __share_group_state-%d",
                    loaded,
                    partition,
                )

    def unload(self, partition: int) -> None:
        self.owned.discard(partition)
        for key in [k for k in self.states if self.partition_for(k) == partition]:
            del self.states[key]

    def read(self, key: ShareStateKey, leader_epoch: int = -1) -> ShareState | None:
        """The stored state. A partition leader reading it at a newer leader epoch is from
        now on the only one allowed to write it (Kafka's readStateAndMaybeUpdateLeaderEpoch):
        a former leader's late writes are refused."""
        self._check_owned(key)
        state = self.states.get(key)
        if state is not None and leader_epoch > state.leader_epoch:
            state = ShareState(state.state_epoch, leader_epoch, state.start_offset, state.batches)
            self._append(key, state)
        return state

    def summary(self, key: ShareStateKey) -> ShareState | None:
        """The stored state, read without fencing anyone (ReadShareGroupStateSummary)."""
        self._check_owned(key)
        return self.states.get(key)

    def initialize(self, key: ShareStateKey, state_epoch: int, start_offset: int) -> None:
        """Start the partition's state afresh at ``start_offset``, with nothing in flight:
        a partition leader's first use, or an admin's AlterShareGroupOffsets. Each start is
        at a newer state epoch than what is stored (deleted states included), so a leader
        caching an older one is refused its writes, and of two racing starts one is refused
        (Kafka refuses only an older epoch; nothing but Artesian's brokers asks this)."""
        self._check_owned(key)
        current = self.states.get(key)
        if current is not None and current.state_epoch >= state_epoch:
            raise StaleStateEpoch(f"state epoch {state_epoch} <= {current.state_epoch}")
        leader_epoch = current.leader_epoch if current is not None else -1
        self._append(key, ShareState(state_epoch, leader_epoch, start_offset, ()))

    def delete(self, key: ShareStateKey) -> None:
        """Drop the partition's state (DeleteShareGroupOffsets, DeleteGroups). What stays is
        its state epoch, moved on (ShareState.deleted), not a tombstone: a leader still
        caching the state must be refused, and a new start must come after it."""
        self._check_owned(key)
        current = self.states.get(key)
        if current is not None and not current.deleted:
            self._append(
                key, ShareState(current.state_epoch + 1, current.leader_epoch, DELETED, ())
            )

    def write(self, key: ShareStateKey, state: ShareState) -> None:
        """Append the new state (raises NotShareCoordinator, or the append's error); the
        caller waits for the state topic's ISR before it answers. Only a state started by
        initialize() can be written, and only by its current leader at its state epoch: a
        leader still caching what an admin has since altered or deleted is refused."""
        self._check_owned(key)
        current = self.states.get(key)
        if current is None or current.deleted:
            raise Uninitialized(f"no share state for {key.coordinator_key()}")
        if state.leader_epoch < current.leader_epoch:
            # A partition leader that has been replaced (Kafka's FENCED_LEADER_EPOCH).
            raise StaleLeaderEpoch(f"leader epoch {state.leader_epoch} < {current.leader_epoch}")
        if state.state_epoch < current.state_epoch:
            raise StaleStateEpoch(f"state epoch {state.state_epoch} < {current.state_epoch}")
        self._append(key, state)

    def _check_owned(self, key: ShareStateKey) -> None:
        if not self.owns(key):
            raise NotShareCoordinator(key.coordinator_key())

    def _append(self, key: ShareStateKey, state: ShareState) -> None:
        self.topic.append(
            self.partition_for(key), [(records.key_bytes(key), records.value_bytes(state))]
        )
        self.states[key] = state


class StaleLeaderEpoch(Exception):
    """A write from a leader older than the last writer."""


class StaleStateEpoch(Exception):
    """A write or initialization older than the stored state (FENCED_STATE_EPOCH)."""


class Uninitialized(Exception):
    """A write to a partition with no state: deleted, or never started (INVALID_REQUEST)."""
