"""Client metrics (KIP-714): GetTelemetrySubscriptions (71), PushTelemetry (72) and
ListClientMetricsResources (74 v0, renamed ListConfigResources in Kafka 4.1).

The work is ``ClientMetricsManager``'s; these answer with its results. A client is matched
on its client id, the software name and version it gave in ApiVersions, and its address.
Neither telemetry API checks ACLs, as in Kafka; listing the subscriptions needs
DESCRIBE_CONFIGS on the cluster.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.client_metrics_manager import ACCEPTED_COMPRESSION
from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module

GET_SUBSCRIPTIONS, PUSH, LIST_RESOURCES = 71, 72, 74
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


def list_resources(ctx: Any, request: Any) -> Any:
    mod = response_module(LIST_RESOURCES, ctx.header.api_version)
    if not cluster_authorized(ctx, AclOperation.DESCRIBE_CONFIGS):
        return make(
            mod.ListConfigResourcesResponse,
            throttle_time=datetime.timedelta(0),
            error_code=ErrorCode.cluster_authorization_failed,
            config_resources=(),
        )
    return make(
        mod.ListConfigResourcesResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        config_resources=tuple(
            make(mod.ConfigResource, resource_name=name)
            for name in sorted(ctx.broker.image.client_metrics)
        ),
    )


APIS = [
    (GET_SUBSCRIPTIONS, 0, 0, get_subscriptions),
    (PUSH, 0, 0, push),
    (LIST_RESOURCES, 0, 0, list_resources),
]
