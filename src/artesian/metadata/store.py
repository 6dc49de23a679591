"""Where the metadata record log lives, behind one interface chosen by URL.

``sqlite:///path/metadata.db`` is the embedded default; a PostgreSQL store for clusters
spanning hosts implements the same ``MetadataStore`` protocol.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from artesian.metadata.records import MetadataRecord, decode_record, encode_record


class MetadataStore(Protocol):
    def append(self, records: Iterable[MetadataRecord]) -> int:
        """Atomically append records; returns the offset of the last one."""

    def read(self, after: int = -1) -> Iterator[tuple[int, MetadataRecord]]:
        """Records with offsets greater than ``after``, in order."""

    def close(self) -> None: ...


class SqliteMetadataStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Metadata changes are rare and must survive kill -9 and power loss alike.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS metadata_log ("
            " offset INTEGER PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL)"
        )

    def append(self, records: Iterable[MetadataRecord]) -> int:
        rows = [encode_record(r) for r in records]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute("SELECT COALESCE(MAX(offset), -1) FROM metadata_log")
            last = int(cur.fetchone()[0])
            for kind, payload in rows:
                last += 1
                self._db.execute(
                    "INSERT INTO metadata_log (offset, kind, payload) VALUES (?, ?, ?)",
                    (last, kind, payload),
                )
        return last

    def read(self, after: int = -1) -> Iterator[tuple[int, MetadataRecord]]:
        cur = self._db.execute(
            "SELECT offset, kind, payload FROM metadata_log WHERE offset > ? ORDER BY offset",
            (after,),
        )
        for offset, kind, payload in cur.fetchall():
            yield int(offset), decode_record(kind, payload)

    def close(self) -> None:
        self._db.close()


def open_store(url: str) -> MetadataStore:
    if url.startswith("sqlite:///"):
        return SqliteMetadataStore(Path(url.removeprefix("sqlite://")))
    raise ValueError(f"unsupported metadata store URL {url!r}; use sqlite:///path/to/metadata.db")
