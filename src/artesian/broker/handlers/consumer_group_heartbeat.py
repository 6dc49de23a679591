"""ConsumerGroupHeartbeat (68): the consumer group protocol (KIP-848).

v0 lets the coordinator make a member id; v1 (KIP-1082) has the client make it. Partitions
travel as topic ids: the metadata image names them for the coordinator, which works on names.
"""

from __future__ import annotations

from typing import Any

from artesian.broker.handlers._build import millis, response_module
from artesian.broker.handlers._groups import (
    ImageTopics,
    client_host,
    heartbeat_refusal,
    heartbeat_response,
    heartbeat_when_stored,
)
from artesian.coordinator.group.assignors import Assignment
from artesian.coordinator.group.consumer_coordinator import ConsumerHeartbeat, HeartbeatResult
from artesian.metadata.image import MetadataImage

API_KEY = 68
MIN_VERSION = 0
MAX_VERSION = 1


def handle(ctx: Any, request: Any) -> Any:
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    image = ctx.broker.image
    names = request.subscribed_topic_names
    refused = heartbeat_refusal(ctx, request.group_id, names)
    if refused is not None:
        return _response(mod, image, HeartbeatResult(*refused))
    owned: Assignment | None = None
    if request.topic_partitions is not None:
        found: list[tuple[str, int]] = []
        for tps in request.topic_partitions:
            topic = image.topics_by_id.get(tps.topic_id)
            if topic is not None:  # a deleted topic's partitions are simply gone
                found.extend((topic.name, int(p)) for p in tps.partitions)
        owned = frozenset(found)
    result = ctx.broker.group_coordinator.consumer_groups.heartbeat(
        ConsumerHeartbeat(
            group_id=request.group_id,
            member_id=request.member_id,
            member_epoch=request.member_epoch,
            client_id=ctx.client_id or "",
            client_host=client_host(ctx),
            instance_id=request.instance_id,
            rack_id=request.rack_id,
            rebalance_timeout_ms=millis(request.rebalance_timeout),
            subscribed_topic_names=tuple(names) if names is not None else None,
            subscribed_topic_regex=getattr(request, "subscribed_topic_regex", None),
            server_assignor=request.server_assignor,
            owned=owned,
            member_id_from_client=version >= 1,
        ),
        ImageTopics(image, ctx),
    )
    return heartbeat_when_stored(
        ctx,
        mod.ConsumerGroupHeartbeatResponse,
        mod,
        image,
        request.group_id,
        result,
        HeartbeatResult,
    )


def _response(mod: Any, image: MetadataImage, result: Any) -> Any:
    return heartbeat_response(mod.ConsumerGroupHeartbeatResponse, mod, image, result)
