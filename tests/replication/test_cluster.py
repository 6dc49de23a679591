"""Replication across real broker processes sharing one metadata store: followers copy the
leader's log byte for byte, acks=all waits for the ISR, a killed leader's acknowledged records
survive on the new leader, min.insync.replicas is enforced, and consumer groups follow their
coordinator's partition to a new broker."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.cli.test_admin_cli import cli_json
from tests.consuming import read_range
from tests.kafka_wire import sample_request
from tests.replication.cluster import Cluster

NONE = 0
NOT_LEADER_OR_FOLLOWER = 6
NOT_ENOUGH_REPLICAS = 19
COORDINATOR_NOT_AVAILABLE = 15
UNKNOWN_TOPIC_OR_PARTITION = 3


def _create(c: Cluster, name: str, partitions: int, rf: int, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(name, partitions, rf, config=configs)])[name].result(15)
    c.wait_for(
        lambda: all(len(c.partitions(name, node)) == partitions for node in c.running()),
        what=f"every broker knows {name}",
    )


def _produce(bootstrap: str, topic: str, values: dict[int, list[bytes]]) -> None:
    """Send every value with acks=all and idempotence; assert all were acknowledged."""
    errors: list[KafkaError] = []
    p = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    for partition, vals in values.items():
        for v in vals:
            p.produce(
                topic, v, partition=partition, on_delivery=lambda e, m: e and errors.append(e)
            )
    assert p.flush(60) == 0
    assert errors == []


def test_followers_hold_the_leaders_log_byte_for_byte(cluster: Cluster) -> None:
    _create(cluster, "repl", 3, 3)
    sent = {i: [f"p{i}-{n}".encode() for n in range(2000)] for i in range(3)}
    _produce(cluster.bootstrap, "repl", sent)
    for i in range(3):
        got = read_range(cluster.bootstrap, "repl", 0, 2000, partition=i)
        assert got == list(enumerate(sent[i]))
    # Every replica's segment files end up identical to the leader's: same batches, same
    # offsets, same leader epochs.
    for i, state in cluster.partitions("repl").items():
        cluster.wait_for(
            lambda i=i, leader=state.leader: all(
                cluster.log_bytes(r, "repl", i) == cluster.log_bytes(leader, "repl", i)
                for r in (1, 2, 3)
            ),
            what=f"replicas of repl-{i} identical",
        )
        assert len(cluster.log_bytes(state.leader, "repl", i)) > 2000 * 8
    # Kafka's split: a client's bytes count on the leader, a follower's copy as replication.
    states = cluster.partitions("repl")
    for node in (1, 2, 3):
        led = sum(
            len(cluster.log_bytes(node, "repl", i)) for i, s in states.items() if s.leader == node
        )
        followed = sum(
            len(cluster.log_bytes(node, "repl", i)) for i, s in states.items() if s.leader != node
        )
        assert cluster.metric(node, 'kafka_server_broker_topic_bytes_in_total{topic="repl"}') == led
        assert (
            cluster.metric(node, "kafka_server_broker_topic_replication_bytes_in_total") >= followed
        )


def test_followers_refuse_clients_with_not_leader(cluster: Cluster) -> None:
    _create(cluster, "who", 1, 3)
    (state,) = cluster.partitions("who").values()
    follower = next(r for r in state.replicas if r != state.leader)
    assert cluster.produce(follower, "who", 0, [b"x"])[0] == NOT_LEADER_OR_FOLLOWER
    assert cluster.produce(state.leader, "who", 0, [b"x"]) == (NONE, 0)


def test_a_broker_without_a_replica_says_not_leader_and_an_unknown_partition_is_unknown(
    cluster: Cluster,
) -> None:
    """Kafka's getPartitionOrError: a partition the metadata has but this broker does not
    host (as after a reassignment) is NOT_LEADER_OR_FOLLOWER, so clients look again; one the
    metadata lacks is UNKNOWN_TOPIC_OR_PARTITION."""
    import datetime

    from tests.kafka_wire import sample_request

    _create(cluster, "elsewhere", 1, 1)
    (state,) = cluster.partitions("elsewhere").values()
    outsider = next(n for n in (1, 2, 3) if n != state.leader)
    assert cluster.produce(outsider, "elsewhere", 0, [b"x"])[0] == NOT_LEADER_OR_FOLLOWER
    assert cluster.produce(outsider, "elsewhere", 1, [b"x"])[0] == UNKNOWN_TOPIC_OR_PARTITION
    assert cluster.produce(state.leader, "elsewhere", 0, [b"x"]) == (NONE, 0)

    def fetch_and_list(partition: int) -> tuple[int, int]:
        fetch = sample_request(
            1,
            12,
            "elsewhere",
            fetch_offset=0,
            partition=partition,
            max_wait=datetime.timedelta(0),
            min_bytes=0,
            max_bytes=1 << 20,
            partition_max_bytes=1 << 20,
        )
        listing = sample_request(2, 7, "elsewhere", timestamp=-1, partition_index=partition)
        with cluster.conn(outsider) as c:
            ((f,),) = (t.partitions for t in c.request(1, 12, fetch).responses)
            ((o,),) = (t.partitions for t in c.request(2, 7, listing).topics)
        return int(f.error_code), int(o.error_code)

    assert fetch_and_list(0) == (NOT_LEADER_OR_FOLLOWER, NOT_LEADER_OR_FOLLOWER)
    assert fetch_and_list(1) == (UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_OR_PARTITION)


def test_killed_leader_loses_no_acknowledged_record(cluster: Cluster) -> None:
    _create(cluster, "failover", 1, 3)
    (before,) = cluster.partitions("failover").values()
    first = [f"a{n}".encode() for n in range(3000)]
    _produce(cluster.bootstrap, "failover", {0: first})
    cluster.brokers[before.leader].kill9()
    cluster.wait_for(
        lambda: cluster.partitions("failover")[0].leader not in (before.leader, -1),
        what="a new leader",
    )
    after = cluster.partitions("failover")[0]
    assert after.leader_epoch > before.leader_epoch
    assert before.leader not in after.isr
    survivors = ",".join(cluster.brokers[i].bootstrap for i in cluster.running())
    second = [f"b{n}".encode() for n in range(1000)]
    _produce(survivors, "failover", {0: second})
    got = read_range(survivors, "failover", 0, 4000)
    assert got == list(enumerate(first + second))

    # The old leader comes back as a follower, truncates nothing acknowledged, catches up
    # and rejoins the ISR; its log is then the new leader's.
    cluster.brokers[before.leader].start()
    cluster.wait_for(
        lambda: before.leader in cluster.partitions("failover")[0].isr, what="ISR rejoined"
    )
    leader = cluster.partitions("failover")[0].leader
    cluster.wait_for(
        lambda: (
            cluster.log_bytes(before.leader, "failover", 0)
            == cluster.log_bytes(leader, "failover", 0)
        ),
        what="old leader caught up",
    )


def test_min_insync_replicas_refuses_acks_all_when_the_isr_is_too_small(
    cluster: Cluster,
) -> None:
    _create(cluster, "strict", 1, 3, **{"min.insync.replicas": "3"})
    (state,) = cluster.partitions("strict").values()
    assert cluster.produce(state.leader, "strict", 0, [b"ok"]) == (NONE, 0)
    follower = next(r for r in state.replicas if r != state.leader)
    # A topic whose one replica is on the broker about to die: it goes offline.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("solo", 1, replica_assignment=[[follower]])])["solo"].result(15)
    cluster.wait_for(lambda: bool(cluster.partitions("solo", state.leader)), what="solo known")
    cluster.brokers[follower].kill9()
    cluster.wait_for(
        lambda: follower not in cluster.partitions("strict", state.leader)[0].isr,
        what="ISR shrink",
    )
    assert cluster.produce(state.leader, "strict", 0, [b"no"])[0] == NOT_ENOUGH_REPLICAS
    # The leader's metrics say so, as the operator's health gates will read them.
    under = "kafka_server_replica_manager_under_replicated_partitions"
    assert cluster.metric(state.leader, under) == 1
    described = cli_json(cluster.brokers[state.leader], "cluster", "describe")
    live = sorted(set(cluster.brokers) - {follower})
    assert [b["id"] for b in described["brokers"]] == live  # the fenced one is left out
    assert described["controller"] == live[0]
    assert "strict-0" in described["under_replicated"] and described["offline"] == ["solo-0"]
    # Kafka's alerting gauges: the refused write, the ISR below min, and on the active
    # controller (only) the offline partition and the fenced broker.
    assert (
        cluster.metric(state.leader, "kafka_server_replica_manager_under_min_isr_partition_count")
        >= 1
    )
    failed = "kafka_server_broker_topic_failed_produce_requests_total"
    assert cluster.metric(state.leader, failed, topic="strict") == 1
    controller = "kafka_controller_kafka_controller_"
    assert [cluster.metric(b, controller + "active_controller_count") for b in live] == [1, 0]
    assert cluster.metric(live[0], controller + "offline_partitions_count") == 1
    assert cluster.metric(live[0], controller + "fenced_broker_count") == 1
    assert cluster.metric(live[0], controller + "active_broker_count") == 2
    # Described all the same, as kafka-topics shows "Leader: none": offsets unknown.
    (solo,) = cli_json(cluster.brokers[state.leader], "topic", "describe", "solo")["partitions"]
    assert (solo["leader"], solo["replicas"], solo["earliest"], solo["latest"]) == (
        None,
        [follower],
        None,
        None,
    )
    assert cluster.metric(state.leader, "kafka_server_replica_manager_leader_count") >= 1
    # acks=1 does not need the ISR.
    assert cluster.produce(state.leader, "strict", 0, [b"one"], acks=1) == (NONE, 1)


def test_the_transaction_log_refuses_writes_below_its_min_isr(tmp_path: Path) -> None:
    """__transaction_state gets transaction.state.log.min.isr as its min.insync.replicas (2 by
    default), as in Kafka: with its ISR down to the leader, the coordinator refuses to write
    (COORDINATOR_NOT_AVAILABLE) rather than keep a transaction's state on one broker."""
    from confluent_kafka.admin import ConfigResource
    from kio.schema.find_coordinator.v4 import request as fc
    from kio.schema.init_producer_id.v4 import request as ip

    c = Cluster(tmp_path, 3, {"transaction.state.log.num.partitions": "1"}).start()
    try:

        def init(node: int, tid: str) -> int:
            with c.conn(node) as conn:
                r = conn.request(
                    22,
                    4,
                    ip.InitProducerIdRequest(
                        transactional_id=tid,
                        transaction_timeout=datetime.timedelta(seconds=60),
                        producer_id=-1,
                        producer_epoch=-1,
                    ),
                )
            return int(r.error_code)

        with c.conn(1) as conn:  # creates the topic
            r = conn.request(10, 4, fc.FindCoordinatorRequest(key_type=1, coordinator_keys=("t1",)))
        (found,) = r.coordinators
        leader = found.node_id
        assert init(leader, "t1") == NONE
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        resource = ConfigResource("topic", "__transaction_state")
        configs = admin.describe_configs([resource])[resource].result(15)
        assert configs["min.insync.replicas"].value == "2"

        # DescribeProducers answers on followers too (kafka-transactions.sh --broker-id).
        _create(c, "dp", 1, 3)
        _produce(c.bootstrap, "dp", {0: [b"a", b"b", b"c"]})
        (dp,) = c.partitions("dp").values()
        c.wait_for(lambda: len(c.partitions("dp", dp.leader)[0].isr) == 3, what="dp's ISR")

        def producers(node: int) -> list[tuple[int, int]]:
            with c.conn(node) as conn:
                r = conn.request(61, 0, sample_request(61, 0, "dp", partition_indexes=(0,)))
            ((p,),) = [t.partitions for t in r.topics]
            return [(int(p.error_code), s.last_sequence) for s in p.active_producers] or [
                (int(p.error_code), -1)
            ]

        c.wait_for(
            lambda: all(producers(node) == [(NONE, 2)] for node in c.brokers),
            what="every replica's producer state",
        )

        (state,) = c.partitions("__transaction_state", leader).values()
        assert state.leader == leader and len(state.isr) == 3
        followers = [r for r in state.replicas if r != leader]
        c.brokers[followers[0]].kill9()
        c.brokers[followers[1]].kill9()
        c.wait_for(
            lambda: c.partitions("__transaction_state", leader)[0].isr == (leader,),
            what="the ISR down to the leader",
        )
        assert init(leader, "t2") == COORDINATOR_NOT_AVAILABLE
        c.brokers[followers[0]].start()
        c.wait_for(
            lambda: len(c.partitions("__transaction_state", leader)[0].isr) == 2,
            what="a follower back in the ISR",
        )
        assert init(leader, "t2") == NONE
    finally:
        c.stop()


