"""JoinGroup (11): with the MEMBER_ID_REQUIRED handshake from v4 (KIP-394)."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized
from artesian.broker.handlers._build import make, millis, response_module
from artesian.broker.handlers._groups import ImageTopics, client_host
from artesian.broker.internal_topic import OFFSETS_TOPIC
from artesian.coordinator.group.coordinator import JoinRequest
from artesian.coordinator.group.group_metadata import JoinResult

API_KEY = 11
MIN_VERSION = 0
MAX_VERSION = 9


def handle(ctx: Any, request: Any) -> Any:
    if not authorized(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        version = ctx.header.api_version
        mod = response_module(API_KEY, version)
        # Kafka's JoinGroupResult(UNKNOWN_MEMBER_ID, GROUP_AUTHORIZATION_FAILED).
        return make(
            mod.JoinGroupResponse,
            throttle_time=datetime.timedelta(0),
            error_code=ErrorCode.group_authorization_failed,
            generation_id=-1,
            protocol_type=None,
            protocol_name=None if version >= 7 else "",
            leader="",
            skip_assignment=False,
            member_id="",
            members=(),
        )
    return _join(ctx, request)


async def _join(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    session_ms = millis(request.session_timeout)
    rebalance = getattr(request, "rebalance_timeout", None)
    result = await broker.group_coordinator.join_group(
        JoinRequest(
            request.group_id,
            request.member_id,
            getattr(request, "group_instance_id", None),
            ctx.client_id or "",
            client_host(ctx),
            session_ms,
            millis(rebalance) if rebalance is not None else session_ms,
            request.protocol_type,
            [(p.name, bytes(p.metadata)) for p in request.protocols],
            require_known_member_id=version >= 4,
            supports_skip_assignment=version >= 9,
        ),
        ImageTopics(broker.image, ctx),
    )
    if result.error == ErrorCode.none:
        # A classic member of a consumer group may have changed it: answered once stored.
        wait = broker.coordinator_write_replicated(OFFSETS_TOPIC, request.group_id)
        replication = await wait if wait is not None else ErrorCode.none
        if replication is not ErrorCode.none:
            result = JoinResult(replication, member_id=result.member_id)
    mod = response_module(API_KEY, version)
    return make(
        mod.JoinGroupResponse,
        throttle_time=datetime.timedelta(0),
        error_code=result.error,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name if version >= 7 else (result.protocol_name or ""),
        leader=result.leader_id,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=tuple(
            make(mod.JoinGroupResponseMember, member_id=m, group_instance_id=i, metadata=md)
            for m, i, md in result.members
        ),
    )
