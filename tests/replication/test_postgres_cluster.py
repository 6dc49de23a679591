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
