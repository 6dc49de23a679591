"""AlterLogicalClusters and DescribeLogicalClusters: Artesian's private APIs that put
principals into logical clusters (see tenancy/) and list them. Frames as in
protocol/balancer_admin.py; any broker answers, appending to the metadata log.

AlterLogicalClusters commands (one per request), needing ALTER on the cluster:
    {"bind": {"User:k1": "lkc-ab12"}}   these principals now work in these logical clusters
    {"unbind": ["User:k1"]}             and these see the whole cluster again
    {"quotas": {"lkc-ab12": {"producer_byte_rate": 1048576, "consumer_byte_rate": null}}}
                                        set (null: remove) quotas its principals share

DescribeLogicalClusters ({}), needing DESCRIBE on the cluster, answers
    {"logical_clusters": [{"id": "lkc-ab12", "principals": [...], "topics": 3,
                           "partitions": 12, "quotas": {"producer_byte_rate": 1048576.0}}]}
"""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import CLUSTER_DENIED, AclOperation, cluster_authorized
from artesian.broker.handlers._documents import alter, decode_document, document_response
from artesian.broker.quota_manager import LOGICAL_CLUSTER_QUOTA_KEYS, rate_problem
from artesian.broker.response import RawResponse
from artesian.metadata.controller import ControllerError
from artesian.metadata.records import (
    LogicalClusterBindingRecord,
    LogicalClusterQuotaRecord,
    MetadataRecord,
)
from artesian.protocol.balancer_admin import (
    ALTER_LOGICAL_CLUSTERS_KEY,
    DESCRIBE_LOGICAL_CLUSTERS_KEY,
)
from artesian.tenancy import LOGICAL_CLUSTER_ID, logical_cluster_id_of

log = logging.getLogger("artesian.tenancy")


decode = decode_document


def _invalid(message: str) -> ControllerError:
    return ControllerError(ErrorCode.invalid_request, message)


def _principal(value: object) -> str:
    kind, _, name = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not kind or not name:
        raise _invalid(f"a principal is Type:name, like User:alice, not {value!r}")
    assert isinstance(value, str)
    return value


def _lkc(value: object, problem: str) -> str:
    """``value`` as a logical cluster id, or INVALID_REQUEST saying ``problem``."""
    if not isinstance(value, str) or LOGICAL_CLUSTER_ID.fullmatch(value) is None:
        raise _invalid(f"{value!r} {problem}")
    return value


def _plan(broker: Any, command: dict[str, Any]) -> tuple[list[MetadataRecord], dict[str, Any]]:
    image = broker.image
    if len(command) != 1:
        raise _invalid("expected exactly one command: bind, unbind or quotas")
    ((name, arg),) = command.items()
    if name == "bind":
        if not isinstance(arg, dict) or not arg:
            raise _invalid('bind takes {"<principal>": "<logical cluster id>", ...}')
        records: list[MetadataRecord] = []
        for principal, lkc in sorted(arg.items()):
            principal = _principal(principal)
            if principal in broker.platform_principals:
                raise _invalid(
                    f"{principal} runs the cluster itself (a broker, a super user or anonymous "
                    "clients): bind the principals tenants log in as"
                )
            lkc = _lkc(
                lkc, "is not a logical cluster id: lkc- and 1 to 32 lower-case letters or digits"
            )
            if image.logical_clusters.get(principal) != lkc:
                records.append(LogicalClusterBindingRecord(principal, lkc))
        return records, {"bound": dict(sorted(arg.items()))}
    if name == "unbind":
        if not isinstance(arg, list) or not arg:
            raise _invalid('unbind takes ["<principal>", ...]')
        principals = sorted({_principal(p) for p in arg})
        records = [
            LogicalClusterBindingRecord(p, None) for p in principals if p in image.logical_clusters
        ]
        return records, {"unbound": principals}
    if name == "quotas":
        return _quota_records(image, arg), {"quotas": arg}
    raise _invalid(f"unknown command {name!r}: expected bind, unbind or quotas")


def _quota_records(image: Any, arg: object) -> list[MetadataRecord]:
    """What {"lkc": {"producer_byte_rate": 1e6, "consumer_byte_rate": None}} changes; the
    values are Kafka's client quota keys, each the rate all the logical cluster's
    principals share on each broker."""
    if not isinstance(arg, dict) or not arg:
        raise _invalid('quotas takes {"<logical cluster id>": {"<quota key>": <rate or null>}}')
    records: list[MetadataRecord] = []
    for lkc, values in sorted(arg.items()):
        lkc = _lkc(lkc, "is not a logical cluster id")
        if not isinstance(values, dict) or not values:
            raise _invalid(f"{lkc}: give quota keys and rates")
        current = image.logical_cluster_quotas.get(lkc, {})
        for key, value in sorted(values.items()):
            if key not in LOGICAL_CLUSTER_QUOTA_KEYS:
                raise _invalid(f"{key!r} is not one of {sorted(LOGICAL_CLUSTER_QUOTA_KEYS)}")
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise _invalid(f"{lkc} {key}: a rate, or null to remove it")
                if (problem := rate_problem(key, float(value))) is not None:
                    raise _invalid(f"{lkc}: {problem}")
            rate = None if value is None else float(value)
            if current.get(key) != rate:
                records.append(LogicalClusterQuotaRecord(lkc, key, rate))
    return records


def handle_alter(ctx: Any, command: dict[str, Any]) -> RawResponse:
    response, answer = alter(ctx, command, _plan, "AlterLogicalClusters", log)
    if answer is not None:
        log.info("logical clusters: %s", answer)
    return response


def handle_describe(ctx: Any, _request: dict[str, Any]) -> RawResponse:
    if not cluster_authorized(ctx, AclOperation.DESCRIBE):
        return document_response(ErrorCode.cluster_authorization_failed, CLUSTER_DENIED, {})
    image = ctx.broker.image
    clusters: dict[str, dict[str, Any]] = {}

    def entry(lkc: str) -> dict[str, Any]:
        return clusters.setdefault(lkc, {"id": lkc, "principals": [], "topics": 0, "partitions": 0})

    for principal, lkc in sorted(image.logical_clusters.items()):
        entry(lkc)["principals"].append(principal)
    for lkc, quotas in image.logical_cluster_quotas.items():
        entry(lkc)["quotas"] = dict(sorted(quotas.items()))
    for topic in image.topics.values():
        lkc = logical_cluster_id_of(topic.name)
        if lkc is not None:  # also a logical cluster whose principals are all gone
            entry(lkc)["topics"] += 1
            entry(lkc)["partitions"] += len(topic.partitions)
    listed = [{"quotas": {}, **clusters[k]} for k in sorted(clusters)]
    return document_response(ErrorCode.none, None, {"logical_clusters": listed})


APIS = [
    (ALTER_LOGICAL_CLUSTERS_KEY, 0, 0, handle_alter),
    (DESCRIBE_LOGICAL_CLUSTERS_KEY, 0, 0, handle_describe),
]
