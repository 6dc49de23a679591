"""ListOffsets (2): earliest, latest, by timestamp, max timestamp; for tiered topics earliest
local (-4), latest tiered (-5, KIP-1005) and earliest pending upload (-6, KIP-1023). A timestamp lookup on a tiered partition asks
the remote segments first, as Kafka does, so the answer may need the object store."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized_names
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._quota import exempt_a_replica

API_KEY = 2
MIN_VERSION = 1
MAX_VERSION = 11

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
EARLIEST_PENDING_UPLOAD = -6
CONSUMER_REPLICA_ID = -1


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    rm = broker.replica_manager
    rlm = broker.remote_log_manager
    mod = response_module(API_KEY, ctx.header.api_version)
    read_committed = getattr(request, "isolation_level", 0) == 1
    from_client = request.replica_id == CONSUMER_REPLICA_ID
    exempt_a_replica(ctx, request.replica_id)
    answers: list[tuple[str, list[dict[str, Any]]]] = []
    # (answer, partition, timestamp, last fetchable offset)
    remote: list[tuple[dict[str, Any], Any, int, int]] = []
    # DESCRIBE on each topic, else TOPIC_AUTHORIZATION_FAILED for its partitions.
    names = {t.name for t in request.topics}
    allowed = authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    for t in request.topics:
        parts: list[dict[str, Any]] = []
        answers.append((t.name, parts))
        for p in t.partitions:
            out: dict[str, Any] = dict(
                partition_index=p.partition_index,
                error_code=ErrorCode.none,
                timestamp=-1,
                offset=-1,
                leader_epoch=-1,
                old_style_offsets=(),
            )
            if t.name not in allowed:
                out["error_code"] = ErrorCode.topic_authorization_failed
                parts.append(out)
                continue
            partition, missing = rm.leader(t.name, p.partition_index)
            if partition is None:
                out["error_code"] = missing
            elif epoch_error := partition.leader_epoch_error(
                getattr(p, "current_leader_epoch", -1)
            ):
                out["error_code"] = epoch_error
            elif not partition.log.remote_log_ready:
                out["error_code"] = ErrorCode.kafka_storage_error  # tiered storage still listing
            else:
                plog = partition.log
                # The end a consumer can read to: the high watermark, or for read_committed
                # the last stable offset (a replica or a debugging tool: the log end).
                last_fetchable = (
                    plog.log_end_offset
                    if not from_client
                    else plog.last_stable_offset
                    if read_committed
                    else plog.high_watermark
                )
                if p.timestamp == LATEST:
                    out.update(offset=last_fetchable, leader_epoch=partition.leader_epoch)
                elif p.timestamp == LATEST_TIERED:
                    highest = (
                        plog.highest_offset_in_remote_storage if plog.remote_log_enabled else -1
                    )
                    epoch = (
                        plog.leader_epoch_cache.epoch_for_offset(highest) if highest >= 0 else -1
                    )
                    out.update(offset=highest, leader_epoch=epoch)
                elif p.timestamp == EARLIEST_PENDING_UPLOAD:
                    out.update(_earliest_pending_upload(plog))
                elif (
                    p.timestamp >= 0
                    and rlm is not None
                    and plog.remote_log_enabled
                    and plog.log_start_offset < plog.local_log_start_offset
                ):
                    remote.append((out, partition, p.timestamp, last_fetchable))
                else:
                    found = plog.fetch_offset_by_timestamp(p.timestamp)
                    _found(out, found, p.timestamp, last_fetchable)
            parts.append(out)
    if remote:
        return _with_remote_lookups(mod, answers, remote, rlm)
    return _response(mod, answers)


def _earliest_pending_upload(plog: Any) -> dict[str, int]:
    """The first offset not yet in the object store, as Kafka's UnifiedLog answers it: past
    the highest copied offset (not below the log start); the log start when nothing was
    copied and nothing left the local log; else, and for a topic that is not tiered, -1."""
    if not plog.remote_log_enabled:
        return {"offset": -1, "leader_epoch": -1}
    highest = plog.highest_offset_in_remote_storage
    if highest == -1:
        if plog.local_log_start_offset != plog.log_start_offset:
            return {"offset": -1, "leader_epoch": -1}  # copies this leader does not know yet
        offset = plog.log_start_offset
    else:
        offset = max(highest + 1, plog.log_start_offset)
    return {"offset": offset, "leader_epoch": plog.leader_epoch_cache.epoch_for_offset(offset)}


async def _with_remote_lookups(
    mod: Any, answers: list[tuple[str, list[dict[str, Any]]]], remote: list[Any], rlm: Any
) -> Any:
    for out, partition, timestamp, last_fetchable in remote:
        plog = partition.log
        st = rlm.state_for(partition.topic, partition.index, partition.topic_id, plog)
        try:
            found = await rlm.find_offset_by_timestamp(st, timestamp)
        except Exception:
            out["error_code"] = ErrorCode.unknown_server_error
            continue
        if found is None:
            found = plog.fetch_offset_by_timestamp(timestamp)
        _found(out, found, timestamp, last_fetchable)
    return _response(mod, answers)


def _found(
    out: dict[str, Any], found: tuple[int, int, int] | None, timestamp: int, last_fetchable: int
) -> None:
    """A lookup's answer, unless it lies past what a consumer may read (an open transaction's
    record for read_committed, one above the high watermark): then none, as in Kafka's
    ReplicaManager. The earliest offsets (-2, -4) are always answers."""
    if found is None:
        return
    offset, ts, leader_epoch = found
    if timestamp not in (EARLIEST, EARLIEST_LOCAL) and offset >= last_fetchable:
        return
    out.update(offset=offset, timestamp=ts, leader_epoch=leader_epoch)


def _response(mod: Any, answers: list[tuple[str, list[dict[str, Any]]]]) -> Any:
    topics = tuple(
        make(
            mod.ListOffsetsTopicResponse,
            name=name,
            partitions=tuple(make(mod.ListOffsetsPartitionResponse, **out) for out in parts),
        )
        for name, parts in answers
    )
    return make(mod.ListOffsetsResponse, throttle_time=datetime.timedelta(0), topics=topics)
