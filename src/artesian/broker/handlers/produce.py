"""Produce (0): the append hot path.

The request is decoded by hand into memoryviews over the received frame; each partition's
one batch is checked as Kafka's ProduceRequest does (``_single_batch``), then validated by the
log (header, CRC32C and every record's structure), given offsets in place and written. Records
are walked, never copied or re-encoded. acks=0 gets no response; with one replica, acks=-1 is
satisfied as soon as the leader has appended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import struct
import time
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._leader_hint import NOT_LEADER, current_leader, node_endpoints
from artesian.broker.handlers._quota import throttled
from artesian.broker.handlers._txn import verifies
from artesian.metadata.image import INTERNAL_TOPICS
from artesian.protocol import api
from artesian.protocol.codec import DecodeError
from artesian.protocol.produce import ProduceRequestView, decode_produce_request
from artesian.protocol.records import (
    ATTR_COMPRESSION_MASK,
    ATTR_TRANSACTIONAL,
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
)
from artesian.storage.errors import StorageError
from artesian.storage.log_validator import check_compressed_batch

API_KEY = 0
# librdkafka expects Produce advertised from v0 (KAFKA-18659); v0-2 carry the old message
# formats, which Kafka 4 removed: such a request closes the connection with a log line.
MIN_VERSION = 0
MAX_VERSION = 13

log = logging.getLogger("artesian.produce")
_BATCH_LENGTH = struct.Struct(">i")
_PRODUCER = struct.Struct(">qh")  # producerId, producerEpoch at offset 43 of a batch
_ATTRIBUTES_LOW = 22  # low byte of the batch's attributes (int16 at offset 21)
_CATCH_UP_SECONDS = 5.0
# Append errors Kafka's ReplicaManager leaves out of FailedProduceRequestsPerSec: the
# partition's state or the batch's size, not a failed record.
_NOT_COUNTED_AS_FAILED = frozenset(
    {
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.not_leader_or_follower,
        ErrorCode.message_too_large,
        ErrorCode.record_list_too_large,
        ErrorCode.corrupt_message,
        ErrorCode.kafka_storage_error,
    }
)


def decode(header: api.RequestHeader, frame: memoryview) -> ProduceRequestView:
    if header.api_version < 3:
        raise DecodeError(
            f"Produce v{header.api_version} uses message format v0/v1, which Kafka 4 removed; "
            "upgrade the client"
        )
    return decode_produce_request(
        frame, header.body_offset, header.api_version, api.is_flexible(API_KEY, header.api_version)
    )


# Kafka's smallest record of any format (message format v0), below which a size is corrupt.
_RECORD_OVERHEAD_V0 = 14
_MAGIC_END = 17  # bytes up to and including a batch's magic
_ZSTD = 4


class _Corrupt(Exception):
    pass


def _next_batch_size(records: memoryview, pos: int) -> int | None:
    """The size of the batch at ``pos``, None if it is cut short: Kafka's batch iterator
    (ByteBufferLogInputStream), which stops quietly at a partial batch and refuses sizes and
    magics no format has."""
    remaining = len(records) - pos
    if remaining < LOG_OVERHEAD:
        return None
    size = _BATCH_LENGTH.unpack_from(records, pos + 8)[0]
    if size < _RECORD_OVERHEAD_V0:
        raise _Corrupt(
            f"Record size {size} is less than the minimum record overhead ({_RECORD_OVERHEAD_V0})"
        )
    if remaining < _MAGIC_END:
        return None
    magic = records[pos + 16]
    if magic > 2:  # a signed byte: 0x80 and up are negative, as bad
        raise _Corrupt(f"Invalid magic found in record: {magic if magic < 0x80 else magic - 256}")
    size += LOG_OVERHEAD
    return size if remaining >= size else None


def _single_batch(records: memoryview, version: int) -> tuple[int, ErrorCode, str | None]:
    """Kafka's ProduceRequest.validateRecords: v3+ carries exactly one v2 batch per
    partition, and zstd from v7. Returns the batch's size, or an error; bytes after the
    batch that do not make a whole one are dropped, as Kafka's log trims them."""
    try:
        size = _next_batch_size(records, 0)
        if size is None:
            return (
                0,
                ErrorCode.invalid_record,
                (f"Produce requests with version {version} must have at least one record batch"),
            )
        if records[16] != 2:
            return (
                0,
                ErrorCode.invalid_record,
                (
                    f"Produce requests with version {version} are only allowed to contain record "
                    "batches with magic version 2"
                ),
            )
        if version < 7 and records[_ATTRIBUTES_LOW] & ATTR_COMPRESSION_MASK == _ZSTD:
            return (
                0,
                ErrorCode.unsupported_compression_type,
                (
                    f"Produce requests with version {version} are not allowed to use ZStandard "
                    "compression"
                ),
            )
        if _next_batch_size(records, size) is not None:
            return (
                0,
                ErrorCode.invalid_record,
                (
                    f"Produce requests with version {version} are only allowed to contain exactly "
                    "one record batch per partition"
                ),
            )
    except _Corrupt as e:
        return 0, ErrorCode.corrupt_message, str(e)
    return size, ErrorCode.none, None


