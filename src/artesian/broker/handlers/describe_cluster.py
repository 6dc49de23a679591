"""DescribeCluster (60)."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import NO_OPERATIONS, cluster_operations
from artesian.broker.handlers._build import make, response_module

API_KEY = 60
MIN_VERSION = 0
MAX_VERSION = 2

_BROKERS_ENDPOINT = 1


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(API_KEY, ctx.header.api_version)
    endpoint_type = getattr(request, "endpoint_type", _BROKERS_ENDPOINT)
    if endpoint_type != _BROKERS_ENDPOINT:
        return make(
            mod.DescribeClusterResponse,
            throttle_time=datetime.timedelta(0),
            error_code=ErrorCode.unsupported_endpoint_type,
            error_message="Only the brokers endpoint type (1) is served by brokers",
            endpoint_type=endpoint_type,
            cluster_id=broker.cluster_id,
            controller_id=-1,
            brokers=(),
            cluster_authorized_operations=-(2**31),
        )
    listener = ctx.connection.listener.name
    # As in Kafka, brokers answer anyone; what the principal may do on the cluster is told
    # when asked for, if it may DESCRIBE it (0 otherwise). Without an authorizer the field
    # stays unset, as before.
    ops = NO_OPERATIONS
    if ctx.broker.authorizer is not None and request.include_cluster_authorized_operations:
        ops = cluster_operations(ctx)
    # Registered brokers without a live session are fenced: listed only when v2+ asks for
    # them (KIP-1073), as in Kafka.
    fenced_too = getattr(request, "include_fenced_brokers", False)
    brokers = tuple(
        make(
            mod.DescribeClusterBroker,
            broker_id=b.node_id,
            host=address[0],
            port=address[1],
            rack=b.rack,
            is_fenced=b.node_id not in broker.live_brokers,
        )
        for b in broker.image.brokers.values()
        if (address := b.endpoint(listener)) is not None
        and (fenced_too or b.node_id in broker.live_brokers)
    )
    return make(
        mod.DescribeClusterResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=endpoint_type,
        cluster_id=broker.cluster_id,
        controller_id=broker.active_controller,
        brokers=brokers,
        cluster_authorized_operations=ops,
    )
