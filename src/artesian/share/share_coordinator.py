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
        if not self.owns(key):
            raise NotShareCoordinator(key.coordinator_key())
        state = self.states.get(key)
        if state is not None and leader_epoch > state.leader_epoch:
            state = ShareState(state.state_epoch, leader_epoch, state.start_offset, state.batches)
            self.write(key, state)
        return state

    def write(self, key: ShareStateKey, state: ShareState) -> None:
        """Append the new state (raises NotShareCoordinator, or the append's error); the
        caller waits for the state topic's ISR before it answers."""
        partition = self.partition_for(key)
        if partition not in self.owned:
            raise NotShareCoordinator(key.coordinator_key())
        current = self.states.get(key)
        if current is not None and state.leader_epoch < current.leader_epoch:
            # A partition leader that has been replaced (Kafka's FENCED_LEADER_EPOCH).
            raise StaleLeaderEpoch(f"leader epoch {state.leader_epoch} < {current.leader_epoch}")
        self.topic.append(partition, [(records.key_bytes(key), records.value_bytes(state))])
        self.states[key] = state


class StaleLeaderEpoch(Exception):
    """A write from a leader older than the last writer."""