def test_commit_markers_wait_for_the_min_isr_of_their_partitions(tmp_path: Path) -> None:
    """As an acks=all write, a COMMIT marker goes to no partition whose ISR is below its
    min.insync.replicas, whether it is led by the coordinator or by another broker: the
    transaction stays prepared, and read_committed readers see none of it, until the missing
    follower is back; then every record is read."""
    c = Cluster(tmp_path, 3, {"transaction.state.log.num.partitions": "1"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        p = Producer({"bootstrap.servers": c.bootstrap, "transactional.id": "min-isr"})
        p.init_transactions(30)  # makes __transaction_state
        (state,) = c.partitions("__transaction_state").values()
        coordinator = state.leader
        other, follower = sorted(n for n in c.brokers if n != coordinator)
        # One partition led by the coordinator (its marker is written locally), one by the
        # other broker (WriteTxnMarkers); both share the follower that is about to die.
        admin.create_topics(
            [
                NewTopic(
                    "mk",
                    num_partitions=2,
                    replica_assignment=[[coordinator, follower], [other, follower]],
                    config={"min.insync.replicas": "2"},
                )
            ]
        )["mk"].result(15)
        c.wait_for(
            lambda: all(len(s.isr) == 2 for s in c.partitions("mk").values()), what="mk's ISR"
        )
        p.begin_transaction()
        for n in range(4):
            p.produce("mk", f"v{n}".encode(), partition=n % 2)
        assert p.flush(30) == 0
        c.brokers[follower].kill9()
        # As each leader sees it (a marker it took before would count, as an acks=all write
        # taken before the ISR shrank does).
        c.wait_for(
            lambda: (
                len(c.partitions("mk", coordinator)[0].isr) == 1
                and len(c.partitions("mk", other)[1].isr) == 1
            ),
            what="mk's ISR down to its leaders",
        )
        p.commit_transaction(30)  # answered once the Prepare state is stored

        reader = Consumer(
            {
                "bootstrap.servers": c.bootstrap,
                "group.id": "min-isr-reader",
                "isolation.level": "read_committed",
            }
        )
        try:
            ends = [TopicPartition("mk", i) for i in range(2)]
            # The markers would be out within a retry (0.5 s) if they were written.
            time.sleep(3)
            assert [reader.get_watermark_offsets(tp, timeout=10) for tp in ends] == [(0, 0)] * 2
            assert "markers of producer" in c.brokers[coordinator].log_tail(200)
            c.brokers[follower].start()
            c.wait_for(
                lambda: (
                    [reader.get_watermark_offsets(tp, timeout=10) for tp in ends] == [(0, 3)] * 2
                ),
                timeout=60,
                what="the COMMIT markers once the ISR is whole",
            )
        finally:
            reader.close()
        got = read_range(
            c.bootstrap, "mk", 0, 2, partition=0, **{"isolation.level": "read_committed"}
        )
        assert got == [(0, b"v0"), (1, b"v2")]
    finally:
        c.stop()


def test_clean_shutdown_hands_leadership_over_first(tmp_path: Path) -> None:
    # Sessions that outlive the test: only the stopping broker's hand-over can move leaders.
    c = Cluster(tmp_path, 3, {"broker.session.timeout.ms": "600000"}).start()
    try:
        _create(c, "handover", 1, 3)
        (state,) = c.partitions("handover").values()
        assert c.brokers[state.leader].stop() == 0
        other = next(i for i in c.brokers if i != state.leader)
        c.wait_for(lambda: c.partitions("handover", other)[0].leader != state.leader)
        new = c.partitions("handover", other)[0]
        assert new.leader not in (state.leader, -1)
        assert new.leader_epoch == state.leader_epoch + 1
        assert state.leader not in new.isr
        assert c.produce(new.leader, "handover", 0, [b"after"]) == (NONE, 0)
    finally:
        c.stop()


def test_consumer_group_resumes_after_its_coordinator_is_killed(cluster: Cluster) -> None:
    _create(cluster, "grouped", 3, 3)
    sent = {i: [f"{i}:{n}".encode() for n in range(100)] for i in range(3)}
    _produce(cluster.bootstrap, "grouped", sent)
    conf = {
        "bootstrap.servers": cluster.bootstrap,
        "group.id": "survivors",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # The leave's Empty-group record may not reach the new coordinator before the kill
        # (its write is not awaited, as in Kafka): then the old member lingers until its
        # session times out, which must come before this test's deadline.
        "session.timeout.ms": 6000,
    }
    c = Consumer(conf)
    c.subscribe(["grouped"])
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 150 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen += 1
            c.commit(m, asynchronous=False)
    assert seen == 150
    tps = [TopicPartition("grouped", i) for i in range(3)]
    # A partition with no commit (OFFSET_INVALID, -1001) starts over at the earliest offset.
    committed = {tp.partition: max(tp.offset, 0) for tp in c.committed(tps, 10)}
    c.close()
    assert sum(committed.values()) == 150

    # The coordinator is the leader of the group's __consumer_offsets partition.
    from artesian.coordinator.serde import partition_for

    offsets = cluster.partitions("__consumer_offsets")
    coordinator = offsets[partition_for("survivors", len(offsets))].leader
    cluster.brokers[coordinator].kill9()
    survivors = ",".join(cluster.brokers[i].bootstrap for i in cluster.running())
    c = Consumer({**conf, "bootstrap.servers": survivors})
    c.subscribe(["grouped"])
    rest: dict[int, list[int]] = {}
    deadline = time.monotonic() + 40
    while sum(len(v) for v in rest.values()) < 150 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            rest.setdefault(m.partition(), []).append(m.offset())
    c.close()
    # Exactly the uncommitted tail of each partition: committed offsets moved with the group.
    assert {p: (v[0], len(v)) for p, v in rest.items()} == {
        p: (committed[p], 100 - committed[p]) for p in range(3) if committed[p] < 100
    }


def test_preferred_leaders_come_back(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, {"leader.imbalance.check.interval.seconds": "1"}).start()
    try:
        _create(c, "pref", 3, 3)
        preferred = {i: s.replicas[0] for i, s in c.partitions("pref").items()}
        assert {i: s.leader for i, s in c.partitions("pref").items()} == preferred
        victim = preferred[0]
        c.brokers[victim].kill9()
        c.wait_for(lambda: c.partitions("pref")[0].leader not in (victim, -1), what="failover")
        c.brokers[victim].start()
        c.wait_for(
            lambda: {i: s.leader for i, s in c.partitions("pref").items()} == preferred,
            what="leadership back on the preferred replicas",
        )
    finally:
        c.stop()


def test_transactions_span_partitions_led_by_other_brokers(cluster: Cluster) -> None:
    _create(cluster, "txn", 3, 3)
    leaders = {s.leader for s in cluster.partitions("txn").values()}
    assert len(leaders) == 3  # one partition per broker: markers must cross brokers
    p = Producer(
        {"bootstrap.servers": cluster.bootstrap, "transactional.id": "spread", "acks": "all"}
    )
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce("txn", f"aborted-{i}".encode(), partition=i)
    assert p.flush(30) == 0  # on the brokers, so the abort has records to mark
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(3):
        for n in range(10):
            p.produce("txn", f"committed-{i}-{n}".encode(), partition=i)
    p.commit_transaction(30)
    for i in range(3):
        # Offsets: the aborted record, its ABORT marker, 10 records, the COMMIT marker.
        got = read_range(
            cluster.bootstrap, "txn", 0, 12, partition=i, **{"isolation.level": "read_committed"}
        )
        assert got == [(2 + n, f"committed-{i}-{n}".encode()) for n in range(10)]
        # The last stable offset passed the COMMIT marker on every leader.
        c = Consumer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "group.id": "lso",
                "isolation.level": "read_committed",
            }
        )
        try:
            # Markers go out after EndTxn is answered (as in Kafka): wait for the ISR to hold
            # the COMMIT marker, then the end is right after it.
            tp = TopicPartition("txn", i)
            cluster.wait_for(lambda tp=tp, c=c: c.get_watermark_offsets(tp, timeout=10) == (0, 13))
        finally:
            c.close()
    # `artesian transactions list` asks every broker: each lists only what it coordinates.
    from kio.schema.find_coordinator.v4 import request as fc

    tids = ["spread", *(f"spread-{n}" for n in range(12))]
    for tid in tids[1:]:
        Producer(
            {"bootstrap.servers": cluster.bootstrap, "transactional.id": tid}
        ).init_transactions(30)
    with cluster.conn(1) as conn:
        r = conn.request(10, 4, fc.FindCoordinatorRequest(key_type=1, coordinator_keys=tuple(tids)))
    coordinators = {c.key: c.node_id for c in r.coordinators}
    assert len(set(coordinators.values())) > 1
    listed = cli_json(cluster.brokers[1], "transactions", "list")
    assert {t["transactional_id"]: t["coordinator"] for t in listed} == coordinators
