"""Authorization checks for handlers: the connection's principal and host against the
broker's authorizer, Kafka's operations and resource types. Without an authorizer
(``authorizer.class.name`` empty) every check passes at the cost of one attribute read."""

from __future__ import annotations

from typing import Any

from artesian.security.acl import CLUSTER_NAME, AclOperation, ResourceType

__all__ = ["AclOperation", "ResourceType", "authorized", "authorized_any", "cluster_authorized"]


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
