"""RemoteStorageManager: segment objects in an object store, through obstore.

Kafka's RemoteStorageManager plugin interface, with one implementation built in: obstore, which
speaks to a local directory (``file://``, the embedded default), S3 and S3-compatible stores
(``s3://``; credentials and endpoint from the usual ``AWS_*`` environment variables), GCS
(``gs://``), Azure (``az://``) and memory (``memory://``, for tools). Every call is async: the
object store's I/O runs on obstore's own runtime, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import obstore
from obstore.store import LocalStore, from_url

from artesian.storage.files import fsync_dir
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
    def __init__(self, store: Any, url: str, local_root: Path | None = None) -> None:
        self.store = store
        self.url = url
        # A local-directory store: obstore does not fsync, so we do (see _sync).
        self._local_root = local_root

    @classmethod
    def from_url(cls, url: str) -> RemoteStorageManager:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            # obstore's from_url wants the directory to exist; create it as a bucket would.
            root = Path(parsed.path)
            return cls(LocalStore(root, mkdir=True), url, root)
        return cls(from_url(url), url)

    async def _sync(self, keys: list[str]) -> None:
        """Local-directory store only: fsync the objects and their directory, so that a
        segment is on disk before local retention deletes the broker's own copy (an object
        store proper makes a PUT durable before answering)."""
        root = self._local_root
        if root is None:
            return

        def sync() -> None:
            for key in keys:
                fd = os.open(root / key, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for directory in {(root / key).parent for key in keys}:
                fsync_dir(directory)

        await asyncio.to_thread(sync)

    # -- segments ---------------------------------------------------------------------------

    async def copy_log_segment_data(
        self, meta: RemoteLogSegmentMetadata, log_file: Path, indexes: SegmentIndexes
    ) -> None:
        """Data objects first, the metadata object last: a segment exists once that lands.
        ``log_file`` must not change meanwhile (a rolled segment of a non-compacted topic)."""
        store = self.store
        data: list[tuple[str, Path | bytes]] = [
            (LOG_SUFFIX, log_file),
            (INDEX_SUFFIX, indexes.offset_index),
            (TIME_INDEX_SUFFIX, indexes.time_index),
        ]
        if meta.has_txn_index:
            data.append((TXN_INDEX_SUFFIX, indexes.txn_index))
        for suffix, body in data:
            await obstore.put_async(store, meta.object_key(suffix), body)
        await self._sync([meta.object_key(suffix) for suffix, _ in data])
        await obstore.put_async(store, meta.object_key(METADATA_SUFFIX), meta.to_json())
        await self._sync([meta.object_key(METADATA_SUFFIX)])

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
        keys = await self._list(prefix)
        if self._local_root is not None:
            # obstore's staging files ("<key>#<n>") of a put a crash cut short: never listed.
            def sweep(directory: Path) -> None:
                for staged in directory.glob("*#*"):
                    staged.unlink(missing_ok=True)

            await asyncio.to_thread(sweep, self._local_root / prefix)
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
        keys = await self._list(prefix)
        # Metadata objects first, as for a single segment.
        keys.sort(key=lambda k: not k.endswith(METADATA_SUFFIX))
        await self.delete_objects(keys)
        return len(keys)

    async def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        async for chunk in obstore.list(self.store, prefix=prefix + "/"):
            keys += [m["path"] for m in chunk]
        return keys
