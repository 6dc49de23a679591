"""Client metrics (KIP-714): GetTelemetrySubscriptions (71) and PushTelemetry (72).

The work is ``ClientMetricsManager``'s; these answer with its results. A client is matched
on its client id, the software name and version it gave in ApiVersions, and its address.
Neither API checks ACLs, as in Kafka. The subscriptions are listed by ListConfigResources
(``list_config_resources.py``).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from artesian.broker.client_metrics_manager import ACCEPTED_COMPRESSION
from artesian.broker.handlers._build import make, response_module

GET_SUBSCRIPTIONS, PUSH = 71, 72
_ZERO = uuid.UUID(int=0)


def _client(ctx: Any) -> dict[str, str]:
    conn = ctx.connection
    name, version = conn.client_software
    attributes = {
        "client_id": ctx.client_id or "",
        "client_source_address": conn.peer_host,  # as ACLs name it
        "client_source_port": conn.peer.rpartition(":")[2],
    }
    # Kafka's "unknown" for a client that did not say (ApiVersions before v3)
    attributes["client_software_name"] = name or "unknown"
    attributes["client_software_version"] = version or "unknown"
    return attributes


def get_subscriptions(ctx: Any, request: Any) -> Any:
    manager = ctx.broker.client_metrics
    mod = response_module(GET_SUBSCRIPTIONS, ctx.header.api_version)
    result = manager.get_subscriptions(request.client_instance_id, _client(ctx))
    return make(
        mod.GetTelemetrySubscriptionsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=result.error,
        client_instance_id=result.instance_id or _ZERO,
        subscription_id=result.subscription_id,
        accepted_compression_types=ACCEPTED_COMPRESSION,
        push_interval=datetime.timedelta(milliseconds=result.push_interval_ms),
        telemetry_max_bytes=manager.max_bytes,
        delta_temporality=True,
        requested_metrics=result.metrics,
    )


def push(ctx: Any, request: Any) -> Any:
    mod = response_module(PUSH, ctx.header.api_version)
    code, _ = ctx.broker.client_metrics.push(
        request.client_instance_id,
        _client(ctx),
        int(request.subscription_id),
        bool(request.terminating),
        int(request.compression_type),
        bytes(request.metrics),
    )
    return make(mod.PushTelemetryResponse, throttle_time=datetime.timedelta(0), error_code=code)


APIS = [
    (GET_SUBSCRIPTIONS, 0, 0, get_subscriptions),
    (PUSH, 0, 0, push),
]
