"""Responses the hot paths encode themselves instead of through the schema writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from artesian.protocol.api import RequestHeader, response_header

if TYPE_CHECKING:
    from artesian.storage.segment import FileSlice


@dataclass(slots=True)
class RawResponse:
    """A response body as parts (bytes, or file regions for sendfile) of known total size."""

    parts: list[Any]
    size: int

    def frame_parts(self, header: RequestHeader) -> list[bytes | bytearray | FileSlice]:
        head = response_header(header.api_key, header.api_version, header.correlation_id, self.size)
        return [head, *self.parts]
