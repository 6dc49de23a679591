"""Authorization checks for handlers: the connection's principal and host against the
broker's authorizer, Kafka's operations and resource types. Without an authorizer
(``authorizer.class.name`` empty) every check passes at the cost of one attribute read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from artesian.security.acl import CLUSTER_NAME, AclOperation, ResourceType

__all__ = [
    "CLUSTER_DENIED",
    "GROUP_DENIED",
    "NO_OPERATIONS",
    "TOPIC_DENIED",
    "TRANSACTIONAL_ID_DENIED",
    "AclOperation",
    "ResourceType",
    "authorized",
    "authorized_any",
    "authorized_names",
    "authorized_operations",
    "cluster_authorized",
    "cluster_operations",
]

# Kafka's messages for its authorization errors (the Errors enum's defaults).
TOPIC_DENIED = "Topic authorization failed."
GROUP_DENIED = "Group authorization failed."
CLUSTER_DENIED = "Cluster authorization failed."
TRANSACTIONAL_ID_DENIED = "Transactional Id authorization failed."

NO_OPERATIONS = -(2**31)  # authorized_operations fields when not asked for

# The operations each resource type has (Kafka's AclEntry.supportedOperations): what
# "authorized operations" fields report on.
_SUPPORTED = {
    ResourceType.TOPIC: (
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.CREATE,
        AclOperation.DESCRIBE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE),
    ResourceType.CLUSTER: (
        AclOperation.CREATE,
        AclOperation.CLUSTER_ACTION,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE,
    ),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.DESCRIBE, AclOperation.WRITE),
}


def authorized(ctx: Any, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return True
    conn = ctx.connection
    return bool(
        authorizer.authorize(conn.principal, conn.peer_host, operation, resource_type, name)
    )


def cluster_authorized(ctx: Any, operation: AclOperation) -> bool:
    return authorized(ctx, operation, ResourceType.CLUSTER, CLUSTER_NAME)


def authorized_any(ctx: Any, operation: AclOperation, resource_type: ResourceType) -> bool:
    """Allowed on some resource of the type (Kafka's authorizeByResourceType)."""
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return True
    conn = ctx.connection
    return bool(authorizer.authorize_any(conn.principal, conn.peer_host, operation, resource_type))


def authorized_names(
    ctx: Any, operation: AclOperation, resource_type: ResourceType, names: Iterable[str]
) -> set[str]:
    """The names among ``names`` the operation is allowed on, each asked once (Kafka's
    filterByAuthorized)."""
    unique = set(names)
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return unique
    conn = ctx.connection
    principal, host = conn.principal, conn.peer_host
    return {n for n in unique if authorizer.authorize(principal, host, operation, resource_type, n)}


def authorized_operations(ctx: Any, resource_type: ResourceType, name: str) -> int:
    """The bit field (1 << operation code) of what the principal may do on the resource, as
    Kafka fills the ``*_authorized_operations`` fields."""
    bits = 0
    for operation in _SUPPORTED.get(resource_type, ()):
        if authorized(ctx, operation, resource_type, name):
            bits |= 1 << int(operation)
    return bits


def cluster_operations(ctx: Any) -> int:
    """``cluster_authorized_operations`` (Metadata v8-10, DescribeCluster): what the principal
    may do on the cluster if it may DESCRIBE it, else nothing (0), as in Kafka."""
    if not cluster_authorized(ctx, AclOperation.DESCRIBE):
        return 0
    return authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
