"""The share partitions' persister (Kafka's DefaultStatePersister): reads and writes a share
partition's state at its share coordinator, this broker's own ShareCoordinator when it leads
the state partition, else the leader's through ReadShareGroupState and WriteShareGroupState.
A write counts once the state topic's ISR holds it (acks=all), as Kafka's does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kio.schema.errors import ErrorCode
from kio.schema.read_share_group_state.v0 import request as rs
from kio.schema.write_share_group_state.v0 import request as ws
from kio.static.primitive import i8, i16, i32, i64

from artesian.broker.inter_broker import BrokerConnections
from artesian.broker.internal_topic import SHARE_STATE_TOPIC
from artesian.replication.replica_fetcher import LeaderConnection
from artesian.share.records import ShareState, ShareStateKey, state_batch_of
from artesian.share.share_coordinator import NotShareCoordinator, StaleLeaderEpoch

if TYPE_CHECKING:
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.share")

READ_SHARE_GROUP_STATE, WRITE_SHARE_GROUP_STATE = 84, 85


class PersisterError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class SharePersister:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._connections = BrokerConnections(broker, "share-persister")

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
        response: Any = await self._connection(leader).request(
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
        if p.start_offset < 0:
            return None
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
        response: Any = await self._connection(leader).request(
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

    def _connection(self, node: int) -> LeaderConnection:
        conn = self._connections.get(node)
        if conn is None:
            raise PersisterError(ErrorCode.coordinator_not_available, f"broker {node} is unknown")
        return conn

    def close(self) -> None:
        self._connections.close()


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
    try:
        broker.share_coordinator.write(key, state)
    except NotShareCoordinator:
        return ErrorCode.not_coordinator
    except StaleLeaderEpoch:
        return ErrorCode.fenced_leader_epoch
    except Exception as e:
        log.warning("could not store the share state of %s: %s", key, e)
        return ErrorCode.coordinator_not_available
    wait = broker.coordinator_write_replicated(SHARE_STATE_TOPIC, key.coordinator_key())
    return await wait if wait is not None else ErrorCode.none
