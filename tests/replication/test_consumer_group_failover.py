"""A consumer group on the consumer protocol (KIP-848) through its coordinator's kill -9 in a
three-broker cluster: the __consumer_offsets partition's new leader replays the group and
the members carry on at their epochs, reading every record exactly once, without rejoining."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.consumer_group_describe.v1 import request as cgd
from kio.schema.find_coordinator.v4 import request as fc

from tests.conftest import _logged
from tests.replication.cluster import Cluster

T = 30.0
GROUP = "failover-g"


def _coordinator(c: Cluster) -> int:
    with c.conn(c.any_running()) as conn:
        r = conn.request(10, 4, fc.FindCoordinatorRequest(key_type=0, coordinator_keys=(GROUP,)))
    (found,) = r.coordinators
    assert int(found.error_code) == 0, found
    return int(found.node_id)


def _group_epoch(c: Cluster, node: int) -> tuple[int, int]:
    with c.conn(node) as conn:
        r = conn.request(
            69,
            1,
            cgd.ConsumerGroupDescribeRequest(
                group_ids=(GROUP,), include_authorized_operations=False
            ),
        )
    (g,) = r.groups
    return int(g.error_code), int(g.group_epoch)


def test_members_carry_on_through_their_coordinators_kill(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    c = Cluster(
        tmp_path,
        3,
        {
            "offsets.topic.num.partitions": "3",
            "group.consumer.min.heartbeat.interval.ms": "100",
            "group.consumer.heartbeat.interval.ms": "300",
            "group.consumer.min.session.timeout.ms": "1000",
            "group.consumer.session.timeout.ms": "10000",
        },
    ).start()
    _logged(request.node).extend(c.brokers.values())
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        admin.create_topics([NewTopic("fo-t", 4, 3)])["fo-t"].result(T)
        producer = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})

        def produce(first: int, last: int) -> None:
            for i in range(first, last):
                producer.produce("fo-t", str(i).encode(), partition=i % 4)
            assert producer.flush(T) == 0

        produce(0, 400)
        consumers = [
            Consumer(
                {
                    "bootstrap.servers": c.bootstrap,
                    "group.id": GROUP,
                    "group.protocol": "consumer",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                }
            )
            for _ in range(2)
        ]
        for consumer in consumers:
            consumer.subscribe(["fo-t"])
        seen: list[tuple[int, int, bytes]] = []

        def consume_until(count: int, seconds: float = 60) -> None:
            deadline = time.monotonic() + seconds
            while len(seen) < count and time.monotonic() < deadline:
                for consumer in consumers:
                    m = consumer.poll(0.1)
                    if m is None or m.error():
                        continue
                    seen.append((m.partition(), m.offset(), m.value()))
                    consumer.commit(m, asynchronous=False)

        consume_until(200)
        coordinator = _coordinator(c)
        c.wait_for(
            lambda: (
                _group_epoch(c, coordinator)[1] >= 2
                and all(len(k.assignment()) == 2 for k in consumers)
            ),
            what="both members with two partitions",
        )
        consume_until(250)
        _, epoch = _group_epoch(c, coordinator)
        c.brokers[coordinator].kill9()
        c.wait_for(lambda: _coordinator(c) != coordinator, what="a new coordinator")
        produce(400, 600)
        consume_until(600)
        consume_until(601, seconds=2)  # a duplicate would arrive now
        for consumer in consumers:
            consumer.close()
        assert sorted(seen) == sorted((i % 4, i // 4, str(i).encode()) for i in range(600))
        # Closing left the group twice; no member rejoined in between, which bumps it too.
        code, after = _group_epoch(c, _coordinator(c))
        assert (code, after) == (0, epoch + 2)
    finally:
        c.stop()
