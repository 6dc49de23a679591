"""ShareFetch (78) and ShareAcknowledge (79): share group members take records from the
partitions led here and acknowledge them (KIP-932), within a share session.

A ShareFetch carries the acknowledgements of what the member processed, then acquires new
records from every partition of its session, waiting up to its max wait when there are
none. The answer names, per partition, the log batches and the offsets acquired in them
(AcquiredRecords); the client hands out only those.
"""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._leader_hint import current_leader, node_endpoints
from artesian.share.persister import PersisterError
from artesian.share.share_partition import AckBatch
from artesian.share.share_session import FINAL_EPOCH, INITIAL_EPOCH, ShareSession

SHARE_FETCH, SHARE_ACKNOWLEDGE = 78, 79


@dataclass(slots=True)
class _PartitionResult:
    error: int = ErrorCode.none
    message: str | None = None
    ack_error: int = ErrorCode.none
    ack_message: str | None = None
    records: bytes = b""
    acquired: list[Any] = field(default_factory=list)
    leader: tuple[int, int] | None = None


PartitionKey = tuple[uuid.UUID, int]


def _ack_batches(p: Any) -> list[AckBatch]:
    return [
        AckBatch(
            int(b.first_offset), int(b.last_offset), tuple(int(t) for t in b.acknowledge_types)
        )
        for b in p.acknowledgement_batches
    ]