def _txn_error(
    broker: Any, transactional_id: str | None, records: memoryview, topic: str, index: int
) -> tuple[ErrorCode, str] | None:
    """A transactional batch must belong to its producer's open transaction, to which the
    partition was added (KIP-890's verification; a coordinator on the same broker makes it
    free). Otherwise a hanging transaction could hold back the last stable offset forever."""
    if transactional_id is None:
        return ErrorCode.invalid_record, "transactional records need a transactional id"
    if not verifies(broker, transactional_id):
        return None
    producer_id, producer_epoch = _PRODUCER.unpack_from(records, 43)
    code = broker.transaction_coordinator.verify_partition(
        transactional_id, producer_id, producer_epoch, (topic, index)
    )
    if code == ErrorCode.none:
        return None
    if code == ErrorCode.producer_fenced:
        code = ErrorCode.invalid_producer_epoch  # Produce has no PRODUCER_FENCED
    return ErrorCode(code), (
        f"transactional id {transactional_id!r} (producer {producer_id}, epoch "
        f"{producer_epoch}) has no open transaction with {topic}-{index} in it"
    )


def _misdirected(broker: Any, request: ProduceRequestView, denied: set[str] | None) -> bool:
    """Does the request name a partition this broker does not lead, by its image? Topics
    the principal may not write to are answered at once, as Kafka does."""
    partitions = broker.replica_manager.partitions
    for t in request.topics:
        name = t.name
        if t.topic_id is not None:
            topic = broker.image.topics_by_id.get(t.topic_id)
            if topic is None:
                return True
            name = topic.name
        if denied and name in denied:
            continue
        for p in t.partitions:
            partition = partitions.get((name, p.index))
            if partition is None or not partition.is_leader:
                return True
    return False


def handle(ctx: Any, request: ProduceRequestView) -> Any:
    result = _produce(ctx, request)
    if ctx.broker.quota_manager.active("produce"):  # producer_byte_rate
        size = sum(len(p.records or b"") for t in request.topics for p in t.partitions)
        return throttled(ctx, "produce", size, result)
    return result


def _produce(ctx: Any, request: ProduceRequestView) -> Any:
    # With an authorizer, what the principal may not do is known first (once per request).
    refusal = _refusal(ctx, request)
    if isinstance(refusal, ErrorCode):
        return _refused(ctx, request, refusal)
    if ctx.broker.store is not None and _misdirected(ctx.broker, request, refusal):
        # The client may know newer metadata than this broker: a new topic or a leadership
        # moved here. Answering NOT_LEADER / UNKNOWN_TOPIC_OR_PARTITION now would be safe for
        # this request but not for the idempotent producer's next one: its batches already
        # in flight would land as a new producer's first, at any sequence (KIP-360), and
        # librdkafka then counts this one's records as delivered. So catch up first.
        return _after_catch_up(ctx, request)
    if batches := _compressed_batches(ctx, request):
        return _after_checking(ctx, request, refusal, batches)
    return _handle(ctx, request, refusal)


def _compressed_batches(ctx: Any, request: ProduceRequestView) -> list[tuple[int, Any, bool]]:
    """The compressed batches this broker would append: (partition entry's id, its batch,
    whether its topic needs keys)."""
    rm = ctx.broker.replica_manager
    image = ctx.broker.image
    found = []
    for t in request.topics:
        for p in t.partitions:
            records = p.records
            if records is None or len(records) < BATCH_HEADER_SIZE:
                continue
            if not records[_ATTRIBUTES_LOW] & ATTR_COMPRESSION_MASK:
                continue
            name = t.name
            if t.topic_id is not None:
                topic = image.topics_by_id.get(t.topic_id)
                name = topic.name if topic is not None else ""
            partition = rm.partitions.get((name, p.index))
            size = _single_batch(records, ctx.header.api_version)[0]
            if partition is not None and size:
                found.append((id(p), records[:size], partition.log.config.compact_enabled))
    return found


