"""Tiered storage with replication (Infinite Storage's promise): a replica that joins late
copies only the hot tail from its leader, because what lies below the leader's local log is in
the object store; followers apply local retention to what the leader copied; and after a
failover the new leader serves the whole history from there."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from tests.broker.test_tiered_storage import (
    TIERED,
    TOPIC_CONFIG,
    _assert_exact,
    _list_offset,
    _local_segments,
    _produce,
    _read,
)
from tests.replication.cluster import Cluster


def test_a_late_replica_copies_only_the_tail_and_can_serve_everything(tmp_path: Path) -> None:
    store = (tmp_path / "object-store").as_uri()
    c = Cluster(tmp_path, 2, {**TIERED, "rsm.config.store.url": store}).start()
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        new = NewTopic("deep", 1, replica_assignment=[[1, 2]], config=TOPIC_CONFIG)
        admin.create_topics([new])["deep"].result(15)
        c.wait_for(lambda: all(c.partitions("deep", n) for n in (1, 2)), what="topic known")
        follower = c.brokers[2]
        follower.kill9()
        c.wait_for(lambda: c.partitions("deep", 1)[0].isr == (1,), what="ISR shrink")

        _produce(c.brokers[1].bootstrap, "deep", 0, 4000)  # ~4 MiB: several 1 MiB segments
        c.wait_for(lambda: len(_local_segments(c.brokers[1], "deep")) == 1, what="local retention")
        local_start = _list_offset(c.brokers[1].port, "deep", -4)
        assert local_start > 0

        follower.start()
        c.wait_for(lambda: c.partitions("deep", 1)[0].isr == (1, 2), what="the replica in sync")
        # It fetched the tail only: its log starts at the leader's local log start.
        (first, *_) = _local_segments(follower, "deep")
        assert int(first.name.removesuffix(".log")) == local_start
        assert sum(p.stat().st_size for p in _local_segments(follower, "deep")) < 2 << 20

        # More records: the follower's local retention deletes what the leader copied, as
        # the leader's own does.
        _produce(c.brokers[1].bootstrap, "deep", 4000, 3000)
        c.wait_for(lambda: len(_local_segments(follower, "deep")) == 1, what="follower retention")

        # The leader goes; the late replica leads and serves offset 0 onwards from the store.
        c.brokers[1].kill9()
        c.wait_for(lambda: c.partitions("deep", 2)[0].leader == 2, what="failover")
        _assert_exact(_read(follower.bootstrap, "deep", 0, 7000), 0, 7000)
    finally:
        c.stop()
