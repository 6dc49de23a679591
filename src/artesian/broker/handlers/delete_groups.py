"""DeleteGroups (42): only empty groups can go (NON_EMPTY_GROUP otherwise)."""

from __future__ import annotations

import datetime
from typing import Any

from artesian.broker.handlers._build import make, response_module

API_KEY = 42
MIN_VERSION = 0
MAX_VERSION = 2


def handle(ctx: Any, request: Any) -> Any:
    results = ctx.broker.group_coordinator.delete_groups(list(request.groups_names))
    mod = response_module(API_KEY, ctx.header.api_version)
    return make(
        mod.DeleteGroupsResponse,
        throttle_time=datetime.timedelta(0),
        results=tuple(
            make(mod.DeletableGroupResult, group_id=g, error_code=code)
            for g, code in results.items()
        ),
    )
