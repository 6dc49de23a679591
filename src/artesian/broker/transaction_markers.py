"""Writes the transaction coordinator's COMMIT and ABORT markers to the partitions of a
transaction (Kafka's TransactionMarkerChannelManager): partitions led here directly,
partitions led by other brokers through WriteTxnMarkers to their leaders.

A marker counts as written once the partition's high watermark passes it, as Kafka writes
markers with acks=all: a leader that dies before its followers copy a marker must not leave
the transaction open on the new leader. For the same reason, as with acks=all, a partition
whose ISR is below its min.insync.replicas gets no marker (NOT_ENOUGH_REPLICAS), and one whose
ISR shrank below it while the marker replicated does not count it: the marker is written
again once the ISR is back. Until every marker counts, ``write_markers`` raises
MarkersPending; the coordinator keeps the Prepare state and is called again as soon as the
outstanding writes finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode
from kio.schema.types import ProducerId, TopicName
from kio.schema.write_txn_markers.v1.request import WritableTxnMarker, WritableTxnMarkerTopic
from kio.static.primitive import i16, i32

from artesian.broker.inter_broker import BrokerConnections
from artesian.broker.internal_topic import (
    OFFSETS_TOPIC,
    TRANSACTION_STATE_TOPIC,
    NotEnoughReplicasError,
)
from artesian.coordinator.transaction.coordinator import MarkersPending
from artesian.storage.errors import KafkaStorageError

if TYPE_CHECKING:
    from artesian.broker.replica_manager import Partition
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.transaction_markers")

# Every marker carries the coordinator epoch; Artesian's coordinators do not fence each other
# through it yet (a moved coordinator reloads from the log), so it stays 0.
COORDINATOR_EPOCH = 0
WRITE_TXN_MARKERS = 27
WRITE_TXN_MARKERS_VERSION = 1
TopicPartition = tuple[str, int]
MarkerKey = tuple[int, int, bool]  # producer id, epoch, commit
RETRY_BACKOFF_S = 0.5
# Answers after which a marker is not sent again: written, or refused for good (the producer
# moved to a newer epoch, or a newer coordinator wrote it), as Kafka's
# TransactionMarkerRequestCompletionHandler drops them. A deleted partition is dropped before
# sending, from the metadata image.
_FINAL = frozenset(
    {ErrorCode.none, ErrorCode.invalid_producer_epoch, ErrorCode.transaction_coordinator_fenced}
)


def write_local_marker(
    broker: Broker, p: Partition, producer_id: int, producer_epoch: int, commit: bool, epoch: int
) -> int:
    """Append a marker to a partition led here; returns the offset the high watermark must
    reach for it to count. Raises StorageError subclasses, and NotEnoughReplicasError below
    the partition's min.insync.replicas."""
    rm = broker.replica_manager
    assert rm is not None
    if p.under_min_isr:
        raise NotEnoughReplicasError(
            f"{p.topic}-{p.index}: ISR {sorted(p.isr)} is below min.insync.replicas "
            f"{p.log.config.min_insync_replicas}"
        )
    if not p.log.remote_log_ready:
        # Its local end may be stale until tiered storage is listed: the coordinator retries.
        raise KafkaStorageError(f"{p.topic}-{p.index} is not ready (tiered storage listing)")
    info = p.log.append_transaction_marker(
        producer_id, producer_epoch, commit, epoch, p.leader_epoch, int(time.time() * 1000)
    )
    rm.appended(p, info.size, 1)
    if p.topic == OFFSETS_TOPIC and broker.group_coordinator is not None:
        broker.group_coordinator.complete_transaction(p.index, producer_id, commit)
    return info.last_offset + 1


