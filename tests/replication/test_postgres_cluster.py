"""A cluster whose brokers share a real PostgreSQL server as their metadata store, as brokers
on several hosts would: sessions on the server's clock, conditional appends, and a failover
that keeps every acknowledged record."""

from __future__ import annotations

from pathlib import Path

from tests.consuming import read_range
from tests.replication.cluster import Cluster
from tests.replication.test_cluster import _create, _produce


def test_a_cluster_on_postgresql_fails_over_without_losing_records(
    tmp_path: Path, postgres_database: str
) -> None:
    c = Cluster(tmp_path, 3, store_url=postgres_database).start()
    try:
        _create(c, "pg", 1, 3)
        (before,) = c.partitions("pg").values()
        values = [f"pg{i}".encode() for i in range(2000)]
        _produce(c.bootstrap, "pg", {0: values[:1000]})
        c.brokers[before.leader].kill9()
        c.wait_for(lambda: c.partitions("pg")[0].leader not in (before.leader, -1), what="failover")
        survivors = ",".join(c.brokers[i].bootstrap for i in c.running())
        _produce(survivors, "pg", {0: values[1000:]})
        assert read_range(survivors, "pg", 0, 2000) == list(enumerate(values))
    finally:
        c.stop()


def test_a_store_that_holds_up_reads_fences_nobody(tmp_path: Path, postgres_database: str) -> None:
    """A paused or locked PostgreSQL holds up each broker's metadata reads, and its session
    renewals wait behind them on the store's thread: once it answers, a renewal is quick but
    every broker's session looks lapsed. No broker may take the others for fenced (a probe
    saw a follower make itself controller and move every leadership to itself)."""
    import time

    import psycopg

    from tests.replication.cluster import FAST

    c = Cluster(tmp_path, 3, store_url=postgres_database).start()
    try:
        _create(c, "held", 3, 3)
        before = c.partitions("held")
        marks = {n: b.log_mark() for n, b in c.brokers.items()}
        session_s = int(FAST["broker.session.timeout.ms"]) / 1000
        with psycopg.connect(postgres_database, autocommit=False) as locker:
            locker.execute("LOCK TABLE artesian_metadata_log IN ACCESS EXCLUSIVE MODE")
            time.sleep(3 * session_s)  # every broker's read, and renewal, waits
            locker.rollback()
        time.sleep(2 * session_s)  # each renews
        assert all(c.live_brokers(n) == {1, 2, 3} for n in c.brokers)
        assert c.partitions("held") == before  # no leader or ISR changed
        logs = "".join(b.log_tail(300, since=marks[n]) for n, b in c.brokers.items())
        assert "fenced:" not in logs, logs
    finally:
        c.stop()