def _top_level(ctx: Any, request: Any) -> tuple[ErrorCode, str | None] | None:
    if not request.group_id:
        return ErrorCode.invalid_request, "GroupId can't be empty."
    if not request.member_id:
        return ErrorCode.invalid_request, "MemberId can't be empty."
    if not authorized(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return ErrorCode.group_authorization_failed, None
    return None


async def share_fetch(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    manager = broker.share_partition_manager
    mod = response_module(SHARE_FETCH, ctx.header.api_version)
    refused = _top_level(ctx, request)
    if refused is not None:
        return _fetch_response(ctx, mod, request, {}, *refused)
    group_id, member_id, epoch = request.group_id, request.member_id, request.share_session_epoch
    acks: dict[PartitionKey, list[AckBatch]] = {}
    wanted: list[PartitionKey] = []
    for t in request.topics:
        for p in t.partitions:
            key = (t.topic_id, int(p.partition_index))
            wanted.append(key)
            if p.acknowledgement_batches:
                acks.setdefault(key, []).extend(_ack_batches(p))
    sessions = manager.sessions
    session: ShareSession
    if epoch == INITIAL_EPOCH:
        if acks:
            return _fetch_response(
                ctx, mod, request, {}, ErrorCode.invalid_request,
                "Acknowledge data cannot be sent when opening a share session.",
            )  # fmt: skip
        opened = sessions.open(group_id, member_id, ctx.connection)
        if isinstance(opened, ErrorCode):
            return _fetch_response(ctx, mod, request, {}, opened, None)
        session = opened
    else:
        found = sessions.check(group_id, member_id, epoch)
        if isinstance(found, ErrorCode):
            return _fetch_response(ctx, mod, request, {}, found, None)
        session = found
        # Before any wait: a second request with the same epoch is refused.
        if epoch == FINAL_EPOCH:
            sessions.remove(session)
        else:
            session.advance()
    results: dict[PartitionKey, _PartitionResult] = {}
    await _acknowledge(ctx, group_id, member_id, acks, results)
    if epoch == FINAL_EPOCH:
        manager.session_closed(session)
        return _fetch_response(ctx, mod, request, results, ErrorCode.none, None)
    known = broker.image.topics_by_id
    for key in wanted:
        if key[0] in known:  # an unknown topic id is answered, not kept in the session
            session.partitions[key] = None
    for t in request.forgotten_topics_data:
        for index in t.partitions:
            session.partitions.pop((t.topic_id, int(index)), None)
    new = set(wanted)
    settings = manager.fetch_settings(group_id)  # once per request, not per partition
    await _acquire(ctx, request, session, results, new, settings)
    return _fetch_response(ctx, mod, request, results, ErrorCode.none, None, settings[0])


async def _acknowledge(
    ctx: Any,
    group_id: str,
    member_id: str,
    acks: dict[PartitionKey, list[AckBatch]],
    results: dict[PartitionKey, _PartitionResult],
) -> None:
    broker = ctx.broker
    manager = broker.share_partition_manager
    names = _readable(ctx, acks)
    for key, batches in acks.items():
        result = results.setdefault(key, _PartitionResult())
        topic = names.get(key[0])
        if topic is None:
            result.ack_error = (
                ErrorCode.topic_authorization_failed
                if key[0] in broker.image.topics_by_id
                else ErrorCode.unknown_topic_id
            )
            continue
        p, code = (
            broker.replica_manager.leader(topic, key[1])
            if broker.replica_manager is not None
            else (None, ErrorCode.unknown_topic_or_partition)
        )
        if p is None:
            result.ack_error = code
            if code is ErrorCode.not_leader_or_follower:
                result.leader = current_leader(broker, ctx.connection.listener.name, topic, key[1])
            continue
        entry = manager.existing(group_id, topic, key[1], key[0])
        if entry is None:
            result.ack_error = ErrorCode.invalid_record_state
            result.ack_message = "No records of this partition are acquired by this member."
            continue
        result.ack_error, result.ack_message = await manager.acknowledge(entry, member_id, batches)


def _readable(ctx: Any, keys: Any) -> dict[uuid.UUID, str]:
    """Topic id -> name of the topics named that exist and the client may READ."""
    by_id = ctx.broker.image.topics_by_id
    names = {t: by_id[t].name for t, _ in keys if t in by_id}
    allowed = authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, set(names.values()))
    return {t: n for t, n in names.items() if n in allowed}


async def _acquire(
    ctx: Any,
    request: Any,
    session: ShareSession,
    results: dict[PartitionKey, _PartitionResult],
    new: set[PartitionKey],
    settings: tuple[int, bool],
) -> None:
    """``settings``: the group's lock duration (ms) and whether it reads committed only."""
    broker = ctx.broker
    manager = broker.share_partition_manager
    rm = broker.replica_manager
    names = _readable(ctx, session.partitions)
    max_records = max(int(request.max_records), 0)
    max_bytes = max(int(request.max_bytes), 0)
    wait_ms = int(request.max_wait.total_seconds() * 1000)
    lock_ms, read_committed = settings
    deadline = time.monotonic() + max(wait_ms, 0) / 1000
    # Rotate the partitions with the epoch, so each gets its turn at the front.
    keys = list(session.partitions)
    if keys:
        shift = session.epoch % len(keys)
        keys = keys[shift:] + keys[:shift]
    while True:
        got = 0
        led = []
        for key in keys:
            topic = names.get(key[0])
            if topic is None:
                if key in new:
                    r = results.setdefault(key, _PartitionResult())
                    r.error = (
                        ErrorCode.topic_authorization_failed
                        if key[0] in broker.image.topics_by_id
                        else ErrorCode.unknown_topic_id
                    )
                continue
            p, code = (
                rm.leader(topic, key[1])
                if rm is not None
                else (None, ErrorCode.unknown_topic_or_partition)
            )
            if p is None:
                r = results.setdefault(key, _PartitionResult())
                r.error = code
                if code is ErrorCode.not_leader_or_follower:
                    r.leader = current_leader(broker, ctx.connection.listener.name, topic, key[1])
                continue
            led.append((topic, key[1]))
            if max_records <= got or max_bytes <= 0:
                continue
            try:
                entry = await manager.entry(session.group_id, p, key[0])
            except PersisterError as e:
                r = results.setdefault(key, _PartitionResult())
                r.error, r.message = e.code, str(e)
                continue
            except Exception as e:  # the share coordinator could not be reached
                r = results.setdefault(key, _PartitionResult())
                r.error, r.message = ErrorCode.coordinator_not_available, str(e)
                continue
            acquired = manager.acquire(
                entry, p, session.member_id, max_records - got, max_bytes, lock_ms, read_committed
            )
            if acquired is None:
                continue
            result = results.setdefault(key, _PartitionResult())
            result.records = acquired.records
            result.acquired = acquired.ranges
            got += sum(r.last_offset - r.first_offset + 1 for r in acquired.ranges)
            max_bytes -= len(acquired.records)
        remaining = deadline - time.monotonic()
        erred = any(r.error for r in results.values())  # answered now, as a Fetch would be
        if got or erred or remaining <= 0 or not led or max_records <= 0 or rm is None:
            break
        # Nothing to hand out: wait for an append, a release or an expired lock.
        op = rm.purgatory.park(led, 1, 0, int(remaining * 1000))
        parked = ctx.connection
        parked.parked_fetch = op
        try:
            await op.future
        finally:
            if parked.parked_fetch is op:
                parked.parked_fetch = None
        if op.expired:
            break
    for key in new:
        r = results.setdefault(key, _PartitionResult())
        if key[0] not in broker.image.topics_by_id:
            r.error = ErrorCode.unknown_topic_id


def _fetch_response(
    ctx: Any,
    mod: Any,
    request: Any,
    results: dict[PartitionKey, _PartitionResult],
    error: ErrorCode,
    message: str | None,
    lock_ms: int | None = None,
) -> Any:
    """``lock_ms``: the group's lock duration, when the caller has looked it up already."""
    broker = ctx.broker
    group_id = request.group_id or ""
    if lock_ms is None:
        lock_ms = broker.share_partition_manager.fetch_settings(group_id)[0] if group_id else 0
    by_topic: dict[uuid.UUID, list[Any]] = {}
    for (topic_id, index), r in sorted(results.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        by_topic.setdefault(topic_id, []).append(
            make(
                mod.PartitionData,
                partition_index=index,
                error_code=r.error,
                error_message=r.message,
                acknowledge_error_code=r.ack_error,
                acknowledge_error_message=r.ack_message,
                current_leader=_leader(mod, r),
                records=r.records,
                acquired_records=tuple(
                    make(
                        mod.AcquiredRecords,
                        first_offset=a.first_offset,
                        last_offset=a.last_offset,
                        delivery_count=a.delivery_count,
                    )
                    for a in r.acquired
                ),
            )
        )
    return make(
        mod.ShareFetchResponse,
        throttle_time=datetime.timedelta(0),
        error_code=error,
        error_message=message,
        acquisition_lock_timeout=datetime.timedelta(milliseconds=lock_ms),
        responses=tuple(
            make(mod.ShareFetchableTopicResponse, topic_id=t, partitions=tuple(ps))
            for t, ps in by_topic.items()
        ),
        node_endpoints=_endpoints(ctx, mod, results),
    )


def _leader(mod: Any, r: _PartitionResult) -> Any:
    """A partition's CurrentLeader: the leader it moved to, else -1/-1 (KIP-951)."""
    leader_id, epoch = r.leader if r.leader is not None else (-1, -1)
    return make(mod.LeaderIdAndEpoch, leader_id=leader_id, leader_epoch=epoch)


def _endpoints(ctx: Any, mod: Any, results: dict[PartitionKey, _PartitionResult]) -> Any:
    """The NodeEndpoints of the leaders the partitions moved to."""
    leaders = {r.leader[0] for r in results.values() if r.leader is not None}
    return tuple(
        make(mod.NodeEndpoint, node_id=n, host=h, port=port, rack=rack)
        for n, h, port, rack in node_endpoints(ctx.broker, ctx.connection.listener.name, leaders)
    )


# --- ShareAcknowledge --------------------------------------------------------------------


async def share_acknowledge(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    manager = broker.share_partition_manager
    mod = response_module(SHARE_ACKNOWLEDGE, ctx.header.api_version)
    refused = _top_level(ctx, request)
    if refused is not None:
        return _ack_response(ctx, mod, {}, *refused)
    group_id, member_id, epoch = request.group_id, request.member_id, request.share_session_epoch
    if epoch == INITIAL_EPOCH:
        return _ack_response(ctx, mod, {}, ErrorCode.invalid_share_session_epoch, None)
    found = manager.sessions.check(group_id, member_id, epoch)
    if isinstance(found, ErrorCode):
        return _ack_response(ctx, mod, {}, found, None)
    session = found
    # Before any wait: a second request with the same epoch is refused.
    if epoch == FINAL_EPOCH:
        manager.sessions.remove(session)
    else:
        session.advance()
    acks: dict[PartitionKey, list[AckBatch]] = {}
    for t in request.topics:
        for p in t.partitions:
            acks.setdefault((t.topic_id, int(p.partition_index)), []).extend(_ack_batches(p))
    results: dict[PartitionKey, _PartitionResult] = {}
    await _acknowledge(ctx, group_id, member_id, acks, results)
    if epoch == FINAL_EPOCH:
        manager.session_closed(session)
    return _ack_response(ctx, mod, results, ErrorCode.none, None)


def _ack_response(
    ctx: Any,
    mod: Any,
    results: dict[PartitionKey, _PartitionResult],
    error: ErrorCode,
    message: str | None,
) -> Any:
    by_topic: dict[uuid.UUID, list[Any]] = {}
    for (topic_id, index), r in results.items():
        by_topic.setdefault(topic_id, []).append(
            make(
                mod.PartitionData,
                partition_index=index,
                error_code=r.ack_error,
                error_message=r.ack_message,
                current_leader=_leader(mod, r),
            )
        )
    return make(
        mod.ShareAcknowledgeResponse,
        throttle_time=datetime.timedelta(0),
        error_code=error,
        error_message=message,
        responses=tuple(
            make(mod.ShareAcknowledgeTopicResponse, topic_id=t, partitions=tuple(ps))
            for t, ps in by_topic.items()
        ),
        node_endpoints=_endpoints(ctx, mod, results),
    )


APIS = [(SHARE_FETCH, 1, 1, share_fetch), (SHARE_ACKNOWLEDGE, 1, 1, share_acknowledge)]
