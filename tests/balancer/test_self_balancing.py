"""Self-Balancing Clusters on real brokers: an empty broker that joins gets its share of the
replicas and leaderships, a broker asked to leave is drained and then unregistered, a broker
lost for good is healed around, a rebalance can be asked for; every record stays readable at
its offset throughout. Commands go through the CLI, as an operator's would."""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from artesian.protocol.balancer_admin import (
    ALTER_BALANCER_KEY,
    DESCRIBE_BALANCER_KEY,
    decode_response_body,
    encode_request_body,
)
from tests.cli.test_admin_cli import cli, cli_json, fails
from tests.consuming import read_range
from tests.kafka_wire import WireConn
from tests.replication.cluster import Cluster
from tests.replication.test_cluster import _create, _produce

BALANCER_FAST = {
    "artesian.balancer.interval.ms": "300",
    "artesian.balancer.load.sample.interval.ms": "300",
}
INVALID_REQUEST = 42
BROKER_ID_NOT_REGISTERED = 102


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    c = Cluster(tmp_path, 3, BALANCER_FAST).start()
    try:
        yield c
    finally:
        c.stop()


def _counts(c: Cluster, topics: list[str]) -> tuple[Counter[int], Counter[int]]:
    replicas: Counter[int] = Counter()
    leaders: Counter[int] = Counter()
    for t in topics:
        for p in c.partitions(t).values():
            replicas.update(p.replicas)
            leaders[p.leader] += 1
    return replicas, leaders


def _within(counts: Counter[int], brokers: list[int], threshold: float = 0.10) -> bool:
    avg = sum(counts[b] for b in brokers) / len(brokers)
    lo, hi = math.floor(avg * (1 - threshold)), math.ceil(avg * (1 + threshold))
    return all(lo <= counts[b] <= hi for b in brokers)


def _status(c: Cluster) -> dict[str, Any]:
    return cli_json(c.brokers[c.any_running()], "rebalance", "status")


def _call(c: Cluster, node: int, api_key: int, doc: dict[str, Any]) -> tuple[int, Any, Any]:
    body = encode_request_body(doc)
    head = struct.pack(">hhih", api_key, 0, 7, 4) + b"test"
    with c.conn(node) as conn:
        conn.send(struct.pack(">i", len(head) + len(body)) + head + body)
        frame = conn.recv_frame()
    assert struct.unpack_from(">i", frame, 0)[0] == 7
    return decode_response_body(frame[4:])


def _fill(c: Cluster, topic: str, partitions: int) -> dict[int, list[bytes]]:
    sent = {i: [f"{topic}-{i}-{n}".encode() * 20 for n in range(300)] for i in range(partitions)}
    _produce(c.bootstrap, topic, sent)
    return sent


def _all_readable(c: Cluster, topic: str, sent: dict[int, list[bytes]]) -> None:
    for i, values in sent.items():
        got = read_range(c.bootstrap, topic, 0, len(values), partition=i)
        assert got == list(enumerate(values)), f"{topic}-{i}"


def test_an_empty_broker_that_joins_gets_its_share(cluster: Cluster) -> None:
    _create(cluster, "even", 12, 2)
    sent = _fill(cluster, "even", 12)
    before, _ = _counts(cluster, ["even"])
    assert before[4] == 0 and sum(before.values()) == 24

    new = cluster.add_broker()
    assert new == 4
    # The self-balancer (trigger EMPTY_BROKER, the default) starts a rebalance on its own.
    cluster.wait_for(
        lambda: (_status(cluster)["task"] or {}).get("state") == "COMPLETED",
        timeout=90,
        what="the rebalance to complete",
    )
    status = _status(cluster)
    assert status["task"]["trigger"] == "EMPTY_BROKER"
    assert status["moves_in_flight"] == 0
    replicas, leaders = _counts(cluster, ["even"])
    assert sum(replicas.values()) == 24  # replication factor kept
    assert replicas[4] >= 5 and _within(replicas, [1, 2, 3, 4]), replicas
    assert _within(leaders, [1, 2, 3, 4]), leaders
    # Every record, at its offset, from the new places; broker 4 holds the bytes itself.
    _all_readable(cluster, "even", sent)
    moved = [i for i, p in cluster.partitions("even").items() if 4 in p.replicas]
    assert moved and all(cluster.log_bytes(4, "even", i) for i in moved)


