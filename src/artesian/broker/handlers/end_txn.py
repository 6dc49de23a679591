"""EndTxn (26): commit or abort the producer's transaction.

Version 5 (KIP-890's transaction version 2, an epoch bump per transaction) is not offered:
clients use it only when the broker advertises that feature.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized
from artesian.broker.handlers._build import make, reply_when_replicated, response_module
from artesian.broker.handlers._txn import for_version
from artesian.broker.internal_topic import TRANSACTION_STATE_TOPIC

API_KEY = 26
MIN_VERSION = 0
MAX_VERSION = 4


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    if not authorized(
        ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id
    ):
        return make(
            mod.EndTxnResponse,
            throttle_time=datetime.timedelta(0),
            error_code=ErrorCode.transactional_id_authorization_failed,
        )
    code = broker.transaction_coordinator.end_transaction(
        request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        bool(request.committed),
    )

    def build(replication: ErrorCode) -> Any:
        return make(
            mod.EndTxnResponse,
            throttle_time=datetime.timedelta(0),
            error_code=for_version(code if code else replication, version, 2),
        )

    wait = broker.coordinator_write_replicated(TRANSACTION_STATE_TOPIC, request.transactional_id)
    return reply_when_replicated(wait, build)
