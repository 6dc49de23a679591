"""What the handlers that create partitions check for a logical cluster's principal."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from artesian.metadata.controller import ControllerError
from artesian.tenancy.topic_policy import partition_limit_refusal


def check_partition_limit(broker: Any, logical_cluster: Any, adding: int) -> None:
    """POLICY_VIOLATION when ``adding`` partitions would take a logical cluster past
    ``artesian.logical.cluster.max.partitions``. Called from within a plan, whose image is
    the one the commit is checked against."""
    limit = broker.config.get("artesian.logical.cluster.max.partitions")
    if problem := partition_limit_refusal(
        logical_cluster.prefix, broker.image.topics, limit, adding
    ):
        raise ControllerError(ErrorCode.policy_violation, problem)
