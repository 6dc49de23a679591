"""Share groups (KIP-932) on two brokers: partitions led by different brokers store their
share state through the share coordinator (the leader of __share_group_state's only
partition here, so the other broker reaches it with WriteShareGroupState), and that state,
replicated, survives the share coordinator's kill -9."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.broker.test_share_groups import SHARE, _poll, _set_group_configs, _share_consumer
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
