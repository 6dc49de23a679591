"""OffsetDelete (47): remove a group's committed offsets for topics it no longer reads."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import make, response_module

API_KEY = 47
MIN_VERSION = 0
MAX_VERSION = 0


def handle(ctx: Any, request: Any) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    # DELETE on the group, else GROUP_AUTHORIZATION_FAILED for the request; READ on each
    # topic, else TOPIC_AUTHORIZATION_FAILED for its partitions, which are left alone.
    if not authorized(ctx, AclOperation.DELETE, ResourceType.GROUP, request.group_id):
        return make(
            mod.OffsetDeleteResponse,
            error_code=ErrorCode.group_authorization_failed,
            throttle_time=datetime.timedelta(0),
            topics=(),
        )
    readable = authorized_names(
        ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    partitions = [
        (t.name, p.partition_index)
        for t in request.topics
        if t.name in readable
        for p in t.partitions
    ]
    code, results = ctx.broker.group_coordinator.delete_offsets(request.group_id, partitions)
    results = dict(results)
    for t in request.topics:
        if t.name not in readable:
            for p in t.partitions:
                results[(t.name, p.partition_index)] = ErrorCode.topic_authorization_failed
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
