"""DeleteGroups (42): only empty groups can go (NON_EMPTY_GROUP otherwise); a share group
takes its state at the share coordinators with it."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized_names
from artesian.broker.handlers._build import make, response_module
from artesian.share.share_group_offsets import delete_group as delete_share_group

API_KEY = 42
MIN_VERSION = 0
MAX_VERSION = 2


async def handle(ctx: Any, request: Any) -> Any:
    # DELETE on each group, else GROUP_AUTHORIZATION_FAILED for it.
    names = list(request.groups_names)
    allowed = authorized_names(ctx, AclOperation.DELETE, ResourceType.GROUP, names)
    results: dict[str, int] = dict.fromkeys(names, ErrorCode.group_authorization_failed)
    others = []
    for group_id in (g for g in names if g in allowed):
        share = await delete_share_group(ctx.broker, group_id)
        if share is None:
            others.append(group_id)
        else:
            results[group_id] = share
    results.update(ctx.broker.group_coordinator.delete_groups(others))
    mod = response_module(API_KEY, ctx.header.api_version)
    return make(
        mod.DeleteGroupsResponse,
        throttle_time=datetime.timedelta(0),
        results=tuple(
            make(mod.DeletableGroupResult, group_id=g, error_code=code)
            for g, code in results.items()
        ),
    )
