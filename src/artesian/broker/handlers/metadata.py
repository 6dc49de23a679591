"""Metadata (3): brokers, topics and partitions, with auto topic creation."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    NO_OPERATIONS,
    AclOperation,
    ResourceType,
    authorized_names,
    authorized_operations,
    cluster_authorized,
    cluster_operations,
)
from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers.create_topics import auto_create_topic
from artesian.broker.response import RawResponse
from artesian.metadata.image import INTERNAL_TOPICS, PartitionImage, TopicImage
from artesian.protocol.codec import writer_for
from artesian.tenancy import Translation

API_KEY = 3
MIN_VERSION = 0
MAX_VERSION = 13

log = logging.getLogger("artesian.metadata")
_NO_OPS = NO_OPERATIONS  # topic_authorized_operations when not requested


def _topic_entry(
    mod: Any,
    topic: TopicImage,
    internal: bool,
    live: frozenset[int],
    ops: int = _NO_OPS,
    reachable: frozenset[int] | None = None,
    leaderless: Callable[[int], ErrorCode] = lambda _leader: ErrorCode.leader_not_available,
) -> Any:
    """``reachable``: the brokers that have the client's listener; a leader without it is
    as good as none to this client."""
    partitions = tuple(
        partition_entry(mod.MetadataResponsePartition, p, live, reachable, leaderless)
        for _, p in sorted(topic.partitions.items())
    )
    return make(
        mod.MetadataResponseTopic,
        error_code=ErrorCode.none,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=internal,
        partitions=partitions,
        topic_authorized_operations=ops,
    )


def partition_entry(
    cls: type,
    p: PartitionImage,
    live: frozenset[int],
    reachable: frozenset[int] | None,
    leaderless: Callable[[int], ErrorCode] | None,
) -> Any:
    """A partition as Metadata and DescribeTopicPartitions describe it. A leader the client
    cannot reach (none, or without its listener) is leader -1, with the error ``leaderless``
    gives for it (Metadata's), or none (DescribeTopicPartitions', ``leaderless`` None), as
    in Kafka. Replicas fenced or without the listener are offline."""
    has_leader = p.leader >= 0 and (reachable is None or p.leader in reachable)
    return make(
        cls,
        # A partition whose ISR is all fenced has no leader until one returns (Kafka).
        error_code=ErrorCode.none if has_leader or leaderless is None else leaderless(p.leader),
        partition_index=p.partition,
        leader_id=p.leader if has_leader else -1,
        leader_epoch=p.leader_epoch,
        replica_nodes=p.replicas,
        isr_nodes=p.isr,
        eligible_leader_replicas=(),  # no ELR here (KIP-966's are Kafka 4.0's, off by default)
        last_known_elr=(),
        offline_replicas=tuple(
            r for r in p.replicas if r not in live or (reachable is not None and r not in reachable)
        ),
    )


_CATCH_UP_SECONDS = 2.0

# Cached all-topics bodies per image, listener and version: one per principal with an
# authorizer, so bounded.
_MAX_VIEWS = 64


def reachable_brokers(broker: Any, listener: str) -> frozenset[int]:
    return frozenset(b.node_id for b in broker.image.brokers.values() if b.endpoint(listener))


def _leaderless(broker: Any, version: int) -> Callable[[int], ErrorCode]:
    """Metadata's error for a partition whose leader the client cannot reach: from v6
    LISTENER_NOT_FOUND when the leader is registered without the client's listener, else
    LEADER_NOT_AVAILABLE (Kafka's errorUnavailableListeners)."""
    registered = broker.image.brokers

    def error(leader: int) -> ErrorCode:
        if version >= 6 and leader in registered:
            return ErrorCode.listener_not_found
        return ErrorCode.leader_not_available

    return error


def _error_entry(
    mod: Any, name: str | None, topic_id: Any, code: ErrorCode, internal: bool = False
) -> Any:
    return make(
        mod.MetadataResponseTopic,
        error_code=code,
        name=name,
        topic_id=topic_id,
        is_internal=internal,
        partitions=(),
        topic_authorized_operations=_NO_OPS,
    )


def handle(ctx: Any, request: Any) -> Any:
    if _names_unknown(ctx.broker, request):
        # Another broker may have created it a moment ago (each reads the shared metadata
        # log every artesian.metadata.poll.interval.ms): a client that asks this one must
        # not be told it does not exist, and wait out its metadata propagation timeout.
        return _after_catch_up(ctx, request)
    return _answer(ctx, request)


def _names_unknown(broker: Any, request: Any) -> bool:
    if broker.store is None or not request.topics:
        return False
    image = broker.image
    for t in request.topics:
        name = getattr(t, "name", None)
        if name:
            if name not in image.topics:
                return True
        elif getattr(t, "topic_id", None) is not None and t.topic_id not in image.topics_by_id:
            return True
    return False


async def _after_catch_up(ctx: Any, request: Any) -> Any:
    await ctx.broker.catch_up_metadata_within(_CATCH_UP_SECONDS, "a Metadata answer")
    return _answer(ctx, request)


def _answer(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    image = broker.image
    mod = response_module(API_KEY, version)
    requested = request.topics
    if version == 0 and not requested:
        requested = None  # v0: an empty list means every topic
    # With an authorizer, topics are shown only to principals allowed to DESCRIBE them, and
    # the authorized operations asked for (v8+) are filled in; without one, neither applies.
    authz = broker.authorizer is not None
    topic_ops = authz and getattr(request, "include_topic_authorized_operations", False)
    cluster_ops = _NO_OPS
    if authz and getattr(request, "include_cluster_authorized_operations", False):
        cluster_ops = cluster_operations(ctx)
    if requested is None:
        # Every topic: clients poll this often, so the encoded body is cached per metadata
        # offset (1,000 partitions take milliseconds to encode, microseconds to resend). What
        # a principal may see is its own: with an authorizer the key names it (and its host,
        # which ACLs may name); ACL changes are metadata records, so they move the offset.
        listener = ctx.connection.listener.name
        key: tuple[Any, ...] = (API_KEY, version, listener, image.offset, broker.live_brokers)
        lc = ctx.logical_cluster
        if lc is not None:
            key += (lc.id,)  # a logical cluster's own view, in its own names
        if authz:
            conn = ctx.connection
            # The host only where some ACL names one: else one entry serves every address.
            host = conn.peer_host if broker.authorizer.names_hosts else "*"
            key += (conn.principal, host, topic_ops, cluster_ops)
        cached = broker.response_cache.get(key)
        if cached is not None:
            return cached
        topics = [t for t in image.topics.values() if lc is None or lc.owns(t.name)]
        entity = _every_topic(ctx, mod, topics, topic_ops, cluster_ops)
        if lc is not None:
            # Encoded here, so translated here: the connection passes raw answers as they are.
            entity = Translation(lc, API_KEY, broker).response(entity)
        body = bytearray()
        writer_for(type(entity))(body, entity)
        response = RawResponse([bytes(body)], len(body), version >= 3)
        # Drop this version's bodies for older images; other versions keep theirs, and so
        # do other principals for this image.
        broker.response_cache = {
            k: v
            for k, v in broker.response_cache.items()
            if not (
                isinstance(k, tuple)
                and k[:3] == (API_KEY, version, listener)
                and k[3:5] != key[3:5]
            )
        }
        views = [k for k in broker.response_cache if isinstance(k, tuple) and k[:5] == key[:5]]
        for old in views[: max(0, len(views) - _MAX_VIEWS + 1)]:
            del broker.response_cache[old]  # the oldest principals' views (insertion order)
        broker.response_cache[key] = response
        return response
    allow_auto = getattr(request, "allow_auto_topic_creation", True) and broker.config.get(
        "auto.create.topics.enable"
    )
    describable: set[str] | None = None
    creatable: set[str] | None = None
    if authz:
        describable, creatable = _authorized_topics(ctx, image, requested, allow_auto)
    entries = []
    reachable = reachable_brokers(broker, ctx.connection.listener.name)
    leaderless = _leaderless(broker, version)
    for t in requested:
        name = getattr(t, "name", None)
        topic_id = getattr(t, "topic_id", None)
        topic = None
        if name:
            if describable is not None and name not in describable:
                # Whether it exists or not: nothing is disclosed (no topic id either).
                entries.append(_error_entry(mod, name, None, ErrorCode.topic_authorization_failed))
                continue
            topic = image.topics.get(name)
        elif topic_id is not None:
            topic = image.topics_by_id.get(topic_id)
            if topic is None:
                entries.append(_error_entry(mod, None, topic_id, ErrorCode.unknown_topic_id))
                continue
            if describable is not None and topic.name not in describable:
                # Kafka: a topic id is no secret, its name is.
                entries.append(
                    _error_entry(mod, None, topic_id, ErrorCode.topic_authorization_failed)
                )
                continue
        if topic is None and name and allow_auto:
            if creatable is not None and name not in creatable:
                entries.append(
                    _error_entry(
                        mod,
                        name,
                        None,
                        ErrorCode.topic_authorization_failed,
                        name in INTERNAL_TOPICS,
                    )
                )
                continue
            code = auto_create_topic(broker, name, ctx.logical_cluster)
            if code is not ErrorCode.none:
                entries.append(_error_entry(mod, name, None, code))
                continue
            topic = image.topics.get(name)
        if topic is None:
            entries.append(_error_entry(mod, name, None, ErrorCode.unknown_topic_or_partition))
            continue
        ops = authorized_operations(ctx, ResourceType.TOPIC, topic.name) if topic_ops else _NO_OPS
        entries.append(
            _topic_entry(
                mod,
                topic,
                topic.name in INTERNAL_TOPICS,
                broker.live_brokers,
                ops,
                reachable,
                leaderless,
            )
        )
    return _response(mod, broker, entries, ctx.connection.listener.name, cluster_ops)


def _every_topic(
    ctx: Any, mod: Any, topics: list[TopicImage], topic_ops: bool, cluster_ops: int
) -> Any:
    """The answer listing ``topics``, those the principal may DESCRIBE when authorizing."""
    broker = ctx.broker
    listener = ctx.connection.listener.name
    if broker.authorizer is not None:
        allowed = authorized_names(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, [t.name for t in topics]
        )
        topics = [t for t in topics if t.name in allowed]
    reachable = reachable_brokers(broker, listener)
    leaderless = _leaderless(broker, ctx.header.api_version)
    entries = [
        _topic_entry(
            mod,
            t,
            t.name in INTERNAL_TOPICS,
            broker.live_brokers,
            authorized_operations(ctx, ResourceType.TOPIC, t.name) if topic_ops else _NO_OPS,
            reachable,
            leaderless,
        )
        for t in topics
    ]
    return _response(mod, broker, entries, listener, cluster_ops)


def _authorized_topics(
    ctx: Any, image: Any, requested: Any, allow_auto: bool
) -> tuple[set[str], set[str] | None]:
    """(the requested topics the principal may DESCRIBE, and when auto-creation is on, the
    missing ones among those it may create: CREATE on the cluster or on the topic), as
    KafkaApis decides them. A describable topic it may not create answers
    TOPIC_AUTHORIZATION_FAILED; with auto-creation off, UNKNOWN_TOPIC_OR_PARTITION."""
    names = set()
    for t in requested:
        name = getattr(t, "name", None)
        topic_id = getattr(t, "topic_id", None)
        if name:
            names.add(name)
        elif topic_id is not None and (topic := image.topics_by_id.get(topic_id)) is not None:
            names.add(topic.name)
    describable = authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    missing = {n for n in describable if n not in image.topics}
    if not allow_auto or not missing or cluster_authorized(ctx, AclOperation.CREATE):
        return describable, None
    return describable, authorized_names(ctx, AclOperation.CREATE, ResourceType.TOPIC, missing)


def _response(
    mod: Any, broker: Any, topics: list[Any], listener: str, cluster_ops: int = _NO_OPS
) -> Any:
    # Each broker as reached on the client's listener. Fenced brokers, and brokers without
    # that listener, are left out, as in Kafka.
    brokers = tuple(
        make(
            mod.MetadataResponseBroker,
            node_id=b.node_id,
            host=address[0],
            port=address[1],
            rack=b.rack,
        )
        for b in broker.image.brokers.values()
        if b.node_id in broker.live_brokers and (address := b.endpoint(listener)) is not None
    )
    return make(
        mod.MetadataResponse,
        throttle_time=datetime.timedelta(0),
        brokers=brokers,
        cluster_id=broker.cluster_id,
        controller_id=broker.active_controller,
        topics=tuple(topics),
        cluster_authorized_operations=cluster_ops,
        error_code=ErrorCode.none,
    )
