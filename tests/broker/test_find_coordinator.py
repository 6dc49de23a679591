"""FindCoordinator: group and transaction keys, single (v0-3) and batched (v4+)."""

from __future__ import annotations

from typing import Any

import pytest
from kio.schema.find_coordinator.v3 import request as v3
from kio.schema.find_coordinator.v6 import request as v6

from tests.kafka_wire import WireConn

FIND_COORDINATOR = 10
GROUP, TRANSACTION = 0, 1


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    """One broker for the module; the test of the first lookup takes a fresh one."""
    return module_broker_factory()


@pytest.mark.parametrize("key_type", [GROUP, TRANSACTION])
def test_single_lookup_names_this_broker(broker: Any, key_type: int) -> None:
    with WireConn(broker.port) as conn:
        resp = conn.request(
            FIND_COORDINATOR, 3, v3.FindCoordinatorRequest(key="g1", key_type=key_type)
        )
    assert int(resp.error_code) == 0
    assert (resp.node_id, resp.host, resp.port) == (1, "127.0.0.1", broker.port)


def test_batched_lookup_answers_every_key(broker: Any) -> None:
    with WireConn(broker.port) as conn:
        resp = conn.request(
            FIND_COORDINATOR,
            6,
            v6.FindCoordinatorRequest(key_type=GROUP, coordinator_keys=("a", "b", "")),
        )
        txn = conn.request(
            FIND_COORDINATOR,
            6,
            v6.FindCoordinatorRequest(key_type=TRANSACTION, coordinator_keys=("tx-1",)),
        )
        bad = conn.request(
            FIND_COORDINATOR, 6, v6.FindCoordinatorRequest(key_type=7, coordinator_keys=("x",))
        )
    by_key = {c.key: c for c in resp.coordinators}
    assert set(by_key) == {"a", "b", ""}
    for key in ("a", "b"):
        c = by_key[key]
        assert (int(c.error_code), c.node_id, c.port) == (0, 1, broker.port)
    assert int(by_key[""].error_code) == 42  # INVALID_REQUEST: an empty group id
    assert [(c.key, int(c.error_code), c.node_id) for c in txn.coordinators] == [("tx-1", 0, 1)]
    assert int(bad.coordinators[0].error_code) == 42


def test_first_group_lookup_creates_consumer_offsets(broker_factory: Any) -> None:
    from confluent_kafka.admin import AdminClient

    broker = broker_factory()  # a fresh one, without __consumer_offsets

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert "__consumer_offsets" not in admin.list_topics(timeout=10).topics
    with WireConn(broker.port) as conn:
        conn.request(FIND_COORDINATOR, 3, v3.FindCoordinatorRequest(key="g", key_type=GROUP))
    topics = admin.list_topics(timeout=10).topics
    assert len(topics["__consumer_offsets"].partitions) == 50
