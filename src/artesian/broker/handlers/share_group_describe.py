"""ShareGroupDescribe (77): share groups (KIP-932), with each member's assignment."""

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
from artesian.broker.handlers._groups import (
    TOPICS_DENIED,
    assignment_entity,
    describe_refusal,
    described_group_error,
    hides_topics,
    missing_group_error,
)

API_KEY = 77
MIN_VERSION = 1
MAX_VERSION = 1


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(API_KEY, ctx.header.api_version)
    image = broker.image
    with_ops = broker.authorizer is not None and request.include_authorized_operations
    described = []
    for group_id in request.group_ids:
        refusal = describe_refusal(ctx, group_id)
        if refusal is not None:
            described.append(described_group_error(mod, group_id, *refusal))
            continue
        group = broker.group_coordinator.groups.get(group_id)
        missing = missing_group_error(mod, group_id, group, "share")
        if missing is not None:
            described.append(missing)
            continue
        sg = group.share
        if hides_topics(ctx, image, {t for m in sg.members.values() for t, _ in m.assigned}):
            described.append(
                described_group_error(
                    mod, group_id, ErrorCode.topic_authorization_failed, TOPICS_DENIED
                )
            )
            continue
        described.append(
            make(
                mod.DescribedGroup,
                error_code=ErrorCode.none,
                error_message=None,
                group_id=group_id,
                group_state=sg.state(),
                group_epoch=sg.group_epoch,
                assignment_epoch=sg.assignment_epoch,
                assignor_name="simple",
                members=tuple(
                    make(
                        mod.Member,
                        member_id=m.member_id,
                        rack_id=m.rack_id,
                        member_epoch=m.member_epoch,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        subscribed_topic_names=m.subscribed_topic_names,
                        assignment=assignment_entity(mod, image, m.assigned),
                    )
                    for m in sg.members.values()
                ),
                authorized_operations=authorized_operations(ctx, ResourceType.GROUP, group_id)
                if with_ops
                else NO_OPERATIONS,
            )
        )
    return make(
        mod.ShareGroupDescribeResponse,
        throttle_time=datetime.timedelta(0),
        groups=tuple(described),
    )
