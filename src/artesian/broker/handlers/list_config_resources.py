"""ListConfigResources (74; ListClientMetricsResources before Kafka 4.1): the names of the
resources that have configs, by type (KIP-1142). v0 lists the client metrics subscriptions;
v1 any of GROUP (groups with configs of their own), CLIENT_METRICS, BROKER_LOGGER and BROKER
(the brokers reachable on the request's listener) and TOPIC, in that order, all of them when
the request names none. DESCRIBE_CONFIGS on the cluster is needed, as in Kafka."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module

API_KEY = 74
MIN_VERSION = 0
MAX_VERSION = 1

TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP = 2, 4, 8, 16, 32


def _groups(ctx: Any) -> Iterable[str]:
    return (g for g, configs in ctx.broker.image.group_configs.items() if configs)


def _client_metrics(ctx: Any) -> Iterable[str]:
    return list(ctx.broker.image.client_metrics)


def _brokers(ctx: Any) -> Iterable[str]:
    listener = ctx.connection.listener.name
    return (str(b.node_id) for b in ctx.broker.image.brokers.values() if b.endpoint(listener))


def _topics(ctx: Any) -> Iterable[str]:
    return list(ctx.broker.image.topics)


# Kafka's order of the types in the answer, whatever the request's.
LISTED: dict[int, Callable[[Any], Iterable[str]]] = {
    GROUP: _groups,
    CLIENT_METRICS: _client_metrics,
    BROKER_LOGGER: _brokers,
    BROKER: _brokers,
    TOPIC: _topics,
}
SUPPORTED = {0: frozenset({CLIENT_METRICS}), 1: frozenset(LISTED)}


def handle(ctx: Any, request: Any) -> Any:
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    wanted = {int(t) for t in getattr(request, "resource_types", ())} or SUPPORTED[version]
    if not cluster_authorized(ctx, AclOperation.DESCRIBE_CONFIGS):
        code = ErrorCode.cluster_authorization_failed
    elif not wanted <= SUPPORTED[version]:
        code = ErrorCode.unsupported_version  # Kafka: the whole answer, never a part
    else:
        code = ErrorCode.none
    resources = (
        [
            make(mod.ConfigResource, resource_name=name, resource_type=kind)
            for kind, names in LISTED.items()
            if kind in wanted
            for name in sorted(names(ctx))
        ]
        if code is ErrorCode.none
        else []
    )
    return make(
        mod.ListConfigResourcesResponse,
        throttle_time=datetime.timedelta(0),
        error_code=code,
        config_resources=tuple(resources),
    )
