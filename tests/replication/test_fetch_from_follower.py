"""KIP-392: consumers read from a replica in their own rack.

Three brokers in racks az-a, az-b and az-c with Kafka's RackAwareReplicaSelector. A
librdkafka consumer with ``client.rack`` reads every record, exactly, from the replica in its
rack: the leader's bytes-out stays at zero. The wire shows the leader's answer
(``preferred_read_replica``, no records), a follower serving v11+ consumers up to its high
watermark, and the leader taking its consumers back when that follower dies. With tiered
storage, a follower serves history below its local log from the object store too."""

from __future__ import annotations

import datetime
import importlib
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from artesian.config.broker import RACK_AWARE_REPLICA_SELECTOR
from tests.broker.test_tiered_storage import (
    TIERED,
    TOPIC_CONFIG,
    _assert_exact,
    _local_segments,
)
from tests.broker.test_tiered_storage import _produce as _produce_tiered
from tests.consuming import read_range
from tests.kafka_wire import parse_response, request_frame, sample_request
from tests.replication.cluster import Cluster
from tests.replication.test_cluster import _produce
from tests.storage.batches import decode_batches

NONE = 0
OFFSET_OUT_OF_RANGE = 1
NOT_LEADER_OR_FOLLOWER = 6
RACKS = {1: "az-a", 2: "az-b", 3: "az-c"}
SELECTOR = {"replica.selector.class": RACK_AWARE_REPLICA_SELECTOR}


def _racked(tmp_path: Path, size: int, settings: dict[str, str]) -> Cluster:
    return Cluster(
        tmp_path,
        size,
        {**SELECTOR, **settings},
        node_settings={n: {"broker.rack": RACKS[n]} for n in range(1, size + 1)},
    ).start()


def _bytes_out(c: Cluster, node: int, topic: str) -> float:
    return c.metric(node, f'kafka_server_broker_topic_bytes_out_total{{topic="{topic}"}}')


def _fetch(
    c: Cluster, node: int, topic: str, offset: int, version: int = 11, rack: str = ""
) -> Any:
    """One partition's answer to a consumer's Fetch (no wait) of ``topic``-0 from ``node``."""
    req = sample_request(
        1,
        version,
        topic,
        fetch_offset=offset,
        partition=0,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=8 << 20,
        partition_max_bytes=8 << 20,
        current_leader_epoch=-1,
        **({"rack_id": rack} if version >= 11 else {}),
    )
    with c.conn(node) as conn:
        (t,) = conn.request(1, version, req).responses
    (p,) = t.partitions
    return p


def _consumer_fetch(topic: str, offset: int, max_wait_ms: int) -> Any:
    """A consumer's Fetch v12 of ``topic``-0 that waits up to ``max_wait_ms`` for a record."""
    return sample_request(
        1,
        12,
        topic,
        fetch_offset=offset,
        partition=0,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=1,
        max_bytes=1 << 20,
        partition_max_bytes=1 << 20,
        current_leader_epoch=-1,
        rack_id="",
    )


def _offsets(records: bytes | None, start: int = 0) -> list[int]:
    """The offsets of the records, from ``start`` (a fetch returns the whole first batch)."""
    batches = decode_batches(bytes(records or b""))
    return [r[0] for batch in batches for r in batch.records if r[0] >= start]


