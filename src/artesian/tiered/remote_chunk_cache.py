"""RemoteChunkCache: recently read ranges of remote segments, in aligned chunks.

Kafka reads the object store afresh for every remote fetch. A consumer catching up from the
remote tier asks for consecutive max.partition.fetch.bytes (1 MiB) ranges, so reading 4 MiB
chunks and keeping the last few serves most of its fetches from memory, with a quarter of
the requests to the store (which are what object stores charge for). Concurrent readers of
the same chunk share one request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict

from artesian.tiered.remote_log_segment_metadata import RemoteLogSegmentMetadata
from artesian.tiered.remote_storage_manager import RemoteStorageManager

__all__ = ["CHUNK_BYTES", "RemoteChunkCache"]

CHUNK_BYTES = 4 << 20

_Key = tuple[uuid.UUID, int]


class RemoteChunkCache:
    def __init__(self, rsm: RemoteStorageManager, max_bytes: int = 64 << 20) -> None:
        self._rsm = rsm
        self.max_bytes = max_bytes
        self._chunks: OrderedDict[_Key, memoryview] = OrderedDict()
        self._loading: dict[_Key, asyncio.Future[memoryview]] = {}
        self._bytes = 0

    async def read(
        self, meta: RemoteLogSegmentMetadata, start: int, end: int
    ) -> bytes | memoryview | None:
        """Bytes [start, end) of the segment; None if that runs past its end. A range inside
        one chunk is a view of it, not a copy."""
        if start < 0 or end > meta.size_in_bytes or end < start:
            return None
        first, last = start // CHUNK_BYTES, max(start, end - 1) // CHUNK_BYTES
        base = first * CHUNK_BYTES
        if first == last:
            chunk = await self._chunk(meta, first)
            return chunk[start - base : end - base]
        chunks = [await self._chunk(meta, i) for i in range(first, last + 1)]
        return b"".join(chunks)[start - base : end - base]

    def remove(self, segment_id: uuid.UUID) -> None:
        for key in [k for k in self._chunks if k[0] == segment_id]:
            self._bytes -= len(self._chunks.pop(key))

    async def _chunk(self, meta: RemoteLogSegmentMetadata, index: int) -> memoryview:
        key = (meta.segment_id, index)
        found = self._chunks.get(key)
        if found is not None:
            self._chunks.move_to_end(key)
            return found
        loading = self._loading.get(key)
        if loading is not None:
            return await asyncio.shield(loading)
        fut: asyncio.Future[memoryview] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            start = index * CHUNK_BYTES
            data = await self._rsm.fetch_log_segment(meta, start, start + CHUNK_BYTES)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[key]
        fut.set_result(data)
        self._chunks[key] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self._bytes -= len(old)
        return data
