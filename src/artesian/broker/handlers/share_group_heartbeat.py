"""ShareGroupHeartbeat (76): share groups' membership (KIP-932)."""

from __future__ import annotations

from typing import Any

from artesian.broker.handlers._build import response_module
from artesian.broker.handlers._groups import (
    ImageTopics,
    client_host,
    heartbeat_refusal,
    heartbeat_response,
    heartbeat_when_stored,
)
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
            client_host=client_host(ctx),
            rack_id=request.rack_id,
            subscribed_topic_names=tuple(names) if names is not None else None,
        ),
        ImageTopics(image),
    )
    return heartbeat_when_stored(
        ctx,
        mod.ShareGroupHeartbeatResponse,
        mod,
        image,
        request.group_id,
        result,
        ShareHeartbeatResult,
    )


def _response(mod: Any, image: MetadataImage, result: Any) -> Any:
    return heartbeat_response(mod.ShareGroupHeartbeatResponse, mod, image, result)