def test_a_removed_broker_is_drained_then_unregistered(cluster: Cluster) -> None:
    _create(cluster, "drain", 6, 2)
    sent = _fill(cluster, "drain", 6)
    held = sum(3 in p.replicas for p in cluster.partitions("drain").values())
    assert held > 0

    removals = cli_json(cluster.brokers[1], "cluster", "remove-broker", "3", "--wait")
    assert removals == [{"broker": 3, "state": "DRAINED", "reason": None, "replicas_left": 0}]
    parts = cluster.partitions("drain")
    assert all(3 not in p.replicas and p.leader in (1, 2) for p in parts.values())
    assert all(set(p.isr) == {1, 2} for p in parts.values())
    _all_readable(cluster, "drain", sent)
    # A drained broker is cordoned: new topics are placed on the others.
    _create(cluster, "after", 4, 2)
    assert all(3 not in p.replicas for p in cluster.partitions("after").values())
    assert _status(cluster)["state"] == "IDLE"

    # Stopped, it leaves the cluster's metadata for good.
    assert cluster.brokers[3].stop() == 0
    cluster.wait_for(
        lambda: [r["state"] for r in _status(cluster)["removals"]] == ["COMPLETE"],
        what="the removal to complete",
    )
    assert cluster.live_brokers(1) == {1, 2}
    assert [b["id"] for b in _status(cluster)["brokers"]] == [1, 2]
    assert 3 not in {
        b["id"] for b in cli_json(cluster.brokers[1], "cluster", "describe")["brokers"]
    }
    _all_readable(cluster, "drain", sent)


def test_a_removal_that_cannot_be_done_fails_and_gives_the_broker_back(
    cluster: Cluster,
) -> None:
    _create(cluster, "wide", 2, 3)
    args = ("cluster", "remove-broker", "2", "--wait", "--json")
    proc = cli(cluster.brokers[1], *args, check=False)
    assert proc.returncode == 1
    (removal,) = json.loads(proc.stdout)
    assert removal["state"] == "FAILED" and removal["broker"] == 2
    assert "wide-" in removal["reason"], removal
    assert all(2 in p.replicas for p in cluster.partitions("wide").values())
    # Failed, it is no longer cordoned: it gets replicas of new topics again.
    _create(cluster, "wide2", 3, 3)
    assert all(2 in p.replicas for p in cluster.partitions("wide2").values())
    # Cancelling the failed removal clears its record (as the operator does for a broker
    # declared again); then there is nothing left to cancel.
    cli(cluster.brokers[1], "cluster", "cancel-removal", "2")
    assert [r["state"] for r in _status(cluster)["removals"] if r["broker"] == 2] == ["CANCELED"]
    assert "not being removed" in fails(cluster.brokers[1], "cluster", "cancel-removal", "2")


def test_a_requested_rebalance_evens_out_a_skewed_cluster(cluster: Cluster) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    skewed = [[1, 2] for _ in range(7)] + [[3, 1]]  # broker 3 is not empty: no trigger
    admin.create_topics([NewTopic("skewed", 8, replica_assignment=skewed)])["skewed"].result(15)
    cluster.wait_for(lambda: len(cluster.partitions("skewed")) == 8)
    sent = _fill(cluster, "skewed", 8)
    # The default trigger (EMPTY_BROKER) leaves a cluster without an empty broker alone...
    assert _counts(cluster, ["skewed"])[0] == Counter({1: 8, 2: 7, 3: 1})
    assert _status(cluster)["violated_goals"][:1] == ["ReplicaDistribution"]
    assert _status(cluster)["task"] is None

    # ...until a rebalance is asked for.
    task = cli_json(cluster.brokers[2], "rebalance", "start", "--wait")
    assert task["state"] == "COMPLETED" and task["trigger"] == "REQUESTED"
    replicas, leaders = _counts(cluster, ["skewed"])
    assert sum(replicas.values()) == 16
    assert _within(replicas, [1, 2, 3]) and _within(leaders, [1, 2, 3]), (replicas, leaders)
    _all_readable(cluster, "skewed", sent)


def test_a_broker_lost_for_good_is_healed_around(tmp_path: Path) -> None:
    settings = {**BALANCER_FAST, "artesian.balancer.heal.broker.failure.threshold.ms": "1000"}
    c = Cluster(tmp_path, 3, settings).start()
    try:
        _create(c, "heal", 6, 2)
        sent = _fill(c, "heal", 6)
        c.brokers[3].kill9()
        c.wait_for(
            lambda: all(
                3 not in p.replicas and len(p.isr) == 2 for p in c.partitions("heal").values()
            ),
            timeout=90,
            what="broker 3's replicas re-created on 1 and 2",
        )
        _all_readable(c, "heal", sent)
    finally:
        c.stop()


