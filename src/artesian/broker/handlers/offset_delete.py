"""OffsetDelete (47): remove a group's committed offsets for topics it no longer reads."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module

API_KEY = 47
MIN_VERSION = 0
MAX_VERSION = 0


def handle(ctx: Any, request: Any) -> Any:
    partitions = [(t.name, p.partition_index) for t in request.topics for p in t.partitions]
    code, results = ctx.broker.group_coordinator.delete_offsets(request.group_id, partitions)
    mod = response_module(API_KEY, ctx.header.api_version)
    return make(
        mod.OffsetDeleteResponse,
        error_code=code,
        throttle_time=datetime.timedelta(0),
        topics=tuple(
            make(
                mod.OffsetDeleteResponseTopic,
                name=t.name,
                partitions=tuple(
                    make(
                        mod.OffsetDeleteResponsePartition,
                        partition_index=p.partition_index,
                        error_code=results.get((t.name, p.partition_index), ErrorCode.none),
                    )
                    for p in t.partitions
                ),
            )
            for t in request.topics
        )
        if code == ErrorCode.none
        else (),
    )
