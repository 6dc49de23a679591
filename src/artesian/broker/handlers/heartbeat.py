"""Heartbeat (12)."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized
from artesian.broker.handlers._build import make, response_module

API_KEY = 12
MIN_VERSION = 0
MAX_VERSION = 4


def handle(ctx: Any, request: Any) -> Any:
    if not authorized(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        code = ErrorCode.group_authorization_failed
    else:
        code = ctx.broker.group_coordinator.heartbeat(
            request.group_id,
            request.generation_id,
            request.member_id,
            getattr(request, "group_instance_id", None),
        )
    mod = response_module(API_KEY, ctx.header.api_version)
    return make(mod.HeartbeatResponse, throttle_time=datetime.timedelta(0), error_code=code)
