"""The metadata record log behind both stores: SQLite (embedded) and PostgreSQL (shared by
brokers), the latter on a real server. Offsets are dense and ordered, appends are atomic, and
concurrent appenders through separate connections never get the same offset."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from artesian.metadata.records import RegisterBrokerRecord, TopicRecord
from artesian.metadata.store import (
    MetadataStore,
    PostgresMetadataStore,
    SqliteMetadataStore,
    StaleMetadataError,
    open_store,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/metadata.db"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS artesian_metadata_log")
        conn.execute("DROP TABLE IF EXISTS artesian_broker_sessions")


def _topic(i: int) -> TopicRecord:
    return TopicRecord(f"t{i}", f"00000000-0000-0000-0000-{i:012d}")


def test_appends_get_dense_offsets_and_read_back_in_order(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert store.append([RegisterBrokerRecord(1, "127.0.0.1", 9092, incarnation_id="a")]) == 0
        assert store.append([_topic(1), _topic(2), _topic(3)]) == 3
        got = list(store.read())
        assert [o for o, _ in got] == [0, 1, 2, 3]
        assert got[0][1] == RegisterBrokerRecord(1, "127.0.0.1", 9092, incarnation_id="a")
        assert [r for _, r in got[1:]] == [_topic(1), _topic(2), _topic(3)]
        assert [o for o, _ in store.read(after=1)] == [2, 3]
    finally:
        store.close()
    reopened = open_store(store_url)
    try:
        assert [r for _, r in reopened.read()][1:] == [_topic(1), _topic(2), _topic(3)]
    finally:
        reopened.close()


def test_concurrent_appenders_never_share_an_offset(store_url: str) -> None:
    stores: list[MetadataStore] = [open_store(store_url) for _ in range(4)]
    last: list[int] = []
    lock = threading.Lock()

    def append_many(store: MetadataStore, base: int) -> None:
        for i in range(25):
            offset = store.append([_topic(base + 2 * i), _topic(base + 2 * i + 1)])
            with lock:
                last.append(offset)

    threads = [
        threading.Thread(target=append_many, args=(s, 1000 * k)) for k, s in enumerate(stores)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        records = list(stores[0].read())
        assert [o for o, _ in records] == list(range(200))
        # Each append's two records are adjacent: appends are atomic.
        assert sorted(last) == list(range(1, 200, 2))
        for offset in last:
            first, second = records[offset - 1][1], records[offset][1]
            assert isinstance(first, TopicRecord) and isinstance(second, TopicRecord)
            assert int(second.topic_id[-12:]) == int(first.topic_id[-12:]) + 1
    finally:
        for s in stores:
            s.close()


def test_a_lost_postgres_connection_is_reopened(postgres_url: str) -> None:
    import psycopg

    store = PostgresMetadataStore(postgres_url)
    try:
        store.append([_topic(1)])
        # The server ends our session (as a restart or failover would).
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()"
            )
        with pytest.raises(psycopg.OperationalError):
            store.append([_topic(2)])
        assert store.append([_topic(3)]) == 1
        assert [r for _, r in store.read()] == [_topic(1), _topic(3)]
    finally:
        store.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS artesian_metadata_log")


def test_a_conditional_append_refuses_an_appender_that_missed_records(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    try:
        assert a.append([_topic(1)], expected_last=-1) == 0
        # b planned from an empty log: the store has moved on, nothing is written.
        with pytest.raises(StaleMetadataError):
            b.append([_topic(2)], expected_last=-1)
        assert [r for _, r in a.read()] == [_topic(1)]
        assert b.append([_topic(2)], expected_last=0) == 1
        assert [o for o, _ in b.read()] == [0, 1]
    finally:
        a.close()
        b.close()


def test_broker_sessions_open_lapse_and_end(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    try:
        assert a.live_brokers() == set()
        assert a.heartbeat(1, "a1", 60_000)
        assert b.heartbeat(2, "b1", 300)
        assert a.live_brokers() == b.live_brokers() == {1, 2}
        # A second process with node.id 1 cannot take a live session over.
        assert not b.heartbeat(1, "other", 60_000)
        time.sleep(0.5)
        assert a.live_brokers() == {1}  # 2 did not renew in time
        assert b.heartbeat(2, "b2", 60_000)  # a new incarnation takes the lapsed one's place
        assert a.live_brokers() == {1, 2}
        b.end_session(1, "other")  # not its session: nothing happens
        assert a.live_brokers() == {1, 2}
        a.end_session(1, "a1")
        assert b.live_brokers() == {2}
    finally:
        a.close()
        b.close()


def test_an_unknown_store_url_is_refused() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        open_store("mysql://localhost/db")


def test_brokers_opening_a_new_sqlite_store_together_all_get_in(tmp_path: Path) -> None:
    # SQLite answers "database is locked" at once (no busy wait) to a journal-mode switch
    # racing another; before the retry this failed in about one trial in fifteen.
    for trial in range(40):
        path = tmp_path / f"race-{trial}" / "metadata.db"
        barrier = threading.Barrier(6)
        errors: list[Exception] = []

        def open_store(
            path: Path = path,
            barrier: threading.Barrier = barrier,
            errors: list[Exception] = errors,
        ) -> None:
            barrier.wait()
            try:
                SqliteMetadataStore(path).close()
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=open_store) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], f"trial {trial}: {errors[0]}"
