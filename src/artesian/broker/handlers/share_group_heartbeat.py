"""ShareGroupHeartbeat (76): share groups' membership (KIP-932)."""

from __future__ import annotations

import datetime
from typing import Any

from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._groups import ImageTopics, assignment_entity, heartbeat_refusal
from artesian.coordinator.group.share_group_coordinator import (
    ShareHeartbeat,
    ShareHeartbeatResult,
)
from artesian.metadata.image import MetadataImage

API_KEY = 76
MIN_VERSION = 1
MAX_VERSION = 1


def handle(ctx: Any, request: Any) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    image = ctx.broker.image
    names = request.subscribed_topic_names
    refused = heartbeat_refusal(ctx, request.group_id, names)
    if refused is not None:
        return _response(mod, image, ShareHeartbeatResult(*refused))
    result = ctx.broker.group_coordinator.share_groups.heartbeat(
        ShareHeartbeat(
            group_id=request.group_id,
            member_id=request.member_id,
            member_epoch=request.member_epoch,
            client_id=ctx.client_id or "",
            client_host=ctx.connection.peer.rsplit(":", 1)[0],
            rack_id=request.rack_id,
            subscribed_topic_names=tuple(names) if names is not None else None,
        ),
        ImageTopics(image),
    )
    return _response(mod, image, result)


def _response(mod: Any, image: MetadataImage, result: ShareHeartbeatResult) -> Any:
    return make(
        mod.ShareGroupHeartbeatResponse,
        throttle_time=datetime.timedelta(0),
        error_code=result.error,
        error_message=result.message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=datetime.timedelta(milliseconds=result.heartbeat_interval_ms),
        assignment=assignment_entity(mod, image, result.assignment)
        if result.assignment is not None
        else None,
    )