async def _after_checking(
    ctx: Any,
    request: ProduceRequestView,
    denied: set[str] | None,
    batches: list[tuple[int, Any, bool]],
) -> Any:
    """Compressed batches are decompressed and their records walked on a worker thread, as
    Kafka's request handlers do it off its network threads: a few kilobytes may hold
    hundreds of megabytes of records, and every other client waits while the event loop
    walks them (the walk holds the GIL only between its switches)."""
    checked = await asyncio.to_thread(_check_batches, batches)
    result = _handle(ctx, request, denied, checked)
    return await result if asyncio.iscoroutine(result) else result


def _check_batches(batches: list[tuple[int, Any, bool]]) -> dict[int, bytes | Exception]:
    checked: dict[int, bytes | Exception] = {}
    for key, records, keys_required in batches:
        try:
            raw = check_compressed_batch(records, keys_required)
        except StorageError as e:
            checked[key] = e
        else:
            if raw is not None:
                checked[key] = raw
    return checked


async def _after_catch_up(ctx: Any, request: ProduceRequestView) -> Any:
    # Bounded: with the store down, the client gets its retriable error after this.
    await ctx.broker.catch_up_metadata_within(
        min(max(request.timeout_ms, 0) / 1000, _CATCH_UP_SECONDS), "a Produce"
    )
    # Topic ids unknown before may name topics now: authorize again.
    refusal = _refusal(ctx, request)
    if isinstance(refusal, ErrorCode):
        return _refused(ctx, request, refusal)
    if batches := _compressed_batches(ctx, request):
        return await _after_checking(ctx, request, refusal, batches)
    result = _handle(ctx, request, refusal)
    return await result if asyncio.iscoroutine(result) else result


def _has_transactional_records(request: ProduceRequestView) -> bool:
    return any(
        p.records is not None
        and len(p.records) >= BATCH_HEADER_SIZE
        and p.records[_ATTRIBUTES_LOW] & ATTR_TRANSACTIONAL
        for t in request.topics
        for p in t.partitions
    )


def _refusal(ctx: Any, request: ProduceRequestView) -> set[str] | ErrorCode | None:
    """TRANSACTIONAL_ID_AUTHORIZATION_FAILED for the whole request when it carries
    transactional records without a transactional id, or, with an authorizer, without WRITE
    on it (KafkaApis' order, authorizer or not); then, with an authorizer, the topics the
    principal may not WRITE to."""
    authorizer = ctx.broker.authorizer
    if (request.transactional_id is None or authorizer is not None) and (
        _has_transactional_records(request)
    ):
        tid = request.transactional_id
        if tid is None or not authorized(
            ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, tid
        ):
            return ErrorCode.transactional_id_authorization_failed
    if authorizer is None:
        return None
    image = ctx.broker.image
    names = set()
    for t in request.topics:
        if t.topic_id is None:
            names.add(t.name)
        elif (topic := image.topics_by_id.get(t.topic_id)) is not None:
            names.add(topic.name)
    return names - authorized_names(ctx, AclOperation.WRITE, ResourceType.TOPIC, names)


def _refused(ctx: Any, request: ProduceRequestView, code: ErrorCode) -> Any:
    """Every partition fails with ``code``, nothing is written (Kafka's error response)."""
    failed = [
        (t, [(p.index, code, -1, -1, -1, None) for p in t.partitions]) for t in request.topics
    ]
    if request.acks == 0:
        return _no_response(ctx, failed)
    return _response(ctx, failed)


