"""Responses the hot paths encode themselves instead of through the schema writer."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from artesian.protocol.api import RequestHeader, response_header

if TYPE_CHECKING:
    from artesian.storage.segment import FileSlice

_I32 = struct.Struct(">i")


@dataclass(slots=True)
class RawResponse:
    """A response body as parts (bytes, or file regions for sendfile) of known total size.
    ``throttles``: the body begins with throttle_time_ms (Fetch v1+, Metadata v3+)."""

    parts: list[Any]
    size: int
    throttles: bool = False

    def with_throttle(self, ms: int) -> RawResponse:
        """The same response saying ``ms`` (when longer than the time it says already)."""
        if not self.throttles:
            return self
        first = self.parts[0]
        said = _I32.unpack_from(first)[0]
        if said >= ms:
            return self
        return RawResponse([_I32.pack(ms) + bytes(first[4:]), *self.parts[1:]], self.size, True)

    def frame_parts(self, header: RequestHeader) -> list[bytes | bytearray | FileSlice]:
        head = response_header(header.api_key, header.api_version, header.correlation_id, self.size)
        return [head, *self.parts]
