"""LeaveGroup (13): one member (v0-2) or a batch of members (v3+, KIP-345)."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized
from artesian.broker.handlers._build import make, response_module

API_KEY = 13
MIN_VERSION = 0
MAX_VERSION = 5


def handle(ctx: Any, request: Any) -> Any:
    if not authorized(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        mod = response_module(API_KEY, ctx.header.api_version)
        return make(
            mod.LeaveGroupResponse,
            throttle_time=datetime.timedelta(0),
            error_code=ErrorCode.group_authorization_failed,
            members=(),
        )
    if hasattr(request, "members"):
        leaving = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        leaving = [(request.member_id, None)]
    code, results = ctx.broker.group_coordinator.leave_group(request.group_id, leaving)
    mod = response_module(API_KEY, ctx.header.api_version)
    if not hasattr(mod, "MemberResponse"):
        # v0-2 answer for the single member.
        code = results[0][2] if results else code
        return make(mod.LeaveGroupResponse, throttle_time=datetime.timedelta(0), error_code=code)
    return make(
        mod.LeaveGroupResponse,
        throttle_time=datetime.timedelta(0),
        error_code=code,
        members=tuple(
            make(mod.MemberResponse, member_id=m, group_instance_id=i, error_code=e)
            for m, i, e in results
        ),
    )