def _handle(
    ctx: Any,
    request: ProduceRequestView,
    denied: set[str] | None,
    checked: dict[int, bytes | Exception] | None = None,
) -> Any:
    """``denied``: with an authorizer, the topics the principal may not write to;
    ``checked``: compressed batches' records checked off the loop, by partition entry."""
    broker = ctx.broker
    version = ctx.header.api_version
    acks = request.acks
    rm = broker.replica_manager
    image = broker.image
    now = int(time.time() * 1000)
    valid_acks = acks in (-1, 0, 1)
    topics_out = []
    flushes: list[asyncio.Future[None]] = []
    # acks=all appends the high watermark has not reached yet: (partition results, [(index
    # in them, partition, offset the high watermark must reach)]).
    waits: list[tuple[list[Any], list[tuple[int, Any, int, int]]]] = []
    replicated: list[tuple[int, Any, int, int]] = []
    for t in request.topics:
        name = t.name
        if t.topic_id is not None:
            topic = image.topics_by_id.get(t.topic_id)
            name = topic.name if topic is not None else ""
        parts_out: list[Any] = []
        for p in t.partitions:
            code = ErrorCode.none
            message = None
            base_offset = -1
            append_time = -1
            log_start = -1
            partition, missing = (
                rm.leader(name, p.index) if name else (None, ErrorCode.unknown_topic_id)
            )
            if denied and name in denied:
                code = ErrorCode.topic_authorization_failed  # before existence, as in Kafka
            elif not valid_acks:
                code = ErrorCode.invalid_required_acks
            elif partition is None:
                code = missing
            elif name in INTERNAL_TOPICS:
                code = ErrorCode.invalid_topic_exception
                message = f"Cannot append to internal topic {name}"
            elif not partition.log.remote_log_ready:
                code = ErrorCode.kafka_storage_error  # retriable: tiered storage still listing
                message = "The partition's tiered storage has not been listed yet"
            elif acks == -1 and partition.under_min_isr:
                code = ErrorCode.not_enough_replicas
                message = (
                    f"The size of the current ISR {list(partition.isr)} is insufficient to "
                    f"satisfy the min.isr requirement of "
                    f"{partition.log.config.min_insync_replicas} for partition {name}-{p.index}"
                )
                broker.metrics.failed_produce_requests.labels(name).inc()
            elif p.records is None:
                code = ErrorCode.invalid_record
                message = "Produce request carries null records"
            elif (batch := _single_batch(p.records, version))[1] != ErrorCode.none:
                _, code, message = batch
            elif (
                len(p.records) >= BATCH_HEADER_SIZE
                and p.records[_ATTRIBUTES_LOW] & ATTR_TRANSACTIONAL
            ) and (
                txn_error := _txn_error(broker, request.transactional_id, p.records, name, p.index)
            ):
                code, message = txn_error
            else:
                records = p.records if batch[0] == len(p.records) else p.records[: batch[0]]
                try:
                    raw = checked.get(id(p)) if checked else None
                    if isinstance(raw, Exception):
                        raise raw
                    info = partition.log.append_as_leader(
                        records, partition.leader_epoch, now, checked=raw
                    )
                except Exception as e:  # storage errors carry their Kafka error code
                    error_code = getattr(e, "error_code", None)
                    if error_code is None:
                        log.exception("append to %s-%d failed", name, p.index)
                        code = ErrorCode.kafka_storage_error
                    else:
                        code = ErrorCode(error_code)
                    message = str(e) or None
                    if code not in _NOT_COUNTED_AS_FAILED:
                        broker.metrics.failed_produce_requests.labels(name).inc()
                else:
                    base_offset = info.first_offset
                    append_time = info.log_append_time
                    log_start = partition.log.log_start_offset
                    if not info.duplicate:  # a retried idempotent batch: NONE, original offsets
                        flush = rm.appended(
                            partition, len(records), info.last_offset - info.first_offset + 1
                        )
                        if flush is not None:
                            flushes.append(flush)
                    if acks == -1 and partition.high_watermark <= info.last_offset:
                        replicated.append(
                            (
                                len(parts_out),
                                partition,
                                info.last_offset + 1,
                                partition.leader_epoch,
                            )
                        )
            parts_out.append((p.index, code, base_offset, append_time, log_start, message))
        if replicated:
            waits.append((parts_out, replicated))
            replicated = []
        topics_out.append((t, parts_out))
    if acks == 0:
        return _no_response(ctx, topics_out)
    if flushes or waits:
        return _after_flush_and_replication(ctx, flushes, waits, request.timeout_ms, topics_out)
    return _response(ctx, topics_out)


def _no_response(ctx: Any, topics_out: list[Any]) -> None:
    """acks=0: no answer. The only way such a producer learns of an error (a moved or
    deleted partition, a refused authorization) is a closed connection: it then refreshes
    its metadata. Kafka does so."""
    failed = [(t.name, p[0], p[1]) for t, parts in topics_out for p in parts if p[1]]
    if failed:
        name, index, code = failed[0]
        log.info(
            "closing connection from %s: acks=0 produce to %s-%d failed with %s",
            ctx.connection.peer,
            name,
            index,
            ErrorCode(code).name,
        )
        ctx.connection.close()


