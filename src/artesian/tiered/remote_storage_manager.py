"""RemoteStorageManager: segment objects in an object store, through obstore.

Kafka's RemoteStorageManager plugin interface, with one implementation built in: obstore, which
speaks to a local directory (``file://``, the embedded default), S3 and S3-compatible stores
(``s3://``; credentials and endpoint from the usual ``AWS_*`` environment variables), GCS
(``gs://``), Azure (``az://``) and memory (``memory://``, for tools). Every call is async: the
object store's I/O runs on obstore's own runtime, never on the event loop.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import obstore
from obstore.store import LocalStore, from_url

from artesian.tiered.remote_log_segment_metadata import (
    DATA_SUFFIXES,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    METADATA_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    RemoteLogSegmentMetadata,
)

__all__ = ["RemoteStorageError", "RemoteStorageManager", "SegmentIndexes"]

log = logging.getLogger("artesian.tiered")


class RemoteStorageError(Exception):
    """The object store failed or holds something unexpected."""


class SegmentIndexes:
    """The index files of a segment being copied, in their on-disk formats."""

    __slots__ = ("offset_index", "time_index", "txn_index")

    def __init__(self, offset_index: bytes, time_index: bytes, txn_index: bytes) -> None:
        self.offset_index = offset_index
        self.time_index = time_index
        self.txn_index = txn_index


class RemoteStorageManager:
    def __init__(self, store: Any, url: str) -> None:
        self.store = store
        self.url = url

    @classmethod
    def from_url(cls, url: str) -> RemoteStorageManager:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            # obstore's from_url wants the directory to exist; create it as a bucket would.
            store: Any = LocalStore(parsed.path, mkdir=True)
        else:
            store = from_url(url)
        return cls(store, url)

    # -- segments ---------------------------------------------------------------------------

    async def copy_log_segment_data(
        self, meta: RemoteLogSegmentMetadata, log_file: Path, indexes: SegmentIndexes
    ) -> None:
        """Data objects first, the metadata object last: a segment exists once that lands.
        ``log_file`` must not change meanwhile (a rolled segment of a non-compacted topic)."""
        store = self.store
        await obstore.put_async(store, meta.object_key(LOG_SUFFIX), log_file)
        await obstore.put_async(store, meta.object_key(INDEX_SUFFIX), indexes.offset_index)
        await obstore.put_async(store, meta.object_key(TIME_INDEX_SUFFIX), indexes.time_index)
        if meta.has_txn_index:
            await obstore.put_async(store, meta.object_key(TXN_INDEX_SUFFIX), indexes.txn_index)
        await obstore.put_async(store, meta.object_key(METADATA_SUFFIX), meta.to_json())

    async def fetch_log_segment(
        self, meta: RemoteLogSegmentMetadata, start: int, end: int
    ) -> memoryview:
        """Bytes [start, end) of the segment (fewer at its end), as a view of obstore's
        buffer: no copy into Python."""
        if end <= start:
            return memoryview(b"")
        data = await obstore.get_range_async(
            self.store, meta.object_key(LOG_SUFFIX), start=start, end=min(end, meta.size_in_bytes)
        )
        return memoryview(data)

    async def fetch_index(self, meta: RemoteLogSegmentMetadata, suffix: str) -> bytes:
        result = await obstore.get_async(self.store, meta.object_key(suffix))
        return bytes(await result.bytes_async())

    async def delete_log_segment_data(self, meta: RemoteLogSegmentMetadata) -> None:
        """Metadata first: readers stop seeing the segment before its data goes. Missing
        objects are fine (a delete interrupted earlier)."""
        for suffix in (METADATA_SUFFIX, *DATA_SUFFIXES):
            try:
                await obstore.delete_async(self.store, meta.object_key(suffix))
            except FileNotFoundError:
                pass

    # -- partitions ---------------------------------------------------------------------------

    async def list_segments(self, prefix: str) -> tuple[list[RemoteLogSegmentMetadata], list[str]]:
        """Every committed segment of a partition, by start offset, and the keys of orphans:
        data objects of copies that never got their metadata object (a crash mid-copy). A
        metadata object that does not parse is skipped with a warning (not ours to delete)."""
        keys: list[str] = []
        async for chunk in obstore.list(self.store, prefix=prefix + "/"):
            keys += [m["path"] for m in chunk]
        committed = {k[: -len(METADATA_SUFFIX)] for k in keys if k.endswith(METADATA_SUFFIX)}
        # Only our own data objects can be orphans; anything else under the prefix is left be.
        orphans = [
            k for k in keys if k.endswith(DATA_SUFFIXES) and k[: k.rindex(".")] not in committed
        ]
        out = []
        for stem in committed:
            key = stem + METADATA_SUFFIX
            try:
                result = await obstore.get_async(self.store, key)
                out.append(RemoteLogSegmentMetadata.from_json(bytes(await result.bytes_async())))
            except FileNotFoundError:
                continue  # deleted since the listing
            except ValueError as e:
                log.warning("ignoring remote object %s: %s", key, e)
        out.sort(key=lambda m: (m.start_offset, m.end_offset))
        return out, orphans

    async def delete_objects(self, keys: list[str]) -> None:
        for key in keys:
            try:
                await obstore.delete_async(self.store, key)
            except FileNotFoundError:
                pass

    async def delete_partition(self, prefix: str) -> int:
        """Every object of a deleted partition; returns how many went."""
        keys: list[str] = []
        async for chunk in obstore.list(self.store, prefix=prefix + "/"):
            keys += [m["path"] for m in chunk]
        # Metadata objects first, as for a single segment.
        keys.sort(key=lambda k: not k.endswith(METADATA_SUFFIX))
        for key in keys:
            try:
                await obstore.delete_async(self.store, key)
            except FileNotFoundError:
                pass
        return len(keys)
