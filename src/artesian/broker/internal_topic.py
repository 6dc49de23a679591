"""The coordinators' internal topics, ``__consumer_offsets`` and ``__transaction_state``: create
on first use, append records, replay them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from artesian.metadata.controller import ControllerError, NewTopic
from artesian.protocol.record_codec import decode_records, encode_batch
from artesian.protocol.records import ATTR_TRANSACTIONAL, iter_batches

if TYPE_CHECKING:
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.internal_topic")

OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_STATE_TOPIC = "__transaction_state"
SHARE_STATE_TOPIC = "__share_group_state"
_READ_CHUNK = 4 << 20


@dataclass(slots=True, frozen=True)
class LoggedRecord:
    """A record as replayed, with what its batch says about transactions: ``producer_id`` is
    set for records of a transactional batch, and ``control`` (True) marks a transaction marker,
    whose key says commit or abort."""

    key: bytes | None
    value: bytes | None
    producer_id: int = -1
    control: bool = False


class NotLeaderError(RuntimeError):
    """An internal topic's partition is not led by this broker (any more)."""


class NotEnoughReplicasError(RuntimeError):
    """The partition's ISR is smaller than its min.insync.replicas: a coordinator's write
    would not be durable, so it is refused (Kafka appends them with acks=all)."""

    error_code = ErrorCode.not_enough_replicas


class InternalTopic:
    """One internal topic; ``config_prefix`` names its Kafka settings (``offsets.topic``,
    ``transaction.state.log`` or ``share.coordinator.state.topic``: ``.num.partitions``,
    ``.replication.factor``, ``.segment.bytes``, and for the latter two ``.min.isr``)."""

    def __init__(self, broker: Broker, name: str, config_prefix: str) -> None:
        self.broker = broker
        self.name = name
        self.prefix = config_prefix

    @property
    def num_partitions(self) -> int:
        topic = self.broker.image.topics.get(self.name)
        if topic is not None:
            return len(topic.partitions)
        return self.broker.config.get_int(f"{self.prefix}.num.partitions")

    def exists(self) -> bool:
        return self.name in self.broker.image.topics

    def ensure(self) -> None:
        """Create the topic on first use, as Kafka does on the first FindCoordinator."""
        if self.exists():
            return
        broker = self.broker
        assert broker.controller is not None
        cfg = broker.config
        rf = min(cfg.get_int(f"{self.prefix}.replication.factor"), len(broker.image.brokers))
        configs = {
            "cleanup.policy": "compact",
            "compression.type": "producer",
            "segment.bytes": str(cfg.get_int(f"{self.prefix}.segment.bytes")),
        }
        if f"{self.prefix}.min.isr" in cfg.definitions:
            # Kafka's override of min.insync.replicas for this topic (__consumer_offsets has
            # none: the broker's applies). At most the replication factor, which the broker
            # count bounds, so that a single broker can still write.
            configs["min.insync.replicas"] = str(min(cfg.get_int(f"{self.prefix}.min.isr"), rf))
        topic = NewTopic(self.name, cfg.get_int(f"{self.prefix}.num.partitions"), rf, configs)
        controller = broker.controller
        assert controller is not None
        try:
            broker.plan_and_commit(lambda: controller.plan_create_topic(topic))
            log.info("created %s with %d partitions", self.name, topic.num_partitions)
        except ControllerError as e:
            if self.exists():
                return  # another broker created it meanwhile
            log.error("could not create %s: %s", self.name, e.message)
            raise

    def append(
        self,
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        producer_id: int = -1,
        producer_epoch: int = -1,
    ) -> None:
        """Append durably as one batch; with a producer id, as a transactional batch of that
        producer (TxnOffsetCommit), which its transaction's marker later commits or aborts."""
        self.ensure()
        rm = self.broker.replica_manager
        assert rm is not None
        p, _code = rm.leader(self.name, partition)
        if p is None:
            # Leadership moved: the coordinator unloads this partition as the news arrives.
            raise NotLeaderError(f"{self.name}-{partition} is not led here")
        if p.under_min_isr:
            raise NotEnoughReplicasError(
                f"the ISR {list(p.isr)} of {self.name}-{partition} is smaller than its "
                f"min.insync.replicas ({p.log.config.min_insync_replicas})"
            )
        now = int(time.time() * 1000)
        batch = encode_batch(
            [(k, v, now, ()) for k, v in records],
            attributes=ATTR_TRANSACTIONAL if producer_id >= 0 else 0,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
        )
        info = p.log.append_as_leader(batch, p.leader_epoch, now, from_coordinator=producer_id >= 0)
        rm.appended(p, len(batch), info.last_offset - info.first_offset + 1)

    def read(self, partition: int) -> Iterator[LoggedRecord]:
        """Every record of the partition in offset order, markers included."""
        rm = self.broker.replica_manager
        p = rm.get(self.name, partition) if rm is not None else None
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
                pid = header.producer_id if header.is_transactional else -1
                for record in decode_records(data[pos : pos + header.size], header):
                    if record.offset >= offset:
                        yield LoggedRecord(record.key, record.value, pid, header.is_control)
                offset = header.next_offset
            if not progressed:
                break
