"""FindCoordinator (10): this broker coordinates every group and every transactional id.

Batched lookups (v4+) answer each key. The first group lookup creates __consumer_offsets, the
first transactional one __transaction_state.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module
from artesian.metadata.controller import ControllerError

API_KEY = 10
MIN_VERSION = 0
MAX_VERSION = 6

GROUP = 0
TRANSACTION = 1


def _lookup(broker: Any, key: str, key_type: int) -> tuple[ErrorCode, str | None]:
    if key_type not in (GROUP, TRANSACTION):
        return ErrorCode.invalid_request, f"Unknown coordinator key type {key_type}"
    if not key:
        what = "Group id" if key_type == GROUP else "Transactional id"
        return ErrorCode.invalid_request, f"{what} must not be empty"
    topic = broker.offsets_topic if key_type == GROUP else broker.transaction_state_topic
    try:
        topic.ensure()
    except ControllerError as e:
        return ErrorCode.coordinator_not_available, e.message
    return ErrorCode.none, None


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(API_KEY, ctx.header.api_version)
    me = broker.image.brokers.get(broker.node_id)
    host, port = (me.host, me.port) if me is not None else (broker.host, broker.port)
    key_type = getattr(request, "key_type", GROUP)
    if hasattr(request, "coordinator_keys"):
        coordinators = []
        for key in request.coordinator_keys:
            code, message = _lookup(broker, key, key_type)
            ok = code is ErrorCode.none
            coordinators.append(
                make(
                    mod.Coordinator,
                    key=key,
                    node_id=broker.node_id if ok else -1,
                    host=host if ok else "",
                    port=port if ok else -1,
                    error_code=code,
                    error_message=message,
                )
            )
        return make(
            mod.FindCoordinatorResponse,
            throttle_time=datetime.timedelta(0),
            coordinators=tuple(coordinators),
        )
    code, message = _lookup(broker, request.key, key_type)
    ok = code is ErrorCode.none
    return make(
        mod.FindCoordinatorResponse,
        throttle_time=datetime.timedelta(0),
        error_code=code,
        error_message=message,
        node_id=broker.node_id if ok else -1,
        host=host if ok else "",
        port=port if ok else -1,
    )
