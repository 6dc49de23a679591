"""Followers pull from leaders, as in Kafka: one fetcher per leader broker, each a loop of
Fetch requests (with this broker's id as replica_id) over one connection.

Before a partition's first fetch from a leader (a new leader, or a new leader epoch) the
fetcher asks OffsetForLeaderEpoch where its latest epoch ended on the leader and truncates
whatever lies past that point (KIP-101/279): writes a failed leader never committed do not
survive. The leader learns each follower's log end offset from the fetch offset, so fetching
is also how a follower acknowledges.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12.request import FetchPartition, FetchTopic
from kio.schema.list_offsets.v9.request import ListOffsetsPartition, ListOffsetsTopic
from kio.schema.offset_for_leader_epoch.v4.request import (
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from kio.schema.types import TopicName
from kio.static.primitive import i32, i64

from artesian.protocol.client import MAX_RESPONSE_SIZE, decode_response, encode_request
from artesian.replication.throttle import ReplicationThrottle
from artesian.security.client import (
    ClientSecurity,
    LoginFailed,
    reauthentication_delay_ms,
    sasl_login,
)
from artesian.security.oauthbearer.login import LoginError
from artesian.storage.errors import StorageError

if TYPE_CHECKING:
    from artesian.broker.replica_manager import Partition, ReplicaManager

log = logging.getLogger("artesian.replica_fetcher")

FETCH = 1
FETCH_VERSION = 12  # topic names, replica_id in the body, leader epochs
OFFSET_FOR_LEADER_EPOCH = 23
OFFSET_FOR_LEADER_EPOCH_VERSION = 4
LIST_OFFSETS = 2
LIST_OFFSETS_VERSION = 9
EARLIEST_LOCAL_TIMESTAMP = -4
UNDEFINED = -1
_I32 = struct.Struct(">i")

# Errors that mean "this broker's metadata and the leader's disagree for now": the metadata
# log brings the news, so the partition waits a backoff and tries again.
_RETRIABLE = frozenset(
    {
        ErrorCode.not_leader_or_follower,
        ErrorCode.fenced_leader_epoch,
        ErrorCode.unknown_leader_epoch,
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.kafka_storage_error,
        ErrorCode.offset_not_available,
    }
)


@dataclass(frozen=True, slots=True)
class FetcherConfig:
    node_id: int
    max_wait_ms: int  # replica.fetch.wait.max.ms
    min_bytes: int  # replica.fetch.min.bytes
    partition_max_bytes: int  # replica.fetch.max.bytes
    response_max_bytes: int  # replica.fetch.response.max.bytes
    backoff_ms: int  # replica.fetch.backoff.ms
    socket_timeout_ms: int = 30_000  # replica.socket.timeout.ms
    security: ClientSecurity | None = None  # the inter-broker listener's TLS and SASL


@dataclass(slots=True)
class FetchState:
    partition: Partition
    needs_truncation: bool = True
    delayed_until: float = 0.0
    # The leader's log start, when the fetch offset lies in its tiered storage: the follower
    # then starts its log at the leader's local log start (KIP-405's "copy only the tail").
    tiered_log_start: int | None = None


class LeaderConnection:
    """One request at a time to a leader; any failure closes it and the next call reconnects.
    A SASL session with a lifetime (KIP-368) is re-authenticated on the same connection before
    the request that would come after 85-95% of it, as Kafka's clients do."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: bytes,
        timeout_s: float,
        security: ClientSecurity | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._client_id = client_id
        self._timeout = timeout_s
        self._security = security or ClientSecurity()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation = 0
        self._lock = asyncio.Lock()
        self._reauthenticate_at: float | None = None  # monotonic seconds

    async def request(self, api_key: int, version: int, **fields: Any) -> Any:
        async with self._lock:  # responses come in request order: one at a time
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
                # cancellation that races with the result, and the fetcher never stops.
                async with asyncio.timeout(self._timeout):
                    return await self._request(api_key, version, fields)
            except BaseException:
                self.close()
                raise

    async def _request(self, api_key: int, version: int, fields: dict[str, Any]) -> Any:
        if self._writer is None:
            context = self._security.ssl_context
            self._reader, self._writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context is not None else None,
            )
            if self._security.sasl is not None:
                await self._log_in(*self._security.sasl)
        elif self._reauthenticate_at is not None and time.monotonic() >= self._reauthenticate_at:
            assert self._security.sasl is not None
            await self._log_in(*self._security.sasl)
        return await self._exchange(api_key, version, fields)

    async def _log_in(self, mechanism: str, username: str, password: str) -> None:
        """A login, or on a logged-in connection a re-authentication (KIP-368)."""
        if mechanism == "OAUTHBEARER":
            source = self._security.oauthbearer
            assert source is not None
            try:  # a token endpoint is HTTP: off the event loop
                password, _ = await asyncio.to_thread(source.token)
            except LoginError as e:
                raise ConnectionError(f"inter-broker OAUTHBEARER login failed: {e}") from e
        login = sasl_login(mechanism, username, password)
        try:
            request = next(login)
            while True:
                request = login.send(await self._exchange(*request))
        except StopIteration as done:
            lifetime_ms: int = done.value
        except LoginFailed as e:
            raise ConnectionError(f"inter-broker SASL login failed: {e}") from e
        self._reauthenticate_at = None
        if lifetime_ms > 0:
            delay = reauthentication_delay_ms(lifetime_ms, random.random())
            self._reauthenticate_at = time.monotonic() + delay / 1000

    async def _exchange(self, api_key: int, version: int, fields: dict[str, Any]) -> Any:
        assert self._reader is not None and self._writer is not None
        self._correlation += 1
        self._writer.write(
            encode_request(api_key, version, self._correlation, self._client_id, **fields)
        )
        await self._writer.drain()
        (size,) = _I32.unpack(await self._reader.readexactly(4))
        if not 4 <= size <= MAX_RESPONSE_SIZE:
            raise ConnectionError(f"leader sent a response of {size} bytes")
        frame = memoryview(await self._reader.readexactly(size))
        correlation, entity = decode_response(api_key, version, frame)
        if correlation != self._correlation:
            raise ConnectionError("leader answered out of order")
        return entity

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._reauthenticate_at = None


