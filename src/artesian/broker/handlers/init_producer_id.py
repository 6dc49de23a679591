"""InitProducerId (22): producer ids for idempotent and transactional producers.

Without a transactional id, as Kafka's TransactionCoordinator does, every request gets a new
producer id with epoch 0, whatever producer id and epoch it carries (KIP-360, v3+): an
idempotent producer has no coordinator state to check them against, and clients accept the new
id in place of an epoch bump. Ids come from blocks of 1000 claimed in the metadata log with a
``ProducerIdsRecord`` (KRaft's allocation), so they are never reused, even after a restart.

With a transactional id, the transaction coordinator answers: the id's producer id with a
bumped epoch, which fences the previous producer of the id and aborts its open transaction.

Where we differ from Kafka: two-phase commit for external transaction managers (v6's
``enable_2pc``, KIP-939) is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, Kafka's answer
when ``transaction.two.phase.commit.enable`` is off.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_any,
    cluster_authorized,
)
from artesian.broker.handlers._build import make, reply_when_replicated, response_module
from artesian.broker.handlers._txn import for_version
from artesian.broker.internal_topic import TRANSACTION_STATE_TOPIC
from artesian.metadata.controller import ControllerError

API_KEY = 22
MIN_VERSION = 0
MAX_VERSION = 6

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1

log = logging.getLogger("artesian.init_producer_id")


def handle(ctx: Any, request: Any) -> Any:
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    refused = _refused(ctx, request)
    if refused is not None:
        return make(
            mod.InitProducerIdResponse,
            throttle_time=datetime.timedelta(0),
            error_code=refused,
            producer_id=NO_PRODUCER_ID,
            producer_epoch=NO_PRODUCER_EPOCH,
            ongoing_txn_producer_id=NO_PRODUCER_ID,
            ongoing_txn_producer_epoch=NO_PRODUCER_EPOCH,
        )
    code, pid, epoch = _init(ctx.broker, request)

    def build(replication: ErrorCode) -> Any:
        failed = bool(code or replication)
        return make(
            mod.InitProducerIdResponse,
            throttle_time=datetime.timedelta(0),
            error_code=for_version(code or replication, version, 4),
            producer_id=NO_PRODUCER_ID if failed else pid,
            producer_epoch=NO_PRODUCER_EPOCH if failed else epoch,
            ongoing_txn_producer_id=NO_PRODUCER_ID,
            ongoing_txn_producer_epoch=NO_PRODUCER_EPOCH,
        )

    tid = request.transactional_id
    wait = ctx.broker.coordinator_write_replicated(TRANSACTION_STATE_TOPIC, tid) if tid else None
    return reply_when_replicated(wait, build)


def _refused(ctx: Any, request: Any) -> ErrorCode | None:
    """Kafka's checks, before anything else: WRITE on the transactional id; without one
    (idempotence), IDEMPOTENT_WRITE on the cluster or WRITE on some topic."""
    if ctx.broker.authorizer is None:
        return None
    tid = request.transactional_id
    if tid is not None:
        if not authorized(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, tid):
            return ErrorCode.transactional_id_authorization_failed
    elif not cluster_authorized(ctx, AclOperation.IDEMPOTENT_WRITE) and not authorized_any(
        ctx, AclOperation.WRITE, ResourceType.TOPIC
    ):
        return ErrorCode.cluster_authorization_failed
    return None


def _init(broker: Any, request: Any) -> tuple[int, int, int]:
    failed = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
    given_pid = getattr(request, "producer_id", NO_PRODUCER_ID)
    given_epoch = getattr(request, "producer_epoch", NO_PRODUCER_EPOCH)
    if (given_pid == NO_PRODUCER_ID) != (given_epoch == NO_PRODUCER_EPOCH):
        return ErrorCode.invalid_request, *failed  # Kafka: both or neither
    tid = request.transactional_id
    if tid is not None:
        if getattr(request, "enable2_pc", False) or getattr(request, "keep_prepared_txn", False):
            return ErrorCode.transactional_id_authorization_failed, *failed
        timeout_ms = request.transaction_timeout // datetime.timedelta(milliseconds=1)
        try:
            broker.transaction_state_topic.ensure()
            return broker.transaction_coordinator.init_producer_id(  # type: ignore[no-any-return]
                tid, timeout_ms, given_pid, given_epoch
            )
        except Exception:
            log.exception("InitProducerId of transactional id %r failed", tid)
            return ErrorCode.coordinator_not_available, *failed
    try:
        return ErrorCode.none, broker.producer_id_manager.generate(), 0
    except ControllerError as e:  # the store refused: said once by the broker's store log
        log.debug("could not claim a producer id block: %s", e.message)
        return ErrorCode.coordinator_not_available, *failed
    except Exception:
        log.exception("could not claim a producer id block")
        return ErrorCode.unknown_server_error, *failed
