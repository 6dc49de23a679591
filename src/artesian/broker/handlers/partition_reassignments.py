"""AlterPartitionReassignments (45) and ListPartitionReassignments (46): move a partition's
replicas to other brokers (KIP-455), as kafka-reassign-partitions.sh does.

A move adds the target's new replicas as followers; once the ISR holds them all, the active
controller drops the replicas that leave (a leaving leader hands over first). The tool and
the balancer watch progress with ListPartitionReassignments.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import CLUSTER_DENIED, AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.metadata.controller import ControllerError

ALTER = 45
LIST = 46


def alter(ctx: Any, request: Any) -> Any:
    mod = response_module(ALTER, ctx.header.api_version)
    # Refused, every partition carries the error too, as Kafka's error response: Java's admin
    # client counts them, and reports "too less results" when they are missing.
    denied = not cluster_authorized(ctx, AclOperation.ALTER)
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            code, message = (
                (ErrorCode.cluster_authorization_failed, CLUSTER_DENIED)
                if denied
                else _move(ctx.broker, request, t.name, p)
            )
            parts.append(
                make(
                    mod.ReassignablePartitionResponse,
                    partition_index=p.partition_index,
                    error_code=code,
                    error_message=message,
                )
            )
        topics.append(make(mod.ReassignableTopicResponse, name=t.name, partitions=tuple(parts)))
    return make(
        mod.AlterPartitionReassignmentsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.cluster_authorization_failed if denied else ErrorCode.none,
        error_message=CLUSTER_DENIED if denied else None,
        responses=tuple(topics),
        allow_replication_factor_change=True,
    )


def _move(broker: Any, request: Any, topic: str, p: Any) -> tuple[ErrorCode, str | None]:
    """Start (or cancel) one partition's move: its error code and message."""
    target = None if p.replicas is None else tuple(int(r) for r in p.replicas)
    timg = broker.image.topics.get(topic)
    current = timg.partitions.get(p.partition_index) if timg is not None else None
    if (
        not getattr(request, "allow_replication_factor_change", True)
        and target is not None
        and current is not None
        and len(target) != len(current.target_replicas)
    ):
        return (
            ErrorCode.invalid_replication_factor,
            "The replication factor would change, which the request does not allow.",
        )
    try:
        broker.plan_and_commit(
            lambda: broker.controller.plan_reassignment(topic, p.partition_index, target)
        )
    except ControllerError as e:
        return e.code, e.message
    return ErrorCode.none, None


def list_(ctx: Any, request: Any) -> Any:
    image = ctx.broker.image
    mod = response_module(LIST, ctx.header.api_version)
    if not cluster_authorized(ctx, AclOperation.DESCRIBE):
        return make(
            mod.ListPartitionReassignmentsResponse,
            throttle_time=datetime.timedelta(0),
            error_code=ErrorCode.cluster_authorization_failed,
            error_message=CLUSTER_DENIED,
            topics=(),
        )
    wanted: list[tuple[str, list[int] | None]]
    if request.topics is None:
        wanted = [(name, None) for name in sorted(image.topics)]
    else:
        wanted = [(t.name, list(t.partition_indexes)) for t in request.topics]
    topics = []
    for name, indexes in wanted:
        timg = image.topics.get(name)
        if timg is None:
            continue
        ongoing = [
            make(
                mod.OngoingPartitionReassignment,
                partition_index=p.partition,
                replicas=p.replicas,
                adding_replicas=p.adding_replicas,
                removing_replicas=p.removing_replicas,
            )
            for i, p in sorted(timg.partitions.items())
            if (indexes is None or i in indexes) and p.reassigning
        ]
        if ongoing:
            topics.append(make(mod.OngoingTopicReassignment, name=name, partitions=tuple(ongoing)))
    return make(
        mod.ListPartitionReassignmentsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        error_message=None,
        topics=tuple(topics),
    )


APIS = [(ALTER, 0, 1, alter), (LIST, 0, 0, list_)]
