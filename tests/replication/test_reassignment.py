"""Partition reassignment (KIP-455), as kafka-reassign-partitions.sh drives it: a partition
moves to other brokers with every record, at its offsets, while ListPartitionReassignments
shows the move; the brokers it leaves delete their copy; bad targets get Kafka's errors."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.alter_partition_reassignments.v0 import request as alter
from kio.schema.list_partition_reassignments.v0 import request as lst

from tests.cli.test_admin_cli import cli_json
from tests.consuming import read_range
from tests.replication.cluster import Cluster
from tests.replication.test_cluster import _create, _produce

NONE = 0
INVALID_REPLICA_ASSIGNMENT = 39
NO_REASSIGNMENT_IN_PROGRESS = 85


def _reassign(c: Cluster, topic: str, partition: int, replicas: list[int] | None) -> int:
    req = alter.AlterPartitionReassignmentsRequest(
        timeout=datetime.timedelta(seconds=10),
        topics=(
            alter.ReassignableTopic(
                name=topic,
                partitions=(
                    alter.ReassignablePartition(partition_index=partition, replicas=replicas),
                ),
            ),
        ),
    )
    with c.conn(c.any_running()) as conn:
        resp = conn.request(45, 0, req)
    assert int(resp.error_code) == NONE
    ((code,),) = [[int(p.error_code) for p in t.partitions] for t in resp.responses]
    return code


def _ongoing(c: Cluster, topic: str) -> dict[int, Any]:
    req = lst.ListPartitionReassignmentsRequest(
        timeout=datetime.timedelta(seconds=10),
        topics=(lst.ListPartitionReassignmentsTopics(name=topic, partition_indexes=(0,)),),
    )
    with c.conn(c.any_running()) as conn:
        resp = conn.request(46, 0, req)
    return {int(p.partition_index): p for t in resp.topics for p in t.partitions}


def test_a_partition_moves_to_other_brokers_with_every_record(cluster: Cluster) -> None:
    admin_topic = "moving"
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(admin_topic, 1, replica_assignment=[[1]])])[admin_topic].result(
        15
    )
    cluster.wait_for(lambda: all(cluster.partitions(admin_topic, n) for n in (1, 2, 3)))
    values = [f"m{i}".encode() for i in range(3000)]
    _produce(cluster.bootstrap, admin_topic, {0: values})

    # Through the CLI, as a user would: it waits (with a progress bar) until the move is done.
    args = ("topic", "reassign", admin_topic, "-p", "0", "-r", "2,3", "--wait")
    moved = cli_json(cluster.brokers[1], *args)
    assert moved == {"topic": admin_topic, "partitions": [0], "replicas": [2, 3]}
    assert not _ongoing(cluster, admin_topic)
    cluster.wait_for(lambda: cluster.partitions(admin_topic)[0].replicas == (2, 3))
    state = cluster.partitions(admin_topic)[0]
    assert state.leader in (2, 3) and state.isr in ((2, 3), (3, 2))
    assert read_range(cluster.bootstrap, admin_topic, 0, 3000) == list(enumerate(values))
    # Both new replicas hold the log byte for byte; the old broker let its copy go.
    assert cluster.log_bytes(2, admin_topic, 0) == cluster.log_bytes(3, admin_topic, 0)
    assert len(cluster.log_bytes(2, admin_topic, 0)) > 3000 * 5
    cluster.wait_for(
        lambda: not (cluster.brokers[1].data_dir / "logs" / f"{admin_topic}-0").exists(),
        what="the old replica deleted",
    )
    # A move that only drops a replica (a smaller replication factor) takes it out at once.
    leaving = state.leader
    assert _reassign(cluster, admin_topic, 0, [5 - leaving]) == NONE
    cluster.wait_for(lambda: cluster.partitions(admin_topic)[0].replicas == (5 - leaving,))
    assert cluster.partitions(admin_topic)[0].leader == 5 - leaving
    assert not _ongoing(cluster, admin_topic)
    assert read_range(cluster.bootstrap, admin_topic, 0, 3000) == list(enumerate(values))


def test_a_move_that_cannot_finish_is_listed_and_can_be_cancelled(cluster: Cluster) -> None:
    _create(cluster, "stuck", 1, 1)
    (state,) = cluster.partitions("stuck").values()
    others = [b for b in (1, 2, 3) if b != state.leader]
    cluster.brokers[others[0]].kill9()  # the joining replica is down: it cannot catch up
    assert _reassign(cluster, "stuck", 0, [state.leader, others[0]]) == NONE
    ongoing = _ongoing(cluster, "stuck")
    assert tuple(ongoing[0].adding_replicas) == (others[0],)
    assert tuple(ongoing[0].replicas) == (state.leader, others[0])
    assert cli_json(cluster.brokers[state.leader], "topic", "reassignments") == [
        {
            "topic": "stuck",
            "partition": 0,
            "replicas": [state.leader, others[0]],
            "adding": [others[0]],
            "removing": [],
        }
    ]
    assert _reassign(cluster, "stuck", 0, None) == NONE  # cancel: back where it was
    assert not _ongoing(cluster, "stuck")
    assert cluster.partitions("stuck")[0].replicas == (state.leader,)
    assert _reassign(cluster, "stuck", 0, None) == NO_REASSIGNMENT_IN_PROGRESS
    assert _reassign(cluster, "stuck", 0, [state.leader, 99]) == INVALID_REPLICA_ASSIGNMENT
    assert _reassign(cluster, "stuck", 0, [state.leader, state.leader]) == (
        INVALID_REPLICA_ASSIGNMENT
    )
