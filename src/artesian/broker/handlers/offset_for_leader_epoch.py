"""OffsetForLeaderEpoch (23): the end offset of a leader epoch, for truncation after a
leader change (KIP-101/KIP-320)."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized_names,
    cluster_authorized,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._quota import exempt_a_replica

API_KEY = 23
MIN_VERSION = 2
MAX_VERSION = 4


def handle(ctx: Any, request: Any) -> Any:
    rm = ctx.broker.replica_manager
    mod = response_module(API_KEY, ctx.header.api_version)
    topics = []
    # Followers (and anyone) with CLUSTER_ACTION may ask for every topic; consumers (KIP-320)
    # need DESCRIBE on each, else TOPIC_AUTHORIZATION_FAILED.
    names = {t.topic for t in request.topics}
    allowed = (
        names
        if ctx.broker.authorizer is None or cluster_authorized(ctx, AclOperation.CLUSTER_ACTION)
        else authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    )
    exempt_a_replica(ctx, getattr(request, "replica_id", -1))  # v3+ name a follower's
    for t in request.topics:
        parts = []
        for p in t.partitions:
            out: dict[str, Any] = dict(
                error_code=ErrorCode.none, partition=p.partition, leader_epoch=-1, end_offset=-1
            )
            if t.topic not in allowed:
                out["error_code"] = ErrorCode.topic_authorization_failed
                parts.append(make(mod.EpochEndOffset, **out))
                continue
            partition, missing = rm.leader(t.topic, p.partition)
            if partition is None:
                out["error_code"] = missing
            elif epoch_error := partition.leader_epoch_error(
                getattr(p, "current_leader_epoch", -1)
            ):
                out["error_code"] = epoch_error
            else:
                plog = partition.log
                epoch, end = plog.leader_epoch_cache.end_offset_for(
                    p.leader_epoch, plog.log_end_offset
                )
                out.update(leader_epoch=epoch, end_offset=end)
            parts.append(make(mod.EpochEndOffset, **out))
        topics.append(make(mod.OffsetForLeaderTopicResult, topic=t.topic, partitions=tuple(parts)))
    return make(
        mod.OffsetForLeaderEpochResponse, throttle_time=datetime.timedelta(0), topics=tuple(topics)
    )
