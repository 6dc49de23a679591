"""DeleteRecords (21): move a partition's log start offset forward.

The leader moves its own log start at once; the answer then waits, as Kafka's
DelayedDeleteRecords does, until the partition's low watermark (the smallest log start offset
among the leader and the followers on live brokers) reaches the offset, or the request's
timeout passes: REQUEST_TIMED_OUT. Followers learn the new start from their fetches and report
theirs in the next one. Once the answer is NONE, no failover to a live follower can bring the
deleted records back.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized_names
from artesian.broker.handlers._build import make, response_module
from artesian.metadata.image import INTERNAL_TOPICS

API_KEY = 21
MIN_VERSION = 0
MAX_VERSION = 2


@dataclass(slots=True)
class _Status:
    """One partition's answer, as Kafka's DeleteRecordsPartitionStatus."""

    index: int
    error: ErrorCode = ErrorCode.none
    low_watermark: int = -1


@dataclass(slots=True)
class _Pending:
    """A partition whose followers have yet to reach ``required_offset``."""

    status: _Status
    partition: Any  # broker.replica_manager.Partition
    required_offset: int
    leader_epoch: int


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    rm = broker.replica_manager
    mod = response_module(API_KEY, ctx.header.api_version)
    topics: list[tuple[str, list[_Status]]] = []
    pending: list[_Pending] = []
    # DELETE on each topic, else TOPIC_AUTHORIZATION_FAILED (before existence, as in Kafka).
    allowed = authorized_names(
        ctx, AclOperation.DELETE, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    for t in request.topics:
        statuses: list[_Status] = []
        topics.append((t.name, statuses))
        for p in t.partitions:
            st = _Status(p.partition_index)
            statuses.append(st)
            if t.name not in allowed:
                st.error = ErrorCode.topic_authorization_failed
                continue
            partition, missing = rm.leader(t.name, p.partition_index)
            if partition is None:
                st.error = missing
                continue
            if t.name in INTERNAL_TOPICS:
                # Kafka: internal topics are off limits.
                st.error = ErrorCode.invalid_topic_exception
                continue
            if not partition.log.config.delete_enabled:
                # Compact-only: records go by key, not offset.
                st.error = ErrorCode.policy_violation
                continue
            # -1 deletes up to the high watermark: that is the offset to wait for.
            required = partition.high_watermark if p.offset == -1 else p.offset
            try:
                partition.log.delete_records_before(p.offset, int(time.time() * 1000))
            except Exception as e:
                error_code = getattr(e, "error_code", None)
                if error_code is None:
                    raise
                st.error = ErrorCode(error_code)
            else:
                # Kafka's initial status: the low watermark right after the local delete,
                # which a timed-out request answers with.
                st.low_watermark = partition.low_watermark(broker.live_brokers)
                if st.low_watermark < required:
                    pending.append(_Pending(st, partition, required, partition.leader_epoch))
            # Fetches below the new start must now fail: wake the parked ones. (Followers
            # learn the new start from their next fetch answered with data or after its wait.)
            rm.purgatory.wake((t.name, p.partition_index))

    def build() -> Any:
        return make(
            mod.DeleteRecordsResponse,
            throttle_time=datetime.timedelta(0),
            topics=tuple(
                make(
                    mod.DeleteRecordsTopicResult,
                    name=name,
                    partitions=tuple(
                        make(
                            mod.DeleteRecordsPartitionResult,
                            partition_index=st.index,
                            low_watermark=st.low_watermark,
                            error_code=st.error,
                        )
                        for st in statuses
                    ),
                )
                for name, statuses in topics
            ),
        )

    if not pending:  # RF=1, or every live follower is there already
        return build()
    return _delayed_delete_records(
        broker, pending, max(request.timeout.total_seconds(), 0.0), build
    )


async def _delayed_delete_records(
    broker: Any, pending: list[_Pending], timeout_s: float, build: Callable[[], Any]
) -> Any:
    """Wait for every pending partition's low watermark at once, within the request's
    timeout (Kafka's DelayedDeleteRecords)."""
    rm = broker.replica_manager
    outcomes = await asyncio.gather(
        *(
            rm.wait_for_low_watermark(
                w.partition, w.required_offset, timeout_s, w.leader_epoch, broker.live_brokers
            )
            for w in pending
        )
    )
    for w, (error, low) in zip(pending, outcomes, strict=True):
        w.status.error = error
        # Timed out: the answer keeps the initial low watermark, as Kafka's does.
        if error is not ErrorCode.request_timed_out:
            w.status.low_watermark = low
    return build()
