"""What the handlers that create partitions check for a logical cluster's principal."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from artesian.metadata.controller import MAX_TOPIC_NAME, ControllerError, validate_topic_name
from artesian.metadata.image import INTERNAL_TOPICS
from artesian.tenancy.topic_policy import partition_limit_refusal

CLUSTER_METADATA_TOPIC = "__cluster_metadata"


def check_partition_limit(broker: Any, logical_cluster: Any, adding: int) -> None:
    """POLICY_VIOLATION when ``adding`` partitions would take a logical cluster past
    ``artesian.logical.cluster.max.partitions``. Called from within a plan, whose image is
    the one the commit is checked against."""
    limit = broker.config.get("artesian.logical.cluster.max.partitions")
    if problem := partition_limit_refusal(
        logical_cluster.prefix, broker.image.topics, limit, adding
    ):
        raise ControllerError(ErrorCode.policy_violation, problem)


def check_tenant_topic_name(logical_cluster: Any, name: str) -> None:
    """A logical cluster's new topic, judged by the name its tenant gave (Kafka's rules: not
    "." or "..", and within 249 characters with the prefix), raising ControllerError. The
    internal topics' names are the shared cluster's: TOPIC_AUTHORIZATION_FAILED, as to a
    principal without rights on them."""
    logical = logical_cluster.logical(name) or ""
    if logical in INTERNAL_TOPICS or logical == CLUSTER_METADATA_TOPIC:
        raise ControllerError(ErrorCode.topic_authorization_failed, "Authorization failed.")
    room = MAX_TOPIC_NAME - len(logical_cluster.prefix)
    if len(logical) > room:
        raise ControllerError(
            ErrorCode.invalid_topic_exception,
            f"Topic name is longer than the maximum of {room} characters",
        )
    validate_topic_name(logical)
