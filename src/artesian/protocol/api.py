"""The adapter between Kafka frames and kio schema classes (sans-IO).

One place knows, for an (api_key, api_version): the request and response classes, whether the
version is flexible, which header versions go with it, and how to build an error response of
the exact shape the client expects.
"""

from __future__ import annotations

import datetime
import struct
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import Any

from kio.index import KioIndexError, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
    get_schema_field_type,
    is_optional,
)

from artesian.protocol.balancer_admin import PRIVATE_API_KEYS
from artesian.protocol.codec import DecodeError, read_uvarint, reader_for, writer_for

__all__ = [
    "API_VERSIONS_KEY",
    "CLIENT_TELEMETRY_APIS",
    "CONSUMER_GROUP_APIS",
    "SHARE_GROUP_APIS",
    "RequestHeader",
    "decode_request",
    "encode_response",
    "error_response",
    "parse_request_header",
    "request_class",
    "response_class",
]

API_VERSIONS_KEY = 18
# ConsumerGroupHeartbeat and ConsumerGroupDescribe: the consumer group protocol (KIP-848).
CONSUMER_GROUP_APIS = frozenset({68, 69})
# Share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch, ShareAcknowledge,
# the share coordinator's APIs between brokers (83-87), and Describe, Alter and
# DeleteShareGroupOffsets.
SHARE_GROUP_APIS = frozenset({76, 77, 78, 79, 83, 84, 85, 86, 87, 90, 91, 92})
# Client metrics (KIP-714): GetTelemetrySubscriptions and PushTelemetry.
CLIENT_TELEMETRY_APIS = frozenset({71, 72})
_HEAD = struct.Struct(">hhih")
_I32 = struct.Struct(">i")


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int
    """Where the request body starts in the frame."""


def api_name(api_key: int) -> str:
    return api_key_map.get(api_key) or PRIVATE_API_KEYS.get(api_key, f"unknown({api_key})")


def is_private(api_key: int) -> bool:
    """Artesian's own APIs: served, never advertised in ApiVersions."""
    return api_key in PRIVATE_API_KEYS


@cache
def request_metric_name(api_key: int) -> str:
    """Kafka's name in request metrics (``request="Produce"``, ``"ApiVersions"``)."""
    if api_key in PRIVATE_API_KEYS:
        return PRIVATE_API_KEYS[api_key]
    name = api_key_map.get(api_key)
    return "".join(w.capitalize() for w in name.split("_")) if name else "Unknown"


@cache
def request_class(api_key: int, api_version: int) -> type | None:
    try:
        return load_request_schema(api_key, api_version)
    except (KioIndexError, ImportError):
        return None


@cache
def response_class(api_key: int, api_version: int) -> type | None:
    try:
        return load_response_schema(api_key, api_version)
    except (KioIndexError, ImportError):
        return None


@cache
def is_flexible(api_key: int, api_version: int) -> bool:
    cls = request_class(api_key, api_version)
    if cls is not None:
        return bool(cls.__flexible__)  # type: ignore[attr-defined]
    # Versions kio does not know (Produce v0-2 only): all are pre-flexible.
    return False


def parse_request_header(frame: memoryview) -> RequestHeader:
    """Parse the request header (v1, or v2 for flexible versions) by hand: it is on every
    request's path."""
    if len(frame) < 10:
        raise DecodeError("frame too short for a request header")
    api_key, api_version, correlation_id, client_len = _HEAD.unpack_from(frame, 0)
    pos = 10
    client_id: str | None = None
    if client_len >= 0:
        if pos + client_len > len(frame):
            raise DecodeError("client_id runs past the frame")
        try:
            client_id = str(frame[pos : pos + client_len], "utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("client_id is not UTF-8") from e
        pos += client_len
    elif client_len != -1:
        raise DecodeError("negative client_id length")
    # ApiVersions v3+ is flexible; an unknown ApiVersions version is assumed flexible when
    # it is newer than what we know, so that its tagged fields are skipped like Kafka does.
    flexible = is_flexible(api_key, api_version) or (
        api_key == API_VERSIONS_KEY and api_version > 4
    )
    if flexible:
        count, pos = read_uvarint(frame, pos)
        for _ in range(count):
            _tag, pos = read_uvarint(frame, pos)
            size, pos = read_uvarint(frame, pos)
            pos += size
            if pos > len(frame):
                raise DecodeError("header tagged field runs past the frame")
    return RequestHeader(api_key, api_version, correlation_id, client_id, pos)


def decode_request(header: RequestHeader, frame: memoryview) -> Any:
    cls = request_class(header.api_key, header.api_version)
    if cls is None:
        raise DecodeError(f"no schema for {api_name(header.api_key)} v{header.api_version}")
    # Trailing bytes are ignored, as Apache Kafka does (librdkafka leaves some).
    entity, _end = reader_for(cls)(frame, header.body_offset)
    return entity


def _response_header_flexible(api_key: int, api_version: int) -> bool:
    # ApiVersions responses always use header v0 so that any client can read the error.
    return api_key != API_VERSIONS_KEY and is_flexible(api_key, api_version)


def encode_response(
    api_key: int, api_version: int, correlation_id: int, response: Any
) -> bytearray:
    """Size-prefixed response frame."""
    out = bytearray(8)
    _I32.pack_into(out, 4, correlation_id)
    if _response_header_flexible(api_key, api_version):
        out.append(0)
    writer_for(type(response))(out, response)
    _I32.pack_into(out, 0, len(out) - 4)
    return out


def response_header(api_key: int, api_version: int, correlation_id: int, body_size: int) -> bytes:
    """Size prefix and response header for a body the caller encodes itself (hot paths)."""
    if _response_header_flexible(api_key, api_version):
        return struct.pack(">iib", body_size + 5, correlation_id, 0)
    return struct.pack(">ii", body_size + 4, correlation_id)


def _default_value(f: Any, code: ErrorCode) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    fc = classify_field(f)
    if isinstance(fc, EntityTupleField | PrimitiveTupleField):
        return ()
    if is_optional(f):
        return None
    if isinstance(fc, EntityField):
        return _default_entity(fc.type_, code)
    kafka_type = get_schema_field_type(f)
    match kafka_type:
        case "error_code":
            return code
        case "string":
            return ""
        case "bytes" | "records":
            return b""
        case "bool":
            return False
        case "uuid":
            return None
        case "float64":
            return 0.0
        case "timedelta_i32" | "timedelta_i64":
            return datetime.timedelta(0)
        case "datetime_i64":
            return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return 0


def _default_entity(cls: type, code: ErrorCode) -> Any:
    return cls(**{f.name: _default_value(f, code) for f in fields(cls)})


def error_response(api_key: int, api_version: int, code: ErrorCode) -> Any | None:
    """A response of the requested version with every error code set to ``code`` and every
    collection empty; None when kio has no schema for that version."""
    cls = response_class(api_key, api_version)
    if cls is None:
        return None
    return _default_entity(cls, code)
