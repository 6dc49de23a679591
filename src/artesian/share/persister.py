"""The share partitions' persister (Kafka's DefaultStatePersister): reads and writes a share
partition's state at its share coordinator, this broker's own ShareCoordinator when it leads
the state partition, else the leader's through ReadShareGroupState and WriteShareGroupState.
A write counts once the state topic's ISR holds it (acks=all), as Kafka's does.

The group coordinator uses it too, for the admin APIs, on connections of their own:
summaries (ReadShareGroupStateSummary) and deletes (DeleteShareGroupState), one request per
share coordinator, and fresh starts (InitializeShareGroupState), one partition at a time."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from kio.schema.delete_share_group_state.v0 import request as ds
from kio.schema.errors import ErrorCode
from kio.schema.initialize_share_group_state.v0 import request as ins
from kio.schema.read_share_group_state.v0 import request as rs
from kio.schema.read_share_group_state_summary.v1 import request as rss
from kio.schema.write_share_group_state.v0 import request as ws
from kio.static.primitive import i8, i16, i32, i64

from artesian.broker.inter_broker import BrokerConnections
from artesian.broker.internal_topic import SHARE_STATE_TOPIC
from artesian.replication.replica_fetcher import LeaderConnection
from artesian.share.records import (
    ShareState,
    ShareStateKey,
    delivery_complete_count,
    state_batch_of,
)
from artesian.share.share_coordinator import (
    NotShareCoordinator,
    ShareCoordinator,
    StaleLeaderEpoch,
    StaleStateEpoch,
    Uninitialized,
)

if TYPE_CHECKING:
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.share")

INITIALIZE_SHARE_GROUP_STATE, READ_SHARE_GROUP_STATE, WRITE_SHARE_GROUP_STATE = 83, 84, 85
DELETE_SHARE_GROUP_STATE, READ_SHARE_GROUP_STATE_SUMMARY = 86, 87


@dataclass(slots=True, frozen=True)
class StateSummary:
    """What ReadShareGroupStateSummary tells of a share partition."""

    state_epoch: int
    leader_epoch: int
    start_offset: int
    delivery_complete_count: int


class PersisterError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# A key's summary, None when it has no state, or why it could not be read.
SummaryResult = StateSummary | PersisterError | None
R = TypeVar("R")  # what a batched admin request gives per key


class SharePersister:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._connections = BrokerConnections(broker, "share-persister")
        # The admin APIs' requests on their own connections: one request at a time goes on
        # each, and a slow summary or ListOffsets must not hold up the leaders' writes.
        self._admin_connections = BrokerConnections(broker, "share-admin")

    async def read(self, key: ShareStateKey, leader_epoch: int) -> ShareState | None:
        """The stored state, None if there is none; raises PersisterError. Retried while
        the share coordinator moves."""
        return await _retrying(lambda: self._read(key, leader_epoch))

    async def _read(self, key: ShareStateKey, leader_epoch: int) -> ShareState | None:
        coordinator = self.broker.share_coordinator
        leader = self._leader(key)
        if leader == self.broker.node_id:
            try:
                return coordinator.read(key, leader_epoch)
            except NotShareCoordinator as e:
                raise PersisterError(ErrorCode.not_coordinator, str(e)) from e
            except Exception as e:
                raise PersisterError(ErrorCode.coordinator_not_available, str(e)) from e
        response: Any = await self.connection(leader).request(
            READ_SHARE_GROUP_STATE,
            0,
            group_id=key.group_id,
            topics=(
                rs.ReadStateData(
                    topic_id=key.topic_id,
                    partitions=(
                        rs.PartitionData(
                            partition=i32(key.partition), leader_epoch=i32(leader_epoch)
                        ),
                    ),
                ),
            ),
        )
        p = _only_result(response)
        if p.start_offset < 0:  # none, or deleted at a state epoch (epochs of states are > 0)
            return ShareState(int(p.state_epoch), -1, -1, ()) if p.state_epoch > 0 else None
        return ShareState(
            int(p.state_epoch),
            -1,
            int(p.start_offset),
            tuple(state_batch_of(b) for b in p.state_batches),
        )

    async def write(self, key: ShareStateKey, state: ShareState) -> None:
        """Store ``state``; raises PersisterError. Retried while the share coordinator
        moves."""
        await _retrying(lambda: self._write(key, state))

    async def _write(self, key: ShareStateKey, state: ShareState) -> None:
        leader = self._leader(key)
        if leader == self.broker.node_id:
            code = await write_local(self.broker, key, state)
            if code is not ErrorCode.none:
                raise PersisterError(code, f"could not store the state of {key}")
            return
        response: Any = await self.connection(leader).request(
            WRITE_SHARE_GROUP_STATE,
            0,
            group_id=key.group_id,
            topics=(
                ws.WriteStateData(
                    topic_id=key.topic_id,
                    partitions=(
                        ws.PartitionData(
                            partition=i32(key.partition),
                            state_epoch=i32(state.state_epoch),
                            leader_epoch=i32(state.leader_epoch),
                            start_offset=i64(state.start_offset),
                            state_batches=tuple(
                                ws.StateBatch(
                                    first_offset=i64(b.first_offset),
                                    last_offset=i64(b.last_offset),
                                    delivery_state=i8(int(b.state)),
                                    delivery_count=i16(b.delivery_count),
                                )
                                for b in state.batches
                            ),
                        ),
                    ),
                ),
            ),
        )
        _only_result(response)

    async def initialize(self, key: ShareStateKey, state_epoch: int, start_offset: int) -> None:
        """Start the state afresh at ``start_offset``; raises PersisterError (FENCED_STATE_EPOCH
        when the stored state is newer)."""
        await _retrying(lambda: self._initialize(key, state_epoch, start_offset))

    async def _initialize(self, key: ShareStateKey, state_epoch: int, start_offset: int) -> None:
        leader = self._leader(key)
        if leader == self.broker.node_id:
            code = await initialize_local(self.broker, key, state_epoch, start_offset)
            if code is not ErrorCode.none:
                raise PersisterError(code, f"could not initialize the state of {key}")
            return
        response: Any = await self.connection(leader).request(
            INITIALIZE_SHARE_GROUP_STATE,
            0,
            group_id=key.group_id,
            topics=(
                ins.InitializeStateData(
                    topic_id=key.topic_id,
                    partitions=(
                        ins.PartitionData(
                            partition=i32(key.partition),
                            state_epoch=i32(state_epoch),
                            start_offset=i64(start_offset),
                        ),
                    ),
                ),
            ),
        )
        _only_result(response)

    async def summaries(self, keys: list[ShareStateKey]) -> dict[ShareStateKey, SummaryResult]:
        """Each key's summary (None: no state), one request per share coordinator."""
        return await self._per_coordinator(keys, self._summaries_at, lambda e: e)

    async def _summaries_at(
        self, node: int, keys: list[ShareStateKey]
    ) -> dict[ShareStateKey, SummaryResult]:
        results: dict[ShareStateKey, SummaryResult] = {}
        if node == self.broker.node_id:
            coordinator = self.broker.share_coordinator
            for key in keys:
                try:
                    state = coordinator.summary(key)
                except NotShareCoordinator as e:
                    raise PersisterError(ErrorCode.not_coordinator, str(e)) from e
                results[key] = summary_of(state)
            return results
        for group_id, topics in _grouped(keys).items():
            response: Any = await self.connection(node, admin=True).request(
                READ_SHARE_GROUP_STATE_SUMMARY,
                1,
                group_id=group_id,
                topics=tuple(
                    rss.ReadStateSummaryData(
                        topic_id=topic_id,
                        partitions=tuple(
                            rss.PartitionData(partition=i32(p), leader_epoch=i32(-1))
                            for p in partitions
                        ),
                    )
                    for topic_id, partitions in topics.items()
                ),
            )
            for topic in response.results:
                for p in topic.partitions:
                    key = ShareStateKey(group_id, topic.topic_id, int(p.partition))
                    code = ErrorCode(p.error_code)
                    if code in RETRIABLE:
                        raise PersisterError(code, p.error_message or code.name)
                    if code is not ErrorCode.none:
                        results[key] = PersisterError(code, p.error_message or code.name)
                    elif p.start_offset < 0 and p.state_epoch <= 0:
                        results[key] = None
                    else:
                        results[key] = StateSummary(
                            int(p.state_epoch),
                            int(p.leader_epoch),
                            int(p.start_offset),
                            int(p.delivery_complete_count),
                        )
        return results

    async def delete(self, keys: list[ShareStateKey]) -> dict[ShareStateKey, ErrorCode]:
        """Drop each key's state, one request per share coordinator."""
        return await self._per_coordinator(keys, self._delete_at, lambda e: e.code)

    async def _per_coordinator(
        self,
        keys: list[ShareStateKey],
        at: Callable[[int, list[ShareStateKey]], Awaitable[dict[ShareStateKey, R]]],
        failure: Callable[[PersisterError], R],
    ) -> dict[ShareStateKey, R]:
        """``at`` once per share coordinator with its keys (retried while it moves); a
        coordinator that cannot be reached, or a state partition without a leader, gives
        its keys ``failure`` of the error."""
        results: dict[ShareStateKey, R] = {}
        for node, batch in self._by_coordinator(keys, results, failure).items():
            try:
                results.update(await _retrying(functools.partial(at, node, batch)))
            except PersisterError as e:
                results.update(dict.fromkeys(batch, failure(e)))
        return results

    async def _delete_at(
        self, node: int, keys: list[ShareStateKey]
    ) -> dict[ShareStateKey, ErrorCode]:
        results: dict[ShareStateKey, ErrorCode] = {}
        if node == self.broker.node_id:
            for key in keys:
                results[key] = await delete_local(self.broker, key)
                if results[key] in RETRIABLE:
                    raise PersisterError(results[key], f"could not delete the state of {key}")
            return results
        for group_id, topics in _grouped(keys).items():
            response: Any = await self.connection(node, admin=True).request(
                DELETE_SHARE_GROUP_STATE,
                0,
                group_id=group_id,
                topics=tuple(
                    ds.DeleteStateData(
                        topic_id=topic_id,
                        partitions=tuple(ds.PartitionData(partition=i32(p)) for p in partitions),
                    )
                    for topic_id, partitions in topics.items()
                ),
            )
            for topic in response.results:
                for p in topic.partitions:
                    code = ErrorCode(p.error_code)
                    if code in RETRIABLE:
                        raise PersisterError(code, p.error_message or code.name)
                    results[ShareStateKey(group_id, topic.topic_id, int(p.partition))] = code
        return results

    def _by_coordinator(
        self,
        keys: list[ShareStateKey],
        failed: dict[ShareStateKey, R],
        failure: Callable[[PersisterError], R],
    ) -> dict[int, list[ShareStateKey]]:
        """The keys by the broker leading their state partition; those whose partition has
        no leader go to ``failed``, as ``failure`` of the error."""
        by_node: dict[int, list[ShareStateKey]] = defaultdict(list)
        for key in keys:
            try:
                by_node[self._leader(key)].append(key)
            except PersisterError as e:
                failed[key] = failure(e)
        return by_node

    def _leader(self, key: ShareStateKey) -> int:
        broker = self.broker
        broker.share_state_topic.ensure()
        partition = broker.share_coordinator.partition_for(key)
        topic = broker.image.topics.get(SHARE_STATE_TOPIC)
        found = topic.partitions.get(partition) if topic is not None else None
        if found is None or found.leader < 0:
            raise PersisterError(
                ErrorCode.coordinator_not_available,
                f"{SHARE_STATE_TOPIC}-{partition} has no leader",
            )
        return int(found.leader)

    def connection(self, node: int, admin: bool = False) -> LeaderConnection:
        conn = (self._admin_connections if admin else self._connections).get(node)
        if conn is None:
            raise PersisterError(ErrorCode.coordinator_not_available, f"broker {node} is unknown")
        return conn

    def close(self) -> None:
        self._connections.close()
        self._admin_connections.close()


