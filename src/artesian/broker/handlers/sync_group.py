"""SyncGroup (14): the leader's assignment reaches every member."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized
from artesian.broker.handlers._build import make, response_module
from artesian.broker.internal_topic import OFFSETS_TOPIC

API_KEY = 14
MIN_VERSION = 0
MAX_VERSION = 5


def handle(ctx: Any, request: Any) -> Any:
    # v5+ requests must name their protocol type and name (Kafka's
    # areMandatoryProtocolTypeAndNamePresent), checked before READ on the group.
    incomplete = ctx.header.api_version >= 5 and (
        request.protocol_type is None or request.protocol_name is None
    )
    if incomplete:
        return _refused(ctx, ErrorCode.inconsistent_group_protocol)
    if not authorized(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return _refused(ctx, ErrorCode.group_authorization_failed)
    return _sync(ctx, request)


def _refused(ctx: Any, code: ErrorCode) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    return make(
        mod.SyncGroupResponse,
        throttle_time=datetime.timedelta(0),
        error_code=code,
        protocol_type=None,
        protocol_name=None,
        assignment=b"",
    )


async def _sync(ctx: Any, request: Any) -> Any:
    result = await ctx.broker.group_coordinator.sync_group(
        request.group_id,
        request.generation_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        getattr(request, "protocol_type", None),
        getattr(request, "protocol_name", None),
        {a.member_id: bytes(a.assignment) for a in request.assignments},
    )
    mod = response_module(API_KEY, ctx.header.api_version)
    wait = ctx.broker.coordinator_write_replicated(OFFSETS_TOPIC, request.group_id)
    replication = await wait if wait is not None and not result.error else ErrorCode.none
    return make(
        mod.SyncGroupResponse,
        throttle_time=datetime.timedelta(0),
        error_code=result.error or replication,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment if not replication else b"",
    )
