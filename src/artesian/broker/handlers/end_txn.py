"""EndTxn (26): commit or abort the producer's transaction.

Version 5 (KIP-890's transaction version 2, an epoch bump per transaction) is not offered:
clients use it only when the broker advertises that feature.
"""

from __future__ import annotations

import datetime
from typing import Any

from artesian.broker.handlers._build import make, response_module
from artesian.broker.handlers._txn import for_version

API_KEY = 26
MIN_VERSION = 0
MAX_VERSION = 4


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    code = broker.transaction_coordinator.end_transaction(
        request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        bool(request.committed),
    )
    mod = response_module(API_KEY, version)
    return make(
        mod.EndTxnResponse,
        throttle_time=datetime.timedelta(0),
        error_code=for_version(code, version, 2),
    )
