"""AddOffsetsToTxn (25): a transactional producer is about to commit a group's offsets in its
transaction (TxnOffsetCommit); the group's ``__consumer_offsets`` partition joins it."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized
from artesian.broker.handlers._build import make, reply_when_replicated, response_module
from artesian.broker.handlers._txn import for_version
from artesian.broker.internal_topic import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC
from artesian.metadata.controller import ControllerError

API_KEY = 25
MIN_VERSION = 0
MAX_VERSION = 3


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    # WRITE on the transactional id, then READ on the group (KafkaApis' order).
    refused = None
    if not authorized(
        ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id
    ):
        refused = ErrorCode.transactional_id_authorization_failed
    elif not authorized(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        refused = ErrorCode.group_authorization_failed
    if refused is not None:
        return make(
            mod.AddOffsetsToTxnResponse, throttle_time=datetime.timedelta(0), error_code=refused
        )
    if not request.group_id:
        code = ErrorCode.invalid_group_id
    else:
        try:
            broker.offsets_topic.ensure()
            partition = broker.group_coordinator.partition_for(request.group_id)
            code = for_version(
                broker.transaction_coordinator.add_partitions(
                    request.transactional_id,
                    request.producer_id,
                    request.producer_epoch,
                    [(OFFSETS_TOPIC, partition)],
                ),
                version,
                2,
            )
        except ControllerError:
            code = ErrorCode.coordinator_not_available

    def build(replication: ErrorCode) -> Any:
        return make(
            mod.AddOffsetsToTxnResponse,
            throttle_time=datetime.timedelta(0),
            error_code=code or replication,
        )

    wait = broker.coordinator_write_replicated(TRANSACTION_STATE_TOPIC, request.transactional_id)
    return reply_when_replicated(wait, build)
