"""The client side of the wire protocol, sans I/O: frame a request, read a response frame.

Artesian's own tools (the CLI's WireClient) and its brokers (the replica fetcher) speak to
brokers through these two functions, on the same schema codec the broker answers with.
"""

from __future__ import annotations

import struct
from typing import Any

from artesian.protocol import api
from artesian.protocol.codec import reader_for, writer_for

__all__ = ["MAX_RESPONSE_SIZE", "decode_response", "encode_request"]

_I32 = struct.Struct(">i")
# Generous (a Fetch answers up to fetch.max.bytes, 50 MiB by default) but bounded.
MAX_RESPONSE_SIZE = 100 << 20


def encode_request(
    api_key: int, version: int, correlation_id: int, client_id: bytes, **fields: Any
) -> bytes:
    """The size-prefixed frame of one request whose body is built from ``fields``."""
    cls = api.request_class(api_key, version)
    if cls is None:
        raise ValueError(f"no schema for API {api_key} v{version}")
    flexible = api.is_flexible(api_key, version)
    out = bytearray(_I32.size)
    out += struct.pack(">hhih", api_key, version, correlation_id, len(client_id))
    out += client_id
    if flexible:
        out.append(0)  # no header tags
    writer_for(cls)(out, cls(**fields))
    _I32.pack_into(out, 0, len(out) - _I32.size)
    return bytes(out)


def decode_response(api_key: int, version: int, frame: memoryview) -> tuple[int, Any]:
    """(correlation id, response entity) of a response frame without its size prefix."""
    correlation_id = _I32.unpack_from(frame, 0)[0]
    # The response header is flexible with the body, except ApiVersions' (always v0).
    pos = 5 if api.is_flexible(api_key, version) and api_key != 18 else 4
    cls = api.response_class(api_key, version)
    if cls is None:
        raise ValueError(f"no schema for API {api_key} v{version}")
    entity, _ = reader_for(cls)(frame, pos)
    return correlation_id, entity
