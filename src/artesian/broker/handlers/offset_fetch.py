"""OffsetFetch (9): one group (v1-7) or several (v8+, KIP-709).

With ``require_stable`` (v7+, KIP-447: read_committed consumers), a partition whose offset an
open transaction is about to commit answers UNSTABLE_OFFSET_COMMIT (88), and the client asks
again once the transaction has ended.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

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
    if topics is None:
        found = coordinator.fetch_offsets(group_id, None)
        wanted: dict[str, list[int]] = {}
        for name, index in sorted(found):
            wanted.setdefault(name, []).append(index)
    else:
        wanted = {}
        for t in topics:
            if by_id:
                timg = image.topics_by_id.get(t.topic_id)
                name = timg.name if timg is not None else ""
            else:
                name = t.name
            wanted.setdefault(name, []).extend(t.partition_indexes)
        found = coordinator.fetch_offsets(
            group_id, [(n, i) for n, idx in wanted.items() for i in idx]
        )
    out = []
    for name, indexes in wanted.items():
        timg = image.topics.get(name)
        parts = []
        for i in indexes:
            om = found.get((name, i))
            if require_stable and coordinator.has_pending_offsets(group_id, [(name, i)]):
                parts.append(
                    make(
                        part_cls,
                        partition_index=i,
                        committed_offset=-1,
                        committed_leader_epoch=-1,
                        metadata="",
                        error_code=ErrorCode.unstable_offset_commit,
                    )
                )
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
        owns = ctx.broker.group_coordinator.owns
        groups = tuple(
            make(
                mod.OffsetFetchResponseGroup,
                group_id=g.group_id,
                topics=_group_topics(ctx, mod, g.group_id, g.topics, by_id, stable)
                if owns(g.group_id)
                else (),
                error_code=ErrorCode.none if owns(g.group_id) else ErrorCode.not_coordinator,
            )
            for g in request.groups
        )
        return make(mod.OffsetFetchResponse, throttle_time=datetime.timedelta(0), groups=groups)
    if not ctx.broker.group_coordinator.owns(request.group_id):
        return make(
            mod.OffsetFetchResponse,
            throttle_time=datetime.timedelta(0),
            topics=(),
            error_code=ErrorCode.not_coordinator,
        )
    return make(
        mod.OffsetFetchResponse,
        throttle_time=datetime.timedelta(0),
        topics=_group_topics(ctx, mod, request.group_id, request.topics, False, stable),
        error_code=ErrorCode.none,
    )
