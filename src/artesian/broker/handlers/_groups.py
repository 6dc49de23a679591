"""What the group APIs' handlers share: whether a group may be described here, and a
consumer group member's partitions as ConsumerGroupHeartbeat and ConsumerGroupDescribe carry
them (by topic id, and name where the version has it, partitions sorted)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    GROUP_DENIED,
    NO_OPERATIONS,
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import make, reply_when_replicated
from artesian.broker.internal_topic import OFFSETS_TOPIC
from artesian.metadata.image import MetadataImage


def client_host(ctx: Any) -> str:
    """A member's address as Kafka's coordinator records it, Java's InetAddress.toString():
    "/127.0.0.1", an IPv6 one written out ("/0:0:0:0:0:0:0:1"). Tools show it as is."""
    host: str = ctx.connection.peer.rsplit(":", 1)[0]
    name, _, scope = host.partition("%")  # a link-local address's zone: Java writes it too
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"/{address.ipv4_mapped}"  # Java's InetAddress reads these as IPv4
    if address.version == 6:
        name = ":".join(f"{int(group, 16):x}" for group in address.exploded.split(":"))
    return "/" + name + (f"%{scope}" if scope else "")


class ImageTopics:
    """The group coordinator's TopicsView over the broker's metadata image. With the
    request's ``ctx`` and an authorizer, a subscription regex sees only the topics its
    principal may DESCRIBE (KAFKA-18813): the regex is resolved with the rights of the
    member whose request resolves it, as Kafka's coordinator resolves it with the rights of
    the member that triggered the refresh."""

    __slots__ = ("_ctx", "_image")

    def __init__(self, image: MetadataImage, ctx: Any = None) -> None:
        self._image = image
        self._ctx = ctx

    def partition_count(self, topic: str) -> int:
        found = self._image.topics.get(topic)
        return len(found.partitions) if found is not None else 0

    def names(self) -> Iterable[str]:
        return self._image.topics.keys()

    def viewer(self) -> str | None:
        ctx = self._ctx
        if ctx is None or ctx.broker.authorizer is None:
            return None
        return f"{ctx.connection.principal}@{ctx.connection.peer_host}"

    def describable(self, names: frozenset[str]) -> frozenset[str]:
        return frozenset(
            authorized_names(self._ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
        )

    def version(self) -> int:
        return self._image.offset


def describe_refusal(ctx: Any, group_id: str) -> tuple[ErrorCode, str | None] | None:
    """Why ``group_id`` may not be described here, in Kafka's order: DESCRIBE refused on it,
    or another broker coordinates it. None when it may."""
    if not authorized(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return ErrorCode.group_authorization_failed, GROUP_DENIED
    if not ctx.broker.group_coordinator.owns(group_id):
        return ErrorCode.not_coordinator, None
    return None


def heartbeat_refusal(
    ctx: Any, group_id: str, subscribed: Iterable[str] | None
) -> tuple[ErrorCode, str] | None:
    """Why a KIP-848 or share group heartbeat is refused before the coordinator sees it:
    READ on the group, then DESCRIBE on each subscribed topic (Kafka's order)."""
    if not authorized(ctx, AclOperation.READ, ResourceType.GROUP, group_id):
        return ErrorCode.group_authorization_failed, GROUP_DENIED
    names = list(subscribed or ())
    if names:
        denied = set(names) - authorized_names(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names
        )
        if denied:
            return (
                ErrorCode.topic_authorization_failed,
                f"The following topics are not authorized: {', '.join(sorted(denied))}.",
            )
    return None


TOPICS_DENIED = "The described group uses topics that the client is not authorized to describe."


def hides_topics(ctx: Any, image: Any, used: set[str]) -> bool:
    """Whether a described group's assignments name a topic the caller may not DESCRIBE
    (KAFKA-18813, KAFKA-18817): Kafka then describes the group as TOPIC_AUTHORIZATION_FAILED.
    A deleted topic is nobody's to hide."""
    used = used & image.topics.keys()
    return bool(used - authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, used))


def described_group_error(mod: Any, group_id: str, code: ErrorCode, message: str | None) -> Any:
    """A DescribeGroups, ConsumerGroupDescribe or ShareGroupDescribe entry for a group not
    described (Kafka's groupError): no state, no protocol, no members; each API's response
    keeps the fields it has."""
    return make(
        mod.DescribedGroup,
        error_code=code,
        error_message=message,
        group_id=group_id,
        group_state="",
        group_epoch=-1,
        assignment_epoch=-1,
        assignor_name="",
        protocol_type="",
        protocol_data="",
        members=(),
        authorized_operations=NO_OPERATIONS,
    )


def missing_group_error(mod: Any, group_id: str, group: Any, kind: str) -> Any | None:
    """The GROUP_ID_NOT_FOUND entry for a group that does not exist or is not a ``kind``
    group ("consumer" or "share"); None when it is one."""
    if group is not None and getattr(group, kind) is not None:
        return None
    message = (
        f"Group {group_id} not found."
        if group is None
        else f"Group {group_id} is not a {kind} group."
    )
    return described_group_error(mod, group_id, ErrorCode.group_id_not_found, message)


def heartbeat_response(response: Any, mod: Any, image: MetadataImage, result: Any) -> Any:
    """A ConsumerGroupHeartbeat or ShareGroupHeartbeat answer (``response`` is its class)."""
    return make(
        response,
        throttle_time=datetime.timedelta(0),
        error_code=result.error,
        error_message=result.message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=datetime.timedelta(milliseconds=result.heartbeat_interval_ms),
        assignment=assignment_entity(mod, image, result.assignment)
        if result.assignment is not None
        else None,
    )


def heartbeat_when_stored(
    ctx: Any,
    response: Any,
    mod: Any,
    image: MetadataImage,
    group_id: str,
    result: Any,
    failed: Callable[[ErrorCode], Any],
) -> Any:
    """The heartbeat's answer once __consumer_offsets' ISR holds what it changed (Kafka
    appends coordinator records with acks=all); ``failed(code)`` answered if that fails. A
    refused heartbeat changed nothing, and is answered at once."""

    def build(replication: ErrorCode) -> Any:
        answer = result if replication is ErrorCode.none else failed(replication)
        return heartbeat_response(response, mod, image, answer)

    if result.error != ErrorCode.none:
        return build(ErrorCode.none)
    wait = ctx.broker.coordinator_write_replicated(OFFSETS_TOPIC, group_id)
    return reply_when_replicated(wait, build)


def assignment_entity(mod: Any, image: MetadataImage, partitions: Iterable[tuple[str, int]]) -> Any:
    by_topic: dict[str, list[int]] = {}
    for topic, index in partitions:
        by_topic.setdefault(topic, []).append(index)
    return make(
        mod.Assignment,
        topic_partitions=tuple(
            make(
                mod.TopicPartitions,
                topic_id=image.topics[topic].topic_id,
                topic_name=topic,
                partitions=tuple(sorted(indexes)),
            )
            for topic, indexes in sorted(by_topic.items())
            # A topic deleted since the assignment was computed: its partitions are gone.
            if topic in image.topics
        ),
    )
