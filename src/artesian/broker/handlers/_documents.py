"""What Artesian's private APIs share (frames in protocol/balancer_admin.py): one JSON
document each way, version 0 only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import CLUSTER_DENIED, AclOperation, cluster_authorized
from artesian.broker.response import RawResponse
from artesian.metadata.controller import ControllerError
from artesian.metadata.records import MetadataRecord
from artesian.protocol.balancer_admin import decode_request_body, encode_response_body
from artesian.protocol.codec import DecodeError


def decode_document(header: Any, frame: memoryview) -> dict[str, Any]:
    if header.api_version != 0:
        raise DecodeError(f"unknown version {header.api_version}")
    return decode_request_body(frame, header.body_offset)


def document_response(
    code: ErrorCode, message: str | None, document: dict[str, Any]
) -> RawResponse:
    body = encode_response_body(int(code), message, document)
    return RawResponse([body], len(body))


Plan = Callable[[Any, dict[str, Any]], tuple[list[MetadataRecord], dict[str, Any]]]


def alter(
    ctx: Any, command: dict[str, Any], plan: Plan, api: str, log: logging.Logger
) -> tuple[RawResponse, dict[str, Any] | None]:
    """Carry out an Alter* command: ALTER on the cluster, then ``plan`` (broker, command)
    gives the records to commit and the answer. The response, and the answer once
    committed (None when refused or failed)."""
    if not cluster_authorized(ctx, AclOperation.ALTER):
        return document_response(ErrorCode.cluster_authorization_failed, CLUSTER_DENIED, {}), None
    broker = ctx.broker
    answer: dict[str, Any] = {}

    def records() -> list[MetadataRecord]:
        planned, said = plan(broker, command)
        answer.update(said)
        return planned

    try:
        broker.plan_and_commit(records)
    except ControllerError as e:
        return document_response(e.code, e.message, {}), None
    except Exception as e:  # the store's own failures: an answer, not a closed connection
        log.warning("%s %s failed: %s", api, list(command)[:1], e)
        failed = f"the metadata store failed: {e}"
        return document_response(ErrorCode.unknown_server_error, failed, {}), None
    return document_response(ErrorCode.none, None, answer), answer
