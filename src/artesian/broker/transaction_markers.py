"""Writes the transaction coordinator's COMMIT and ABORT markers to the partitions of a
transaction (Kafka's TransactionMarkerChannelManager and the leader's WriteTxnMarkers, in one
process since this broker leads every partition)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from artesian.broker.internal_topic import OFFSETS_TOPIC
from artesian.storage.errors import KafkaStorageError

if TYPE_CHECKING:
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.transaction_markers")

# Every marker carries the coordinator epoch; with one coordinator it never changes.
COORDINATOR_EPOCH = 0


class TransactionMarkerWriter:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def write_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        partitions: Iterable[tuple[str, int]],
    ) -> None:
        rm = self.broker.replica_manager
        assert rm is not None
        now = int(time.time() * 1000)
        for topic, index in partitions:
            p = rm.get(topic, index)
            if p is None:
                # Deleted since it joined the transaction: nothing left to mark (as Kafka).
                log.info("no marker for %s-%d: the partition no longer exists", topic, index)
                continue
            if not p.log.remote_log_ready:
                # Its local end may be stale until tiered storage is listed: the coordinator
                # retries the markers.
                raise KafkaStorageError(f"{topic}-{index} is not ready (tiered storage listing)")
            info = p.log.append_transaction_marker(
                producer_id, producer_epoch, commit, COORDINATOR_EPOCH, p.leader_epoch, now
            )
            rm.appended(p, info.size, 1)
            if topic == OFFSETS_TOPIC and self.broker.group_coordinator is not None:
                self.broker.group_coordinator.complete_transaction(index, producer_id, commit)