class ReplicaFetcher:
    """Fetches every partition this broker follows from one leader (Kafka's
    ReplicaFetcherThread, as an asyncio task)."""

    def __init__(
        self,
        leader_id: int,
        address: tuple[str, int],
        config: FetcherConfig,
        replica_manager: ReplicaManager,
        throttle: ReplicationThrottle | None = None,
    ) -> None:
        self.leader_id = leader_id
        self.config = config
        self.replica_manager = replica_manager
        self.throttle = throttle
        self.partitions: dict[tuple[str, int], FetchState] = {}
        self.address = address
        self._connection = self._connect(address)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def _connect(self, address: tuple[str, int]) -> LeaderConnection:
        client_id = f"artesian-replica-fetcher-{self.config.node_id}".encode()
        return LeaderConnection(
            address[0],
            address[1],
            client_id,
            self.config.socket_timeout_ms / 1000,
            self.config.security,
        )

    def move_to(self, address: tuple[str, int]) -> None:
        """The leader registered a new address (it restarted elsewhere)."""
        if address != self.address:
            self.address = address
            self._connection.close()
            self._connection = self._connect(address)

    def add(self, p: Partition) -> None:
        self.partitions[(p.topic, p.index)] = FetchState(p)
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"replica-fetcher-{self.leader_id}")

    def remove(self, key: tuple[str, int]) -> None:
        self.partitions.pop(key, None)

    async def close(self) -> None:
        task = self._task
        while task is not None and not task.done():
            task.cancel()  # again, should an await inside have absorbed the first
            await asyncio.wait({task}, timeout=1.0)
        self._connection.close()

    async def _run(self) -> None:
        backoff = self.config.backoff_ms / 1000
        while True:
            ready = [st for st in self.partitions.values() if st.delayed_until <= time.monotonic()]
            if not ready:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._wakeup.wait()
                continue
            try:
                tiered = [st for st in ready if st.tiered_log_start is not None]
                if tiered:
                    await self._start_at_local_log_start(tiered)
                truncating = [st for st in ready if st.needs_truncation]
                if truncating:
                    await self._truncate(truncating)
                fetching = [
                    st for st in ready if not st.needs_truncation and st.tiered_log_start is None
                ]
                if fetching:
                    await self._fetch(fetching)
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as e:
                # Once per outage: the metadata log soon names a new leader if it is down.
                (log.debug if self._failing else log.warning)(
                    "fetching from leader %d at %s:%d failed (%s); retrying every %d ms",
                    self.leader_id,
                    *self.address,
                    e or type(e).__name__,
                    self.config.backoff_ms,
                )
                self._failing = True
                await asyncio.sleep(backoff)
                continue
            except Exception:
                log.exception("replica fetcher for leader %d failed; retrying", self.leader_id)
                await asyncio.sleep(backoff)
                continue
            if self._failing:
                log.info("fetching from leader %d works again", self.leader_id)
                self._failing = False

    def _delay(self, st: FetchState, code: ErrorCode) -> None:
        p = st.partition
        log.debug(
            "%s-%d: leader %d answered %s; retrying after replica.fetch.backoff.ms",
            p.topic,
            p.index,
            self.leader_id,
            code.name,
        )
        st.delayed_until = time.monotonic() + self.config.backoff_ms / 1000

    # -- truncation -------------------------------------------------------------------------

    async def _truncate(self, states: list[FetchState]) -> None:
        """Ask the leader where each partition's latest epoch ends, and cut the log there."""
        asked: dict[tuple[str, int], FetchState] = {}
        topics: dict[str, list[Any]] = {}
        for st in states:
            p = st.partition
            if p.log.latest_epoch == UNDEFINED:
                # Nothing written under any epoch: nothing can diverge.
                st.needs_truncation = False
                continue
            asked[(p.topic, p.index)] = st
            topics.setdefault(p.topic, []).append(
                OffsetForLeaderPartition(
                    partition=i32(p.index),
                    current_leader_epoch=i32(p.leader_epoch),
                    leader_epoch=i32(p.log.latest_epoch),
                )
            )
        if not asked:
            return
        response = await self._connection.request(
            OFFSET_FOR_LEADER_EPOCH,
            OFFSET_FOR_LEADER_EPOCH_VERSION,
            replica_id=self.config.node_id,
            topics=tuple(
                OffsetForLeaderTopic(topic=TopicName(name), partitions=tuple(parts))
                for name, parts in topics.items()
            ),
        )
        now_ms = int(time.time() * 1000)
        for t in response.topics:
            for r in t.partitions:
                answered = asked.get((t.topic, r.partition))
                if answered is None or self._current(answered) is None:
                    continue
                code = ErrorCode(r.error_code)
                if code is not ErrorCode.none:
                    self._delay(answered, code)
                    continue
                self._truncate_to_leader(answered, r.leader_epoch, r.end_offset, now_ms)

    def _truncate_to_leader(
        self, st: FetchState, leader_epoch: int, leader_end: int, now_ms: int
    ) -> None:
        p = st.partition
        plog = p.log
        leo = plog.log_end_offset
        if leader_end == UNDEFINED:
            # The leader knows no epoch at or below ours: keep what is committed.
            target = min(plog.high_watermark, leo)
        elif leader_epoch == plog.latest_epoch:
            target = min(leader_end, leo)
        else:
            # The leader's latest epoch at or below ours is older: compare where that epoch
            # ends in both logs.
            _, own_end = plog.leader_epoch_cache.end_offset_for(leader_epoch, leo)
            target = min(leader_end, own_end if own_end != UNDEFINED else leo)
        if target < leo:
            log.info(
                "%s-%d: truncating from %d to %d to match leader %d (epoch %d)",
                p.topic,
                p.index,
                leo,
                target,
                self.leader_id,
                p.leader_epoch,
            )
            plog.truncate_to(target, now_ms)
        st.needs_truncation = False

    async def _start_at_local_log_start(self, states: list[FetchState]) -> None:
        """Ask the leader where its local log starts (ListOffsets EARLIEST_LOCAL) and restart
        the log there: what lies below is in the object store, which serves it."""
        topics: dict[str, list[ListOffsetsPartition]] = {}
        for st in states:
            p = st.partition
            topics.setdefault(p.topic, []).append(
                ListOffsetsPartition(
                    partition_index=i32(p.index),
                    current_leader_epoch=i32(p.leader_epoch),
                    timestamp=i64(EARLIEST_LOCAL_TIMESTAMP),
                )
            )
        response = await self._connection.request(
            LIST_OFFSETS,
            LIST_OFFSETS_VERSION,
            replica_id=self.config.node_id,
            isolation_level=0,
            topics=tuple(
                ListOffsetsTopic(name=TopicName(name), partitions=tuple(parts))
                for name, parts in topics.items()
            ),
        )
        by_key = {(st.partition.topic, st.partition.index): st for st in states}
        now_ms = int(time.time() * 1000)
        for t in response.topics:
            for r in t.partitions:
                found = by_key.get((t.name, r.partition_index))
                if found is None or self._current(found) is None:
                    continue
                code = ErrorCode(r.error_code)
                if code is not ErrorCode.none or found.tiered_log_start is None:
                    self._delay(found, code)
                    continue
                p = found.partition
                log.info(
                    "%s-%d: offsets below %d are in tiered storage; the local log starts there",
                    p.topic,
                    p.index,
                    r.offset,
                )
                p.log.truncate_fully_and_start_at(r.offset, found.tiered_log_start, now_ms)
                found.tiered_log_start = None
                found.needs_truncation = False

    # -- fetch ------------------------------------------------------------------------------

    def _current(self, st: FetchState) -> Partition | None:
        """The partition still followed from this leader, or None."""
        p = st.partition
        mine = self.partitions.get((p.topic, p.index))
        return p if mine is st and not p.is_leader and p.leader == self.leader_id else None

    async def _fetch(self, states: list[FetchState]) -> None:
        by_topic: dict[str, list[Any]] = {}
        sent: dict[tuple[str, int], tuple[FetchState, int]] = {}
        throttle = self.throttle
        for st in states:
            p = st.partition
            if throttle is not None and throttle.holds_back(p.topic, p.index, p.local_id in p.isr):
                # Checked again after a backoff: the throttle may be lifted meanwhile.
                wait = min(throttle.quota.throttle_seconds(), self.config.backoff_ms / 1000)
                st.delayed_until = time.monotonic() + wait
                continue
            plog = p.log
            offset = plog.log_end_offset
            sent[(p.topic, p.index)] = (st, offset)
            by_topic.setdefault(p.topic, []).append(
                FetchPartition(
                    partition=i32(p.index),
                    current_leader_epoch=i32(p.leader_epoch),
                    fetch_offset=i64(offset),
                    last_fetched_epoch=i32(plog.latest_epoch),
                    log_start_offset=i64(plog.log_start_offset),
                    partition_max_bytes=i32(self.config.partition_max_bytes),
                )
            )
        if not by_topic:
            return  # all held back by the follower's quota: they wait out its debt
        cfg = self.config
        response = await self._connection.request(
            FETCH,
            FETCH_VERSION,
            replica_id=cfg.node_id,
            max_wait=datetime.timedelta(milliseconds=cfg.max_wait_ms),
            min_bytes=cfg.min_bytes,
            max_bytes=cfg.response_max_bytes,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,  # no session: every fetch names its partitions
            topics=tuple(
                FetchTopic(topic=TopicName(name), partitions=tuple(parts))
                for name, parts in by_topic.items()
            ),
            forgotten_topics_data=(),
            rack_id="",
        )
        if ErrorCode(response.error_code) is not ErrorCode.none:
            for st, _ in sent.values():
                self._delay(st, ErrorCode(response.error_code))
            return
        now_ms = int(time.time() * 1000)
        for t in response.responses:
            for r in t.partitions:
                entry = sent.get((t.topic, r.partition_index))
                if entry is None:
                    continue
                st, offset = entry
                current = self._current(st)
                if current is None or current.log.log_end_offset != offset:
                    continue  # moved on (new leader, truncated) while the fetch was out
                if throttle is not None and r.records:
                    in_sync = current.local_id in current.isr
                    throttle.moved(current.topic, current.index, in_sync, len(r.records))
                self._process(st, current, r, now_ms)
                if r.records:
                    # To the back: the next fetch's byte budget goes to the others first, as
                    # Kafka's fetcher rotates its partitions.
                    key = (current.topic, current.index)
                    self.partitions[key] = self.partitions.pop(key)

    def _process(self, st: FetchState, p: Partition, r: Any, now_ms: int) -> None:
        code = ErrorCode(r.error_code)
        plog = p.log
        if code is ErrorCode.offset_out_of_range:
            if plog.log_end_offset < r.log_start_offset:
                # Behind the leader's log start (retention ran there): start over from it.
                log.info(
                    "%s-%d: log end %d is below leader %d's log start %d; starting over there",
                    p.topic,
                    p.index,
                    plog.log_end_offset,
                    self.leader_id,
                    r.log_start_offset,
                )
                plog.truncate_fully_and_start_at(r.log_start_offset, r.log_start_offset, now_ms)
            elif plog.latest_epoch == UNDEFINED:
                # No epochs to compare: keep what the leader has committed.
                plog.truncate_to(min(plog.log_end_offset, r.high_watermark), now_ms)
            else:
                st.needs_truncation = True
            return
        if code is ErrorCode.offset_moved_to_tiered_storage:
            st.tiered_log_start = r.log_start_offset
            return
        if code is not ErrorCode.none:
            if code not in _RETRIABLE:
                log.warning(
                    "%s-%d: leader %d answered %s to a replica fetch",
                    p.topic,
                    p.index,
                    self.leader_id,
                    code.name,
                )
            self._delay(st, code)
            return
        records = r.records
        if records:
            try:
                nbytes = plog.append_as_follower(records, now_ms)
            except StorageError as e:
                log.error(
                    "%s-%d: cannot append what leader %d sent (%s); fetching again",
                    p.topic,
                    p.index,
                    self.leader_id,
                    e,
                )
                self._delay(st, ErrorCode.corrupt_message)
                return
            if nbytes:
                self.replica_manager.appended(p, nbytes, 0, replicated=True)
        self.replica_manager.update_follower_high_watermark(p, r.high_watermark)
        if r.log_start_offset > plog.log_start_offset:
            plog.maybe_increment_log_start_offset(r.log_start_offset, now_ms)


