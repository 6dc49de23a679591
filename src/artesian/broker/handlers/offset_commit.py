"""OffsetCommit (8): committed offsets go to __consumer_offsets."""

from __future__ import annotations

import datetime
import time
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import (
    make,
    reply_when_replicated,
    response_module,
    with_replication_error,
)
from artesian.broker.internal_topic import OFFSETS_TOPIC
from artesian.coordinator.group.group_metadata import OffsetAndMetadata

API_KEY = 8
MIN_VERSION = 2
MAX_VERSION = 10


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    image = broker.image
    version = ctx.header.api_version
    now = int(time.time() * 1000)
    # v2-4 may ask for an explicit retention; -1 means the broker's offsets.retention.minutes.
    retention = getattr(request, "retention_time", None)
    retention_ms = retention // datetime.timedelta(milliseconds=1) if retention is not None else -1
    expire = now + retention_ms if retention_ms >= 0 else None
    offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
    errors: dict[tuple[str, int], int] = {}
    names: list[tuple[Any, str, list[int]]] = []
    # READ on the group, else GROUP_AUTHORIZATION_FAILED for every partition; then READ on
    # each topic, else TOPIC_AUTHORIZATION_FAILED for its partitions (KafkaApis' order).
    group_allowed = authorized(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id)
    resolved = []
    by_id = version >= 10
    for t in request.topics:
        topic_id = t.topic_id if by_id else None
        if by_id:
            # A zero id is unknown too (v10 has no names to fall back on).
            timg = image.topics_by_id.get(topic_id) if topic_id is not None else None
            name = timg.name if timg is not None else ""
        else:
            name = t.name
            timg = image.topics.get(name)
        resolved.append((t, topic_id, name, timg))
    readable = authorized_names(
        ctx, AclOperation.READ, ResourceType.TOPIC, (name for _, _, name, _ in resolved if name)
    )
    for t, _topic_id, name, timg in resolved:
        indexes = []
        for p in t.partitions:
            tp = (name, p.partition_index)
            indexes.append(p.partition_index)
            if not group_allowed:
                errors[tp] = ErrorCode.group_authorization_failed
                continue
            if name and name not in readable:
                errors[tp] = ErrorCode.topic_authorization_failed
                continue
            if by_id and timg is None:
                errors[tp] = ErrorCode.unknown_topic_id  # v10 names topics by id only
                continue
            if timg is None or p.partition_index not in timg.partitions:
                errors[tp] = ErrorCode.unknown_topic_or_partition
                continue
            offsets[tp] = OffsetAndMetadata(
                p.committed_offset,
                getattr(p, "committed_leader_epoch", -1),
                p.committed_metadata or "",
                now,
                expire,
            )
        names.append((t, name, indexes))
    mod = response_module(API_KEY, version)
    if not group_allowed:
        return _response(mod, names, errors)
    broker.offsets_topic.ensure()
    coordinator = broker.group_coordinator
    generation = request.generation_id_or_member_epoch
    if (
        version >= 9
        and generation >= 0
        and coordinator.owns(request.group_id)
        and request.group_id not in coordinator.groups
    ):
        # Kafka 3.7+ (v9+) names the missing group instead of ILLEGAL_GENERATION.
        errors.update(dict.fromkeys(offsets, ErrorCode.group_id_not_found))
    else:
        errors.update(
            coordinator.commit_offsets(
                request.group_id,
                request.member_id,
                getattr(request, "group_instance_id", None),
                generation,
                offsets,
                api_version=version,
            )
        )

    def build(replication: ErrorCode) -> Any:
        return _response(mod, names, with_replication_error(errors, replication))

    wait = broker.coordinator_write_replicated(OFFSETS_TOPIC, request.group_id)
    return reply_when_replicated(wait, build)


def _response(
    mod: Any, names: list[tuple[Any, str, list[int]]], errors: dict[tuple[str, int], int]
) -> Any:
    return make(
        mod.OffsetCommitResponse,
        throttle_time=datetime.timedelta(0),
        topics=tuple(
            make(
                mod.OffsetCommitResponseTopic,
                name=name,
                topic_id=getattr(t, "topic_id", None),
                partitions=tuple(
                    make(
                        mod.OffsetCommitResponsePartition,
                        partition_index=i,
                        error_code=errors.get((name, i), ErrorCode.none),
                    )
                    for i in indexes
                ),
            )
            for t, name, indexes in names
        ),
    )
