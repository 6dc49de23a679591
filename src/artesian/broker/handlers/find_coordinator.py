"""FindCoordinator (10): the coordinator of a group or transactional id is the leader of its
partition of __consumer_offsets or __transaction_state, as in Kafka.

Batched lookups (v4+) answer each key. The first group lookup creates __consumer_offsets, the
first transactional one __transaction_state.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    GROUP_DENIED,
    TRANSACTIONAL_ID_DENIED,
    AclOperation,
    ResourceType,
    authorized,
)
from artesian.broker.handlers._build import make, response_module
from artesian.coordinator.serde import partition_for
from artesian.metadata.controller import ControllerError

API_KEY = 10
MIN_VERSION = 0
MAX_VERSION = 6

GROUP = 0
TRANSACTION = 1


def _lookup(ctx: Any, key: str, key_type: int) -> tuple[ErrorCode, str | None, Any]:
    """(error, message, the coordinator's BrokerImage). DESCRIBE on the group or the
    transactional id comes first, as in Kafka."""
    broker = ctx.broker
    if key_type == GROUP and not authorized(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, key):
        return ErrorCode.group_authorization_failed, GROUP_DENIED, None
    if key_type == TRANSACTION and not authorized(
        ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key
    ):
        return ErrorCode.transactional_id_authorization_failed, TRANSACTIONAL_ID_DENIED, None
    if key_type not in (GROUP, TRANSACTION):
        return ErrorCode.invalid_request, f"Unknown coordinator key type {key_type}", None
    if not key:
        what = "Group id" if key_type == GROUP else "Transactional id"
        return ErrorCode.invalid_request, f"{what} must not be empty", None
    topic = broker.offsets_topic if key_type == GROUP else broker.transaction_state_topic
    try:
        topic.ensure()
    except ControllerError as e:
        return ErrorCode.coordinator_not_available, e.message, None
    timg = broker.image.topics.get(topic.name)
    pimg = timg.partitions.get(partition_for(key, len(timg.partitions))) if timg else None
    leader = broker.image.brokers.get(pimg.leader) if pimg is not None else None
    # A coordinator without the client's listener is as good as none to this client.
    if (
        leader is None
        or leader.node_id not in broker.live_brokers
        or leader.endpoint(ctx.connection.listener.name) is None
    ):
        return ErrorCode.coordinator_not_available, "The coordinator is not available.", None
    return ErrorCode.none, None, leader


def _address(ctx: Any, node: Any) -> tuple[str, int]:
    """The coordinator as reached on the client's listener."""
    address = node.endpoint(ctx.connection.listener.name) if node is not None else None
    return address if address is not None else ("", -1)


def handle(ctx: Any, request: Any) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    key_type = getattr(request, "key_type", GROUP)
    if hasattr(request, "coordinator_keys"):
        coordinators = []
        for key in request.coordinator_keys:
            code, message, node = _lookup(ctx, key, key_type)
            host, port = _address(ctx, node)
            coordinators.append(
                make(
                    mod.Coordinator,
                    key=key,
                    node_id=node.node_id if node else -1,
                    host=host,
                    port=port,
                    error_code=code,
                    error_message=message,
                )
            )
        return make(
            mod.FindCoordinatorResponse,
            throttle_time=datetime.timedelta(0),
            coordinators=tuple(coordinators),
        )
    code, message, node = _lookup(ctx, request.key, key_type)
    host, port = _address(ctx, node)
    return make(
        mod.FindCoordinatorResponse,
        throttle_time=datetime.timedelta(0),
        error_code=code,
        error_message=message,
        node_id=node.node_id if node else -1,
        host=host,
        port=port,
    )