class ReplicaFetcherManager:
    """Which leader each followed partition is fetched from: one ReplicaFetcher per leader."""

    def __init__(
        self,
        config: FetcherConfig,
        replica_manager: ReplicaManager,
        address_of: Callable[[int], tuple[str, int] | None],
        throttle: ReplicationThrottle | None = None,
    ) -> None:
        self.config = config
        self.replica_manager = replica_manager
        self.address_of = address_of
        self.throttle = throttle
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self._leader_of: dict[tuple[str, int], int] = {}

    def follow(self, p: Partition) -> None:
        """Fetch ``p`` from its leader, checking the log against the leader's first."""
        key = (p.topic, p.index)
        self.forget(p)
        address = self.address_of(p.leader)
        if p.leader < 0 or address is None:
            return  # no leader yet: the metadata log will name one
        fetcher = self.fetchers.get(p.leader)
        if fetcher is None:
            fetcher = self.fetchers[p.leader] = ReplicaFetcher(
                p.leader, address, self.config, self.replica_manager, self.throttle
            )
        else:
            fetcher.move_to(address)
        fetcher.add(p)
        self._leader_of[key] = p.leader

    def forget(self, p: Partition) -> None:
        key = (p.topic, p.index)
        leader = self._leader_of.pop(key, None)
        fetcher = self.fetchers.get(leader) if leader is not None else None
        if fetcher is not None:
            fetcher.remove(key)
            if not fetcher.partitions:
                del self.fetchers[fetcher.leader_id]
                asyncio.get_running_loop().create_task(fetcher.close())

    def leader_moved(self, leader_id: int) -> None:
        """A broker registered a new address."""
        fetcher = self.fetchers.get(leader_id)
        address = self.address_of(leader_id)
        if fetcher is not None and address is not None:
            fetcher.move_to(address)

    async def shutdown(self) -> None:
        for fetcher in self.fetchers.values():
            await fetcher.close()
        self.fetchers.clear()
