"""ListOffsets (2): earliest, latest, by timestamp, max timestamp."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module

API_KEY = 2
MIN_VERSION = 1
MAX_VERSION = 11

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    rm = broker.replica_manager
    mod = response_module(API_KEY, ctx.header.api_version)
    read_committed = getattr(request, "isolation_level", 0) == 1
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            out: dict[str, Any] = dict(
                partition_index=p.partition_index,
                error_code=ErrorCode.none,
                timestamp=-1,
                offset=-1,
                leader_epoch=-1,
                old_style_offsets=(),
            )
            partition = rm.get(t.name, p.partition_index)
            if partition is None:
                out["error_code"] = ErrorCode.unknown_topic_or_partition
            elif epoch_error := partition.leader_epoch_error(
                getattr(p, "current_leader_epoch", -1)
            ):
                out["error_code"] = epoch_error
            else:
                plog = partition.log
                if p.timestamp == LATEST:
                    # The end a consumer can read to: the high watermark, or for
                    # read_committed the last stable offset.
                    end = plog.last_stable_offset if read_committed else plog.high_watermark
                    out.update(offset=end, leader_epoch=partition.leader_epoch)
                else:
                    found = plog.fetch_offset_by_timestamp(p.timestamp)
                    if found is not None:
                        offset, ts, leader_epoch = found
                        out.update(offset=offset, timestamp=ts, leader_epoch=leader_epoch)
            parts.append(make(mod.ListOffsetsPartitionResponse, **out))
        topics.append(make(mod.ListOffsetsTopicResponse, name=t.name, partitions=tuple(parts)))
    return make(mod.ListOffsetsResponse, throttle_time=datetime.timedelta(0), topics=tuple(topics))
