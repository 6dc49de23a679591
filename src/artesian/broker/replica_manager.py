"""ReplicaManager: the partitions this broker hosts, as leader or follower, and appends and
reads on them.

A leader tracks each follower's log end offset from its fetches (Kafka's FollowerState) and
moves the high watermark to the smallest log end offset in the ISR; produce requests with
acks=all wait for it. Followers report their log start offset too: DeleteRecords waits for the
low watermark, the smallest log start offset on a live replica. A follower's log is written by
the replica fetcher (``replication/replica_fetcher.py``) and takes the leader's high watermark.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode
from prometheus_client import Counter

from artesian.broker.purgatory import FetchPurgatory
from artesian.storage.log import Log
from artesian.storage.log_config import LogConfig
from artesian.storage.log_manager import LogManager

if TYPE_CHECKING:
    from artesian.broker.metrics import BrokerMetrics

log = logging.getLogger("artesian.replica_manager")


@dataclass(slots=True)
class FollowerState:
    """What the leader knows of one follower, from its fetches (Kafka's Replica)."""

    log_end_offset: int = -1  # unknown until its first fetch
    log_start_offset: int = -1  # likewise: an unknown start holds DeleteRecords back
    last_caught_up_ms: int = 0
    last_fetch_ms: int = 0
    last_fetch_leader_log_end_offset: int = -1
    # The high watermark its last fetch response carried: a fetch that would tell it a newer
    # one is answered at once (KIP-392's high watermark propagation).
    sent_high_watermark: int = -1


@dataclass(slots=True, eq=False)
class Partition:
    topic: str
    index: int
    topic_id: uuid.UUID
    log: Log
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int = -1
    local_id: int = -1
    partition_epoch: int = 0
    leader_epoch_start_offset: int = 0  # the log end offset when this leadership began
    roll_flush: asyncio.Future[None] | None = None
    followers: dict[int, FollowerState] = field(default_factory=dict)
    # acks=all produce requests: (offset the high watermark must reach, their future).
    hw_waiters: list[tuple[int, asyncio.Future[ErrorCode]]] = field(default_factory=list)
    # DeleteRecords requests (Kafka's DelayedDeleteRecords): (offset the low watermark must
    # reach, their future of (error, low watermark)).
    lw_waiters: list[tuple[int, asyncio.Future[tuple[ErrorCode, int]]]] = field(
        default_factory=list
    )
    # Bytes appended and bytes sent to consumers, for the self-balancer's load samples.
    bytes_in_total: int = 0
    bytes_out_total: int = 0

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def is_leader(self) -> bool:
        return self.leader == self.local_id

    @property
    def under_min_isr(self) -> bool:
        """The ISR is smaller than min.insync.replicas: an acks=all write (a produce, a
        coordinator's record, a transaction marker) would not be durable."""
        return len(self.isr) < self.log.config.min_insync_replicas

    def leader_epoch_error(self, requested: int) -> ErrorCode | None:
        """KIP-320: a client's current leader epoch must be ours (-1 skips the check)."""
        if requested == -1 or requested == self.leader_epoch:
            return None
        if requested < self.leader_epoch:
            return ErrorCode.fenced_leader_epoch
        return ErrorCode.unknown_leader_epoch

    def out_of_sync(self, now_ms: int, lag_ms: int) -> tuple[int, ...]:
        """ISR followers that have not caught up within ``lag_ms`` (Kafka's
        getOutOfSyncReplicas)."""
        return tuple(
            r
            for r in self.isr
            if r != self.local_id
            and now_ms - self.followers.get(r, FollowerState()).last_caught_up_ms > lag_ms
        )

    def low_watermark(self, live: Container[int]) -> int:
        """The smallest log start offset among this leader and the followers on live brokers
        (Kafka's lowWatermarkIfLeader); a follower yet to report one counts as -1. Once it
        passes an offset, no replica that could lead next still holds the records below."""
        low = self.log.log_start_offset
        for r in self.replicas:
            if r != self.local_id and r in live:
                st = self.followers.get(r)
                low = min(low, st.log_start_offset if st is not None else -1)
        return low

    def caught_up_outside_isr(self) -> tuple[int, ...]:
        """Followers outside the ISR whose log reaches the high watermark and this leader's
        epoch (Kafka's isFollowerInSync): they may join it."""
        floor = max(self.log.high_watermark, self.leader_epoch_start_offset)
        return tuple(
            r
            for r, st in self.followers.items()
            if r not in self.isr and st.log_end_offset >= floor
        )


class ReplicaManager:
    def __init__(self, log_manager: LogManager, metrics: BrokerMetrics, node_id: int = -1) -> None:
        self.node_id = node_id
        # Set by the broker: the replica fetcher forgets a partition led here or gone.
        self.on_stop_fetching: Callable[[Partition], None] | None = None
        # Set by the broker: whether the metadata has a partition (hosted here or not).
        self.in_metadata: Callable[[str, int], bool] = lambda topic, partition: False
        self.log_manager = log_manager
        self.metrics = metrics
        self.partitions: dict[tuple[str, int], Partition] = {}
        # The live brokers as last told (live_changed); None until then.
        self._live: frozenset[int] | None = None
        self.purgatory = FetchPurgatory()
        self._bytes_in: dict[str, tuple[Counter, Counter]] = {}
        # Scrapes run on prometheus-client's thread: iterate a copy, which list() takes in
        # one step, not the dict the event loop changes.
        metrics.under_replicated.set_function(
            lambda: sum(
                1
                for p in list(self.partitions.values())
                if p.is_leader and len(p.isr) < len(p.replicas)
            )
        )
        metrics.leader_count.set_function(
            lambda: sum(1 for p in list(self.partitions.values()) if p.is_leader)
        )
        metrics.under_min_isr.set_function(
            lambda: sum(
                1 for p in list(self.partitions.values()) if p.is_leader and p.under_min_isr
            )
        )
        metrics.at_min_isr.set_function(
            lambda: sum(
                1
                for p in list(self.partitions.values())
                if p.is_leader and len(p.isr) == p.log.config.min_insync_replicas
            )
        )

    def get(self, topic: str, partition: int) -> Partition | None:
        """The hosted replica, led here or followed."""
        return self.partitions.get((topic, partition))

    def leader(self, topic: str, partition: int) -> tuple[Partition | None, ErrorCode]:
        """The partition if this broker leads it; else the error a client gets:
        NOT_LEADER_OR_FOLLOWER for a partition the metadata has (followed here, or hosted
        elsewhere, as after a reassignment: the client refreshes its metadata and goes to the
        leader), UNKNOWN_TOPIC_OR_PARTITION for one it lacks (Kafka's getPartitionOrError)."""
        p = self.partitions.get((topic, partition))
        if p is None:
            if self.in_metadata(topic, partition):
                return None, ErrorCode.not_leader_or_follower
            return None, ErrorCode.unknown_topic_or_partition
        if not p.is_leader:
            return None, ErrorCode.not_leader_or_follower
        return p, ErrorCode.none

    def _partition(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        leader_epoch: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        config: LogConfig,
    ) -> Partition:
        key = (topic, index)
        p = self.partitions.get(key)
        if p is None:
            plog = self.log_manager.get_or_create_log(topic, index, config, int(time.time() * 1000))
            p = Partition(topic, index, topic_id, plog, leader_epoch, replicas, isr)
            p.local_id = self.node_id
            self.partitions[key] = p
            self.metrics.partitions.set(len(self.partitions))
            # After a crash the recovery point stays where it was, below segments rolled
            # before it: flush them now rather than at the next roll, which a quiet topic may
            # never have (tiered storage copies only flushed segments).
            self._maybe_flush_rolled(p)
        else:
            p.leader_epoch, p.replicas, p.isr = leader_epoch, replicas, isr
        return p

    def become_leader(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        leader_epoch: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        config: LogConfig,
        partition_epoch: int = 0,
    ) -> Partition:
        before = self.partitions.get((topic, index))
        new_leadership = before is None or not before.is_leader
        new_epoch = before is None or not before.is_leader or before.leader_epoch != leader_epoch
        p = self._partition(topic, index, topic_id, leader_epoch, replicas, isr, config)
        if new_epoch:
            self._fail_waiters(p, ErrorCode.not_leader_or_follower)  # of an older leadership
            p.leader_epoch_start_offset = p.log.log_end_offset
            # Kafka's makeLeader: the epoch starts at the log end, so followers asking
            # OffsetForLeaderEpoch about older epochs learn where those ended here.
            if leader_epoch > p.log.latest_epoch:
                p.log.leader_epoch_cache.assign(leader_epoch, p.log.log_end_offset)
        p.leader = self.node_id
        p.partition_epoch = partition_epoch
        now = int(time.time() * 1000)
        if new_leadership:
            # A new leader knows nothing of its followers' logs yet; ISR members count as
            # caught up now, so they get replica.lag.time.max.ms to show it (Kafka).
            p.followers = {
                r: FollowerState(last_caught_up_ms=now) for r in replicas if r != p.local_id
            }
            self._stop_fetching(p)
        else:
            for r in replicas:
                if r != p.local_id:
                    p.followers.setdefault(r, FollowerState(last_caught_up_ms=now))
            for r in list(p.followers):
                if r not in replicas:
                    del p.followers[r]
        self.maybe_increment_high_watermark(p)
        if self._live is not None:
            self.maybe_complete_delete_records(p, self._live)  # a replica may have left
        return p

    def become_follower(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        leader: int,
        leader_epoch: int,
        replicas: tuple[int, ...],
        isr: tuple[int, ...],
        config: LogConfig,
        partition_epoch: int = 0,
    ) -> tuple[Partition, bool]:
        """Returns the partition and whether its leader or leader epoch changed (the
        fetcher must then check the log against the new leader's)."""
        before = self.partitions.get((topic, index))
        changed = (
            before is None
            or before.leader != leader
            or before.leader_epoch != leader_epoch
            or before.is_leader
        )
        p = self._partition(topic, index, topic_id, leader_epoch, replicas, isr, config)
        if before is None:
            # Until the leader says, only the log start is known committed: recovery sets the
            # high watermark to the log end, which may hold what no ISR member acknowledged.
            # A broker that held the partition already keeps the high watermark it had, as
            # Kafka does: consumers reading from it (KIP-392) do not see it fall to the log
            # start (it may still step back to a new leader's, which starts behind).
            p.log.high_watermark = min(p.log.high_watermark, p.log.log_start_offset)
        p.leader = leader
        p.partition_epoch = partition_epoch
        p.followers = {}
        self._fail_waiters(p, ErrorCode.not_leader_or_follower)
        # Parked fetches of clients re-read now and learn that this broker no longer leads.
        self.purgatory.wake((topic, index))
        return p, changed

    def _stop_fetching(self, p: Partition) -> None:
        if self.on_stop_fetching is not None:
            self.on_stop_fetching(p)

    # -- the leader's view of its followers -------------------------------------------------

    def update_follower_fetch(
        self,
        p: Partition,
        replica_id: int,
        fetch_offset: int,
        now_ms: int,
        *,
        log_start_offset: int,
        live: Container[int],
    ) -> bool:
        """A follower fetched from ``fetch_offset``: everything below it is in its log (Kafka's
        updateFollowerFetchState); its log starts at ``log_start_offset``. ``live``: the live
        brokers, for the low watermark. Returns True when the ISR should change: the
        follower caught up from outside it."""
        st = p.followers.get(replica_id)
        if st is None:
            return False
        st.log_start_offset = log_start_offset
        leo = p.log.log_end_offset
        if fetch_offset >= leo:
            st.last_caught_up_ms = max(st.last_caught_up_ms, now_ms)
        elif fetch_offset >= st.last_fetch_leader_log_end_offset >= 0:
            st.last_caught_up_ms = max(st.last_caught_up_ms, st.last_fetch_ms)
        st.log_end_offset = fetch_offset
        st.last_fetch_leader_log_end_offset = leo
        st.last_fetch_ms = now_ms
        self.maybe_increment_high_watermark(p)
        self.maybe_complete_delete_records(p, live)
        return replica_id not in p.isr and replica_id in p.caught_up_outside_isr()

    def maybe_increment_high_watermark(self, p: Partition, wake: bool = True) -> None:
        """The high watermark is the smallest log end offset in the ISR; it never moves back
        on a leader. Produce requests waiting for it complete; with ``wake``, fetches waiting
        on the partition read again (an append already counted its bytes for them)."""
        if not p.is_leader:
            return
        hw = p.log.log_end_offset
        for r in p.isr:
            if r != p.local_id:
                st = p.followers.get(r)
                hw = min(hw, st.log_end_offset if st is not None else -1)
        old = p.log.high_watermark
        if hw <= old:
            return
        p.log.high_watermark = hw
        if wake:
            self.purgatory.wake((p.topic, p.index))
        if p.hw_waiters:
            still = []
            for offset, fut in p.hw_waiters:
                if offset <= hw:
                    if not fut.done():
                        fut.set_result(ErrorCode.none)
                else:
                    still.append((offset, fut))
            p.hw_waiters = still

    def update_follower_high_watermark(self, p: Partition, leader_high_watermark: int) -> None:
        """A follower's high watermark is its leader's, as far as its own log reaches.
        Consumers reading from this follower (KIP-392) wait for it to move."""
        old = p.log.high_watermark
        p.log.high_watermark = min(leader_high_watermark, p.log.log_end_offset)
        if p.log.high_watermark > old:
            self.purgatory.wake((p.topic, p.index))

    async def wait_for_high_watermark(
        self, p: Partition, offset: int, timeout_s: float, leader_epoch: int
    ) -> ErrorCode:
        """acks=all: wait until the high watermark reaches ``offset``, appended in
        ``leader_epoch`` (Kafka's DelayedProduce). REQUEST_TIMED_OUT past the request's
        timeout; NOT_LEADER_OR_FOLLOWER once the leadership of that append is over, since a
        later leader may have truncated it."""
        if not p.is_leader or p.leader_epoch != leader_epoch:
            return ErrorCode.not_leader_or_follower
        if p.log.high_watermark >= offset:
            return ErrorCode.none
        fut: asyncio.Future[ErrorCode] = asyncio.get_running_loop().create_future()
        entry = (offset, fut)
        p.hw_waiters.append(entry)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            return ErrorCode.request_timed_out
        finally:
            if entry in p.hw_waiters:
                p.hw_waiters.remove(entry)

    def live_changed(self, live: frozenset[int]) -> None:
        """The live brokers changed: a follower on a broker gone no longer holds DeleteRecords
        back."""
        self._live = live
        for p in self.partitions.values():
            if p.lw_waiters:
                self.maybe_complete_delete_records(p, live)

    def maybe_complete_delete_records(self, p: Partition, live: Container[int]) -> None:
        """DeleteRecords requests whose offset the low watermark has reached complete, with
        it."""
        if not p.lw_waiters or not p.is_leader:
            return
        low = p.low_watermark(live)
        still = []
        for offset, fut in p.lw_waiters:
            if offset <= low:
                if not fut.done():
                    fut.set_result((ErrorCode.none, low))
            else:
                still.append((offset, fut))
        p.lw_waiters = still

    async def wait_for_low_watermark(
        self,
        p: Partition,
        offset: int,
        timeout_s: float,
        leader_epoch: int,
        live: Container[int],
    ) -> tuple[ErrorCode, int]:
        """DeleteRecords: wait until the low watermark reaches ``offset`` (Kafka's
        DelayedDeleteRecords), so that no live follower taking over can bring the deleted
        records back. Returns the error and the low watermark (-1 on error):
        REQUEST_TIMED_OUT past the request's timeout; NOT_LEADER_OR_FOLLOWER once the
        leadership of the delete is over."""
        if not p.is_leader or p.leader_epoch != leader_epoch:
            return ErrorCode.not_leader_or_follower, -1
        low = p.low_watermark(live)  # a follower may have fetched since the delete
        if low >= offset:
            return ErrorCode.none, low
        fut: asyncio.Future[tuple[ErrorCode, int]] = asyncio.get_running_loop().create_future()
        entry = (offset, fut)
        p.lw_waiters.append(entry)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            return ErrorCode.request_timed_out, -1
        finally:
            if entry in p.lw_waiters:
                p.lw_waiters.remove(entry)

    @staticmethod
    def _fail_waiters(p: Partition, code: ErrorCode) -> None:
        """Leadership is over (or the partition gone): acks=all produce requests and
        DeleteRecords requests waiting on it fail with ``code``."""
        for _offset, fut in p.hw_waiters:
            if not fut.done():
                fut.set_result(code)
        p.hw_waiters = []
        for _offset, lw_fut in p.lw_waiters:
            if not lw_fut.done():
                lw_fut.set_result((code, -1))
        p.lw_waiters = []

    def stop_replica(self, topic: str, index: int, delete: bool) -> None:
        """This broker no longer hosts the partition (reassigned away)."""
        p = self.partitions.pop((topic, index), None)
        if p is None:
            return
        self._fail_waiters(p, ErrorCode.not_leader_or_follower)
        self._stop_fetching(p)
        self.purgatory.wake((topic, index))
        if delete:
            self.log_manager.delete_log(topic, index, now_ms=int(time.time() * 1000))
        self.metrics.partitions.set(len(self.partitions))

    def remove_topic(self, topic: str) -> None:
        for key in [k for k in self.partitions if k[0] == topic]:
            p = self.partitions.pop(key)
            self._fail_waiters(p, ErrorCode.unknown_topic_or_partition)
            self._stop_fetching(p)
            self.purgatory.wake(key)
            # The files stay for file.delete.delay.ms: a fetch may still be sending them.
            self.log_manager.delete_log(*key, now_ms=int(time.time() * 1000))
        self.metrics.partitions.set(len(self.partitions))

    def update_config(self, topic: str, config: LogConfig) -> None:
        self.log_manager.update_config(topic, config)

    def appended(
        self, p: Partition, nbytes: int, messages: int, replicated: bool = False
    ) -> asyncio.Future[None] | None:
        """Bookkeeping after a successful append: HW, metrics, waiting fetches, flush.

        Returns a flush to await before acknowledging when flush.messages or flush.ms call
        for one (Kafka flushes inline there); after a roll, the closed segments are flushed
        in the background, as Kafka's roll does."""
        if replicated:
            self.metrics.replication_bytes_in.inc(nbytes)
        else:
            counters = self._bytes_in.get(p.topic)
            if counters is None:
                counters = self._bytes_in[p.topic] = (
                    self.metrics.bytes_in.labels(p.topic),
                    self.metrics.messages_in.labels(p.topic),
                )
            b, m = counters
            b.inc(nbytes)
            m.inc(messages)
        p.bytes_in_total += nbytes
        # Followers' fetches wait for appends; clients' for the high watermark, which
        # moves here at once when this broker is the whole ISR.
        self.purgatory.on_append((p.topic, p.index), nbytes)
        self.maybe_increment_high_watermark(p, wake=False)
        now = int(time.time() * 1000)
        if p.log.needs_flush(now):
            return self._flush(p, None, now)
        self._maybe_flush_rolled(p)
        return None

    def _maybe_flush_rolled(self, p: Partition) -> None:
        """One background flush at a time per partition; rolls made while it ran get the
        next one as soon as it ends, so the recovery point reaches the active segment even
        when appends stop (tiered storage copies only flushed segments)."""
        if p.roll_flush is not None or p.log.closed or not p.log.needs_roll_flush():
            return
        p.roll_flush = self._flush(p, p.log.active_base_offset, None)

        def done(_f: asyncio.Future[None]) -> None:
            p.roll_flush = None
            if not _f.cancelled() and _f.exception() is None:
                self._maybe_flush_rolled(p)

        p.roll_flush.add_done_callback(done)

    def _flush(self, p: Partition, up_to: int | None, now_ms: int | None) -> asyncio.Future[None]:
        """fsync in a worker thread: the event loop never waits on the disk."""
        fut = asyncio.get_running_loop().run_in_executor(None, p.log.flush, up_to, now_ms)

        def done(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error(
                    "flush of %s-%d failed: %s; the next flush retries",
                    p.topic,
                    p.index,
                    f.exception(),
                )

        fut.add_done_callback(done)
        return fut
