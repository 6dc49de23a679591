"""Who may join a cluster: one broker process per data directory (Kafka's .lock), one live
broker per node.id (a second process with the same id is refused while the first's session
lives), and a broker restarted after kill -9 takes its own session back at once."""

from __future__ import annotations

from pathlib import Path

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
