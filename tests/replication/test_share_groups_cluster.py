"""Share groups (KIP-932) on two brokers: partitions led by different brokers store their
share state through the share coordinator (the leader of __share_group_state's only
partition here, so the other broker reaches it with WriteShareGroupState), and that state,
replicated, survives the share coordinator's kill -9. A group coordinator that is not the
share coordinator answers the share group admin APIs through it (ReadShareGroupStateSummary,
InitializeShareGroupState, DeleteShareGroupState), with lag from the other leader."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.find_coordinator.v4 import request as fc

from tests.broker.test_share_group_offsets import (
    NONE,
    _alter,
    _altered,
    _delete_group,
    _describe,
    _offsets,
)
from tests.broker.test_share_groups import SHARE, _poll, _set_group_configs, _share_consumer
from tests.metrics import scrape
from tests.replication.cluster import Cluster

T = 30.0


def _read(consumer: Any, n: int, seconds: float = T) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        got.extend(m.value() for m in _poll(consumer, 0.2))
    return got


def test_share_state_is_kept_across_brokers_and_a_coordinator_kill(tmp_path: Path) -> None:
    c = Cluster(
        tmp_path,
        2,
        {
            **SHARE,
            "share.coordinator.state.topic.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "2",
            # Two brokers, one to be killed: the state must be writable on one replica.
            "share.coordinator.state.topic.min.isr": "1",
            "offsets.topic.replication.factor": "2",
        },
    ).start()
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        (f,) = admin.create_topics([NewTopic("mq", 2, 2)]).values()
        f.result(T)
        c.wait_for(lambda: all(p.leader >= 0 for p in c.partitions("mq").values()), what="mq")
        leaders = {p.leader for p in c.partitions("mq").values()}
        assert leaders == {1, 2}, leaders  # one partition led by each broker
        _set_group_configs(c.brokers[1], "mq-g", {"share.auto.offset.reset": "earliest"})
        producer = Producer({"bootstrap.servers": c.bootstrap, "linger.ms": 0})
        for i in range(40):
            producer.produce("mq", str(i).encode(), partition=i % 2)
        assert producer.flush(T) == 0

        consumer = _share_consumer(c.brokers[1], "mq-g", "mq")
        got = _read(consumer, 40)
        assert sorted(int(v) for v in got) == list(range(40))
        # Its acknowledgements go to both leaders, and on to the coordinator. (librdkafka's
        # close acknowledges nothing in implicit mode: the last poll's records would be
        # released, and handed out again.)
        consumer.commit_sync()
        consumer.close()

        state = c.partitions("__share_group_state")[0]
        _admin_through_another_coordinator(c, state.leader)
        assert set(state.isr) == {1, 2}
        c.brokers[state.leader].kill9()
        survivor = 2 if state.leader == 1 else 1
        c.wait_for(
            lambda: c.partitions("__share_group_state", survivor)[0].leader == survivor,
            what="the share coordinator moved",
        )
        c.wait_for(
            lambda: all(p.leader == survivor for p in c.partitions("mq", survivor).values()),
            what="mq led by the survivor",
        )
        for i in range(40, 50):
            producer.produce("mq", str(i).encode(), partition=i % 2)
        assert producer.flush(T) == 0
        again = _share_consumer(c.brokers[survivor], "mq-g", "mq")
        after = _read(again, 10)
        assert sorted(int(v) for v in after) == list(range(40, 50))
        assert _read(again, 1, 2.0) == []  # nothing acknowledged before comes back
        again.close()
    finally:
        c.stop()


def _coordinator(c: Cluster, group: str) -> int:
    with c.conn(c.any_running()) as conn:
        r = conn.request(10, 4, fc.FindCoordinatorRequest(key_type=0, coordinator_keys=(group,)))
    (found,) = r.coordinators
    assert int(found.error_code) == 0, found
    return int(found.node_id)


def _admin_through_another_coordinator(c: Cluster, share_coordinator: int) -> None:
    """A group whose coordinator is the other broker: every state change and summary goes
    between brokers, and one partition's high watermark too (mq is led by both)."""
    group = next(
        g for g in (f"mq-admin-{i}" for i in range(100)) if _coordinator(c, g) != share_coordinator
    )
    coordinator = c.brokers[_coordinator(c, group)]
    # Partition 0 holds 0, 2, .., 38 at offsets 0-19; partition 1 holds 1, 3, .., 39.
    r = _alter(coordinator, group, {"mq": {0: 15, 1: 18}})
    assert _altered(r) == {("mq", 0): NONE, ("mq", 1): NONE}
    assert _offsets(_describe(coordinator, group, None)) == {
        ("mq", 0): (15, 5, NONE),
        ("mq", 1): (18, 2, NONE),
    }
    consumer = _share_consumer(coordinator, group, "mq")
    got = _read(consumer, 7)
    assert sorted(int(v) for v in got) == [30, 32, 34, 36, 37, 38, 39]
    consumer.commit_sync()
    consumer.close()
    c.wait_for(
        lambda: (
            _offsets(_describe(coordinator, group, None))
            == {("mq", 0): (20, 0, NONE), ("mq", 1): (20, 0, NONE)}
        ),
        what="the group's offsets at the end",
    )
    assert _delete_group(coordinator, group) == NONE
    assert _offsets(_describe(coordinator, group, None)) == {}
    # All of it went through the share coordinator's APIs.
    for api in ("InitializeShareGroupState", "ReadShareGroupStateSummary", "DeleteShareGroupState"):
        served = scrape(
            c.metrics_ports[share_coordinator],
            "kafka_network_request_total_time_seconds_count",
            request=api,
        )
        assert served >= 1, api
