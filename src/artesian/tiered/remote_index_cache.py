"""RemoteIndexCache: the indexes of remote segments, fetched once and kept in memory.

Kafka keeps them as files under ``remote-log-index-cache``; the indexes here are arrays in
memory anyway (``storage/index.py``), so the cache holds them directly, least recently used
first out, within ``remote.log.index.file.cache.total.size.bytes`` of index data. The three
index objects of a segment are fetched at once.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

from artesian.storage.index import OffsetIndex, TimeIndex
from artesian.storage.transaction_index import TransactionIndex
from artesian.tiered.loading_cache import LoadingCache
from artesian.tiered.remote_log_segment_metadata import (
    INDEX_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    RemoteLogSegmentMetadata,
)
from artesian.tiered.remote_storage_manager import RemoteStorageManager

__all__ = ["RemoteIndexCache", "RemoteIndexes"]

_NOWHERE = Path("/nonexistent")  # the index classes want a path; these never touch it


@dataclass(slots=True)
class RemoteIndexes:
    offset_index: OffsetIndex
    time_index: TimeIndex
    txn_index: TransactionIndex
    size: int


class RemoteIndexCache:
    def __init__(self, rsm: RemoteStorageManager, max_bytes: int) -> None:
        self._rsm = rsm
        self._cache: LoadingCache[uuid.UUID, RemoteIndexes] = LoadingCache(
            max_bytes, lambda i: i.size
        )

    async def get(self, meta: RemoteLogSegmentMetadata) -> RemoteIndexes:
        return await self._cache.get(meta.segment_id, lambda: self._fetch(meta))

    def remove(self, segment_id: uuid.UUID) -> None:
        self._cache.remove_where(lambda k: k == segment_id)

    def close(self) -> None:
        self._cache.close()

    async def _fetch(self, meta: RemoteLogSegmentMetadata) -> RemoteIndexes:
        base = meta.start_offset

        async def nothing() -> bytes:
            return b""

        offset_data, time_data, txn_data = await asyncio.gather(
            self._rsm.fetch_index(meta, INDEX_SUFFIX),
            self._rsm.fetch_index(meta, TIME_INDEX_SUFFIX),
            self._rsm.fetch_index(meta, TXN_INDEX_SUFFIX) if meta.has_txn_index else nothing(),
        )
        offset_index = OffsetIndex(_NOWHERE, base, len(offset_data) + OffsetIndex.ENTRY_SIZE)
        offset_index.load_bytes(offset_data)
        offset_index.sanity_check(meta.size_in_bytes)
        time_index = TimeIndex(_NOWHERE, base, len(time_data) + TimeIndex.ENTRY_SIZE)
        time_index.load_bytes(time_data)
        txn_index = TransactionIndex(_NOWHERE, base)
        txn_index.load_bytes(txn_data)
        return RemoteIndexes(
            offset_index, time_index, txn_index, len(offset_data) + len(time_data) + len(txn_data)
        )
