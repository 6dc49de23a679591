"""WriteTxnMarkers (27): a transaction coordinator on another broker ends a transaction in
partitions led here. Each marker is appended as the coordinator's write and answered once the
ISR holds it (Kafka appends markers with acks=all)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.broker.transaction_markers import write_local_marker

API_KEY = 27
MIN_VERSION = 0
MAX_VERSION = 1

log = logging.getLogger("artesian.write_txn_markers")
# How long the ISR may take to copy the markers: below the sending coordinator's
# replica.socket.timeout.ms (30 s by default), so it gets this answer, not a dropped connection.
REPLICATION_TIMEOUT_S = 20.0


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    rm = broker.replica_manager
    results: list[tuple[Any, dict[str, list[tuple[int, ErrorCode]]]]] = []
    waits: list[tuple[list[tuple[int, ErrorCode]], int, Any, int, int]] = []
    ctx.quota_exempt = cluster_authorized(ctx, AclOperation.CLUSTER_ACTION)
    if not ctx.quota_exempt:
        # Brokers only: every partition of every marker, as Kafka's error response.
        for marker in request.markers:
            results.append(
                (
                    marker,
                    {
                        t.name: [
                            (i, ErrorCode.cluster_authorization_failed) for i in t.partition_indexes
                        ]
                        for t in marker.topics
                    },
                )
            )
        return _response(ctx, results)
    for marker in request.markers:
        topics: dict[str, list[tuple[int, ErrorCode]]] = {}
        for t in marker.topics:
            out = topics.setdefault(t.name, [])
            for index in t.partition_indexes:
                p, code = rm.leader(t.name, index)
                if rm.get(t.name, index) is None:
                    # Kafka: no local log, no magic to write with (not NOT_LEADER here).
                    code = ErrorCode.unknown_topic_or_partition
                if p is not None:
                    try:
                        end = write_local_marker(
                            broker,
                            p,
                            marker.producer_id,
                            marker.producer_epoch,
                            bool(marker.transaction_result),
                            marker.coordinator_epoch,
                        )
                    except Exception as e:  # storage errors carry their Kafka error code
                        code = ErrorCode(getattr(e, "error_code", ErrorCode.unknown_server_error))
                        # Below min ISR the coordinator retries twice a second: not a line each.
                        quiet = code is ErrorCode.not_enough_replicas
                        log.log(
                            logging.DEBUG if quiet else logging.INFO,
                            "marker for %s-%d refused: %s",
                            t.name,
                            index,
                            e,
                        )
                    else:
                        if p.high_watermark < end:
                            waits.append((out, len(out), p, end, p.leader_epoch))
                out.append((index, code))
        results.append((marker, topics))
    if waits:
        return _after_replication(ctx, rm, results, waits)
    return _response(ctx, results)


async def _after_replication(
    ctx: Any, rm: Any, results: list[Any], waits: list[tuple[Any, int, Any, int, int]]
) -> Any:
    codes = await asyncio.gather(
        *(
            rm.wait_for_high_watermark(p, end, REPLICATION_TIMEOUT_S, epoch)
            for _, _, p, end, epoch in waits
        )
    )
    for (out, i, p, _end, _epoch), code in zip(waits, codes, strict=True):
        if code is ErrorCode.none and p.under_min_isr:
            code = ErrorCode.not_enough_replicas_after_append  # as an acks=all produce
        out[i] = (out[i][0], code)
    return _response(ctx, results)


def _response(ctx: Any, results: list[Any]) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    return make(
        mod.WriteTxnMarkersResponse,
        markers=tuple(
            make(
                mod.WritableTxnMarkerResult,
                producer_id=marker.producer_id,
                topics=tuple(
                    make(
                        mod.WritableTxnMarkerTopicResult,
                        name=name,
                        partitions=tuple(
                            make(
                                mod.WritableTxnMarkerPartitionResult,
                                partition_index=index,
                                error_code=code,
                            )
                            for index, code in parts
                        ),
                    )
                    for name, parts in topics.items()
                ),
            )
            for marker, topics in results
        ),
    )
