"""UnregisterBroker (64), as `kafka-cluster.sh unregister --id N` and the admin client's
unregisterBroker send it: a broker that left the cluster for good gives up its registration,
so it is no longer listed and its id may be used again. Needs ALTER on the cluster.

Artesian refuses to unregister a broker that is alive (it would vanish from the metadata while
serving) or that still holds replicas (their partitions would name a broker nobody can find);
`artesian cluster remove-broker` drains a broker, and unregisters it once it is stopped.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.metadata.controller import ControllerError
from artesian.metadata.records import BrokerRemovalRecord, MetadataRecord, UnregisterBrokerRecord

API_KEY = 64
MIN_VERSION = 0
MAX_VERSION = 0

log = logging.getLogger("artesian.broker")


def handle(ctx: Any, request: Any) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    broker = ctx.broker
    node = int(request.broker_id)

    def answer(code: ErrorCode, message: str | None = None) -> Any:
        return make(
            mod.UnregisterBrokerResponse,
            throttle_time=datetime.timedelta(0),
            error_code=code,
            error_message=message,
        )

    if not cluster_authorized(ctx, AclOperation.ALTER):
        return answer(ErrorCode.cluster_authorization_failed, "Cluster authorization failed.")

    def plan() -> list[MetadataRecord]:
        image = broker.image
        if node not in image.brokers:
            raise ControllerError(
                ErrorCode.broker_id_not_registered,
                f"Broker ID {node} is not currently registered",
            )
        if node in broker.current_live_brokers():  # a restart may be under way: ask now
            raise ControllerError(
                ErrorCode.invalid_request,
                f"Broker {node} is alive: stop it first ('artesian cluster remove-broker' "
                "drains a broker, and unregisters it once it is stopped)",
            )
        held = image.replicas_on(node)
        if held:
            raise ControllerError(
                ErrorCode.invalid_request,
                f"Broker {node} still holds replicas of {held} partition(s): move them first "
                "(kafka-reassign-partitions, or 'artesian cluster remove-broker')",
            )
        records: list[MetadataRecord] = [UnregisterBrokerRecord(node)]
        removal = image.removals.get(node)
        if removal is not None and removal.state != "COMPLETE":
            # Asked to be removed and now gone: the removal is over (the id, once used
            # again, gets replicas like any new broker).
            records.append(BrokerRemovalRecord(node, "COMPLETE"))
        return records

    try:
        broker.plan_and_commit(plan)
    except ControllerError as e:
        return answer(e.code, e.message)
    log.info("broker %d unregistered; its id may be used again", node)
    return answer(ErrorCode.none)
