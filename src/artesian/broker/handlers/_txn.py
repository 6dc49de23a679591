"""What the transaction APIs share."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode


def verifies(broker: Any, transactional_id: str) -> bool:
    """Whether a transactional write (records or offsets) is checked against its producer's
    open transaction here (KIP-890): transaction.partition.verification.enable, and a
    coordinator on this broker (across brokers it would cost a request per batch, as
    AddPartitionsToTxn v4; Kafka before 3.6 did not verify either)."""
    return bool(
        broker.config.get_bool("transaction.partition.verification.enable")
        and broker.transaction_coordinator.owns(transactional_id)
    )


def for_version(code: int, version: int, producer_fenced_since: int) -> ErrorCode:
    """PRODUCER_FENCED (90) as the request's version knows it: versions before KIP-588's bump
    get INVALID_PRODUCER_EPOCH (47), as Kafka answers older clients."""
    if code == ErrorCode.producer_fenced and version < producer_fenced_since:
        return ErrorCode.invalid_producer_epoch
    return ErrorCode(code)
