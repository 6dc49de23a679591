"""Multi-tenancy: logical clusters on a shared physical cluster (Kora's design).

A principal bound to a logical cluster sees a Kafka cluster of its own: its topics, groups
and transactional ids live on the shared brokers under the cluster's name prefix, and every
request and answer is translated at the connection, so handlers, logs and coordinators work
on physical names and need not know tenants exist (bar a few that list everything).
"""

from artesian.tenancy.logical_cluster import (
    LOGICAL_CLUSTER_ID,
    PLACEMENT_IS_THE_PLATFORMS,
    LogicalCluster,
    Lookups,
    Translation,
    logical_cluster_id_of,
    namespace_of,
    refusal_response,
    refused_api,
)

__all__ = [
    "LOGICAL_CLUSTER_ID",
    "PLACEMENT_IS_THE_PLATFORMS",
    "LogicalCluster",
    "Lookups",
    "Translation",
    "logical_cluster_id_of",
    "namespace_of",
    "refusal_response",
    "refused_api",
]