async def _after_flush_and_replication(
    ctx: Any,
    flushes: list[asyncio.Future[None]],
    waits: list[tuple[list[Any], list[tuple[int, Any, int, int]]]],
    timeout_ms: int,
    topics_out: list[Any],
) -> Any:
    """flush.messages / flush.ms: acknowledge only what is on disk. acks=all: only what the
    ISR holds (Kafka's DelayedProduce), within the request's timeout."""
    if flushes:
        try:
            await asyncio.gather(*flushes)
        except OSError as e:
            log.error("fsync failed (%s): answering KAFKA_STORAGE_ERROR; check the disk", e)
            topics_out = [
                (t, [(p[0], ErrorCode.kafka_storage_error, -1, -1, -1, str(e)) for p in parts])
                for t, parts in topics_out
            ]
            return _response(ctx, topics_out)
    if waits:
        rm = ctx.broker.replica_manager
        timeout_s = max(timeout_ms, 0) / 1000
        pending = [
            (parts, i, p, rm.wait_for_high_watermark(p, end, timeout_s, epoch))
            for parts, entries in waits
            for i, p, end, epoch in entries
        ]
        codes = await asyncio.gather(*(w for *_, w in pending))
        for (parts, i, p, _w), code in zip(pending, codes, strict=True):
            message = None
            if code is ErrorCode.none and p.under_min_isr:
                # Replicated to the ISR, but the ISR shrank below min.insync.replicas meanwhile.
                code = ErrorCode.not_enough_replicas_after_append
                message = f"The ISR {list(p.isr)} shrank below min.insync.replicas"
            elif code is ErrorCode.request_timed_out:
                message = "The ISR did not replicate the records within the request timeout"
            if code is not ErrorCode.none:
                parts[i] = (parts[i][0], code, -1, -1, -1, message)
    return _response(ctx, topics_out)


def _response(ctx: Any, topics_out: list[Any]) -> Any:
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    responses = tuple(
        make(
            mod.TopicProduceResponse,
            name=t.name,
            topic_id=t.topic_id,
            partition_responses=tuple(
                make(
                    mod.PartitionProduceResponse,
                    index=index,
                    error_code=code,
                    base_offset=base,
                    log_append_time=append_time,
                    log_start_offset=log_start,
                    record_errors=(),
                    error_message=message,
                )
                for index, code, base, append_time, log_start, message in parts
            ),
        )
        for t, parts in topics_out
    )
    response = make(mod.ProduceResponse, responses=responses, throttle_time=datetime.timedelta(0))
    if version >= 10 and any(p[1] in NOT_LEADER for _, parts in topics_out for p in parts):
        response = _with_leader_hints(ctx, mod, response, topics_out)
    return response


def _with_leader_hints(ctx: Any, mod: Any, response: Any, topics_out: list[Any]) -> Any:
    """KIP-951: partitions that moved name their leader, and the response its endpoint."""
    listener = ctx.connection.listener.name
    leaders: set[int] = set()
    topics = []
    for (t, _), topic in zip(topics_out, response.responses, strict=True):
        name = _topic_name(ctx, t)
        partitions = []
        for p in topic.partition_responses:
            leader = None
            if p.error_code in NOT_LEADER and name:
                leader = current_leader(ctx.broker, listener, name, p.index)
            if leader is not None:
                leaders.add(leader[0])
                current = mod.LeaderIdAndEpoch(leader_id=leader[0], leader_epoch=leader[1])
                p = dataclasses.replace(p, current_leader=current)
            partitions.append(p)
        topics.append(dataclasses.replace(topic, partition_responses=tuple(partitions)))
    endpoints = tuple(
        mod.NodeEndpoint(node_id=n, host=host, port=port, rack=rack)
        for n, host, port, rack in node_endpoints(ctx.broker, listener, leaders)
    )
    return dataclasses.replace(response, responses=tuple(topics), node_endpoints=endpoints)


def _topic_name(ctx: Any, t: Any) -> str:
    """A request topic's name (v13 names topics by id)."""
    if t.topic_id is None:
        return str(t.name)
    topic = ctx.broker.image.topics_by_id.get(t.topic_id)
    return topic.name if topic is not None else ""