def test_consumers_read_from_the_replica_in_their_rack(tmp_path: Path) -> None:
    c = _racked(tmp_path, 3, {})
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        admin.create_topics([NewTopic("near", 1, replica_assignment=[[1, 2, 3]])])["near"].result(
            15
        )
        c.wait_for(lambda: all(c.partitions("near", n) for n in (1, 2, 3)), what="topic known")
        sent = [f"near-{n}".encode() for n in range(500)]
        _produce(c.bootstrap, "near", {0: sent})
        c.wait_for(lambda: c.partitions("near", 1)[0].isr == (1, 2, 3), what="full ISR")
        log_size = len(c.log_bytes(1, "near", 0))

        # A consumer in az-b reads everything from broker 2; the leader sends it no record.
        got = read_range(c.bootstrap, "near", 0, 500, **{"client.rack": "az-b"})
        assert got == list(enumerate(sent))
        assert _bytes_out(c, 2, "near") >= log_size
        assert _bytes_out(c, 1, "near") == 0
        assert _bytes_out(c, 3, "near") == 0

        # In the leader's rack, or without a rack, the leader serves.
        assert read_range(c.bootstrap, "near", 0, 500, **{"client.rack": "az-a"}) == got
        assert _bytes_out(c, 1, "near") >= log_size
        before = _bytes_out(c, 1, "near")
        assert read_range(c.bootstrap, "near", 0, 500) == got
        assert _bytes_out(c, 1, "near") >= before + log_size
        assert _bytes_out(c, 3, "near") == 0

        # A consumer attached to the follower in az-c sees records produced after it caught
        # up: the follower's high watermark follows the leader's.
        leader_sent = _bytes_out(c, 1, "near")
        consumer = Consumer(
            {
                "bootstrap.servers": c.bootstrap,
                "group.id": "near-c",
                "client.rack": "az-c",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.assign([TopicPartition("near", 0, 0)])
            seen: list[tuple[int, bytes]] = []
            for _ in range(120):
                if len(seen) >= 500:
                    break
                seen += [
                    (m.offset(), m.value()) for m in consumer.consume(500, 0.5) if not m.error()
                ]
            more = [f"late-{n}".encode() for n in range(100)]
            _produce(c.bootstrap, "near", {0: more})
            for _ in range(120):
                if len(seen) >= 600:
                    break
                seen += [
                    (m.offset(), m.value()) for m in consumer.consume(500, 0.5) if not m.error()
                ]
        finally:
            consumer.close()
        assert seen == list(enumerate(sent + more))
        assert _bytes_out(c, 3, "near") >= len(c.log_bytes(3, "near", 0))
        assert _bytes_out(c, 1, "near") == leader_sent

        # The wire: the leader names the replica in the consumer's rack and sends no records.
        redirected = _fetch(c, 1, "near", 0, rack="az-c")
        assert (redirected.error_code, redirected.preferred_read_replica) == (NONE, 3)
        assert (redirected.high_watermark, _offsets(redirected.records)) == (600, [])
        # No replica in the rack, or the leader's own rack: the leader serves.
        for rack in ("az-z", "az-a", ""):
            p = _fetch(c, 1, "near", 590, rack=rack)
            assert (p.error_code, p.preferred_read_replica) == (NONE, -1), rack
            assert _offsets(p.records, 590) == list(range(590, 600)), rack
        # A follower serves v11+ consumers (rack or not) up to its high watermark; older
        # versions carry no client metadata and are sent to the leader, as by Kafka.
        p = _fetch(c, 3, "near", 590)
        assert (p.error_code, p.high_watermark, _offsets(p.records, 590)) == (
            NONE,
            600,
            list(range(590, 600)),
        )
        assert _fetch(c, 3, "near", 590, version=10).error_code == NOT_LEADER_OR_FOLLOWER
        # Past its log end, a follower's error carries no offsets (as Kafka's): librdkafka
        # then goes back to the leader instead of resetting its position.
        beyond = _fetch(c, 3, "near", 601)
        assert (beyond.error_code, beyond.high_watermark, beyond.log_start_offset) == (
            OFFSET_OUT_OF_RANGE,
            -1,
            -1,
        )

        # An incremental fetch session on the leader repeats the redirection: it is news.
        m = importlib.import_module("kio.schema.fetch.v12.request")

        def session_fetch(conn: Any, session_id: int, epoch: int) -> Any:
            part = m.FetchPartition(partition=0, fetch_offset=100, partition_max_bytes=1 << 20)
            topics = () if epoch > 0 else (m.FetchTopic(topic="near", partitions=(part,)),)
            req = m.FetchRequest(
                max_wait=datetime.timedelta(0),
                min_bytes=1,
                max_bytes=1 << 20,
                session_id=session_id,
                session_epoch=epoch,
                topics=topics,
                forgotten_topics_data=(),
                rack_id="az-b",
            )
            return conn.request(1, 12, req)

        with c.conn(1) as conn:
            opened = session_fetch(conn, 0, 0)
            assert opened.session_id > 0
            for resp in (opened, session_fetch(conn, opened.session_id, 1)):
                ((_, p),) = [(t.topic, p) for t in resp.responses for p in t.partitions]
                assert (p.error_code, p.preferred_read_replica) == (NONE, 2)

        # Broker 2 dies: the leader stops naming it and serves az-b itself.
        c.brokers[2].kill9()
        c.wait_for(lambda: 2 not in c.live_brokers(1), what="broker 2 gone")
        p = _fetch(c, 1, "near", 0, rack="az-b")
        assert (p.error_code, p.preferred_read_replica) == (NONE, -1)
        assert _offsets(p.records)[:1] == [0]
        assert read_range(c.bootstrap, "near", 0, 600, **{"client.rack": "az-b"}) == seen
    finally:
        c.stop()


def test_a_follower_serves_history_from_tiered_storage(tmp_path: Path) -> None:
    store = (tmp_path / "object-store").as_uri()
    c = _racked(tmp_path, 2, {**TIERED, "rsm.config.store.url": store})
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        new = NewTopic("deep", 1, replica_assignment=[[1, 2]], config=TOPIC_CONFIG)
        admin.create_topics([new])["deep"].result(15)
        c.wait_for(lambda: all(c.partitions("deep", n) for n in (1, 2)), what="topic known")
        _produce_tiered(c.brokers[1].bootstrap, "deep", 0, 4000)  # ~4 MiB: 1 MiB segments
        for node in (1, 2):
            c.wait_for(
                lambda node=node: len(_local_segments(c.brokers[node], "deep")) == 1,
                what=f"local retention on broker {node}",
            )
        (segment,) = _local_segments(c.brokers[2], "deep")
        assert int(segment.name.removesuffix(".log")) > 0

        # Offset 0 is in the object store only; the follower reads it from there.
        p = _fetch(c, 2, "deep", 0)
        assert (p.error_code, _offsets(p.records)[:1]) == (NONE, [0])
        # A consumer in az-b reads the whole history through the follower alone.
        before = _bytes_out(c, 1, "deep")
        _assert_exact(read_range(c.bootstrap, "deep", 0, 4000, **{"client.rack": "az-b"}), 0, 4000)
        assert _bytes_out(c, 1, "deep") == before
        assert _bytes_out(c, 2, "deep") >= 4000 * 1000
    finally:
        c.stop()


def test_a_consumer_waiting_on_a_follower_gets_a_new_record_without_waiting_for_replication(
    tmp_path: Path,
) -> None:
    """The follower's parked consumer fetch is answered once the record is committed, not
    after the followers' next scheduled fetch: replica.fetch.wait.max.ms is 30 s here and
    the consumer waits 5 s at most. The leader answers a follower at once when the high
    watermark moved, and the follower wakes its consumers when its own moves (the fetch does
    not expire: Kafka's DelayedFetch expiry count stays at zero)."""
    c = _racked(
        tmp_path, 2, {"replica.fetch.wait.max.ms": "30000", "replica.lag.time.max.ms": "60000"}
    )
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        admin.create_topics([NewTopic("wake", 1, replica_assignment=[[1, 2]])])["wake"].result(15)
        c.wait_for(lambda: all(c.partitions("wake", n) for n in (1, 2)), what="topic known")
        assert c.produce(1, "wake", 0, [b"first"]) == (NONE, 0)
        c.wait_for(lambda: _fetch(c, 2, "wake", 0).high_watermark == 1, what="follower's HW")
        c.wait_for(lambda: c.partitions("wake", 1)[0].isr == (1, 2), what="follower in sync")
        with c.conn(2) as conn:
            conn.send(request_frame(1, 12, 7, _consumer_fetch("wake", 1, 5000)))
            time.sleep(0.5)  # parked on the follower
            assert c.produce(1, "wake", 0, [b"second"]) == (NONE, 1)
            corr, resp = parse_response(1, 12, conn.recv_frame(timeout=10))
        assert corr == 7
        ((p,),) = [t.partitions for t in resp.responses]
        assert (p.error_code, p.high_watermark, _offsets(p.records)) == (NONE, 2, [1])
        # Woken by the follower's high watermark, not answered at its max wait.
        expires = 'kafka_server_delayed_fetch_expires_total{fetcher_type="consumer"}'
        assert c.metric(2, expires) == 0
        with c.conn(2) as conn:
            (t,) = conn.request(1, 12, _consumer_fetch("wake", 2, 300)).responses
        assert _offsets(t.partitions[0].records) == []
        assert c.metric(2, expires) == 1  # nothing came: that one ran out
    finally:
        c.stop()


def test_a_follower_keeps_its_high_watermark_when_the_leader_changes(tmp_path: Path) -> None:
    """Consumers reading from followers never see the high watermark fall back while the
    leadership moves (a broker that held the partition keeps it, as Kafka's does): every
    answer from broker 3, polled throughout broker 1's hand-over, carries 10."""
    c = _racked(tmp_path, 3, {"broker.session.timeout.ms": "600000"})
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        new = NewTopic("steady", 1, replica_assignment=[[1, 2, 3]])
        admin.create_topics([new])["steady"].result(15)
        c.wait_for(lambda: all(c.partitions("steady", n) for n in (1, 2, 3)), what="topic")
        assert c.produce(1, "steady", 0, [b"%d" % i for i in range(10)]) == (NONE, 0)
        for node in (2, 3):
            c.wait_for(lambda node=node: _fetch(c, node, "steady", 0).high_watermark == 10)
        seen: list[int] = []
        stop = threading.Event()

        def poll() -> None:
            with c.conn(3) as conn:
                while not stop.is_set():
                    (t,) = conn.request(1, 12, _consumer_fetch("steady", 0, 0)).responses
                    (p,) = t.partitions
                    if p.error_code == NONE:
                        seen.append(p.high_watermark)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            time.sleep(0.3)
            assert c.brokers[1].stop() == 0  # hands its leaderships over first
            c.wait_for(lambda: c.partitions("steady", 3)[0].leader in (2, 3), what="new leader")
            time.sleep(0.5)
        finally:
            stop.set()
            poller.join(10)
        assert len(seen) > 20 and set(seen) == {10}, sorted(set(seen))
    finally:
        c.stop()
