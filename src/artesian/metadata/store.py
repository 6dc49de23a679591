"""Where the metadata record log lives, behind one interface chosen by URL.

``sqlite:///path/metadata.db`` is the embedded default; a PostgreSQL store for clusters
spanning hosts implements the same ``MetadataStore`` protocol.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from artesian.metadata.records import MetadataRecord, decode_record, encode_record


class StaleMetadataError(Exception):
    """A conditional append found records the appender had not seen: it must catch up with
    the log and decide again (how brokers sharing a store keep one history without a
    consensus protocol of their own)."""


class MetadataStore(Protocol):
    def append(self, records: Iterable[MetadataRecord], expected_last: int | None = None) -> int:
        """Atomically append records; returns the offset of the last one. With
        ``expected_last``, raises StaleMetadataError unless the log ends at that offset."""

    def read(self, after: int = -1) -> Iterator[tuple[int, MetadataRecord]]:
        """Records with offsets greater than ``after``, in order."""

    def heartbeat(self, node_id: int, incarnation: str, session_timeout_ms: int) -> bool:
        """Open or renew ``node_id``'s session for ``session_timeout_ms`` from now. False when
        another incarnation (a second process with the same node.id) holds it, live."""

    def end_session(self, node_id: int, incarnation: str) -> None:
        """Close this incarnation's session at once (a clean shutdown)."""

    def live_brokers(self) -> set[int]:
        """Node ids whose sessions are open."""

    def publish_load(self, node_id: int, sample: str) -> None:
        """Replace ``node_id``'s load sample (JSON; see balancer/load.py). Observed state that
        only matters fresh, so it is overwritten in place and never enters the record log."""

    def broker_loads(self) -> dict[int, str]:
        """Every broker's latest load sample."""

    def close(self) -> None: ...


def _stale(expected_last: int | None, last: int) -> None:
    if expected_last is not None and last != expected_last:
        raise StaleMetadataError(
            f"the metadata log ends at offset {last}, not at {expected_last} as expected"
        )


