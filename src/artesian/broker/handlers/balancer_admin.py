"""AlterBalancer and DescribeBalancer: Artesian's private APIs for the self-balancer (see
protocol/balancer_admin.py for their frames).

Any broker answers them. AlterBalancer appends what is asked for to the metadata log, where
the active controller's self-balancer picks it up, and DescribeBalancer reports from this
broker's image and the brokers' load samples, so neither needs forwarding to the controller.

AlterBalancer commands (one per request):
    {"remove_brokers": [3]}    drain brokers so they can be stopped (Confluent's RemoveBrokers)
    {"cancel_removals": [3]}   give them back their place
    {"rebalance": {}}          rebalance now, whatever the trigger setting
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.balancer.load import parse_samples
from artesian.balancer.self_balancer import ACTIVE_REMOVAL, describe
from artesian.broker.handlers._authz import CLUSTER_DENIED, AclOperation, cluster_authorized
from artesian.broker.handlers._documents import alter, decode_document, document_response
from artesian.broker.response import RawResponse
from artesian.metadata.controller import ControllerError
from artesian.metadata.records import BalancerTaskRecord, BrokerRemovalRecord, MetadataRecord
from artesian.protocol.balancer_admin import (
    ALTER_BALANCER_KEY,
    DESCRIBE_BALANCER_KEY,
)

log = logging.getLogger("artesian.balancer")


decode = decode_document


def _broker_ids(value: object) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in value)
    ):
        raise ControllerError(ErrorCode.invalid_request, "expected a non-empty list of broker ids")
    return sorted(set(value))


def _plan(broker: Any, command: dict[str, Any]) -> tuple[list[MetadataRecord], dict[str, Any]]:
    image = broker.image
    if len(command) != 1:
        raise ControllerError(ErrorCode.invalid_request, "expected exactly one command")
    ((name, arg),) = command.items()
    if name == "remove_brokers":
        if not broker.config.get_bool("artesian.balancer.enable"):
            raise ControllerError(
                ErrorCode.invalid_request,
                "the self-balancer is off (artesian.balancer.enable=false): move the "
                "replicas with `artesian topic reassign` instead",
            )
        ids = _broker_ids(arg)
        unknown = [b for b in ids if b not in image.brokers]
        if unknown:
            raise ControllerError(
                ErrorCode.broker_id_not_registered, f"brokers {unknown} are not registered"
            )
        if not set(image.brokers) - image.removing() - set(ids):
            raise ControllerError(
                ErrorCode.invalid_request, "removing them would leave no broker to hold the data"
            )
        records: list[MetadataRecord] = [
            BrokerRemovalRecord(b, "PENDING") for b in ids if b not in image.removing()
        ]
        return records, {"removing": ids}
    if name == "cancel_removals":
        ids = _broker_ids(arg)
        idle = [
            b
            for b in ids
            # A FAILED one too: its record would say so for good, the broker declared again.
            if b not in image.removals or image.removals[b].state not in (*ACTIVE_REMOVAL, "FAILED")
        ]
        if idle:
            raise ControllerError(
                ErrorCode.invalid_request, f"brokers {idle} are not being removed"
            )
        return [BrokerRemovalRecord(b, "CANCELED") for b in ids], {"canceled": ids}
    if name == "rebalance":
        if not broker.config.get_bool("artesian.balancer.enable"):
            raise ControllerError(
                ErrorCode.invalid_request,
                "the self-balancer is off (artesian.balancer.enable=false)",
            )
        task = image.balancer_task
        if task is not None and task.state in ("PENDING", "IN_PROGRESS"):
            return [], {"task": task.task_id}
        task = BalancerTaskRecord(uuid.uuid4().hex[:12], "REQUESTED", "PENDING")
        return [task], {"task": task.task_id}
    raise ControllerError(ErrorCode.invalid_request, f"unknown command {name!r}")


def handle_alter(ctx: Any, command: dict[str, Any]) -> RawResponse:
    response, _ = alter(ctx, command, _plan, "AlterBalancer", log)
    return response


async def handle_describe(ctx: Any, _request: dict[str, Any]) -> RawResponse:
    if not cluster_authorized(ctx, AclOperation.DESCRIBE):
        return document_response(ErrorCode.cluster_authorization_failed, CLUSTER_DENIED, {})
    broker = ctx.broker
    try:
        raw = await broker.in_store_thread(lambda store: store.broker_loads())
    except Exception as e:
        log.warning("DescribeBalancer cannot read the load samples: %s", e)
        return document_response(
            ErrorCode.unknown_server_error, f"the metadata store failed: {e}", {}
        )
    controller = broker.active_controller
    document = describe(
        broker.image,
        broker.live_brokers,
        parse_samples(raw),
        broker.config,
        controller,
        broker.self_balancer.last_round if controller == broker.node_id else None,
    )
    return document_response(ErrorCode.none, None, document)


APIS = [
    (ALTER_BALANCER_KEY, 0, 0, handle_alter),
    (DESCRIBE_BALANCER_KEY, 0, 0, handle_describe),
]
