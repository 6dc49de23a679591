"""Artesian's private Kafka APIs (sans-I/O): two for the self-balancer, in the spirit of
Confluent's RemoveBrokers and DescribeBalancerStatus, and two for logical clusters.

They ride the Kafka protocol so that tools reach them through the same bootstrap servers as
everything else. Their keys sit far above Kafka's, and ApiVersions does not list them, so no
Kafka client ever meets them. Version 0 of each carries one JSON document each way: the
commands and the status report grow with the balancer, and a schema per field would only
slow that down.

    request  v0 (header v1): document BYTES (int32 length, UTF-8 JSON object)
    response v0 (header v0): error_code INT16, error_message NULLABLE_STRING, document BYTES
"""

from __future__ import annotations

import json
import struct
from typing import Any

from artesian.protocol.errors import DecodeError

ALTER_BALANCER_KEY = 30000
DESCRIBE_BALANCER_KEY = 30001
# The same frames carry the logical clusters' bindings of principals (tenancy/).
ALTER_LOGICAL_CLUSTERS_KEY = 30002
DESCRIBE_LOGICAL_CLUSTERS_KEY = 30003
PRIVATE_API_KEYS = {
    ALTER_BALANCER_KEY: "AlterBalancer",
    DESCRIBE_BALANCER_KEY: "DescribeBalancer",
    ALTER_LOGICAL_CLUSTERS_KEY: "AlterLogicalClusters",
    DESCRIBE_LOGICAL_CLUSTERS_KEY: "DescribeLogicalClusters",
}
MAX_DOCUMENT_BYTES = 1 << 20

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


def _document(raw: bytes | memoryview) -> dict[str, Any]:
    try:
        doc = json.loads(bytes(raw))
    except (ValueError, RecursionError) as e:  # also nesting deep enough to exhaust the stack
        raise DecodeError(f"the document is not JSON: {str(e)[:200]}") from e
    if not isinstance(doc, dict):
        raise DecodeError("the document is not a JSON object")
    return doc


def encode_request_body(document: dict[str, Any]) -> bytes:
    raw = json.dumps(document, separators=(",", ":")).encode()
    return _I32.pack(len(raw)) + raw


def decode_request_body(frame: memoryview, offset: int) -> dict[str, Any]:
    if offset + 4 > len(frame):
        raise DecodeError("request body too short")
    (size,) = _I32.unpack_from(frame, offset)
    if size < 0 or size > MAX_DOCUMENT_BYTES or offset + 4 + size > len(frame):
        raise DecodeError(f"document length {size} does not fit the frame")
    return _document(frame[offset + 4 : offset + 4 + size])


def encode_response_body(error_code: int, message: str | None, document: dict[str, Any]) -> bytes:
    out = bytearray(_I16.pack(error_code))
    if message is None:
        out += _I16.pack(-1)
    else:
        m = message.encode()[:32767]
        out += _I16.pack(len(m)) + m
    raw = json.dumps(document, separators=(",", ":")).encode()
    out += _I32.pack(len(raw)) + raw
    return bytes(out)


def decode_response_body(body: bytes | memoryview) -> tuple[int, str | None, dict[str, Any]]:
    view = memoryview(body)
    try:
        (code,) = _I16.unpack_from(view, 0)
        (mlen,) = _I16.unpack_from(view, 2)
        pos = 4
        message = None
        if mlen >= 0:
            message = str(view[pos : pos + mlen], "utf-8")
            pos += mlen
        (size,) = _I32.unpack_from(view, pos)
        pos += 4
    except (struct.error, UnicodeDecodeError) as e:
        raise DecodeError(f"malformed response body: {e}") from e
    if size < 0 or pos + size > len(view):
        raise DecodeError("response document runs past the frame")
    return code, message, _document(view[pos : pos + size])
