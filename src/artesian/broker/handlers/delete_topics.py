"""DeleteTopics (20): by name, or by topic id from v6."""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    TOPIC_DENIED,
    AclOperation,
    ResourceType,
    authorized_names,
    cluster_authorized,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._quota import MutationAdmission, throttling_quota_exceeded
from artesian.metadata.controller import ControllerError

API_KEY = 20
MIN_VERSION = 1
MAX_VERSION = 6

log = logging.getLogger("artesian.admin")

_MAPS_TO_GIVEN_ID = "The provided topic name maps to an ID that was already supplied."


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    mod = response_module(API_KEY, ctx.header.api_version)
    if hasattr(request, "topics"):
        wanted = [(t.name or None, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    image = broker.image
    # DELETE on the cluster, or on each topic (Kafka's ControllerApis.deleteTopics). A topic
    # named without DESCRIBE on it answers TOPIC_AUTHORIZATION_FAILED with no topic id; one
    # given by id answers without its name.
    describable: set[str] | None = None
    deletable: set[str] | None = None
    if broker.authorizer is not None and not cluster_authorized(ctx, AclOperation.DELETE):
        names = set()
        for name, topic_id in wanted:
            topic = _lookup(image, name, topic_id)
            if topic is not None:
                names.add(topic.name)
            elif name and not topic_id:
                names.add(name)
        describable = authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
        deletable = authorized_names(ctx, AclOperation.DELETE, ResourceType.TOPIC, names)
    # KIP-599: v5+ refuse what goes over controller_mutation_rate, older ones are throttled.
    quota = MutationAdmission(ctx, strict=ctx.header.api_version >= 5)
    results = []

    def answer(name: str | None, topic_id: Any, code: ErrorCode, message: str | None) -> None:
        results.append(
            make(
                mod.DeletableTopicResult,
                name=name,
                topic_id=topic_id,
                error_code=code,
                error_message=message,
            )
        )

    # With deletion disabled, every entry says so first (Kafka refuses the whole request).
    enabled = broker.config.get("delete.topic.enable")
    ambiguous = _ambiguous(image, wanted, describable, deletable) if enabled else {}
    for (name, topic_id), message in ambiguous.items():
        if message == _MAPS_TO_GIVEN_ID:
            topic_id = image.topics[name].topic_id  # told: the principal may delete it
        if message:
            answer(name, topic_id, ErrorCode.invalid_request, message)
    for name, topic_id in wanted:
        if (name, topic_id) in ambiguous:
            continue
        code, message = ErrorCode.none, None
        topic = _lookup(image, name, topic_id)
        try:
            if not broker.config.get("delete.topic.enable"):
                raise ControllerError(
                    ErrorCode.topic_deletion_disabled, "Topic deletion is disabled."
                )
            if not name and not topic_id:
                raise ControllerError(
                    ErrorCode.invalid_request, "Neither topic name nor id were specified."
                )
            if deletable is not None and describable is not None:
                refused = _refused(name, topic_id, topic, describable, deletable)
                if refused is not None:
                    name, topic_id = refused
                    topic = None
                    raise ControllerError(ErrorCode.topic_authorization_failed, TOPIC_DENIED)
            if quota.active and topic is not None:
                broker.controller.plan_delete_topic(name, topic_id)  # it would be deleted
                if not quota.admit(len(topic.partitions)):
                    raise throttling_quota_exceeded()
            broker.plan_and_commit(
                lambda name=name, topic_id=topic_id: broker.controller.plan_delete_topic(
                    name, topic_id
                )
            )
            log.info("deleted topic %s", topic.name if topic else name)
        except ControllerError as e:
            code, message = e.code, e.message
        answer(
            topic.name if topic is not None else name,
            topic.topic_id if topic is not None else topic_id,
            code,
            message,
        )
    return make(mod.DeleteTopicsResponse, throttle_time=quota.finish(), responses=tuple(results))


def _ambiguous(
    image: Any,
    wanted: list[tuple[str | None, Any]],
    describable: set[str] | None,
    deletable: set[str] | None,
) -> dict[tuple[str | None, Any], str | None]:
    """The entries that delete nothing, as Kafka's ControllerApis refuses them, with the
    INVALID_REQUEST message each answers (None: answered by another entry's message): a name
    and an id together, a name or an id given twice, and a name whose topic is also given by
    id (told only to a principal who may delete it: else the name would reveal the id)."""
    refused: dict[tuple[str | None, Any], str | None] = {}
    names: dict[str, int] = {}
    ids: dict[Any, int] = {}
    for name, topic_id in wanted:
        if name and topic_id:
            refused[(name, topic_id)] = "You may not specify both topic name and topic id."
        elif name:
            names[name] = names.get(name, 0) + 1
        elif topic_id:
            ids[topic_id] = ids.get(topic_id, 0) + 1
    for name, count in names.items():
        if count > 1:
            refused[(name, None)] = "Duplicate topic name."
    for topic_id, count in ids.items():
        if count > 1:
            refused[(None, topic_id)] = "Duplicate topic id."
    for name, count in names.items():
        topic = image.topics.get(name)
        if count > 1 or topic is None or topic.topic_id not in ids:
            continue
        if describable is not None and name not in describable & (deletable or set()):
            continue
        refused[(name, None)] = _MAPS_TO_GIVEN_ID
        refused.setdefault((None, topic.topic_id), None)
    return refused


def _lookup(image: Any, name: str | None, topic_id: Any) -> Any:
    return image.topics_by_id.get(topic_id) if topic_id else image.topics.get(name)


def _refused(
    name: str | None, topic_id: Any, topic: Any, describable: set[str], deletable: set[str]
) -> tuple[str | None, Any] | None:
    """The (name, topic id) to answer TOPIC_AUTHORIZATION_FAILED with, or None when the
    deletion goes ahead (or fails on its own: an unknown topic id, or an unknown name the
    principal may describe)."""
    if topic_id:
        if topic is None or topic.name in deletable:
            return None  # UNKNOWN_TOPIC_ID comes before authorization
        return (topic.name if topic.name in describable else None), topic_id
    if name not in describable:
        return name, None  # whether it exists or not
    if topic is None or name in deletable:
        return None  # UNKNOWN_TOPIC_OR_PARTITION comes before DELETE (ControllerApis)
    return name, None
