"""DeleteRecords (21): move a partition's log start offset forward."""

from __future__ import annotations

import datetime
import time
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module
from artesian.metadata.image import INTERNAL_TOPICS

API_KEY = 21
MIN_VERSION = 0
MAX_VERSION = 2


def handle(ctx: Any, request: Any) -> Any:
    rm = ctx.broker.replica_manager
    mod = response_module(API_KEY, ctx.header.api_version)
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            code, low = ErrorCode.none, -1
            partition, missing = rm.leader(t.name, p.partition_index)
            if partition is None:
                code = missing
            elif t.name in INTERNAL_TOPICS:
                code = ErrorCode.invalid_topic_exception  # Kafka: internal topics are off limits
            elif not partition.log.config.delete_enabled:
                code = ErrorCode.policy_violation  # compact-only: records go by key, not offset
            else:
                try:
                    low = partition.log.delete_records_before(p.offset, int(time.time() * 1000))
                except Exception as e:
                    error_code = getattr(e, "error_code", None)
                    if error_code is None:
                        raise
                    code = ErrorCode(error_code)
                # Fetches below the new start must now fail: wake the parked ones.
                rm.purgatory.wake((t.name, p.partition_index))
            parts.append(
                make(
                    mod.DeleteRecordsPartitionResult,
                    partition_index=p.partition_index,
                    low_watermark=low,
                    error_code=code,
                )
            )
        topics.append(make(mod.DeleteRecordsTopicResult, name=t.name, partitions=tuple(parts)))
    return make(
        mod.DeleteRecordsResponse, throttle_time=datetime.timedelta(0), topics=tuple(topics)
    )
