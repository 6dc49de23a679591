"""KIP-951: a Produce (v10+) or Fetch (v16+) sent to a broker that does not lead the
partition is answered NOT_LEADER_OR_FOLLOWER with the current leader and its endpoint, so a
client moves there without a metadata round trip; a fenced leader epoch gets the new epoch.
Older versions carry none of it, and a consumer's Fetch to a follower is served (KIP-392)."""

from __future__ import annotations

import datetime
import importlib
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from tests.kafka_wire import sample_request
from tests.replication.cluster import Cluster
from tests.storage.batches import make_batch

NONE = 0
NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74


def _produce(c: Cluster, node: int, version: int, topic: str, topic_id: uuid.UUID) -> Any:
    req = sample_request(
        0,
        version,
        topic,
        topic_id=topic_id,
        batch=bytes(make_batch(n=1)),
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=10),
        index=0,
    )
    with c.conn(node) as conn:
        return conn.request(0, version, req)


def _fetch_v16(c: Cluster, node: int, topic_id: uuid.UUID, leader_epoch: int = -1) -> Any:
    m = importlib.import_module("kio.schema.fetch.v16.request")
    part = m.FetchPartition(
        partition=0,
        current_leader_epoch=leader_epoch,
        fetch_offset=0,
        partition_max_bytes=1 << 20,
    )
    req = m.FetchRequest(
        max_wait=datetime.timedelta(0),
        min_bytes=1,
        max_bytes=1 << 20,
        session_id=0,
        session_epoch=-1,
        topics=(m.FetchTopic(topic_id=topic_id, partitions=(part,)),),
        forgotten_topics_data=(),
        rack_id="",
    )
    with c.conn(node) as conn:
        return conn.request(1, 16, req)


def test_a_misdirected_request_names_the_current_leader_and_its_endpoint(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, node_settings={n: {"broker.rack": f"r{n}"} for n in (1, 2, 3)}).start()
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        admin.create_topics([NewTopic("moved", 1, replica_assignment=[[1, 2]])])["moved"].result(15)
        c.wait_for(lambda: all(c.partitions("moved", n) for n in (1, 2, 3)), what="topic known")
        state = c.partitions("moved")[0]
        assert state.leader == 1
        (t,) = c.metadata(3, ["moved"]).topics
        topic_id = t.topic_id
        leader_endpoint = (1, "127.0.0.1", c.brokers[1].port, "r1")

        # Produce v10+ to a follower (2) and to a broker without a replica (3).
        for node in (2, 3):
            for version in (10, 13):
                resp = _produce(c, node, version, "moved", topic_id)
                ((p,),) = [t.partition_responses for t in resp.responses]
                assert p.error_code == NOT_LEADER_OR_FOLLOWER, (node, version)
                assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (
                    1,
                    state.leader_epoch,
                )
                assert [(e.node_id, e.host, e.port, e.rack) for e in resp.node_endpoints] == [
                    leader_endpoint
                ]
        # v9 has no such fields; the error is the same.
        resp = _produce(c, 3, 9, "moved", topic_id)
        ((p,),) = [t.partition_responses for t in resp.responses]
        assert p.error_code == NOT_LEADER_OR_FOLLOWER
        assert not hasattr(resp, "node_endpoints")
        # The leader took the records it was sent: none of the misdirected ones.
        assert (
            _produce(c, 1, 10, "moved", topic_id).responses[0].partition_responses[0].base_offset
            == 0
        )

        # Fetch v16 from a broker without a replica: the leader and its endpoint.
        resp = _fetch_v16(c, 3, topic_id)
        ((p,),) = [t.partitions for t in resp.responses]
        assert p.error_code == NOT_LEADER_OR_FOLLOWER
        assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (
            1,
            state.leader_epoch,
        )
        assert [(e.node_id, e.host, e.port, e.rack) for e in resp.node_endpoints] == [
            leader_endpoint
        ]
        # A follower serves consumers (KIP-392): no error, no hint.
        resp = _fetch_v16(c, 2, topic_id)
        ((p,),) = [t.partitions for t in resp.responses]
        assert (p.error_code, p.current_leader.leader_id, tuple(resp.node_endpoints)) == (
            NONE,
            -1,
            (),
        )
        # Once the leader is gone and broker 2 took over, the hint follows.
        c.brokers[1].kill9()
        c.wait_for(lambda: c.partitions("moved", 3)[0].leader == 2, what="failover")
        new_epoch = c.partitions("moved", 3)[0].leader_epoch
        resp = _produce(c, 3, 10, "moved", topic_id)
        ((p,),) = [t.partition_responses for t in resp.responses]
        assert (p.error_code, p.current_leader.leader_id, p.current_leader.leader_epoch) == (
            NOT_LEADER_OR_FOLLOWER,
            2,
            new_epoch,
        )
        assert [e.node_id for e in resp.node_endpoints] == [2]
        # An epoch older than the leader's is fenced; the answer names the current one.
        resp = _fetch_v16(c, 2, topic_id, leader_epoch=new_epoch - 1)
        ((p,),) = [t.partitions for t in resp.responses]
        assert p.error_code == FENCED_LEADER_EPOCH
        assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (
            2,
            new_epoch,
        )
    finally:
        c.stop()
