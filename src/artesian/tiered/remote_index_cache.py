"""RemoteIndexCache: the indexes of remote segments, fetched once and kept in memory.

Kafka keeps them as files under ``remote-log-index-cache``; the indexes here are arrays in
memory anyway (``storage/index.py``), so the cache holds them directly, least recently used
first out, within ``remote.log.index.file.cache.total.size.bytes`` of index data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from artesian.storage.index import OffsetIndex, TimeIndex
from artesian.storage.transaction_index import TransactionIndex
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
        self.max_bytes = max_bytes
        self._entries: OrderedDict[uuid.UUID, RemoteIndexes] = OrderedDict()
        self._loading: dict[uuid.UUID, asyncio.Future[RemoteIndexes]] = {}
        self._bytes = 0

    async def get(self, meta: RemoteLogSegmentMetadata) -> RemoteIndexes:
        key = meta.segment_id
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        loading = self._loading.get(key)
        if loading is not None:
            return await asyncio.shield(loading)
        fut: asyncio.Future[RemoteIndexes] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            indexes = await self._fetch(meta)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[key]
        fut.set_result(indexes)
        self._entries[key] = indexes
        self._bytes += indexes.size
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.size
        return indexes

    def remove(self, segment_id: uuid.UUID) -> None:
        old = self._entries.pop(segment_id, None)
        if old is not None:
            self._bytes -= old.size

    async def _fetch(self, meta: RemoteLogSegmentMetadata) -> RemoteIndexes:
        base = meta.start_offset
        offset_data = await self._rsm.fetch_index(meta, INDEX_SUFFIX)
        time_data = await self._rsm.fetch_index(meta, TIME_INDEX_SUFFIX)
        txn_data = (
            await self._rsm.fetch_index(meta, TXN_INDEX_SUFFIX) if meta.has_txn_index else b""
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
