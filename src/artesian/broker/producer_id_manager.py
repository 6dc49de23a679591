"""Producer ids for idempotent (and, later, transactional) producers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from artesian.metadata.controller import ControllerError
from artesian.metadata.records import ProducerIdsRecord

if TYPE_CHECKING:
    from artesian.broker.server import Broker

BLOCK_SIZE = 1000  # KRaft's producer id block size


class ProducerIdManager:
    """Hands out the ids of the block this broker last claimed; claims the next block from the
    metadata log when it runs out (ids of a block left unused at a restart are skipped)."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._next = 0
        self._end = 0  # no block yet

    def generate(self) -> int:
        if self._next >= self._end:
            for attempt in range(3):
                start = self._broker.image.next_producer_id_block
                try:
                    # Persisted before any id of the block is handed out.
                    self._broker.commit([ProducerIdsRecord(start + BLOCK_SIZE)])
                    break
                except ControllerError:
                    # Another broker claimed a block meanwhile: the commit caught up with the
                    # store, so the next block is known now.
                    if attempt == 2:
                        raise
            self._next, self._end = start, start + BLOCK_SIZE
        pid = self._next
        self._next += 1
        return pid
