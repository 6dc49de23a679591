"""Who may join a cluster: one broker process per data directory (Kafka's .lock), one live
broker per node.id (a second process with the same id is refused while the first's session
lives), and a broker restarted after kill -9 takes its own session back at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.broker_process import BrokerProcess
from tests.replication.cluster import FAST


def _broker(tmp_path: Path, name: str, node: int) -> BrokerProcess:
    store = f"sqlite:///{tmp_path}/metadata.db"
    return BrokerProcess(
        tmp_path / name, {"node.id": str(node), "artesian.metadata.store.url": store, **FAST}
    )


def test_a_second_broker_with_the_same_node_id_is_refused(tmp_path: Path) -> None:
    first = _broker(tmp_path, "a", 1).start()
    try:
        twin = _broker(tmp_path, "b", 1)
        with pytest.raises(
            RuntimeError, match=r"another broker with node.id=1 holds a live session"
        ):
            twin.start()
        # Same data directory: the lock says so before anything else.
        same_dir = BrokerProcess(first.data_dir, dict(first.settings))
        with pytest.raises(RuntimeError, match="another broker process is using"):
            same_dir.start()
        assert first.alive()
    finally:
        first.stop()


def test_a_killed_broker_restarts_into_its_own_session(tmp_path: Path) -> None:
    b = _broker(tmp_path, "a", 1)
    # A session that outlives the test: a restart that had to wait for it would never start.
    b.settings["broker.session.timeout.ms"] = "600000"
    b.start()
    b.kill9()
    b.start()
    b.stop()


def test_a_stopped_broker_without_replicas_is_unregistered(tmp_path: Path) -> None:
    """UnregisterBroker (kafka-cluster.sh unregister): a stopped broker that holds no replica
    is forgotten and may come back as a new member; a live one, or one still holding
    replicas, is refused with the reason, and an unknown id is BROKER_ID_NOT_REGISTERED."""
    import subprocess
    import sys

    from confluent_kafka.admin import AdminClient, NewTopic
    from kio.schema.describe_cluster.v2 import request as dc
    from kio.schema.unregister_broker.v0 import request as ub

    from tests.replication.cluster import Cluster

    c = Cluster(tmp_path, 3).start()
    try:

        def unregister(node: int) -> tuple[int, str | None]:
            with c.conn(1) as conn:
                r = conn.request(64, 0, ub.UnregisterBrokerRequest(broker_id=node))
            return int(r.error_code), r.error_message

        def registered(fenced_too: bool = True) -> dict[int, bool]:
            """Registered brokers: fenced or not (KIP-1073: fenced ones only when asked)."""
            with c.conn(1) as conn:
                r = conn.request(
                    60,
                    2,
                    dc.DescribeClusterRequest(
                        include_cluster_authorized_operations=False,
                        endpoint_type=1,
                        include_fenced_brokers=fenced_too,
                    ),
                )
            return {int(b.broker_id): b.is_fenced for b in r.brokers}

        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        admin.create_topics([NewTopic("on-two", num_partitions=1, replica_assignment=[[1, 2]])])[
            "on-two"
        ].result(15)
        assert unregister(3)[0] == 42  # alive
        c.brokers[3].stop()
        c.brokers[2].stop()
        c.wait_for(lambda: registered() == {1: False, 2: True, 3: True}, what="2 and 3 fenced")
        assert registered(fenced_too=False) == {1: False}
        assert unregister(2) == (
            42,
            "Broker 2 still holds replicas of 1 partition(s): move them first "
            "(kafka-reassign-partitions, or 'artesian cluster remove-broker')",
        )
        command = ["cluster", "unregister-broker", "3", "-b", c.bootstrap]
        done = subprocess.run(
            [sys.executable, "-m", "artesian.cli.main", *command],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "Broker 3 unregistered." in done.stdout
        assert registered() == {1: False, 2: True}
        assert unregister(3) == (102, "Broker ID 3 is not currently registered")
        assert unregister(1)[0] == 42  # the one answering: alive
        # Its id is free: it comes back as a new member.
        c.brokers[3].start()
        c.wait_for(lambda: registered().get(3) is False, what="3 registered again")
    finally:
        c.stop()


def test_a_stalled_store_fences_nobody(tmp_path: Path) -> None:
    """While the store's write lock is held (a stuck writer, a database restart) no session
    can be renewed; when it is released, every broker's looks lapsed until each renews it.
    The first to renew must not take the others for fenced (KRaft's controller gives each
    broker a full session after taking over)."""
    import sqlite3
    import time

    from tests.replication.cluster import Cluster
    from tests.replication.test_cluster import _create

    cluster = Cluster(tmp_path, 3).start()
    try:
        _create(cluster, "steady", 3, 3)
        before = cluster.partitions("steady")
        marks = {n: b.log_mark() for n, b in cluster.brokers.items()}
        session_s = int(FAST["broker.session.timeout.ms"]) / 1000
        holder = sqlite3.connect(tmp_path / "metadata.db", timeout=10, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock: no session renews
        time.sleep(2 * session_s)
        # Mid-stall, every session has lapsed in the store; placing replicas must not take
        # the others for gone (reads still work: SQLite's WAL readers do not wait).
        assert _validate_topic(cluster, replication_factor=3) == (0, None)
        time.sleep(session_s)
        holder.execute("ROLLBACK")
        holder.close()
        time.sleep(2 * int(FAST["broker.session.timeout.ms"]) / 1000)  # each renews
        assert all(cluster.live_brokers(n) == {1, 2, 3} for n in cluster.brokers)
        assert cluster.partitions("steady") == before  # no leader or ISR changed
        logs = "".join(b.log_tail(200, since=marks[n]) for n, b in cluster.brokers.items())
        assert "fenced:" not in logs
        assert "the metadata store answers again after a stall" in logs
    finally:
        cluster.stop()


def _validate_topic(cluster: Any, replication_factor: int) -> tuple[int, str | None]:
    """A validate_only CreateTopics to the controller: placing its replicas needs the live
    brokers."""
    import datetime

    from kio.schema.create_topics.v7 import request as ct

    req = ct.CreateTopicsRequest(
        topics=(
            ct.CreatableTopic(
                name="placed",
                num_partitions=1,
                replication_factor=replication_factor,
                assignments=(),
                configs=(),
            ),
        ),
        timeout=datetime.timedelta(seconds=10),
        validate_only=True,
    )
    with cluster.conn(1) as conn:
        (r,) = conn.request(19, 7, req).topics
    return int(r.error_code), r.error_message