def test_balancer_commands_answer_bad_input_with_kafka_errors(cluster: Cluster) -> None:
    code, message, _ = _call(cluster, 1, ALTER_BALANCER_KEY, {"remove_brokers": [9]})
    assert (code, message) == (BROKER_ID_NOT_REGISTERED, "brokers [9] are not registered")
    for doc in ({"remove_brokers": "3"}, {"explode": 1}, {}, {"remove_brokers": [True]}):
        code, _, _ = _call(cluster, 2, ALTER_BALANCER_KEY, doc)
        assert code == INVALID_REQUEST, doc
    code, message, _ = _call(cluster, 1, ALTER_BALANCER_KEY, {"remove_brokers": [1, 2, 3]})
    assert code == INVALID_REQUEST and "no broker" in message
    code, _, doc = _call(cluster, 3, DESCRIBE_BALANCER_KEY, {})
    assert code == 0 and doc["controller"] == 1 and [b["id"] for b in doc["brokers"]] == [1, 2, 3]

    # Frames that are not JSON, or lie about their length: the connection closes, the broker
    # carries on.
    head = struct.pack(">hhih", ALTER_BALANCER_KEY, 0, 1, -1)
    for body in (struct.pack(">i", 3) + b"{x}", struct.pack(">i", 1 << 30), b"\x00"):
        with cluster.conn(1) as conn:
            conn.send(struct.pack(">i", len(head) + len(body)) + head + body)
            conn.expect_closed()
    with cluster.conn(1) as conn:  # version 1 does not exist, and has no error shape
        head = struct.pack(">hhih", DESCRIBE_BALANCER_KEY, 1, 1, -1)
        conn.send(struct.pack(">i", len(head) + 4) + head + struct.pack(">i", 0))
        conn.expect_closed()
    assert _status(cluster)["state"] == "IDLE"

    # Kafka clients never meet the private APIs: ApiVersions does not list them.
    from kio.schema.api_versions.v3 import request as av

    with WireConn(cluster.brokers[1].port) as conn:
        resp = conn.request(
            18, 3, av.ApiVersionsRequest(client_software_name="t", client_software_version="1")
        )
    keys = {int(k.api_key) for k in resp.api_keys}
    assert 0 in keys and 45 in keys
    assert not keys & {ALTER_BALANCER_KEY, DESCRIBE_BALANCER_KEY}


def test_requests_wait_for_the_controller_and_can_be_canceled(tmp_path: Path) -> None:
    # A self-balancer that looks only every 10 minutes: requests stay PENDING meanwhile.
    c = Cluster(tmp_path, 2, {"artesian.balancer.interval.ms": "600000"}).start()
    try:
        assert cli_json(c.brokers[2], "cluster", "remove-broker", "2") == [
            {"broker": 2, "state": "PENDING", "reason": None, "replicas_left": 0}
        ]
        name = "artesian_balancer_broker_removals_in_progress"
        c.wait_for(lambda: c.metric(1, name) == 1 and c.metric(2, name) == 1, what=name)
        assert _status(c)["state"] == "REMOVING_BROKERS"
        # Asking twice is the same request; removing every broker is refused.
        assert cli_json(c.brokers[1], "cluster", "remove-broker", "2")[0]["state"] == "PENDING"
        assert "no broker to hold the data" in fails(c.brokers[1], "cluster", "remove-broker", "1")

        cli(c.brokers[1], "cluster", "cancel-removal", "2")
        c.wait_for(lambda: c.metric(1, name) == 0 and c.metric(2, name) == 0, what=name)
        assert [(r["broker"], r["state"]) for r in _status(c)["removals"]] == [(2, "CANCELED")]

        task = cli_json(c.brokers[1], "rebalance", "start")["task"]
        rebalancing = "artesian_balancer_rebalance_in_progress"
        c.wait_for(lambda: c.metric(2, rebalancing) == 1, what=rebalancing)
        status = _status(c)
        assert status["state"] == "REBALANCING"
        assert status["task"] == {
            "id": task,
            "trigger": "REQUESTED",
            "state": "PENDING",
            "reason": None,
        }
        # A second request joins the one pending.
        assert cli_json(c.brokers[2], "rebalance", "start")["task"] == task
    finally:
        c.stop()


def test_a_rebalance_under_load_moves_each_partition_once(cluster: Cluster) -> None:
    """Producers keep writing while a requested rebalance evens out a skewed topic: its load
    samples change as replicas arrive, yet no partition is moved twice (each move copies its
    log), and every acknowledged record is read back at its offset."""
    import re
    import threading
    import time

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    skewed = [[1, 2] for _ in range(11)] + [[3, 1]]
    admin.create_topics([NewTopic("busy", 12, replica_assignment=skewed)])["busy"].result(15)
    cluster.wait_for(lambda: len(cluster.partitions("busy")) == 12)
    acked: dict[int, list[tuple[int, bytes]]] = {i: [] for i in range(12)}
    stop = threading.Event()

    def produce() -> None:
        p = Producer(
            {"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                acked[msg.partition()].append((msg.offset(), msg.value()))

        n = 0
        while not stop.is_set():
            for i in range(12):
                p.produce("busy", f"{i}-{n}".encode() * 40, partition=i, on_delivery=delivered)
            n += 1
            p.poll(0)
            time.sleep(0.01)
        assert p.flush(30) == 0

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        time.sleep(2)  # load samples with rates in them
        marks = {n: b.log_mark() for n, b in cluster.brokers.items()}
        task = cli_json(cluster.brokers[2], "rebalance", "start", "--wait")
        assert task["state"] == "COMPLETED"
    finally:
        stop.set()
        writer.join()
    moves = sum(
        int(n)
        for node, b in cluster.brokers.items()
        for n in re.findall(
            r"self-balancer: moving (\d+) partition", b.log_tail(100_000, marks[node])
        )
    )
    replicas, _ = _counts(cluster, ["busy"])
    assert _within(replicas, [1, 2, 3], 0.25), replicas
    assert 0 < moves <= 12, moves
    for i, sent in acked.items():
        assert sent and read_range(cluster.bootstrap, "busy", 0, len(sent), partition=i) == sent
