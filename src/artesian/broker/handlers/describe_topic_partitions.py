"""DescribeTopicPartitions (75, KIP-966): topics and their partitions in pages, what Java's
Admin.describeTopics and ``kafka-topics.sh --describe`` use instead of Metadata.

Topics come in name order, from the cursor's topic and partition on; a response stops at
``min(ResponsePartitionLimit, max.request.partition.size.limit)`` partitions and names where
the next one starts (NextCursor). An empty topic list means every topic the principal may
DESCRIBE; a named one it may not is TOPIC_AUTHORIZATION_FAILED, whether it exists or not.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    NO_OPERATIONS,
    AclOperation,
    ResourceType,
    authorized_names,
    authorized_operations,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers.metadata import partition_entry, reachable_brokers
from artesian.metadata.controller import ControllerError, validate_topic_name
from artesian.metadata.image import INTERNAL_TOPICS

API_KEY = 75
MIN_VERSION = 0
MAX_VERSION = 0


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    image = broker.image
    mod = response_module(API_KEY, ctx.header.api_version)
    every = not request.topics
    cursor = request.cursor
    after = cursor.topic_name if cursor is not None else ""
    lc = ctx.logical_cluster
    candidates = image.topics if every else (t.name for t in request.topics)
    if every and lc is not None:
        candidates = (n for n in candidates if lc.owns(n))  # its own, and no other's
    names = sorted({n for n in candidates if n >= after})
    if cursor is not None and (
        (not every and cursor.topic_name not in names) or cursor.partition_index < 0
    ):
        # The cursor's topic must be one of those named, and its partition not negative:
        # Kafka's InvalidRequestException, which its error response gives every topic.
        return _response(
            mod, [_topic(mod, t.name, ErrorCode.invalid_request) for t in request.topics], None
        )
    allowed = authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    # Named topics the principal may not describe are refused, existing or not; unnamed
    # ones are simply not listed.
    refused = (
        []
        if every
        else [
            _topic(mod, n, ErrorCode.topic_authorization_failed) for n in names if n not in allowed
        ]
    )
    # At least one partition, as Kafka: a page of none would hand back its own cursor.
    limit = max(
        min(
            int(request.response_partition_limit),
            broker.config.get_int("max.request.partition.size.limit"),
        ),
        1,
    )
    reachable = reachable_brokers(broker, ctx.connection.listener.name)
    topics: list[Any] = []
    next_cursor = None
    remaining = limit
    for name in (n for n in names if n in allowed):
        if remaining == 0:
            # The previous topic filled the page: the next one starts at its partition 0.
            next_cursor = make(mod.Cursor, topic_name=name, partition_index=0)
            break
        topic = image.topics.get(name)
        if topic is None:
            if not every:
                try:
                    validate_topic_name(name)
                    code = ErrorCode.unknown_topic_or_partition
                except ControllerError as e:
                    code = e.code
                ops = authorized_operations(ctx, ResourceType.TOPIC, name)
                topics.append(_topic(mod, name, code, ops))
            continue
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        indexes = [i for i in sorted(topic.partitions) if i >= first]
        page = indexes[:remaining]
        topics.append(
            make(
                mod.DescribeTopicPartitionsResponseTopic,
                error_code=ErrorCode.none,
                name=name,
                topic_id=topic.topic_id,
                is_internal=name in INTERNAL_TOPICS,
                partitions=tuple(
                    partition_entry(
                        mod.DescribeTopicPartitionsResponsePartition,
                        topic.partitions[i],
                        broker.live_brokers,
                        reachable,
                        leaderless=None,  # leader -1 and no error, as Kafka answers
                    )
                    for i in page
                ),
                topic_authorized_operations=authorized_operations(ctx, ResourceType.TOPIC, name),
            )
        )
        if len(page) < len(indexes):
            next_cursor = make(mod.Cursor, topic_name=name, partition_index=indexes[len(page)])
            break
        remaining -= len(page)
    return _response(mod, topics + refused, next_cursor)


def _response(mod: Any, topics: list[Any], next_cursor: Any) -> Any:
    return make(
        mod.DescribeTopicPartitionsResponse,
        throttle_time=datetime.timedelta(0),
        topics=tuple(topics),
        next_cursor=next_cursor,
    )


def _topic(mod: Any, name: str, code: ErrorCode, ops: int = NO_OPERATIONS) -> Any:
    """A topic answered with an error, and no topic id (the zero id on the wire)."""
    return make(
        mod.DescribeTopicPartitionsResponseTopic,
        error_code=code,
        name=name,
        topic_id=None,
        is_internal=name in INTERNAL_TOPICS,
        partitions=(),
        topic_authorized_operations=ops,
    )
