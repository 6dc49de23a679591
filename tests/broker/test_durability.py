"""Durability across broker restarts: clean (SIGTERM) and unclean (SIGKILL).

Everything acknowledged must come back with the same offsets and bytes, new appends must
continue at the log end offset, and topics and their configs must survive (and still apply).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

T = 20.0


def create(broker: Any, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (f,) = admin.create_topics(
        [NewTopic(name, partitions, 1, config=config or {})], request_timeout=T
    ).values()
    f.result(T)


def produce(
    broker: Any, topic: str, items: list[tuple[int, bytes, bytes]], **conf: Any
) -> list[tuple[int, int, bytes]]:
    """(partition, key, value) in order -> (partition, offset, value) acknowledged."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2, **conf})
    acked: list[tuple[int, int, bytes]] = []
    errors: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            errors.append(err)

    for partition, key, value in items:
        p.produce(topic, value, key, partition=partition, on_delivery=on_delivery)
    assert p.flush(T) == 0
    assert errors == []
    return acked


def consume_all(
    broker: Any, topic: str, partitions: int, expect: int
) -> dict[int, list[tuple[int, bytes | None, bytes | None]]]:
    """partition -> [(offset, key, value)] from offset 0, until `expect` records in total."""
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
        }
    )
    out: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {
        p: [] for p in range(partitions)
    }
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + T
        n = 0
        while n < expect and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                out[m.partition()].append((m.offset(), m.key(), m.value()))
                n += 1
        # Nothing beyond what we expect (said with offsets, should it ever happen).
        extra = [(m.partition(), m.offset()) for m in c.consume(1000, 0.5) if m.error() is None]
        read = {p: (ms[0][0], ms[-1][0], len(ms)) for p, ms in out.items() if ms}
        assert extra == [], f"beyond the {expect} expected: {extra}; read (first, last, n): {read}"
    finally:
        c.close()
    return out


def watermarks(broker: Any, topic: str, partition: int) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=T)  # type: ignore[no-any-return]
    finally:
        c.close()


def topic_configs(broker: Any, topic: str) -> dict[str, ConfigEntry]:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (f,) = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, topic)], request_timeout=T
    ).values()
    return f.result(T)  # type: ignore[no-any-return]


def test_clean_restart_keeps_everything(broker: Any) -> None:
    create(broker, "durable", 2)
    items = [(i % 2, b"k%d" % i, b"value-%d-" % i + os.urandom(i % 50)) for i in range(300)]
    acked = produce(broker, "durable", items, **{"compression.type": "lz4"})
    assert len(acked) == 300

    assert broker.stop() == 0
    log = broker.log_path.read_text()
    assert "received SIGTERM: shutting down" in log
    assert "broker 1 stopped cleanly" in log
    # The clean-shutdown marker tells the next start that no recovery is needed.
    assert (broker.data_dir / "logs" / ".kafka_cleanshutdown").exists()

    broker.start()
    got = consume_all(broker, "durable", 2, 300)
    for p in range(2):
        expected = [(i, k, v) for i, (_, k, v) in enumerate(x for x in items if x[0] == p)]
        assert got[p] == expected
        assert watermarks(broker, "durable", p) == (0, 150)
    # New appends continue at the log end offset.
    assert produce(broker, "durable", [(0, b"k", b"after"), (1, b"k", b"after")]) == [
        (0, 150, b"after"),
        (1, 150, b"after"),
    ]


