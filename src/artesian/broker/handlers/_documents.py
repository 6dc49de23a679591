"""What Artesian's private APIs share (frames in protocol/balancer_admin.py): one JSON
document each way, version 0 only."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.response import RawResponse
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