def _only_result(response: Any) -> Any:
    """The one partition's result of a ReadShareGroupState or WriteShareGroupState answer;
    raises PersisterError with its error."""
    (p,) = response.results[0].partitions
    code = ErrorCode(p.error_code)
    if code is not ErrorCode.none:
        raise PersisterError(code, p.error_message or code.name)
    return p


RETRIABLE = frozenset({ErrorCode.not_coordinator, ErrorCode.coordinator_not_available})
ATTEMPTS, BACKOFF_S = 5, 0.2

T = TypeVar("T")


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """``call`` again, with a backoff, while the share coordinator is moving or its
    connection fails (Kafka's persister retries the same)."""
    for attempt in range(ATTEMPTS):
        try:
            return await call()
        except PersisterError as e:
            if e.code not in RETRIABLE or attempt == ATTEMPTS - 1:
                raise
        except (OSError, TimeoutError, EOFError) as e:
            if attempt == ATTEMPTS - 1:
                raise PersisterError(ErrorCode.coordinator_not_available, str(e)) from e
        await asyncio.sleep(BACKOFF_S * (attempt + 1))
    raise AssertionError("unreachable")


async def write_local(broker: Broker, key: ShareStateKey, state: ShareState) -> ErrorCode:
    """A write at this broker's own share coordinator, answered once replicated."""
    return await _at_local(broker, key, lambda c: c.write(key, state))


