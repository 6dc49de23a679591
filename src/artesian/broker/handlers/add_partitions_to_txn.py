"""AddPartitionsToTxn (24): a transactional producer names a partition before its first write
to it in a transaction.

Versions 0-3 are the client's. Versions 4+ batch many transactions and are sent by brokers to
verify writes (KIP-890); one broker has no one to ask, so they are not offered.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import make, reply_when_replicated, response_module
from artesian.broker.handlers._txn import for_version
from artesian.broker.internal_topic import TRANSACTION_STATE_TOPIC
from artesian.metadata.image import INTERNAL_TOPICS

API_KEY = 24
MIN_VERSION = 0
MAX_VERSION = 3


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    image = broker.image
    tid = request.v3_and_below_transactional_id
    wanted = [(t.name, int(p)) for t in request.v3_and_below_topics for p in t.partitions]
    mod = response_module(API_KEY, version)
    by_topic: dict[str, list[int]] = {}
    for name, index in wanted:
        by_topic.setdefault(name, []).append(index)
    errors: dict[tuple[str, int], ErrorCode] = {}
    writable: set[str] | None = None
    if broker.authorizer is not None:
        # WRITE on the transactional id, else every partition fails with
        # TRANSACTIONAL_ID_AUTHORIZATION_FAILED; then WRITE on each topic, never granted
        # for the internal topics (KafkaApis leaves them out of the check).
        if not authorized(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, tid):
            return _response(mod, by_topic, {}, ErrorCode.transactional_id_authorization_failed)
        writable = authorized_names(
            ctx,
            AclOperation.WRITE,
            ResourceType.TOPIC,
            (name for name in by_topic if name not in INTERNAL_TOPICS),
        )
    for name, index in wanted:
        timg = image.topics.get(name)
        if writable is not None and name not in writable:
            errors[(name, index)] = ErrorCode.topic_authorization_failed
        elif timg is None or index not in timg.partitions:
            errors[(name, index)] = ErrorCode.unknown_topic_or_partition
    if errors:
        # Kafka adds nothing when any partition is bad; the good ones are not attempted.
        code = ErrorCode.operation_not_attempted
    else:
        code = for_version(
            broker.transaction_coordinator.add_partitions(
                request.v3_and_below_transactional_id,
                request.v3_and_below_producer_id,
                request.v3_and_below_producer_epoch,
                wanted,
            ),
            version,
            2,
        )

    def build(replication: ErrorCode) -> Any:
        return _response(mod, by_topic, errors, code or replication)

    wait = broker.coordinator_write_replicated(
        TRANSACTION_STATE_TOPIC, request.v3_and_below_transactional_id
    )
    return reply_when_replicated(wait, build)


def _response(
    mod: Any,
    by_topic: dict[str, list[int]],
    errors: dict[tuple[str, int], ErrorCode],
    code: ErrorCode,
) -> Any:
    return make(
        mod.AddPartitionsToTxnResponse,
        throttle_time=datetime.timedelta(0),
        results_by_topic_v3_and_below=tuple(
            make(
                mod.AddPartitionsToTxnTopicResult,
                name=name,
                results_by_partition=tuple(
                    make(
                        mod.AddPartitionsToTxnPartitionResult,
                        partition_index=i,
                        partition_error_code=errors.get((name, i), code),
                    )
                    for i in indexes
                ),
            )
            for name, indexes in by_topic.items()
        ),
    )
