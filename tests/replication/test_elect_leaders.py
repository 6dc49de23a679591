"""ElectLeaders (KIP-460) through confluent-kafka's AdminClient.elect_leaders against three
real brokers: a preferred election puts leadership back on the first replica, an unclean one
brings an offline partition back from outside the ISR (losing what only the ISR had), with
Kafka's error codes for what needs no election or cannot have one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confluent_kafka import ElectionType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.cli.test_admin_cli import cli_json
from tests.consuming import read_range
from tests.replication.cluster import Cluster

NONE = 0


def _elect(admin: AdminClient, kind: ElectionType, *parts: tuple[str, int]) -> dict[Any, Any]:
    future = admin.elect_leaders(kind, [TopicPartition(t, p) for t, p in parts] if parts else None)
    try:
        results = future.result(30)
    except KafkaException as e:  # the whole request failed
        return {"request": e.args[0].code()}
    return {
        (tp.topic, tp.partition): (None if err is None else err.code())
        for tp, err in results.items()
    }


def test_preferred_and_unclean_elections(tmp_path: Path) -> None:
    # No automatic rebalance: only the elections asked for move leaders back.
    c = Cluster(tmp_path, 3, {"auto.leader.rebalance.enable": "false"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        topic = NewTopic(
            "elect",
            num_partitions=2,
            replica_assignment=[[1, 2, 3], [2, 3, 1]],
        )
        admin.create_topics([topic])["elect"].result(15)
        c.wait_for(lambda: len(c.partitions("elect")) == 2, what="topic known")
        assert c.produce(1, "elect", 0, [b"a", b"b"]) == (NONE, 0)

        # Broker 1 goes away and comes back: partition 0 stays led by broker 2.
        c.brokers[1].kill9()
        c.wait_for(lambda: c.partitions("elect", 2)[0].leader == 2, what="failover to 2")
        c.brokers[1].start()
        c.wait_for(
            lambda: all(
                1 in c.partitions("elect", n)[0].isr and 1 in c.live_brokers(n) for n in (1, 2, 3)
            ),
            what="every broker sees 1 live and back in the ISR",
        )
        before = c.partitions("elect", 2)[0]
        assert before.leader == 2
        results = _elect(
            admin,
            ElectionType.PREFERRED,
            ("elect", 0),
            ("elect", 1),
            ("elect", 9),
            ("missing", 0),
        )
        assert results == {
            ("elect", 0): None,
            ("elect", 1): KafkaError.ELECTION_NOT_NEEDED,
            ("elect", 9): KafkaError.UNKNOWN_TOPIC_OR_PART,
            ("missing", 0): KafkaError.UNKNOWN_TOPIC_OR_PART,
        }
        c.wait_for(lambda: c.partitions("elect", 3)[0].leader == 1, what="leadership back on 1")
        after = c.partitions("elect", 3)[0]
        assert after.leader_epoch == before.leader_epoch + 1
        assert c.produce(1, "elect", 0, [b"c"]) == (NONE, 2)
        # All partitions at once: none needs it now, and those are left out (as Kafka).
        assert _elect(admin, ElectionType.PREFERRED) == {}
        # The CLI, as kafka-leader-election: one topic's partitions, all of them.
        assert cli_json(c.brokers[2], "cluster", "elect-leaders", "--topic", "elect") == [
            {"topic": "elect", "partition": 0, "result": "ELECTION_NOT_NEEDED"},
            {"topic": "elect", "partition": 1, "result": "ELECTION_NOT_NEEDED"},
        ]
        assert cli_json(c.brokers[2], "cluster", "elect-leaders") == []
        # The preferred replica is down: it cannot lead.
        c.brokers[1].kill9()
        c.wait_for(lambda: c.partitions("elect", 2)[0].leader != 1, what="failover again")
        # (A new client: librdkafka keeps asking a dead controller until its metadata ages.)
        admin = admin_of(c, 2)
        assert _elect(admin, ElectionType.PREFERRED, ("elect", 0)) == {
            ("elect", 0): KafkaError.PREFERRED_LEADER_NOT_AVAILABLE
        }
        # A partition with a leader needs no unclean election.
        assert _elect(admin, ElectionType.UNCLEAN, ("elect", 1)) == {
            ("elect", 1): KafkaError.ELECTION_NOT_NEEDED
        }
        # A partition named twice (librdkafka refuses to send that; the wire can) is
        # answered once, with Kafka's text.
        from kio.schema.elect_leaders.v2 import request as el

        twice = el.ElectLeadersRequest(
            election_type=1,
            topic_partitions=(
                el.TopicPartitions(topic="elect", partitions=(1, 1)),
                el.TopicPartitions(topic="elect", partitions=(1,)),
            ),
        )
        with c.conn(2) as conn:
            answer = conn.request(43, 2, twice)
        assert [
            (
                r.topic,
                [(p.partition_id, int(p.error_code), p.error_message) for p in r.partition_result],
            )
            for r in answer.replica_election_results
        ] == [("elect", [(1, 84, "Leader election not needed for topic partition.")])]
        c.brokers[1].start()
        c.wait_for(lambda: all(1 in c.live_brokers(n) for n in (1, 2, 3)), what="1 back")

        # Unclean: "lossy" on brokers 3 and 2 only. 2 stops; 3 goes on alone and is lost.
        admin.create_topics(
            [
                NewTopic(
                    "lossy",
                    num_partitions=1,
                    replica_assignment=[[3, 2]],
                    config={"min.insync.replicas": "1"},
                )
            ]
        )["lossy"].result(15)
        c.wait_for(lambda: c.partitions("lossy", 3)[0].isr == (3, 2), what="both in sync")
        assert c.produce(3, "lossy", 0, [b"kept-0", b"kept-1"]) == (NONE, 0)
        c.wait_for(lambda: c.log_bytes(2, "lossy", 0) == c.log_bytes(3, "lossy", 0))
        c.brokers[2].kill9()
        c.wait_for(lambda: c.partitions("lossy", 3)[0].isr == (3,), what="ISR shrinks to 3")
        assert c.produce(3, "lossy", 0, [b"only-on-3"]) == (NONE, 2)
        c.brokers[3].kill9()
        # Neither replica lives: offline, and no election can help.
        c.wait_for(lambda: c.partitions("lossy", 1)[0].leader == -1, what="offline")
        c.wait_for(lambda: c.live_brokers(1) == {1}, what="2 and 3 gone")
        assert _elect(admin_of(c, 1), ElectionType.UNCLEAN, ("lossy", 0)) == {
            ("lossy", 0): KafkaError.ELIGIBLE_LEADERS_NOT_AVAILABLE
        }
        # 2 returns, outside the ISR, and unclean.leader.election.enable is false: still
        # offline until an unclean election is asked for.
        c.brokers[2].start()
        c.wait_for(lambda: 2 in c.live_brokers(1), what="2 back")
        assert c.partitions("lossy", 1)[0].leader == -1
        assert _elect(admin_of(c, 1), ElectionType.UNCLEAN, ("lossy", 0)) == {("lossy", 0): None}
        c.wait_for(lambda: c.partitions("lossy", 2)[0].leader == 2, what="unclean leader 2")
        assert c.partitions("lossy", 2)[0].isr == (2,)
        # What only broker 3 had is gone; the log goes on from 2's end.
        assert c.produce(2, "lossy", 0, [b"after"]) == (NONE, 2)
        expected = [(0, b"kept-0"), (1, b"kept-1"), (2, b"after")]
        assert read_range(c.brokers[2].bootstrap, "lossy", 0, 3) == expected
        # 3 comes back as a follower: it cuts its own record 2 and copies 2's log.
        c.brokers[3].start()
        c.wait_for(lambda: 3 in c.partitions("lossy", 2)[0].isr, what="3 in sync again")
        c.wait_for(
            lambda: c.log_bytes(3, "lossy", 0) == c.log_bytes(2, "lossy", 0),
            what="3 holds 2's log",
        )
        assert b"only-on-3" not in c.log_bytes(3, "lossy", 0)
    finally:
        c.stop()


def admin_of(c: Cluster, node: int) -> AdminClient:
    return AdminClient({"bootstrap.servers": c.brokers[node].bootstrap})
