"""ConsumerGroupDescribe (69): groups on the consumer protocol (KIP-848), with each member's
current and target assignment."""

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

API_KEY = 69
MIN_VERSION = 0
MAX_VERSION = 1

# MemberType (v1, KIP-1099): the protocol a member speaks.
_CLASSIC_MEMBER = 0
_CONSUMER_MEMBER = 1


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    coordinator = broker.group_coordinator
    mod = response_module(API_KEY, ctx.header.api_version)
    image = broker.image
    with_ops = broker.authorizer is not None and request.include_authorized_operations
    described = []
    for group_id in request.group_ids:
        refusal = describe_refusal(ctx, group_id)
        if refusal is not None:
            described.append(described_group_error(mod, group_id, *refusal))
            continue
        group = coordinator.groups.get(group_id)
        missing = missing_group_error(mod, group_id, group, "consumer")
        if missing is not None:
            described.append(missing)
            continue
        cg = group.consumer
        used = {t for m in cg.members.values() for t, _ in m.assigned}
        used |= {t for target in cg.target.values() for t, _ in target}
        if hides_topics(ctx, image, used):
            described.append(
                described_group_error(
                    mod, group_id, ErrorCode.topic_authorization_failed, TOPICS_DENIED
                )
            )
            continue
        members = tuple(
            make(
                mod.Member,
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=m.subscribed_topic_names,
                subscribed_topic_regex=m.subscribed_topic_regex,
                assignment=assignment_entity(mod, image, m.assigned),
                target_assignment=assignment_entity(mod, image, cg.target.get(m.member_id, ())),
                member_type=_CONSUMER_MEMBER if m.classic is None else _CLASSIC_MEMBER,
            )
            for m in cg.members.values()
        )
        described.append(
            make(
                mod.DescribedGroup,
                error_code=ErrorCode.none,
                error_message=None,
                group_id=group_id,
                group_state=cg.state(),
                group_epoch=cg.group_epoch,
                assignment_epoch=cg.assignment_epoch,
                assignor_name=cg.assignor(coordinator.consumer_groups.config.assignors),
                members=members,
                authorized_operations=authorized_operations(ctx, ResourceType.GROUP, group_id)
                if with_ops
                else NO_OPERATIONS,
            )
        )
    return make(
        mod.ConsumerGroupDescribeResponse,
        throttle_time=datetime.timedelta(0),
        groups=tuple(described),
    )
