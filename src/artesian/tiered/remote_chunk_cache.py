"""RemoteChunkCache: recently read ranges of remote segments, in aligned chunks.

Kafka reads the object store afresh for every remote fetch. A consumer catching up from the
remote tier asks for consecutive max.partition.fetch.bytes (1 MiB) ranges, so reading 4 MiB
chunks and keeping the last few serves most of its fetches from memory, with a quarter of
the requests to the store (which are what object stores charge for). Concurrent readers of
the same chunk share one request.
"""

from __future__ import annotations

import uuid

from artesian.tiered.loading_cache import LoadingCache
from artesian.tiered.remote_log_segment_metadata import RemoteLogSegmentMetadata
from artesian.tiered.remote_storage_manager import RemoteStorageManager

__all__ = ["CHUNK_BYTES", "RemoteChunkCache"]

CHUNK_BYTES = 4 << 20


class RemoteChunkCache:
    def __init__(self, rsm: RemoteStorageManager, max_bytes: int = 64 << 20) -> None:
        self._rsm = rsm
        self._cache: LoadingCache[tuple[uuid.UUID, int], memoryview] = LoadingCache(max_bytes, len)

    async def read(
        self, meta: RemoteLogSegmentMetadata, start: int, end: int
    ) -> bytes | memoryview | None:
        """Bytes [start, end) of the segment; None if that runs past its end. A range inside
        one chunk is a view of it, not a copy; a longer one is copied once."""
        if start < 0 or end > meta.size_in_bytes or end < start:
            return None
        first, last = start // CHUNK_BYTES, max(start, end - 1) // CHUNK_BYTES
        if first == last:
            base = first * CHUNK_BYTES
            return (await self._chunk(meta, first))[start - base : end - base]
        parts = []
        for i in range(first, last + 1):
            chunk = await self._chunk(meta, i)
            base = i * CHUNK_BYTES
            parts.append(chunk[max(start - base, 0) : min(end - base, len(chunk))])
        return b"".join(parts)

    def remove(self, segment_id: uuid.UUID) -> None:
        self._cache.remove_where(lambda k: k[0] == segment_id)

    def close(self) -> None:
        self._cache.close()

    async def _chunk(self, meta: RemoteLogSegmentMetadata, index: int) -> memoryview:
        start = index * CHUNK_BYTES
        return await self._cache.get(
            (meta.segment_id, index),
            lambda: self._rsm.fetch_log_segment(meta, start, start + CHUNK_BYTES),
        )
