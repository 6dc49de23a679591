"""Client quotas in handlers: count a request's bytes against its client's quota, and put
the throttle time in the response (KIP-219: answer at once, then mute the connection)."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
from typing import Any

from artesian.broker.response import RawResponse

__all__ = ["fetch_debt_ms", "throttle", "throttled"]


def _who(ctx: Any) -> tuple[str, str | None]:
    return ctx.connection.principal, ctx.client_id


def fetch_debt_ms(ctx: Any) -> int:
    """A consumer still over its consumer_byte_rate: how long until it may fetch again."""
    quotas = ctx.broker.quota_manager
    return quotas.debt_ms("fetch", *_who(ctx)) if quotas.active("fetch") else 0


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
    quotas = ctx.broker.quota_manager
    if isinstance(response, RawResponse):
        # A fetch counts what it sends; the debt it runs up makes the next one wait
        # (fetch_debt_ms), answered empty with the throttle time.
        quotas.record(kind, *_who(ctx), response.size)
        return response
    ms = quotas.record(kind, *_who(ctx), nbytes)
    if ms <= 0:
        return response
    throttle(ctx, kind, ms)
    if response is None:
        return None  # acks=0: muted only
    return dataclasses.replace(response, throttle_time=datetime.timedelta(milliseconds=ms))


def throttle(ctx: Any, kind: str, ms: int) -> None:
    ctx.connection.throttle(ms)
    ctx.broker.metrics.throttled.labels(kind).inc(ms / 1000)
