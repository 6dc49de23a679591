"""Metadata (3): brokers, topics and partitions, with auto topic creation."""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers.create_topics import auto_create_topic
from artesian.broker.response import RawResponse
from artesian.metadata.image import INTERNAL_TOPICS, TopicImage
from artesian.protocol.codec import writer_for

API_KEY = 3
MIN_VERSION = 0
MAX_VERSION = 13

log = logging.getLogger("artesian.metadata")
_NO_OPS = -(2**31)  # topic_authorized_operations when not requested


def _topic_entry(mod: Any, topic: TopicImage, internal: bool, live: frozenset[int]) -> Any:
    partitions = tuple(
        make(
            mod.MetadataResponsePartition,
            # A partition whose ISR is all fenced has no leader until one returns (Kafka).
            error_code=ErrorCode.none if p.leader >= 0 else ErrorCode.leader_not_available,
            partition_index=p.partition,
            leader_id=p.leader,
            leader_epoch=p.leader_epoch,
            replica_nodes=p.replicas,
            isr_nodes=p.isr,
            offline_replicas=tuple(r for r in p.replicas if r not in live),
        )
        for _, p in sorted(topic.partitions.items())
    )
    return make(
        mod.MetadataResponseTopic,
        error_code=ErrorCode.none,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=internal,
        partitions=partitions,
        topic_authorized_operations=_NO_OPS,
    )


def _error_entry(mod: Any, name: str | None, topic_id: Any, code: ErrorCode) -> Any:
    return make(
        mod.MetadataResponseTopic,
        error_code=code,
        name=name,
        topic_id=topic_id,
        is_internal=False,
        partitions=(),
        topic_authorized_operations=_NO_OPS,
    )


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    image = broker.image
    mod = response_module(API_KEY, version)
    requested = request.topics
    if version == 0 and not requested:
        requested = None  # v0: an empty list means every topic
    if requested is None:
        # Every topic: clients poll this often, so the encoded body is cached per metadata
        # offset (1,000 partitions take milliseconds to encode, microseconds to resend).
        listener = ctx.connection.listener.name
        key = (API_KEY, version, listener, image.offset, broker.live_brokers)
        cached = broker.response_cache.get(key)
        if cached is not None:
            return cached
        entries = [
            _topic_entry(mod, t, t.name in INTERNAL_TOPICS, broker.live_brokers)
            for t in image.topics.values()
        ]
        entity = _response(mod, broker, entries, listener)
        body = bytearray()
        writer_for(type(entity))(body, entity)
        response = RawResponse([bytes(body)], len(body))
        # Drop this version's bodies for older images; other versions keep theirs.
        broker.response_cache = {
            k: v
            for k, v in broker.response_cache.items()
            if not (isinstance(k, tuple) and k[:3] == (API_KEY, version, listener))
        }
        broker.response_cache[key] = response
        return response
    allow_auto = getattr(request, "allow_auto_topic_creation", True) and broker.config.get(
        "auto.create.topics.enable"
    )
    entries = []
    for t in requested:
        name = getattr(t, "name", None)
        topic_id = getattr(t, "topic_id", None)
        topic = None
        if name:
            topic = image.topics.get(name)
        elif topic_id is not None:
            topic = image.topics_by_id.get(topic_id)
            if topic is None:
                entries.append(_error_entry(mod, None, topic_id, ErrorCode.unknown_topic_id))
                continue
        if topic is None and name and allow_auto:
            code = auto_create_topic(broker, name)
            if code is not ErrorCode.none:
                entries.append(_error_entry(mod, name, None, code))
                continue
            topic = image.topics.get(name)
        if topic is None:
            entries.append(_error_entry(mod, name, None, ErrorCode.unknown_topic_or_partition))
            continue
        entries.append(_topic_entry(mod, topic, topic.name in INTERNAL_TOPICS, broker.live_brokers))
    return _response(mod, broker, entries, ctx.connection.listener.name)


def _response(mod: Any, broker: Any, topics: list[Any], listener: str) -> Any:
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
        cluster_authorized_operations=_NO_OPS,
        error_code=ErrorCode.none,
    )