async def initialize_local(
    broker: Broker, key: ShareStateKey, state_epoch: int, start_offset: int
) -> ErrorCode:
    return await _at_local(broker, key, lambda c: c.initialize(key, state_epoch, start_offset))


async def delete_local(broker: Broker, key: ShareStateKey) -> ErrorCode:
    return await _at_local(broker, key, lambda c: c.delete(key))


async def _at_local(
    broker: Broker, key: ShareStateKey, change: Callable[[ShareCoordinator], None]
) -> ErrorCode:
    """A change at this broker's own share coordinator, answered once replicated."""
    try:
        change(broker.share_coordinator)
    except NotShareCoordinator:
        return ErrorCode.not_coordinator
    except StaleLeaderEpoch:
        return ErrorCode.fenced_leader_epoch
    except StaleStateEpoch:
        return ErrorCode.fenced_state_epoch
    except Uninitialized:
        return ErrorCode.invalid_request
    except Exception as e:
        log.warning("could not store the share state of %s: %s", key, e)
        return ErrorCode.coordinator_not_available
    wait = broker.coordinator_write_replicated(SHARE_STATE_TOPIC, key.coordinator_key())
    return await wait if wait is not None else ErrorCode.none


def summary_of(state: ShareState | None) -> StateSummary | None:
    """None for no state; a deleted state keeps its state epoch, with start offset -1."""
    if state is None:
        return None
    return StateSummary(
        state.state_epoch,
        state.leader_epoch,
        state.start_offset,
        -1 if state.deleted else delivery_complete_count(state),
    )


def _grouped(keys: list[ShareStateKey]) -> dict[str, dict[uuid.UUID, list[int]]]:
    """Keys as a request names them: by group, then topic id."""
    grouped: dict[str, dict[uuid.UUID, list[int]]] = defaultdict(lambda: defaultdict(list))
    for key in keys:
        grouped[key.group_id][key.topic_id].append(key.partition)
    return grouped
