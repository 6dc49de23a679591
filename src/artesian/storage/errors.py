"""Storage exceptions; each carries the Kafka error code the broker answers with."""

from __future__ import annotations

__all__ = [
    "CorruptRecordError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidTimestampError",
    "InvalidTxnStateError",
    "KafkaStorageError",
    "OffsetMovedToTieredStorageError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "RecordBatchTooLargeError",
    "RecordTooLargeError",
    "StorageError",
    "TransactionCoordinatorFencedError",
]


class StorageError(Exception):
    error_code: int = -1  # UNKNOWN_SERVER_ERROR


class OffsetOutOfRangeError(StorageError):
    error_code = 1  # OFFSET_OUT_OF_RANGE


class OffsetMovedToTieredStorageError(OffsetOutOfRangeError):
    """The offset lies below the local log start offset, in tiered storage: the broker reads
    it from the object store. Without tiered reads it answers OFFSET_OUT_OF_RANGE."""


class CorruptRecordError(StorageError):
    """Unparseable batch, wrong magic, CRC mismatch, or a partial trailing batch."""

    error_code = 2  # CORRUPT_MESSAGE


class RecordTooLargeError(StorageError):
    """A batch is larger than max.message.bytes."""

    error_code = 10  # MESSAGE_TOO_LARGE


class RecordBatchTooLargeError(StorageError):
    """The records of one produce request cannot fit in a segment (segment.bytes)."""

    error_code = 18  # RECORD_LIST_TOO_LARGE


class InvalidTimestampError(StorageError):
    error_code = 32  # INVALID_TIMESTAMP


class KafkaStorageError(StorageError):
    """The log's directory or files failed (I/O error)."""

    error_code = 56  # KAFKA_STORAGE_ERROR


class InvalidRecordError(StorageError):
    error_code = 87  # INVALID_RECORD


class OutOfOrderSequenceError(StorageError):
    """An idempotent batch does not continue its producer's sequence (a gap, or a new epoch
    that does not start at 0)."""

    error_code = 45  # OUT_OF_ORDER_SEQUENCE_NUMBER


class InvalidProducerEpochError(StorageError):
    """A batch carries an epoch older than its producer's latest (a zombie producer).

    Kafka answers a produce with INVALID_PRODUCER_EPOCH (not PRODUCER_FENCED) since 2.7."""

    error_code = 47  # INVALID_PRODUCER_EPOCH


class InvalidTxnStateError(StorageError):
    """A non-transactional batch from a producer whose transaction in this partition is still
    open."""

    error_code = 48  # INVALID_TXN_STATE


class TransactionCoordinatorFencedError(StorageError):
    """A transaction marker from a coordinator epoch older than the one that last wrote a
    marker for this producer: a stale coordinator."""

    error_code = 52  # TRANSACTION_COORDINATOR_FENCED
