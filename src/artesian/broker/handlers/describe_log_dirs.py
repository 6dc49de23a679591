"""DescribeLogDirs (35): partition sizes in this broker's log directory."""

from __future__ import annotations

import datetime
import os
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module

API_KEY = 35
MIN_VERSION = 1
MAX_VERSION = 5


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    rm = broker.replica_manager
    mod = response_module(API_KEY, ctx.header.api_version)
    if not cluster_authorized(ctx, AclOperation.DESCRIBE):
        # No directories; v3+ say why at the top.
        return make(
            mod.DescribeLogDirsResponse,
            throttle_time=datetime.timedelta(0),
            error_code=ErrorCode.cluster_authorization_failed,
            results=(),
        )
    by_topic: dict[str, list[Any]] = {}
    wanted: dict[str, set[int]] | None = None
    if request.topics is not None:
        wanted = {t.topic: set(t.partitions) for t in request.topics}
    for (name, index), partition in sorted(rm.partitions.items()):
        if wanted is not None and index not in wanted.get(name, ()):
            continue
        plog = partition.log
        by_topic.setdefault(name, []).append(
            make(
                mod.DescribeLogDirsPartition,
                partition_index=index,
                partition_size=plog.size_in_bytes,
                offset_lag=max(0, plog.log_end_offset - plog.high_watermark),
                is_future_key=False,
            )
        )
    log_dir = broker.data_dir / "logs"
    stat = os.statvfs(log_dir)
    result = make(
        mod.DescribeLogDirsResult,
        error_code=ErrorCode.none,
        log_dir=str(log_dir.resolve()),
        topics=tuple(
            make(mod.DescribeLogDirsTopic, name=name, partitions=tuple(parts))
            for name, parts in by_topic.items()
        ),
        total_bytes=stat.f_blocks * stat.f_frsize,
        usable_bytes=stat.f_bavail * stat.f_frsize,
        is_cordoned=False,
    )
    return make(
        mod.DescribeLogDirsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        results=(result,),
    )
