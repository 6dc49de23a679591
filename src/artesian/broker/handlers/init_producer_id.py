"""InitProducerId (22): producer ids for idempotent producers.

As Kafka's TransactionCoordinator does without a transactional id, every request gets a new
producer id with epoch 0, whatever producer id and epoch it carries (KIP-360, v3+): an
idempotent producer has no coordinator state to check them against, and clients accept the new
id in place of an epoch bump. Ids come from blocks of 1000 claimed in the metadata log with a
``ProducerIdsRecord`` (KRaft's allocation), so they are never reused, even after a restart.

Where we differ from Kafka: transactions are not implemented, so a request with a
transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53), the answer Kafka
gives a client that may not use transactional ids: both kafka-python and librdkafka treat it as
fatal at ``init_transactions``, instead of going on to produce transactional batches that no
transaction would commit (the log refuses those with INVALID_TXN_STATE).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module

API_KEY = 22
MIN_VERSION = 0
MAX_VERSION = 6

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1

log = logging.getLogger("artesian.init_producer_id")


def handle(ctx: Any, request: Any) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    code, pid, epoch = _init(ctx.broker, request)
    return make(
        mod.InitProducerIdResponse,
        throttle_time=datetime.timedelta(0),
        error_code=code,
        producer_id=pid,
        producer_epoch=epoch,
    )


def _init(broker: Any, request: Any) -> tuple[ErrorCode, int, int]:
    failed = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
    if request.transactional_id is not None:
        return ErrorCode.transactional_id_authorization_failed, *failed
    given_pid = getattr(request, "producer_id", NO_PRODUCER_ID)
    given_epoch = getattr(request, "producer_epoch", NO_PRODUCER_EPOCH)
    if (given_pid == NO_PRODUCER_ID) != (given_epoch == NO_PRODUCER_EPOCH):
        return ErrorCode.invalid_request, *failed  # Kafka: both or neither
    try:
        return ErrorCode.none, broker.producer_id_manager.generate(), 0
    except Exception:
        log.exception("could not claim a producer id block")
        return ErrorCode.unknown_server_error, *failed
