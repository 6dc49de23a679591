"""DescribeGroups (15)."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    NO_OPERATIONS,
    ResourceType,
    authorized_operations,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._groups import describe_refusal, described_group_error
from artesian.coordinator.group.group_metadata import GroupState

API_KEY = 15
MIN_VERSION = 0
MAX_VERSION = 6


def handle(ctx: Any, request: Any) -> Any:
    coordinator = ctx.broker.group_coordinator
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    described = []
    # authorized_operations (v3+) are filled in only with an authorizer, as before without.
    with_ops = ctx.broker.authorizer is not None and getattr(
        request, "include_authorized_operations", False
    )
    for group_id in request.groups:
        refusal = describe_refusal(ctx, group_id)
        if refusal is not None:
            described.append(described_group_error(mod, group_id, *refusal))
            continue
        group = coordinator.groups.get(group_id)
        if group is None or group.consumer is not None or group.share is not None:
            # Kafka describes an unknown group, or one on the consumer protocol or a share
            # group (ConsumerGroupDescribe and ShareGroupDescribe describe those), as Dead;
            # from v6 with GROUP_ID_NOT_FOUND and its exception's message.
            described.append(
                make(
                    mod.DescribedGroup,
                    error_code=ErrorCode.group_id_not_found if version >= 6 else ErrorCode.none,
                    error_message=None
                    if version < 6
                    else f"Group {group_id} not found."
                    if group is None
                    else f"Group {group_id} is not a classic group.",
                    group_id=group_id,
                    group_state="Dead",
                    protocol_type="",
                    protocol_data="",
                    members=(),
                    authorized_operations=authorized_operations(ctx, ResourceType.GROUP, group_id)
                    if with_ops and version < 6
                    else NO_OPERATIONS,
                )
            )
            continue
        stable = group.state is GroupState.STABLE
        members = tuple(
            make(
                mod.DescribedGroupMember,
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                # Kafka fills metadata and assignment only for a stable group.
                member_metadata=m.metadata_for(group.protocol_name)
                if stable and group.protocol_name
                else b"",
                member_assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        described.append(
            make(
                mod.DescribedGroup,
                error_code=ErrorCode.none,
                error_message=None,
                group_id=group_id,
                group_state=group.state.value,
                protocol_type=group.protocol_type or "",
                # Like the member metadata, the protocol is only described for a stable group.
                protocol_data=(group.protocol_name or "") if stable else "",
                members=members,
                authorized_operations=authorized_operations(ctx, ResourceType.GROUP, group_id)
                if with_ops
                else NO_OPERATIONS,
            )
        )
    return make(
        mod.DescribeGroupsResponse, throttle_time=datetime.timedelta(0), groups=tuple(described)
    )
