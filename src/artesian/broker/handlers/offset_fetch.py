"""OffsetFetch (9): one group (v1-7) or several (v8+, KIP-709).

With ``require_stable`` (v7+, KIP-447: read_committed consumers), a partition whose offset an
open transaction is about to commit answers UNSTABLE_OFFSET_COMMIT (88), and the client asks
again once the transaction has ended.
"""

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

API_KEY = 9
MIN_VERSION = 1
MAX_VERSION = 10


def _group_topics(
    ctx: Any, mod: Any, group_id: str, topics: Any, by_id: bool, require_stable: bool
) -> tuple[Any, ...]:
    broker = ctx.broker
    image = broker.image
    coordinator = broker.group_coordinator
    # v8+ (grouped) name the classes in the plural.
    grouped = hasattr(mod, "OffsetFetchResponseGroup")
    topic_cls = mod.OffsetFetchResponseTopics if grouped else mod.OffsetFetchResponseTopic
    part_cls = mod.OffsetFetchResponsePartitions if grouped else mod.OffsetFetchResponsePartition
    # Offsets are shown for topics the principal may DESCRIBE: the others are left out of
    # an "all topics" answer, and answer TOPIC_AUTHORIZATION_FAILED when named (Kafka).
    denied: set[str] = set()
    unknown_ids: list[Any] = []  # v10: each answered under its own id, as Kafka answers it
    if topics is None:
        found = coordinator.fetch_offsets(group_id, None)
        wanted: dict[str, list[int]] = {}
        for name, index in sorted(found):
            wanted.setdefault(name, []).append(index)
        if broker.authorizer is not None:
            allowed = authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, wanted)
            wanted = {n: idx for n, idx in wanted.items() if n in allowed}
    else:
        wanted = {}
        for t in topics:
            if by_id:
                timg = image.topics_by_id.get(t.topic_id) if t.topic_id is not None else None
                if timg is None:
                    unknown_ids.append(t)
                    continue
                name = timg.name
            else:
                name = t.name
            wanted.setdefault(name, []).extend(t.partition_indexes)
        if broker.authorizer is not None:
            named = {n for n in wanted if n}
            denied = named - authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, named)
        found = coordinator.fetch_offsets(
            group_id, [(n, i) for n, idx in wanted.items() if n not in denied for i in idx]
        )
    out = [
        make(
            topic_cls,
            name="",
            topic_id=t.topic_id,
            partitions=tuple(
                _no_offset(part_cls, i, ErrorCode.unknown_topic_id) for i in t.partition_indexes
            ),
        )
        for t in unknown_ids
    ]
    for name, indexes in wanted.items():
        timg = image.topics.get(name)
        parts = []
        for i in indexes:
            if name in denied:
                parts.append(_no_offset(part_cls, i, ErrorCode.topic_authorization_failed))
                continue
            om = found.get((name, i))
            if require_stable and coordinator.has_pending_offsets(group_id, [(name, i)]):
                parts.append(_no_offset(part_cls, i, ErrorCode.unstable_offset_commit))
                continue
            parts.append(
                make(
                    part_cls,
                    partition_index=i,
                    committed_offset=om.offset if om is not None else -1,
                    committed_leader_epoch=om.leader_epoch if om is not None else -1,
                    metadata=om.metadata if om is not None else "",
                    error_code=ErrorCode.none,
                )
            )
        out.append(
            make(
                topic_cls,
                name=name,
                topic_id=timg.topic_id if timg is not None else None,
                partitions=tuple(parts),
            )
        )
    return tuple(out)


def handle(ctx: Any, request: Any) -> Any:
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    stable = bool(getattr(request, "require_stable", False))
    if hasattr(request, "groups"):
        by_id = version >= 10
        coordinator = ctx.broker.group_coordinator
        owns = coordinator.owns
        groups = []
        for g in request.groups:
            # DESCRIBE on each group first, as in Kafka.
            if not _group_allowed(ctx, g.group_id):
                code = ErrorCode.group_authorization_failed
            elif not owns(g.group_id):
                code = ErrorCode.not_coordinator
            else:
                # v9+: a consumer-protocol member must be at its current epoch (KIP-848).
                invalid = coordinator.validate_offset_fetch(
                    g.group_id, getattr(g, "member_id", None), getattr(g, "member_epoch", -1)
                )
                code = ErrorCode.none if invalid is None else ErrorCode(invalid)
            groups.append(
                make(
                    mod.OffsetFetchResponseGroup,
                    group_id=g.group_id,
                    topics=_group_topics(ctx, mod, g.group_id, g.topics, by_id, stable)
                    if code == ErrorCode.none
                    else (),
                    error_code=code,
                )
            )
        return make(
            mod.OffsetFetchResponse, throttle_time=datetime.timedelta(0), groups=tuple(groups)
        )
    if not _group_allowed(ctx, request.group_id):
        return _group_refused(mod, version, request)
    coordinator = ctx.broker.group_coordinator
    refused: ErrorCode | None = None
    if not coordinator.owns(request.group_id):
        refused = ErrorCode.not_coordinator
    elif (invalid := coordinator.validate_offset_fetch(request.group_id, None, -1)) is not None:
        refused = ErrorCode(invalid)
    if refused is not None:
        return make(
            mod.OffsetFetchResponse,
            throttle_time=datetime.timedelta(0),
            topics=(),
            error_code=refused,
        )
    return make(
        mod.OffsetFetchResponse,
        throttle_time=datetime.timedelta(0),
        topics=_group_topics(ctx, mod, request.group_id, request.topics, False, stable),
        error_code=ErrorCode.none,
    )


def _group_allowed(ctx: Any, group_id: str) -> bool:
    return authorized(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id)


def _group_refused(mod: Any, version: int, request: Any) -> Any:
    """GROUP_AUTHORIZATION_FAILED as Kafka's OffsetFetchRequest.getErrorResponse answers it:
    v2+ at the top, v1 (no top-level code) on each partition asked for."""
    code = ErrorCode.group_authorization_failed
    topics: tuple[Any, ...] = ()
    if version < 2:
        topics = tuple(
            make(
                mod.OffsetFetchResponseTopic,
                name=t.name,
                partitions=tuple(
                    make(
                        mod.OffsetFetchResponsePartition,
                        partition_index=i,
                        committed_offset=-1,
                        committed_leader_epoch=-1,
                        metadata="",
                        error_code=code,
                    )
                    for i in t.partition_indexes
                ),
            )
            for t in request.topics or ()
        )
    return make(
        mod.OffsetFetchResponse, throttle_time=datetime.timedelta(0), topics=topics, error_code=code
    )


def _no_offset(part_cls: type, index: int, code: ErrorCode) -> Any:
    """A partition answered with an error and no committed offset."""
    return make(
        part_cls,
        partition_index=index,
        committed_offset=-1,
        committed_leader_epoch=-1,
        metadata="",
        error_code=code,
    )
