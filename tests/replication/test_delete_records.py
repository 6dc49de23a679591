"""DeleteRecords waits for the followers, as Kafka's DelayedDeleteRecords does: it answers NONE
only once the partition's low watermark (the smallest log start offset among the leader and the
followers on live brokers) reaches the offset, so a failover cannot bring deleted records back.
A live follower that cannot fetch holds it back until the request times out."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode

from artesian.broker.metrics import BrokerMetrics
from artesian.broker.replica_manager import ReplicaManager
from artesian.storage.log_config import LogConfig
from artesian.storage.log_manager import LogManager
from tests.consuming import read_range
from tests.kafka_wire import WireConn, sample_request
from tests.replication.cluster import Cluster
from tests.replication.test_cluster import _create, _produce
from tests.storage.batches import make_batch

DELETE_RECORDS, LIST_OFFSETS = 21, 2
NONE, REQUEST_TIMED_OUT = 0, 7
NOW = 1_700_000_000_000


def _delete_records(
    c: Cluster, node: int, topic: str, offset: int, timeout_s: float
) -> tuple[int, int]:
    """(error code, low watermark) of DeleteRecords v2 for partition 0, sent to ``node``."""
    req = sample_request(
        DELETE_RECORDS,
        2,
        topic,
        offset=offset,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    with WireConn(c.brokers[node].port, timeout=timeout_s + 15) as conn:
        resp = conn.request(DELETE_RECORDS, 2, req)
    (t,) = resp.topics
    (p,) = t.partitions
    return int(p.error_code), int(p.low_watermark)


def _earliest(c: Cluster, node: int, topic: str) -> int:
    """ListOffsets v7 EARLIEST (-2) on ``node``: the log start offset of its partition 0."""
    with c.conn(node) as conn:
        resp = conn.request(LIST_OFFSETS, 7, sample_request(LIST_OFFSETS, 7, topic, timestamp=-2))
    (t,) = resp.topics
    (p,) = t.partitions
    if int(p.error_code) != NONE:
        raise ConnectionError(f"ListOffsets: error {p.error_code}")  # wait_for retries
    return int(p.offset)


def test_deleted_records_stay_deleted_after_the_leader_is_killed(cluster: Cluster) -> None:
    _create(cluster, "dr-failover", 1, 3)
    values = [f"v{n}".encode() for n in range(100)]
    _produce(cluster.bootstrap, "dr-failover", {0: values})
    (before,) = cluster.partitions("dr-failover").values()

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    (f,) = admin.delete_records(
        [TopicPartition("dr-failover", 0, 60)], request_timeout=30, operation_timeout=20
    ).values()
    assert f.result(30).low_watermark == 60
    # At once: NONE means every live follower has moved its log start too.
    cluster.brokers[before.leader].kill9()

    cluster.wait_for(
        lambda: cluster.partitions("dr-failover")[0].leader not in (before.leader, -1),
        what="a new leader",
    )
    leader = cluster.partitions("dr-failover")[0].leader
    cluster.wait_for(lambda: _earliest(cluster, leader, "dr-failover") >= 0, what="ListOffsets")
    assert _earliest(cluster, leader, "dr-failover") == 60
    survivors = ",".join(cluster.brokers[i].bootstrap for i in cluster.running())
    got = read_range(survivors, "dr-failover", OFFSET_BEGINNING, 100)
    assert got == [(n, values[n]) for n in range(60, 100)]


def test_a_live_follower_that_cannot_fetch_holds_delete_records_back(tmp_path: Path) -> None:
    # A stopped broker stays live until its session times out: long enough for the test.
    c = Cluster(tmp_path, 3, {"broker.session.timeout.ms": "15000"}).start()
    try:
        _create(c, "dr-stalled", 1, 3)
        _produce(c.bootstrap, "dr-stalled", {0: [f"v{n}".encode() for n in range(100)]})
        (state,) = c.partitions("dr-stalled").values()
        # The larger follower id: never the lowest live broker, the active controller.
        stalled = max(r for r in state.replicas if r != state.leader)
        proc = c.brokers[stalled].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            code, low = _delete_records(c, state.leader, "dr-stalled", 60, 1.5)
            waited = time.monotonic() - started
            assert code == REQUEST_TIMED_OUT
            # Kafka's answer keeps the low watermark of the local delete: the stalled
            # follower's log still starts at 0.
            assert low == 0
            assert waited >= 1.4
            # The leader's own log moved at once, and it still counts the follower live.
            assert _earliest(c, state.leader, "dr-stalled") == 60
            assert stalled in c.live_brokers(state.leader)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert _delete_records(c, state.leader, "dr-stalled", 60, 15) == (NONE, 60)
    finally:
        c.stop()


def test_delete_records_answers_at_once_when_no_follower_lags(cluster: Cluster) -> None:
    _create(cluster, "dr-single", 1, 1)
    values = [f"v{n}".encode() for n in range(10)]
    _produce(cluster.bootstrap, "dr-single", {0: values})
    (state,) = cluster.partitions("dr-single").values()
    started = time.monotonic()
    # A zero timeout: only a request with nothing to wait for can answer NONE.
    assert _delete_records(cluster, state.leader, "dr-single", 4, 0) == (NONE, 4)
    assert time.monotonic() - started < 1.0
    assert _earliest(cluster, state.leader, "dr-single") == 4

    # RF=3 with every follower there already: deleting below the start waits for nothing.
    _create(cluster, "dr-caught-up", 1, 3)
    _produce(cluster.bootstrap, "dr-caught-up", {0: values})
    (state,) = cluster.partitions("dr-caught-up").values()
    assert _delete_records(cluster, state.leader, "dr-caught-up", 5, 15) == (NONE, 5)
    assert _delete_records(cluster, state.leader, "dr-caught-up", 3, 0) == (NONE, 5)


def test_low_watermark_counts_live_followers_and_ends_with_the_leadership(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        lm = LogManager(tmp_path, LogConfig(file_delete_delay_ms=0))
        rm = ReplicaManager(lm, BrokerMetrics(), node_id=1)
        topic_id = uuid.uuid4()
        p = rm.become_leader("t", 0, topic_id, 0, (1, 2, 3), (1, 2, 3), LogConfig())
        p.log.append_as_leader(make_batch(n=10), 0, NOW)
        all_live = {1, 2, 3}
        assert p.low_watermark(all_live) == -1  # followers yet to fetch: unknown
        for r in (2, 3):
            rm.update_follower_fetch(p, r, 10, NOW, log_start_offset=0, live=all_live)
        assert p.high_watermark == 10
        p.log.delete_records_before(6, NOW)
        assert p.low_watermark(all_live) == 0

        waiter = asyncio.ensure_future(rm.wait_for_low_watermark(p, 6, 5, 0, all_live))
        await asyncio.sleep(0)
        rm.update_follower_fetch(p, 2, 10, NOW, log_start_offset=6, live=all_live)
        await asyncio.sleep(0)
        assert not waiter.done()  # 3 still starts at 0
        # Broker 3's session ended: it no longer holds the request back, though nobody
        # fetches meanwhile.
        rm.live_changed(frozenset({1, 2}))
        assert await waiter == (ErrorCode.none, 6)
        rm.live_changed(frozenset(all_live))

        # Nor does a replica reassigned away.
        waiter = asyncio.ensure_future(rm.wait_for_low_watermark(p, 6, 5, 0, all_live))
        await asyncio.sleep(0)
        assert not waiter.done()
        rm.become_leader("t", 0, topic_id, 0, (1, 2), (1, 2), LogConfig())
        assert await waiter == (ErrorCode.none, 6)
        # Back again, it knows nothing of its log: it holds the next request back.
        rm.become_leader("t", 0, topic_id, 0, (1, 2, 3), (1, 2, 3), LogConfig())
        assert await rm.wait_for_low_watermark(p, 6, 0.05, 0, all_live) == (
            ErrorCode.request_timed_out,
            -1,
        )
        waiter = asyncio.ensure_future(rm.wait_for_low_watermark(p, 6, 5, 0, all_live))
        await asyncio.sleep(0)
        rm.become_follower("t", 0, topic_id, 2, 1, (1, 2, 3), (1, 2, 3), LogConfig())
        assert await waiter == (ErrorCode.not_leader_or_follower, -1)
        assert p.lw_waiters == []
        lm.shutdown()

    asyncio.run(run())
