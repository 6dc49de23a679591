"""CreateTopics (19), and auto topic creation for Metadata and Produce."""

from __future__ import annotations

import collections
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized_names,
    cluster_authorized,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._quota import MutationAdmission, throttling_quota_exceeded
from artesian.broker.handlers._tenancy import (
    CLUSTER_METADATA_TOPIC,
    check_partition_limit,
    check_tenant_topic_name,
)
from artesian.config.definitions import InvalidConfigError, UnknownConfigError
from artesian.config.resolve import describe_topic_configs, validate_topic_overrides
from artesian.metadata.controller import ControllerError, NewTopic
from artesian.metadata.records import MetadataRecord
from artesian.tenancy import PLACEMENT_IS_THE_PLATFORMS
from artesian.tenancy.topic_policy import (
    replication_factor_violation,
    set_by_the_platform,
    topic_config_violation,
)

API_KEY = 19
MIN_VERSION = 2
MAX_VERSION = 7

log = logging.getLogger("artesian.admin")


def auto_create_topic(broker: Any, name: str, logical_cluster: Any = None) -> ErrorCode:
    """Create ``name`` with the broker defaults; returns the error code for Metadata. A
    logical cluster's principal creates within its partition limit (else POLICY_VIOLATION).
    An internal topic gets its coordinator's settings, as Kafka's AutoTopicCreationManager
    gives them (a monitoring tool may ask for __consumer_offsets before any group exists)."""
    internal = {
        t.name: t
        for t in (broker.offsets_topic, broker.transaction_state_topic, broker.share_state_topic)
    }.get(name)
    if internal is not None:
        try:
            internal.ensure()
        except ControllerError as e:
            return e.code
        return ErrorCode.none
    if name == CLUSTER_METADATA_TOPIC:
        # Kafka's controller refuses to create it; the asker keeps hearing that it is on
        # its way, as from Kafka's AutoTopicCreationManager.
        return ErrorCode.leader_not_available
    if logical_cluster is not None:
        try:
            check_tenant_topic_name(logical_cluster, name)
        except ControllerError as e:
            return e.code
    topic = NewTopic(
        name,
        broker.config.get("num.partitions"),
        min(broker.config.get("default.replication.factor"), len(broker.image.brokers)),
        {},
    )

    def plan() -> list[MetadataRecord]:
        records: list[MetadataRecord] = broker.controller.plan_create_topic(topic)
        if logical_cluster is not None:
            check_partition_limit(broker, logical_cluster, topic.num_partitions)
        return records

    try:
        broker.plan_and_commit(plan)
    except ControllerError as e:
        if e.code is ErrorCode.topic_already_exists:
            return ErrorCode.none
        return e.code
    log.info("auto-created topic %s with %d partition(s)", name, topic.num_partitions)
    return ErrorCode.none


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    counts = collections.Counter(t.name for t in request.topics)
    # CREATE on the cluster, or on each topic; the configs a created topic answers with need
    # DESCRIBE_CONFIGS on it (else topic_config_error_code TOPIC_AUTHORIZATION_FAILED).
    # KRaft's metadata topic is no topic one may create (refused as unauthorized, as Kafka's
    # ControllerApis does): tools tell it by its name.
    allowed = set(counts) - {CLUSTER_METADATA_TOPIC}
    if CLUSTER_METADATA_TOPIC in counts:
        log.info("rejecting creation of internal topic %s", CLUSTER_METADATA_TOPIC)
    creatable = describable = allowed
    if broker.authorizer is not None:
        if not cluster_authorized(ctx, AclOperation.CREATE):
            creatable = authorized_names(ctx, AclOperation.CREATE, ResourceType.TOPIC, allowed)
        describable = authorized_names(
            ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, allowed
        )
    # KIP-599: v6+ refuse what goes over controller_mutation_rate, older ones are throttled.
    quota = MutationAdmission(ctx, strict=version >= 6)
    tenant = ctx.logical_cluster is not None
    validated = 0  # partitions a validate_only request's earlier topics would create
    results = []
    answered_duplicates: set[str] = set()
    for t in request.topics:
        if counts[t.name] > 1:  # answered once (ControllerApis)
            if t.name in answered_duplicates:
                continue
            answered_duplicates.add(t.name)
        result = dict(
            name=t.name,
            topic_id=None,
            error_code=ErrorCode.none,
            error_message=None,
            topic_config_error_code=0,
            num_partitions=-1,
            replication_factor=-1,
            configs=None,
        )
        try:
            if counts[t.name] > 1:
                raise ControllerError(ErrorCode.invalid_request, "Duplicate topic name.")
            if t.name not in creatable:
                raise ControllerError(ErrorCode.topic_authorization_failed, "Authorization failed.")
            if tenant:
                check_tenant_topic_name(ctx.logical_cluster, t.name)
            configs = {c.name: c.value for c in t.configs}
            try:
                overrides = validate_topic_overrides(configs, ctx.broker.config)
            except (InvalidConfigError, UnknownConfigError) as e:
                raise ControllerError(ErrorCode.invalid_config, str(e)) from e
            num_partitions = t.num_partitions
            rf = t.replication_factor
            assignments = {a.partition_index: tuple(a.broker_ids) for a in t.assignments}
            if assignments and (num_partitions != -1 or rf != -1):
                raise ControllerError(
                    ErrorCode.invalid_request,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. "
                    "Both cannot be used at the same time.",
                )
            if num_partitions == -1:
                num_partitions = broker.config.get("num.partitions")
            if rf == -1:
                rf = broker.config.get("default.replication.factor")
            new = NewTopic(t.name, num_partitions, rf, overrides, assignments or None)
            partitions = len(assignments) if assignments else num_partitions

            def plan(new: NewTopic = new, validated: int = validated) -> list[MetadataRecord]:
                records: list[MetadataRecord] = broker.controller.plan_create_topic(new)
                if tenant:  # the platform's policy, after Kafka's own checks (as its policies)
                    _check_tenant_topic(broker, ctx.logical_cluster, new, validated)
                return records

            if request.validate_only or quota.active:
                # Planned first: only a topic that would be created counts, validate_only
                # ones too (KRaft applies the quota before it drops their records).
                plan()
                if not quota.admit(partitions):
                    raise throttling_quota_exceeded()
            if not request.validate_only:
                broker.plan_and_commit(plan)
                log.info("created topic %s (%d partitions)", t.name, partitions)
            else:
                validated += partitions  # counted as if created, for the limit
            topic = broker.image.topics.get(t.name)
            result.update(
                topic_id=topic.topic_id
                if topic is not None and not request.validate_only
                else None,
                num_partitions=partitions,
                replication_factor=len(next(iter(assignments.values()))) if assignments else rf,
                configs=None
                if not hasattr(mod, "CreatableTopicConfigs")
                else tuple(
                    make(
                        mod.CreatableTopicConfigs,
                        name=e.name,
                        value=e.value,
                        read_only=e.read_only or (tenant and set_by_the_platform(e.name)),
                        config_source=int(e.source),
                        is_sensitive=e.is_sensitive,
                    )
                    for e in describe_topic_configs(overrides, broker.config, None, False, False)
                ),
            )
            if t.name not in describable:
                # Kafka's ReplicationControlManager: the topic id only, no configs.
                result.update(
                    topic_config_error_code=ErrorCode.topic_authorization_failed,
                    num_partitions=-1,
                    replication_factor=-1,
                    configs=None if not hasattr(mod, "CreatableTopicConfigs") else (),
                )
        except ControllerError as e:
            result.update(error_code=e.code, error_message=e.message)
        results.append(make(mod.CreatableTopicResult, **result))
    return make(mod.CreateTopicsResponse, throttle_time=quota.finish(), topics=tuple(results))


def _check_tenant_topic(broker: Any, logical_cluster: Any, new: NewTopic, validated: int) -> None:
    """The platform's topic policy for a logical cluster's new topic (POLICY_VIOLATION);
    ``validated``: partitions of the same validate_only request not in the image."""
    if new.assignments:
        raise ControllerError(ErrorCode.policy_violation, PLACEMENT_IS_THE_PLATFORMS)
    platforms = broker.config.get("default.replication.factor")
    if problem := replication_factor_violation(new.replication_factor, platforms):
        raise ControllerError(ErrorCode.policy_violation, problem)
    if problem := topic_config_violation(new.configs):
        raise ControllerError(ErrorCode.policy_violation, problem)
    check_partition_limit(broker, logical_cluster, new.num_partitions + validated)
