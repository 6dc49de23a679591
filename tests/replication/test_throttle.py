"""Replication quotas (KIP-73): a replica catching up on a throttled partition copies no faster
than the leader's or the follower's quota allows, an in-sync replica is never held back, and
lifting the throttle lets the move finish with every byte. The rates are dynamic broker
configs, set and removed while the brokers run, as kafka-reassign-partitions --throttle does."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from artesian.replication.throttle import ReplicationThrottle, replica_listed
from artesian.tiered.quota import ByteRateQuota
from tests.consuming import read_range
from tests.replication.cluster import Cluster
from tests.replication.test_cluster import _produce
from tests.replication.test_reassignment import _ongoing, _reassign

LEADER_LIST = "leader.replication.throttled.replicas"
FOLLOWER_LIST = "follower.replication.throttled.replicas"


def test_throttled_replica_lists_read_as_kafka_writes_them() -> None:
    configs = {LEADER_LIST: "0:1, 2:3", FOLLOWER_LIST: "*"}
    assert replica_listed(configs, LEADER_LIST, 0, 1)
    assert replica_listed(configs, LEADER_LIST, 2, 3)
    assert not replica_listed(configs, LEADER_LIST, 0, 3)
    assert replica_listed(configs, FOLLOWER_LIST, 7, 9)
    assert not replica_listed({}, LEADER_LIST, 0, 1)


def test_only_out_of_sync_listed_replicas_wait_for_the_quota() -> None:
    now = [0.0]
    throttle = ReplicationThrottle(ByteRateQuota(1000, clock=lambda: now[0]), lambda t, p: t == "t")
    assert not throttle.holds_back("t", 0, in_sync=False)  # a second's worth is there
    throttle.moved("t", 0, in_sync=False, nbytes=3000)
    assert throttle.holds_back("t", 0, in_sync=False)
    assert not throttle.holds_back("t", 0, in_sync=True)  # in sync: never held back
    assert not throttle.holds_back("other", 0, in_sync=False)  # not listed
    now[0] = 2.5  # the debt is paid off
    assert not throttle.holds_back("t", 0, in_sync=False)
    throttle.moved("t", 0, in_sync=True, nbytes=10**9)  # in-sync bytes do not count
    assert not throttle.holds_back("t", 0, in_sync=False)


RATES = ("leader.replication.throttled.rate", "follower.replication.throttled.rate")


def _set_rates(admin: AdminClient, value: str | None) -> None:
    """On each broker, as kafka-reassign-partitions --throttle (None: as --verify lifts it)."""
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    for node in ("1", "2"):
        resource = ConfigResource(
            "broker",
            node,
            incremental_configs=[
                ConfigEntry(n, value or "", incremental_operation=op) for n in RATES
            ],
        )
        admin.incremental_alter_configs([resource])[resource].result(15)


def test_a_throttled_move_waits_for_its_quota_and_finishes_once_lifted(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 2, {"replica.fetch.max.bytes": "20000"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        # 1 byte per second on both sides: after its first fetch a throttled move stalls.
        _set_rates(admin, "1")
        topics = {
            "by-leader": {LEADER_LIST: "*"},
            "by-follower": {FOLLOWER_LIST: "*"},
            "in-sync": {LEADER_LIST: "*", FOLLOWER_LIST: "*"},
        }
        assignments = {"by-leader": [[1]], "by-follower": [[1]], "in-sync": [[1, 2]]}
        futures = admin.create_topics(
            [
                NewTopic(t, 1, replica_assignment=assignments[t], config=cfg)
                for t, cfg in topics.items()
            ]
        )
        for f in futures.values():
            f.result(15)
        c.wait_for(lambda: all(c.partitions(t) for t in topics))
        values = [f"{n:06d}".encode() * 170 for n in range(200)]  # ~200 KB each
        # An in-sync follower is not held back: acks=all writes complete at once.
        _produce(c.bootstrap, "in-sync", {0: values})
        producer = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 0})
        for i in range(0, 200, 10):  # batches of 10 KB: a fetch's worth is a few of them
            for t in ("by-leader", "by-follower"):
                for v in values[i : i + 10]:
                    producer.produce(t, v, partition=0)
            assert producer.flush(30) == 0
        assert c.log_bytes(2, "in-sync", 0) == c.log_bytes(1, "in-sync", 0)

        for t in ("by-leader", "by-follower"):
            assert _reassign(c, t, 0, [1, 2]) == 0
        time.sleep(3)
        for t in ("by-leader", "by-follower"):
            assert _ongoing(c, t), f"{t} moved despite its quota"
            copied = len(c.log_bytes(2, t, 0))
            assert 0 < copied < 3 * 20000, (t, copied)  # one fetch's worth, no more

        # Lifting the rates while the brokers run lets them finish, though the topics still
        # list their replicas as throttled.
        _set_rates(admin, None)
        for t in ("by-leader", "by-follower"):
            c.wait_for(lambda t=t: not _ongoing(c, t), what=f"{t} moved")
            assert c.log_bytes(2, t, 0) == c.log_bytes(1, t, 0)
            assert read_range(c.bootstrap, t, 0, 200) == list(enumerate(values))
    finally:
        c.stop()


def test_a_new_rate_applies_from_now_on() -> None:
    """A dynamic config changes the rate: debt carries over, credit is one second's worth."""
    now = [0.0]
    unlimited = 2**63 - 1
    quota = ByteRateQuota(unlimited, clock=lambda: now[0])
    quota.record(10**9)  # unlimited: nothing counts
    quota.set_rate(1000)
    assert quota.throttle_seconds() == 0.0  # a second's worth to spend
    quota.record(3000)
    assert quota.throttle_seconds() == 2.0
    now[0] = 1.0
    quota.set_rate(2000)  # 1000 paid off at the old rate; the rest at the new one
    assert quota.throttle_seconds() == 0.5
    quota.set_rate(unlimited)
    assert quota.throttle_seconds() == 0.0
