"""Client quotas in handlers: count a request's bytes against its client's quota, and put
the throttle time in the response (KIP-219: answer at once, then mute the connection). A
Produce is counted as it comes; a Fetch's response before it is sent (fetch_throttle_ms).
Every request's handling time is counted against request_percentage as it is answered
(charge_request_time); the longest of the throttles is the one the client is told."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.response import RawResponse
from artesian.metadata.controller import ControllerError

if TYPE_CHECKING:
    from artesian.broker.quota_manager import ClientQuotaManager

__all__ = [
    "MutationAdmission",
    "charge_encoding_time",
    "charge_request_time",
    "exempt_a_replica",
    "fetch_max_bytes",
    "fetch_throttle_ms",
    "throttle",
    "throttled",
    "throttling_quota_exceeded",
]


def _who(ctx: Any) -> tuple[str, str | None]:
    return ctx.connection.principal, ctx.client_id


def fetch_max_bytes(ctx: Any) -> int | None:
    """The most a consumer's fetch may return under its consumer_byte_rate (Kafka's
    getMaxValueInQuotaWindow): a larger answer would never fit in the quota at once. None
    when no quota applies to this client."""
    quotas: ClientQuotaManager = ctx.broker.quota_manager
    return quotas.max_bytes("fetch", *_who(ctx))


def fetch_throttle_ms(ctx: Any, size: int) -> int:
    """A fetch response of ``size`` bytes, before it is sent: 0 when the consumer's quota
    allows it (it is counted); else the throttle time, with the connection muted that long
    and nothing counted, for the caller to answer empty (KafkaApis.handleFetchRequest)."""
    quotas: ClientQuotaManager = ctx.broker.quota_manager
    ms = quotas.record_within("fetch", *_who(ctx), size)
    if ms > 0:
        throttle(ctx, "fetch", ms)
    return ms


def throttled(ctx: Any, kind: str, nbytes: int, result: Any) -> Any:
    """``result`` (a response, None, or an awaitable of one) once ``nbytes`` of ``kind`` are
    counted: with its throttle time set and the connection muted when over quota."""
    quotas = ctx.broker.quota_manager
    if not quotas.active(kind):
        return result
    if inspect.isawaitable(result):

        async def later() -> Any:
            return _apply(ctx, kind, nbytes, await result)

        return later()
    return _apply(ctx, kind, nbytes, result)


def _apply(ctx: Any, kind: str, nbytes: int, response: Any) -> Any:
    ms = ctx.broker.quota_manager.record(kind, *_who(ctx), nbytes)
    if ms <= 0:
        return response
    throttle(ctx, kind, ms)
    if response is None:
        return None  # acks=0: muted only
    return dataclasses.replace(response, throttle_time=datetime.timedelta(milliseconds=ms))


def charge_request_time(ctx: Any, response: Any, seconds: float) -> Any:
    """``response`` once its request's ``seconds`` of handling are counted against the
    client's request_percentage: over it, the response says the throttle time (unless it says
    a longer one already) and the connection is muted that long. An acks=0 Produce (no
    response) is not counted, as in Kafka; a broker's own request is counted apart."""
    if response is None:
        return None
    broker = ctx.broker
    if ctx.quota_exempt:
        broker.metrics.exempt_request_time.inc(seconds)
        return response
    ms = broker.quota_manager.record_request_time(*_who(ctx), seconds)
    if ms <= 0:
        return response
    throttle(ctx, "request", ms)
    if isinstance(response, RawResponse):
        return response.with_throttle(ms)
    said = getattr(response, "throttle_time", None)
    if said is None or said >= datetime.timedelta(milliseconds=ms):
        return response  # a version without the field, or a longer throttle already
    return dataclasses.replace(response, throttle_time=datetime.timedelta(milliseconds=ms))


def charge_encoding_time(ctx: Any, seconds: float) -> None:
    """The time a response took to encode, once it is sent: charged with no throttle now
    (the client's next request pays for it), or counted as exempt."""
    if ctx.quota_exempt:
        ctx.broker.metrics.exempt_request_time.inc(seconds)
    else:
        ctx.broker.quota_manager.record_request_time(*_who(ctx), seconds)


def exempt_a_replica(ctx: Any, replica_id: int) -> None:
    """A request naming a replica (a follower's Fetch, ListOffsets or OffsetForLeaderEpoch)
    from a broker (ClusterAction, or anyone without an authorizer) is exempt from
    request_percentage, as Kafka exempts the requests brokers send each other."""
    if replica_id >= 0:
        ctx.quota_exempt = ctx.broker.authorizer is None or cluster_authorized(
            ctx, AclOperation.CLUSTER_ACTION
        )


def throttle(ctx: Any, kind: str, ms: int) -> None:
    ctx.connection.throttle(ms)
    ctx.broker.metrics.throttled.labels(kind).inc(ms / 1000)


class MutationAdmission:
    """A CreateTopics, CreatePartitions or DeleteTopics request under the client's
    controller_mutation_rate (KIP-599): ``admit`` each topic's partitions in turn, then
    ``finish`` the response with the longest throttle time, muting the connection that long."""

    def __init__(self, ctx: Any, strict: bool) -> None:
        self.ctx = ctx
        self.strict = strict
        self.active = ctx.broker.quota_manager.active("mutation")
        self.throttle_ms = 0

    def admit(self, partitions: int) -> bool:
        """Whether a mutation of ``partitions`` may go ahead (it is counted if so); a
        refused one is answered THROTTLING_QUOTA_EXCEEDED."""
        if not self.active:
            return True
        quotas: ClientQuotaManager = self.ctx.broker.quota_manager
        admitted, ms = quotas.admit_mutations(*_who(self.ctx), partitions, self.strict)
        self.throttle_ms = max(self.throttle_ms, ms)
        return admitted

    def finish(self) -> datetime.timedelta:
        if self.throttle_ms > 0:
            throttle(self.ctx, "mutation", self.throttle_ms)
        return datetime.timedelta(milliseconds=self.throttle_ms)


def throttling_quota_exceeded() -> ControllerError:
    """A topic refused by the strict quota, with Kafka's message."""
    return ControllerError(
        ErrorCode.throttling_quota_exceeded, "The throttling quota has been exceeded."
    )