class TransactionMarkerWriter:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._done: dict[MarkerKey, set[TopicPartition]] = {}
        self._short_logged: set[MarkerKey] = set()  # warned once that the ISR holds them up
        self._waiting: dict[MarkerKey, asyncio.Task[None]] = {}
        self._connections = BrokerConnections(broker, "txn-markers")

    def write_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        partitions: Iterable[tuple[str, int]],
        state_partition: int,
    ) -> None:
        rm = self.broker.replica_manager
        assert rm is not None
        key = (producer_id, producer_epoch, commit)
        if key in self._waiting:
            raise MarkersPending("markers are still being written")
        # Not before the Prepare state is replicated: a coordinator that fails over must find
        # it, or it would abort a transaction whose COMMIT markers are already out.
        state = rm.get(TRANSACTION_STATE_TOPIC, state_partition)
        if (
            state is not None
            and state.is_leader
            and state.high_watermark < state.log.log_end_offset
        ):
            self._waiting[key] = asyncio.get_running_loop().create_task(
                self._complete(key, [(state, state.log.log_end_offset, state.leader_epoch)], {})
            )
            raise MarkersPending("the transaction's Prepare state is replicating")
        done = self._done.setdefault(key, set())
        local: list[tuple[Partition, int, int]] = []
        remote: dict[int, list[TopicPartition]] = {}
        short: list[str] = []  # led here, under min.insync.replicas: tried again later
        for topic, index in partitions:
            if (topic, index) in done:
                continue
            p = rm.get(topic, index)
            if p is not None and p.is_leader:
                try:
                    end = write_local_marker(
                        self.broker, p, producer_id, producer_epoch, commit, COORDINATOR_EPOCH
                    )
                except NotEnoughReplicasError as e:
                    short.append(str(e))
                    continue
                local.append((p, end, p.leader_epoch))
                continue
            timg = self.broker.image.topics.get(topic)
            pimg = timg.partitions.get(index) if timg is not None else None
            if pimg is None:
                # Deleted since it joined the transaction: nothing left to mark (as Kafka).
                log.info("no marker for %s-%d: the partition no longer exists", topic, index)
                done.add((topic, index))
                continue
            remote.setdefault(pimg.leader, []).append((topic, index))
        waits = [(p, end, epoch) for p, end, epoch in local if p.high_watermark < end]
        done.update((p.topic, p.index) for p, end, _ in local if p.high_watermark >= end)
        if not waits and not remote and not short:
            del self._done[key]
            self._short_logged.discard(key)
            return
        if short:
            self._warn_short_isr(key, "; ".join(short))
        self._waiting[key] = asyncio.get_running_loop().create_task(
            self._complete(key, waits, remote, retry=bool(short))
        )
        raise MarkersPending(
            f"{len(waits)} marker(s) replicating, {sum(map(len, remote.values()))} sent to "
            f"other leaders, {len(short)} waiting for their ISR"
        )

    def _warn_short_isr(self, key: MarkerKey, where: str) -> None:
        """Once per transaction outcome: a short ISR is retried twice a second until it
        heals, not worth a line each time."""
        if key in self._short_logged:
            return
        self._short_logged.add(key)
        log.warning(
            "%s markers of producer %d wait for the ISR: %s; they are written once the "
            "followers catch up (bring the missing brokers back)",
            "COMMIT" if key[2] else "ABORT",
            key[0],
            where,
        )

    async def _complete(
        self,
        key: MarkerKey,
        waits: list[tuple[Partition, int, int]],
        remote: dict[int, list[TopicPartition]],
        retry: bool = False,
    ) -> None:
        """Wait for the markers to count; ``retry``: some could not be written yet, so try
        again after the backoff whatever happens."""
        rm = self.broker.replica_manager
        assert rm is not None
        done = self._done.setdefault(key, set())
        timeout = self.broker.config.get_int("replica.socket.timeout.ms") / 1000
        try:
            results = await asyncio.gather(
                *(rm.wait_for_high_watermark(p, end, timeout, e) for p, end, e in waits),
                *(self._send(leader, key, tps) for leader, tps in remote.items()),
                return_exceptions=True,
            )
            failed = retry
            for (p, _end, _epoch), code in zip(waits, results, strict=False):
                if code is ErrorCode.none and p.under_min_isr:
                    code = ErrorCode.not_enough_replicas_after_append  # written again later
                if code is not ErrorCode.none:
                    failed = True
                elif p.topic != TRANSACTION_STATE_TOPIC:
                    done.add((p.topic, p.index))
            for result in results[len(waits) :]:
                if not isinstance(result, list):
                    log.warning("WriteTxnMarkers failed (%s); retrying", result)
                    failed = True
                    continue
                sent: list[tuple[TopicPartition, ErrorCode]] = result
                done.update(tp for tp, code in sent if code in _FINAL)
                failed = failed or any(code not in _FINAL for _, code in sent)
            if failed:
                await asyncio.sleep(RETRY_BACKOFF_S)  # e.g. a leader moving: give it a moment
        finally:
            del self._waiting[key]
        coordinator = self.broker.transaction_coordinator
        if coordinator is not None:
            coordinator.retry_markers()

    async def _send(
        self, leader: int, key: MarkerKey, tps: list[TopicPartition]
    ) -> list[tuple[TopicPartition, ErrorCode]]:
        """WriteTxnMarkers to ``leader``; the error of each partition."""
        conn = self._connections.get(leader)
        if conn is None:
            return [(tp, ErrorCode.coordinator_not_available) for tp in tps]
        producer_id, producer_epoch, commit = key
        by_topic: dict[str, list[int]] = {}
        for topic, index in tps:
            by_topic.setdefault(topic, []).append(index)
        response: Any = await conn.request(
            WRITE_TXN_MARKERS,
            WRITE_TXN_MARKERS_VERSION,
            markers=(
                WritableTxnMarker(
                    producer_id=ProducerId(producer_id),
                    producer_epoch=i16(producer_epoch),
                    transaction_result=commit,
                    topics=tuple(
                        WritableTxnMarkerTopic(
                            name=TopicName(t), partition_indexes=tuple(i32(i) for i in idx)
                        )
                        for t, idx in by_topic.items()
                    ),
                    coordinator_epoch=i32(COORDINATOR_EPOCH),
                ),
            ),
        )
        out = []
        for marker in response.markers:
            for t in marker.topics:
                for r in t.partitions:
                    code = ErrorCode(r.error_code)
                    if code is ErrorCode.not_enough_replicas:
                        self._warn_short_isr(
                            key,
                            f"{t.name}-{r.partition_index} on broker {leader} is below its "
                            "min.insync.replicas",
                        )
                    elif code is not ErrorCode.none:
                        log.info(
                            "marker for %s-%d on broker %d: %s; retrying",
                            t.name,
                            r.partition_index,
                            leader,
                            code.name,
                        )
                    out.append(((str(t.name), int(r.partition_index)), code))
        return out

    async def close(self) -> None:
        for task in list(self._waiting.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._connections.close()
