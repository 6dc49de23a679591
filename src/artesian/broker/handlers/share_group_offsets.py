"""DescribeShareGroupOffsets (90), AlterShareGroupOffsets (91) and DeleteShareGroupOffsets
(92): a share group's start offsets and lag, for kafka-share-groups and the Admin client
(KIP-932), answered by the group's coordinator."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    GROUP_DENIED,
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._groups import describe_refusal
from artesian.metadata.image import INTERNAL_TOPICS
from artesian.share import share_group_offsets as offsets
from artesian.share.share_group_offsets import GroupError, PartitionOffset

DESCRIBE, ALTER, DELETE = 90, 91, 92
ZERO_UUID = uuid.UUID(int=0)


async def describe(ctx: Any, request: Any) -> Any:
    mod = response_module(DESCRIBE, ctx.header.api_version)
    with_lag = ctx.header.api_version >= 1
    groups = []
    for g in request.groups:
        refusal = describe_refusal(ctx, g.group_id)
        if refusal is not None:
            groups.append(_group(mod, g.group_id, (), *refusal))
            continue
        denied: dict[str, list[int]] = {}
        wanted: dict[str, list[int]] | None = None
        if g.topics is not None:
            names = [t.topic_name for t in g.topics]
            allowed = authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
            wanted = {}
            for t in g.topics:
                target = wanted if t.topic_name in allowed else denied
                target.setdefault(t.topic_name, []).extend(int(p) for p in t.partitions)
            if not g.topics:
                groups.append(_group(mod, g.group_id, (), ErrorCode.none, None))
                continue
        among = None
        if wanted is None and ctx.broker.authorizer is not None:
            # Every topic: those the caller may not describe are left out, before the share
            # coordinators are asked about their partitions.
            names = [n for n in ctx.broker.image.topics if n not in INTERNAL_TOPICS]
            among = sorted(authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names))
        try:
            described = await offsets.describe(ctx.broker, g.group_id, wanted, with_lag, among)
        except GroupError as e:
            groups.append(_group(mod, g.group_id, (), e.code, e.message))
            continue
        topics = [
            _topic(mod, name, topic_id, parts) for name, (topic_id, parts) in described.items()
        ]
        for name, indexes in denied.items():
            refused = [
                PartitionOffset(i, error=ErrorCode.topic_authorization_failed) for i in indexes
            ]
            topics.append(_topic(mod, name, None, refused))
        groups.append(_group(mod, g.group_id, tuple(topics), ErrorCode.none, None))
    return make(
        mod.DescribeShareGroupOffsetsResponse,
        throttle_time=datetime.timedelta(0),
        groups=tuple(groups),
    )


def _group(
    mod: Any, group_id: str, topics: tuple[Any, ...], code: ErrorCode, message: str | None
) -> Any:
    return make(
        mod.DescribeShareGroupOffsetsResponseGroup,
        group_id=group_id,
        topics=topics,
        error_code=code,
        error_message=message,
    )


def _topic(mod: Any, name: str, topic_id: uuid.UUID | None, parts: list[PartitionOffset]) -> Any:
    return make(
        mod.DescribeShareGroupOffsetsResponseTopic,
        topic_name=name,
        topic_id=topic_id or ZERO_UUID,
        partitions=tuple(
            make(
                mod.DescribeShareGroupOffsetsResponsePartition,
                partition_index=p.partition,
                start_offset=p.start_offset,
                leader_epoch=p.leader_epoch,
                lag=p.lag,
                error_code=p.error,
                error_message=p.message,
            )
            for p in parts
        ),
    )


async def alter(ctx: Any, request: Any) -> Any:
    mod = response_module(ALTER, ctx.header.api_version)
    group_id = request.group_id
    wanted: dict[str, dict[int, int]] = {}
    for t in request.topics:
        for p in t.partitions:
            wanted.setdefault(t.topic_name, {})[int(p.partition_index)] = int(p.start_offset)
    code, message = ErrorCode.none, None
    results: dict[str, dict[int, tuple[ErrorCode, str | None]]] = {}
    if not authorized(ctx, AclOperation.READ, ResourceType.GROUP, group_id):
        code, message = ErrorCode.group_authorization_failed, GROUP_DENIED
    else:
        allowed = authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, list(wanted))
        denied: tuple[ErrorCode, str | None] = (ErrorCode.topic_authorization_failed, None)
        refused = {
            name: dict.fromkeys(parts, denied)
            for name, parts in wanted.items()
            if name not in allowed
        }
        try:
            results = await offsets.alter(
                ctx.broker, group_id, {n: p for n, p in wanted.items() if n not in refused}
            )
        except GroupError as e:
            code, message = e.code, e.message
        results.update(refused)
    if code is not ErrorCode.none:  # every partition carries the group's error too
        results = {n: dict.fromkeys(parts, (code, message)) for n, parts in wanted.items()}
    topics_by_name = ctx.broker.image.topics
    return make(
        mod.AlterShareGroupOffsetsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=code,
        error_message=message,
        responses=tuple(
            make(
                mod.AlterShareGroupOffsetsResponseTopic,
                topic_name=name,
                topic_id=topics_by_name[name].topic_id if name in topics_by_name else ZERO_UUID,
                partitions=tuple(
                    make(
                        mod.AlterShareGroupOffsetsResponsePartition,
                        partition_index=index,
                        error_code=error,
                        error_message=text,
                    )
                    for index, (error, text) in sorted(parts.items())
                ),
            )
            for name, parts in results.items()
        ),
    )


async def delete(ctx: Any, request: Any) -> Any:
    mod = response_module(DELETE, ctx.header.api_version)
    group_id = request.group_id
    names = list(dict.fromkeys(t.topic_name for t in request.topics))
    code, message = ErrorCode.none, None
    results: dict[str, tuple[uuid.UUID | None, ErrorCode, str | None]] = {}
    if not authorized(ctx, AclOperation.DELETE, ResourceType.GROUP, group_id):
        code, message = ErrorCode.group_authorization_failed, GROUP_DENIED
    else:
        allowed = authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, names)
        try:
            results = await offsets.delete(ctx.broker, group_id, [n for n in names if n in allowed])
        except GroupError as e:
            code, message = e.code, e.message
        for name in names:
            if name not in allowed:
                results[name] = (None, ErrorCode.topic_authorization_failed, None)
    return make(
        mod.DeleteShareGroupOffsetsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=code,
        error_message=message,
        responses=tuple(
            make(
                mod.DeleteShareGroupOffsetsResponseTopic,
                topic_name=name,
                topic_id=topic_id or ZERO_UUID,
                error_code=error,
                error_message=text,
            )
            for name, (topic_id, error, text) in results.items()
        )
        if code is ErrorCode.none
        else (),
    )


APIS = [(DESCRIBE, 0, 1, describe), (ALTER, 0, 0, alter), (DELETE, 0, 0, delete)]