def test_kill9_keeps_everything_acknowledged(broker: Any) -> None:
    """SIGKILL in the middle of a stream of acks=all produces: every acknowledged record is
    there after restart, at its acknowledged offset, and the log has no holes."""
    create(broker, "crash", 1)
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 1,
            "retries": 0,
            "message.timeout.ms": 5000,
        }
    )
    acked: dict[int, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            with lock:
                acked[msg.offset()] = msg.value()

    def run() -> None:
        i = 0
        while not stop.is_set():
            try:
                p.produce(
                    "crash", b"msg-%06d-" % i + os.urandom(64), partition=0, on_delivery=on_delivery
                )
                i += 1
            except BufferError:
                pass
            p.poll(0.001)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 2000:
                break
        time.sleep(0.01)
    broker.kill9()
    stop.set()
    thread.join()
    # Drop what was never acknowledged, and the producer, so nothing reaches the restarted
    # broker (a purged request librdkafka still held was once sent to it on reconnecting).
    p.purge(in_queue=True, in_flight=True)
    p.flush(1)
    p.close()
    with lock:
        acked_now = dict(acked)
    assert len(acked_now) >= 2000
    assert "stopped cleanly" not in broker.log_tail()

    broker.start()
    low, high = watermarks(broker, "crash", 0)
    assert low == 0
    assert high > max(acked_now)
    got = consume_all(broker, "crash", 1, high)[0]
    assert [o for o, _, _ in got] == list(range(high))  # no holes
    by_offset = {o: v for o, _, v in got}
    for offset, value in acked_now.items():
        assert by_offset[offset] == value
    # Every record is one of ours, in production order.
    seq = [int(v[4:10]) for _, _, v in got if v is not None]
    assert seq == sorted(seq)
    # And appends continue at the log end offset.
    assert produce(broker, "crash", [(0, b"k", b"after-crash")]) == [(0, high, b"after-crash")]


def test_kill9_after_flush_then_restart_twice(broker: Any) -> None:
    """Recovery of an unclean log must itself leave a log that restarts cleanly."""
    create(broker, "twice", 3)
    items = [(i % 3, b"k%d" % i, os.urandom(200)) for i in range(600)]
    acked = produce(broker, "twice", items, **{"compression.type": "zstd"})
    assert len(acked) == 600
    broker.kill9()
    mark = broker.log_mark()
    broker.start()
    assert "no clean shutdown file was found" in broker.log_tail(200, since=mark)
    assert broker.stop() == 0
    mark = broker.log_mark()
    broker.start()
    assert "no clean shutdown file" not in broker.log_tail(200, since=mark)  # a clean start
    got = consume_all(broker, "twice", 3, 600)
    for p in range(3):
        assert got[p] == [(i, k, v) for i, (_, k, v) in enumerate(x for x in items if x[0] == p)]
    assert produce(broker, "twice", [(2, b"k", b"x")]) == [(2, 200, b"x")]


def test_a_stop_asked_as_soon_as_the_port_answers_is_clean(broker: Any) -> None:
    """A supervisor's SIGTERM sent the moment the listener accepts meets the broker's own
    handler, never Python's default action (exit -15)."""
    for _ in range(5):
        broker.stop()
        broker.start()
        assert broker.stop() == 0
    assert broker.log_path.read_text().count("broker 1 stopped cleanly") == 6


def test_a_stop_asked_while_starting_never_opens_the_listeners(broker: Any) -> None:
    """A SIGTERM that arrives while the broker loads its logs (an operator rolling a broker
    it has just started) stops it before it takes its port."""
    create(broker, "loaded", 400)  # logs to load: a start long enough to be caught in
    assert broker.stop() == 0
    log = broker.log_path
    broker.launch()
    deadline = time.monotonic() + 30
    # The handlers are in before the broker loads its logs.
    while log.read_text().count("loading the logs") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    broker.terminate()
    assert broker.stop() == 0
    text = log.read_text()
    assert text.count("broker 1 stopped cleanly") == 2
    # Caught while loading (the load stops there) or just after it.
    assert (
        "received SIGTERM while loading the logs: broker 1 stops after" in text
        or "received SIGTERM while starting: broker 1 stops before opening its listeners" in text
    ), text[-2000:]
    assert "broker 1 listening" not in text.rsplit("loading the logs", 1)[1]
    # Nothing was lost or marked wrongly: the next start loads every log.
    broker.start()
    assert "loaded 400 log(s)" in log.read_text().rsplit("loading the logs", 1)[1]


def test_topics_and_configs_persist(broker: Any) -> None:
    create(broker, "keep", 3, {"retention.ms": "86400000", "cleanup.policy": "compact"})
    create(broker, "drop", 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(
        ResourceType.TOPIC,
        "keep",
        incremental_configs=[
            ConfigEntry("max.message.bytes", "10000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    (f,) = admin.incremental_alter_configs([res], request_timeout=T).values()
    f.result(T)
    (f,) = admin.delete_topics(["drop"], request_timeout=T).values()
    f.result(T)
    before = {k: (e.value, e.source) for k, e in topic_configs(broker, "keep").items()}

    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = admin.list_topics(timeout=T)
    assert sorted(md.topics) == ["keep"]
    assert sorted(md.topics["keep"].partitions) == [0, 1, 2]
    after = {k: (e.value, e.source) for k, e in topic_configs(broker, "keep").items()}
    assert after == before
    assert after["max.message.bytes"] == ("10000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert after["cleanup.policy"] == ("compact", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert after["retention.ms"][1] == ConfigSource.DEFAULT_CONFIG.value
    assert not (broker.data_dir / "logs" / "drop-0").exists()


def test_topic_config_still_enforced_after_restart(broker: Any) -> None:
    """A persisted override must not only be described but applied to the reopened log."""
    create(broker, "small", 1, {"max.message.bytes": "10000"})
    broker.restart()
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "none"})
    results: list[Any] = []
    p.produce("small", os.urandom(20_000), partition=0, on_delivery=lambda e, m: results.append(e))
    p.flush(T)
    assert len(results) == 1 and results[0] is not None
    assert results[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_cluster_id_persists(broker: Any) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    cluster_id = admin.list_topics(timeout=T).cluster_id
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert admin.list_topics(timeout=T).cluster_id == cluster_id
    assert f"cluster.id={cluster_id}" in (broker.data_dir / "meta.properties").read_text()
