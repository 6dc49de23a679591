"""CreatePartitions (37): grow a topic's partition count."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    TOPIC_DENIED,
    AclOperation,
    ResourceType,
    authorized_names,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._quota import MutationAdmission, throttling_quota_exceeded
from artesian.broker.handlers._tenancy import check_partition_limit
from artesian.metadata.controller import ControllerError
from artesian.metadata.records import MetadataRecord
from artesian.tenancy import PLACEMENT_IS_THE_PLATFORMS

API_KEY = 37
MIN_VERSION = 0
MAX_VERSION = 3


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(API_KEY, ctx.header.api_version)
    # KIP-599: v3 refuses what goes over controller_mutation_rate, older ones are throttled.
    quota = MutationAdmission(ctx, strict=ctx.header.api_version >= 3)
    lc = ctx.logical_cluster
    validated = 0  # partitions a validate_only request's earlier topics would add
    # A topic named twice is answered once and left as it is (ControllerApis).
    counts = Counter(t.name for t in request.topics)
    duplicates = [name for name, n in counts.items() if n > 1]
    results = [
        make(
            mod.CreatePartitionsTopicResult,
            name=name,
            error_code=ErrorCode.invalid_request,
            error_message="Duplicate topic name.",
        )
        for name in duplicates
    ]
    # ALTER on each topic (KafkaApis/ControllerApis: after the duplicate check).
    allowed = authorized_names(
        ctx, AclOperation.ALTER, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    for t in request.topics:
        if counts[t.name] > 1:
            continue
        code, message = ErrorCode.none, None
        try:
            if t.name not in allowed:
                raise ControllerError(ErrorCode.topic_authorization_failed, TOPIC_DENIED)
            assignments = (
                [tuple(a.broker_ids) for a in t.assignments] if t.assignments is not None else None
            )

            def plan(
                t: Any = t, assignments: Any = assignments, validated: int = validated
            ) -> list[MetadataRecord]:
                records: list[MetadataRecord] = broker.controller.plan_create_partitions(
                    t.name, t.count, assignments
                )
                if lc is not None:  # the platform's policy, after Kafka's own checks
                    if assignments:
                        raise ControllerError(
                            ErrorCode.policy_violation, PLACEMENT_IS_THE_PLATFORMS
                        )
                    check_partition_limit(broker, lc, _added(broker, t) + validated)
                return records

            if request.validate_only or quota.active:
                plan()  # only partitions that would be created count, validate_only too
                if not quota.admit(_added(broker, t)):
                    raise throttling_quota_exceeded()
            if not request.validate_only:
                broker.plan_and_commit(plan)
            else:
                validated += _added(broker, t)  # counted as if created, for the limit
        except ControllerError as e:
            code, message = e.code, e.message
        results.append(
            make(
                mod.CreatePartitionsTopicResult, name=t.name, error_code=code, error_message=message
            )
        )
    return make(mod.CreatePartitionsResponse, throttle_time=quota.finish(), results=tuple(results))


def _added(broker: Any, wanted: Any) -> int:
    """Partitions a request's topic entry would add (planned: the topic is there)."""
    topic = broker.image.topics.get(wanted.name)
    return int(wanted.count) - (len(topic.partitions) if topic is not None else 0)
