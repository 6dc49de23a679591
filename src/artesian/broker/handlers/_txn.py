"""What the transaction APIs share."""

from __future__ import annotations

from kio.schema.errors import ErrorCode


def for_version(code: int, version: int, producer_fenced_since: int) -> ErrorCode:
    """PRODUCER_FENCED (90) as the request's version knows it: versions before KIP-588's bump
    get INVALID_PRODUCER_EPOCH (47), as Kafka answers older clients."""
    if code == ErrorCode.producer_fenced and version < producer_fenced_since:
        return ErrorCode.invalid_producer_epoch
    return ErrorCode(code)
