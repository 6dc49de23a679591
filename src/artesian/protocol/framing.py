"""Size-prefixed Kafka frames, sans-IO.

``FrameDecoder`` follows asyncio's BufferedProtocol shape: the transport asks it for a buffer,
fills it, and reports how much arrived. Small frames are cut out of a shared scratch buffer;
a large frame (a big Produce) gets a buffer of its exact size so the kernel writes straight
into it and the frame is never copied again.
"""

from __future__ import annotations

import struct

__all__ = ["FrameDecoder", "FrameTooLarge", "InvalidFrameSize"]

_SIZE = struct.Struct(">i")
# Per connection, so kept small; frames over half of it get a buffer of their own.
_SCRATCH = 64 * 1024


class FrameTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds socket.request.max.bytes={limit}")
        self.size = size
        self.limit = limit


class InvalidFrameSize(Exception):
    pass


class FrameDecoder:
    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._scratch = bytearray(_SCRATCH)
        self._start = 0  # first unconsumed byte in scratch
        self._end = 0  # end of data in scratch
        self._big: bytearray | None = None  # body of a large frame being received
        self._big_filled = 0

    def get_buffer(self) -> memoryview:
        if self._big is not None:
            return memoryview(self._big)[self._big_filled :]
        if self._end == len(self._scratch):
            self._compact()
        return memoryview(self._scratch)[self._end :]

    def buffer_updated(self, nbytes: int) -> list[bytes | bytearray]:
        """Record ``nbytes`` written into the last buffer; return the complete frames."""
        if self._big is not None:
            self._big_filled += nbytes
            if self._big_filled < len(self._big):
                return []
            frame = self._big
            self._big = None
            return [frame]
        self._end += nbytes
        return self._drain()

    def feed(self, data: bytes) -> list[bytes | bytearray]:
        """Convenience for tests and non-buffered transports."""
        frames: list[bytes | bytearray] = []
        view = memoryview(data)
        while view:
            buf = self.get_buffer()
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            view = view[n:]
            frames.extend(self.buffer_updated(n))
        return frames

    def _compact(self) -> None:
        pending = self._end - self._start
        self._scratch[:pending] = self._scratch[self._start : self._end]
        self._start, self._end = 0, pending

    def _drain(self) -> list[bytes | bytearray]:
        frames: list[bytes | bytearray] = []
        scratch = self._scratch
        while self._end - self._start >= 4:
            size = _SIZE.unpack_from(scratch, self._start)[0]
            if size < 0:
                raise InvalidFrameSize(f"negative frame size {size}")
            if size > self.max_frame_size:
                raise FrameTooLarge(size, self.max_frame_size)
            body_start = self._start + 4
            available = self._end - body_start
            if available >= size:
                # A bytearray, so the produce path can patch offsets in place.
                frames.append(scratch[body_start : body_start + size])
                self._start = body_start + size
                continue
            if size > len(scratch) // 2:
                # Large frame: move what we have into a buffer of its own and let the
                # kernel fill the rest directly.
                big = bytearray(size)
                big[:available] = scratch[body_start : self._end]
                self._big, self._big_filled = big, available
                self._start = self._end = 0
                return frames
            break
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end - self._start < 4 or len(scratch) - self._start < 4096:
            self._compact()
        return frames
