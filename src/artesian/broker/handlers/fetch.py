"""Fetch (1): the consume hot path, with long-poll through the purgatory.

Stored batches are sent as they are: the response carries file regions that the connection
hands to sendfile, so record bytes never enter Python. A fetch that finds fewer than
``min_bytes`` parks in the purgatory and is woken by the appends it waits for.

Fetch sessions (KIP-227) are declined, as the protocol allows: every response carries
session id 0, so clients send full fetch requests.
"""

from __future__ import annotations

import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.response import RawResponse
from artesian.protocol.fetch import FetchPartitionResult, FetchTopicResult, encode_fetch_response

API_KEY = 1
MIN_VERSION = 4
MAX_VERSION = 18

_READ_COMMITTED = 1


def _read(
    ctx: Any, request: Any
) -> tuple[list[FetchTopicResult], int, bool, list[tuple[str, int]]]:
    """Read every requested partition once. Returns (topics, bytes, any error, keys)."""
    broker = ctx.broker
    rm = broker.replica_manager
    image = broker.image
    version = ctx.header.api_version
    # The broker's fetch.max.bytes caps what a client may ask for, as in Kafka.
    budget = min(request.max_bytes, broker.config.get_int("fetch.max.bytes"))
    total = 0
    errors = False
    keys: list[tuple[str, int]] = []
    topics: list[FetchTopicResult] = []
    for t in request.topics:
        by_id = version >= 13
        topic_id: uuid.UUID | None = t.topic_id if by_id else None
        if by_id:
            # The codec reads the all-zero id as None: no topic has it.
            timg = image.topics_by_id.get(topic_id) if topic_id is not None else None
            name = timg.name if timg is not None else ""
        else:
            name = t.topic
        parts: list[FetchPartitionResult] = []
        for fp in t.partitions:
            result = FetchPartitionResult(fp.partition)
            parts.append(result)
            partition = rm.get(name, fp.partition) if name else None
            if partition is None:
                # UNKNOWN_TOPIC_ID only when the id names no topic (KafkaApis does the same).
                result.error_code = (
                    ErrorCode.unknown_topic_id
                    if by_id and not name
                    else ErrorCode.unknown_topic_or_partition
                )
                errors = True
                continue
            plog = partition.log
            hw = plog.high_watermark
            result.high_watermark = hw
            result.last_stable_offset = hw
            result.log_start_offset = plog.log_start_offset
            epoch_error = partition.leader_epoch_error(getattr(fp, "current_leader_epoch", -1))
            if epoch_error is not None:
                result.error_code = epoch_error
                errors = True
                continue
            keys.append((name, fp.partition))
            if fp.fetch_offset == hw and fp.fetch_offset == plog.log_end_offset:
                continue  # caught up: nothing to read, the common long-poll case
            max_bytes = min(fp.partition_max_bytes, budget - total)
            try:
                info = plog.read(fp.fetch_offset, max(max_bytes, 0), hw, total == 0)
            except Exception as e:
                code = getattr(e, "error_code", None)
                if code is None:
                    raise
                result.error_code = ErrorCode(code)
                errors = True
                continue
            records = info.records
            if records is not None and records.size > 0:
                result.records = [records]
                result.records_size = records.size
                total += records.size
        topics.append(FetchTopicResult(name, topic_id, parts))
    return topics, total, errors, keys


def _respond(ctx: Any, topics: list[FetchTopicResult], total: int) -> RawResponse:
    if total:
        metrics = ctx.broker.metrics
        for t in topics:
            size = sum(p.records_size for p in t.partitions)
            if size:
                metrics.bytes_out.labels(t.name).inc(size)
    parts, size = encode_fetch_response(ctx.header.api_version, topics)
    return RawResponse(parts, size)


def handle(ctx: Any, request: Any) -> Any:
    topics, total, errors, keys = _read(ctx, request)
    max_wait_ms = int(request.max_wait.total_seconds() * 1000)
    if total >= request.min_bytes or errors or max_wait_ms <= 0 or not keys:
        return _respond(ctx, topics, total)
    return _wait_and_read(ctx, request, keys, total, max_wait_ms)


async def _wait_and_read(
    ctx: Any, request: Any, keys: list[tuple[str, int]], accumulated: int, max_wait_ms: int
) -> RawResponse:
    purgatory = ctx.broker.replica_manager.purgatory
    op = purgatory.park(keys, request.min_bytes, accumulated, max_wait_ms)
    await op.future
    topics, total, _errors, _keys = _read(ctx, request)
    return _respond(ctx, topics, total)
