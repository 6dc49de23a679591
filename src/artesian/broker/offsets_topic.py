"""``__consumer_offsets`` as the group coordinator sees it: append records, replay them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from artesian.metadata.controller import ControllerError, NewTopic
from artesian.protocol.record_codec import decode_records, encode_batch
from artesian.protocol.records import iter_batches

if TYPE_CHECKING:
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.offsets_topic")

OFFSETS_TOPIC = "__consumer_offsets"
_READ_CHUNK = 4 << 20


class ConsumerOffsetsTopic:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    @property
    def num_partitions(self) -> int:
        topic = self.broker.image.topics.get(OFFSETS_TOPIC)
        if topic is not None:
            return len(topic.partitions)
        return self.broker.config.get_int("offsets.topic.num.partitions")

    def exists(self) -> bool:
        return OFFSETS_TOPIC in self.broker.image.topics

    def ensure(self) -> None:
        """Create the topic on first use, as Kafka does on the first FindCoordinator."""
        if self.exists():
            return
        broker = self.broker
        assert broker.controller is not None
        cfg = broker.config
        rf = min(cfg.get_int("offsets.topic.replication.factor"), len(broker.image.brokers))
        topic = NewTopic(
            OFFSETS_TOPIC,
            cfg.get_int("offsets.topic.num.partitions"),
            rf,
            {
                "cleanup.policy": "compact",
                "compression.type": "producer",
                "segment.bytes": str(cfg.get_int("offsets.topic.segment.bytes")),
            },
        )
        try:
            broker.commit(broker.controller.plan_create_topic(topic))
            log.info("created %s with %d partitions", OFFSETS_TOPIC, topic.num_partitions)
        except ControllerError as e:
            log.error("could not create %s: %s", OFFSETS_TOPIC, e.message)
            raise

    def append(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        self.ensure()
        rm = self.broker.replica_manager
        assert rm is not None
        p = rm.get(OFFSETS_TOPIC, partition)
        if p is None:
            raise RuntimeError(f"{OFFSETS_TOPIC}-{partition} is not hosted here")
        now = int(time.time() * 1000)
        batch = encode_batch([(k, v, now, ()) for k, v in records])
        info = p.log.append_as_leader(batch, p.leader_epoch, now)
        rm.appended(p, len(batch), info.last_offset - info.first_offset + 1)

    def read(self, partition: int) -> Iterator[tuple[bytes | None, bytes | None]]:
        rm = self.broker.replica_manager
        p = rm.get(OFFSETS_TOPIC, partition) if rm is not None else None
        if p is None:
            return
        plog = p.log
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            info = plog.read(offset, _READ_CHUNK, end, True)
            if info.records is None:
                break
            data = info.records.read_bytes()
            progressed = False
            for pos, header in iter_batches(data):
                if header.next_offset <= offset:
                    continue
                progressed = True
                for record in decode_records(data[pos : pos + header.size], header):
                    if record.offset >= offset:
                        yield record.key, record.value
                offset = header.next_offset
            if not progressed:
                break