class SqliteMetadataStore:
    """The embedded store. Brokers on one host may share its file (WAL mode serialises
    their writers); sessions use this host's clock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=10.0
        )
        # Brokers started together race to set up a new file. SQLite answers "database is
        # locked" at once, without its busy timeout, where waiting could deadlock (switching
        # the journal mode, upgrading a read lock): wait and retry instead.
        deadline = time.monotonic() + 10.0
        while True:
            try:
                self._set_up()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _set_up(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # Metadata changes are rare and must survive kill -9 and power loss alike.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS metadata_log ("
            " offset INTEGER PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS broker_sessions ("
            " node_id INTEGER PRIMARY KEY, incarnation TEXT NOT NULL, expires_ms INTEGER NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS broker_loads"
            " (node_id INTEGER PRIMARY KEY, sample TEXT NOT NULL)"
        )

    def append(self, records: Iterable[MetadataRecord], expected_last: int | None = None) -> int:
        rows = [encode_record(r) for r in records]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute("SELECT COALESCE(MAX(offset), -1) FROM metadata_log")
            last = int(cur.fetchone()[0])
            _stale(expected_last, last)
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

    def heartbeat(self, node_id: int, incarnation: str, session_timeout_ms: int) -> bool:
        now = int(time.time() * 1000)
        cur = self._db.execute(
            "INSERT INTO broker_sessions (node_id, incarnation, expires_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (node_id) DO UPDATE SET incarnation = excluded.incarnation, "
            "expires_ms = excluded.expires_ms "
            "WHERE broker_sessions.incarnation = excluded.incarnation "
            "OR broker_sessions.expires_ms <= ?",
            (node_id, incarnation, now + session_timeout_ms, now),
        )
        return cur.rowcount == 1

    def end_session(self, node_id: int, incarnation: str) -> None:
        self._db.execute(
            "DELETE FROM broker_sessions WHERE node_id = ? AND incarnation = ?",
            (node_id, incarnation),
        )

    def live_brokers(self) -> set[int]:
        cur = self._db.execute(
            "SELECT node_id FROM broker_sessions WHERE expires_ms > ?", (int(time.time() * 1000),)
        )
        return {int(row[0]) for row in cur.fetchall()}

    def publish_load(self, node_id: int, sample: str) -> None:
        self._db.execute(
            "INSERT INTO broker_loads (node_id, sample) VALUES (?, ?) "
            "ON CONFLICT (node_id) DO UPDATE SET sample = excluded.sample",
            (node_id, sample),
        )

    def broker_loads(self) -> dict[int, str]:
        cur = self._db.execute("SELECT node_id, sample FROM broker_loads")
        return {int(node): str(sample) for node, sample in cur.fetchall()}

    def close(self) -> None:
        self._db.close()


class PostgresMetadataStore:
    """The record log in a PostgreSQL table, for clusters whose brokers share one store.

    Appends from any number of connections are serialised by a transaction-scoped advisory
    lock, so offsets stay dense and ordered; a commit is durable when PostgreSQL says so
    (synchronous_commit). A lost connection fails the call at hand and is reopened by the next
    one; an append is never retried blindly, since its commit may have landed (the broker
    re-reads the log then). Calls run on the event loop, like SQLite's fsyncs, so every one is
    bounded: lock, statement and idle-in-transaction timeouts on the server, TCP keepalives
    and a user timeout on the socket."""

    # pg_advisory_xact_lock key: "ARTESIAN" in ASCII, any constant shared by all brokers.
    _LOCK = 0x4152544553494E
    _CONNECT_OPTIONS: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": 5,
        "options": "-c lock_timeout=5000 -c statement_timeout=10000 "
        "-c idle_in_transaction_session_timeout=30000",
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10000,
    }

    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._conn = self._connect()
        exists = self._conn.execute("SELECT to_regclass('artesian_metadata_log')").fetchone()
        if exists is None or exists[0] is None:
            # Under the append lock: brokers starting together on a new database would
            # otherwise race in CREATE TABLE (a known PostgreSQL catalog conflict).
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._LOCK,))
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS artesian_metadata_log ("
                    ' "offset" BIGINT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL)'
                )
        exists = self._conn.execute("SELECT to_regclass('artesian_broker_sessions')").fetchone()
        if exists is None or exists[0] is None:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._LOCK,))
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS artesian_broker_sessions (node_id INTEGER "
                    "PRIMARY KEY, incarnation TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)"
                )
        exists = self._conn.execute("SELECT to_regclass('artesian_broker_loads')").fetchone()
        if exists is None or exists[0] is None:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._LOCK,))
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS artesian_broker_loads "
                    "(node_id INTEGER PRIMARY KEY, sample TEXT NOT NULL)"
                )

    def _connect(self) -> Any:
        return self._psycopg.connect(self._url, **self._CONNECT_OPTIONS)

    def _connection(self) -> Any:
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def append(self, records: Iterable[MetadataRecord], expected_last: int | None = None) -> int:
        rows = [encode_record(r) for r in records]
        conn = self._connection()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._LOCK,))
            cur = conn.execute('SELECT COALESCE(MAX("offset"), -1) FROM artesian_metadata_log')
            last = int(cur.fetchone()[0])
            _stale(expected_last, last)
            first = last + 1
            last += len(rows)
            with conn.cursor() as c:
                c.executemany(
                    'INSERT INTO artesian_metadata_log ("offset", kind, payload) VALUES (%s, %s, %s)',
                    [(first + i, kind, payload) for i, (kind, payload) in enumerate(rows)],
                )
        return last

    def read(self, after: int = -1) -> Iterator[tuple[int, MetadataRecord]]:
        cur = self._connection().execute(
            'SELECT "offset", kind, payload FROM artesian_metadata_log WHERE "offset" > %s '
            'ORDER BY "offset"',
            (after,),
        )
        for offset, kind, payload in cur.fetchall():
            yield int(offset), decode_record(kind, payload)

    # Sessions run on the server's clock, so brokers on hosts whose clocks differ agree.
    def heartbeat(self, node_id: int, incarnation: str, session_timeout_ms: int) -> bool:
        cur = self._connection().execute(
            "INSERT INTO artesian_broker_sessions AS s (node_id, incarnation, expires_at) "
            "VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s)) "
            "ON CONFLICT (node_id) DO UPDATE SET incarnation = excluded.incarnation, "
            "expires_at = excluded.expires_at "
            "WHERE s.incarnation = excluded.incarnation OR s.expires_at <= clock_timestamp()",
            (node_id, incarnation, session_timeout_ms / 1000),
        )
        return bool(cur.rowcount == 1)

    def end_session(self, node_id: int, incarnation: str) -> None:
        self._connection().execute(
            "DELETE FROM artesian_broker_sessions WHERE node_id = %s AND incarnation = %s",
            (node_id, incarnation),
        )

    def live_brokers(self) -> set[int]:
        cur = self._connection().execute(
            "SELECT node_id FROM artesian_broker_sessions WHERE expires_at > clock_timestamp()"
        )
        return {int(row[0]) for row in cur.fetchall()}

    def publish_load(self, node_id: int, sample: str) -> None:
        self._connection().execute(
            "INSERT INTO artesian_broker_loads (node_id, sample) VALUES (%s, %s) "
            "ON CONFLICT (node_id) DO UPDATE SET sample = excluded.sample",
            (node_id, sample),
        )

    def broker_loads(self) -> dict[int, str]:
        cur = self._connection().execute("SELECT node_id, sample FROM artesian_broker_loads")
        return {int(node): str(sample) for node, sample in cur.fetchall()}

    def close(self) -> None:
        self._conn.close()


def open_store(url: str) -> MetadataStore:
    """``sqlite:///path/metadata.db`` or ``postgresql://user:password@host:port/database``."""
    if url.startswith("sqlite:///"):
        return SqliteMetadataStore(Path(url.removeprefix("sqlite://")))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresMetadataStore(url)
    scheme = url.split(":", 1)[0] if ":" in url else "(none)"
    # Not the URL itself: it may carry a password.
    raise ValueError(
        f"unsupported metadata store URL scheme {scheme!r}; use sqlite:///path/to/metadata.db "
        "or postgresql://user:password@host:port/database"
    )
