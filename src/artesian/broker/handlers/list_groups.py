"""ListGroups (16), with state (v4+) and type (v5+) filters."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    cluster_authorized,
)
from artesian.broker.handlers._build import make, response_module

API_KEY = 16
MIN_VERSION = 0
MAX_VERSION = 5


def handle(ctx: Any, request: Any) -> Any:
    coordinator = ctx.broker.group_coordinator
    mod = response_module(API_KEY, ctx.header.api_version)
    states = {s.lower() for s in getattr(request, "states_filter", ())}
    types = {t.lower() for t in getattr(request, "types_filter", ())}
    listed = []
    # DESCRIBE on the cluster lists every group; else only those with DESCRIBE on them.
    every = ctx.broker.authorizer is None or cluster_authorized(ctx, AclOperation.DESCRIBE)
    for group in coordinator.groups.values():
        state = group.describe_state()
        if states and state.lower() not in states:
            continue
        if types and group.group_type not in types:
            continue
        if not every and not authorized(
            ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group.group_id
        ):
            continue
        listed.append(
            make(
                mod.ListedGroup,
                group_id=group.group_id,
                protocol_type=group.protocol_type or "",
                group_state=state,
                group_type=group.group_type,
            )
        )
    return make(
        mod.ListGroupsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        groups=tuple(listed),
    )
