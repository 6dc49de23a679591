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
    # Kafka's order: TOPIC_AUTHORIZATION_FAILED, then UNKNOWN_TOPIC_OR_PARTITION for a topic
    # or partition the metadata does not have; the coordinator sees the rest.
    topics = ctx.broker.image.topics
    refused: dict[tuple[str, int], ErrorCode] = {}
    partitions = []
    for t in request.topics:
        topic = topics.get(t.name)
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            if t.name not in readable:
                refused[tp] = ErrorCode.topic_authorization_failed
            elif topic is None or p.partition_index not in topic.partitions:
                refused[tp] = ErrorCode.unknown_topic_or_partition
            else:
                partitions.append(tp)
    code, results = ctx.broker.group_coordinator.delete_offsets(request.group_id, partitions)
    results = dict(results) | refused
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
