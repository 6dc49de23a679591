"""Tiered storage end to end: rolled segments go to the object store (a local directory, the
embedded default), local retention deletes them from disk, and clients still read every record
from offset 0, exactly, through the remote tier; remote retention, timestamp lookups,
read_committed, kill -9, a lost local disk, topic deletion and the config checks.

Segments roll at segment.bytes' floor of 1 MiB; the remote log manager and retention run every
200 ms here."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from tests.consuming import read_range
from tests.kafka_wire import WireConn, sample_request

T = 30.0
RECORD = 1000
TIERED = {
    "remote.log.storage.system.enable": "true",
    "remote.log.manager.task.interval.ms": "200",
    "log.retention.check.interval.ms": "200",
    "log.segment.delete.delay.ms": "0",
}
TOPIC_CONFIG = {
    "remote.storage.enable": "true",
    "segment.bytes": str(1 << 20),
    "local.retention.bytes": "1",  # keep only the active segment locally
    "retention.ms": "-1",
}
BASE_TS = 1_700_000_000_000


def _value(i: int) -> bytes:
    return f"{i:08d}".encode() * (RECORD // 8)


def _create(bootstrap: str, topic: str, config: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        f.result(T)


def _produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(first, first + count):
        p.produce(topic, _value(i), key=str(i).encode(), timestamp=BASE_TS + i)
    assert p.flush(T) == 0


def _read(
    bootstrap: str, topic: str, start: int, end: int, **extra: Any
) -> list[tuple[int, bytes]]:
    return read_range(bootstrap, topic, start, end, timeout=T, **extra)


def _list_offset(port: int, topic: str, timestamp: int) -> int:
    with WireConn(port) as conn:
        resp = conn.request(2, 11, sample_request(2, 11, topic, timestamp=timestamp))
    (p,) = resp.topics[0].partitions
    assert int(p.error_code) == 0, p.error_code
    return int(p.offset)


def _wait(condition: Callable[[], bool], what: str, timeout: float = T) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _remote_objects(broker: Any, suffix: str, topic: str | None = None) -> list[Path]:
    """The objects in tiered storage whose names end in ``suffix``; only those of ``topic``'s
    partition 0 if it is named (the tests that share a broker name it)."""
    found = (broker.data_dir / "remote-storage").rglob(f"*{suffix}")
    if topic is not None:
        prefix = re.compile(rf"{re.escape(topic)}-0-{_UUID}")  # partition_prefix()
        found = (p for p in found if prefix.fullmatch(p.parent.name))
    return sorted(found)


def _local_segments(broker: Any, topic: str) -> list[Path]:
    return sorted((broker.data_dir / "logs" / f"{topic}-0").glob("*.log"))


def _tier(broker: Any, topic: str, count: int, config: dict[str, str] | None = None) -> int:
    """Create a tiered topic, write ``count`` records and wait until local retention has
    deleted every segment but the active one. Returns the local log start offset."""
    _create(broker.bootstrap, topic, config or TOPIC_CONFIG)
    _produce(broker.bootstrap, topic, 0, count)
    _wait(lambda: len(_local_segments(broker, topic)) == 1, "local segments to be deleted")
    local_start = _list_offset(broker.port, topic, -4)
    assert local_start > 0
    return local_start


def _assert_exact(records: list[tuple[int, bytes]], start: int, end: int) -> None:
    assert [o for o, _ in records] == list(range(start, end))
    assert all(v == _value(o) for o, v in records)


def test_records_below_the_local_log_are_read_from_tiered_storage(
    module_broker_factory: Any,
) -> None:
    broker = module_broker_factory(TIERED)  # shared: the topic is this test's own
    n = 5000  # about 5 MiB: four rolled segments go to tiered storage
    local_start = _tier(broker, "tiered", n)
    highest = _list_offset(broker.port, "tiered", -5)  # LATEST_TIERED (KIP-1005)
    assert local_start - 1 <= highest < n
    # EARLIEST_PENDING_UPLOAD (KIP-1023): the first offset not yet copied.
    assert _list_offset(broker.port, "tiered", -6) == highest + 1
    # The earliest offset is still 0: the log start lies in tiered storage.
    assert _list_offset(broker.port, "tiered", -2) == 0
    assert len(_remote_objects(broker, ".metadata.json", "tiered")) >= 4
    records = _read(broker.bootstrap, "tiered", 0, n)
    _assert_exact(records, 0, n)
    # kafka-python reads the same bytes through the remote tier.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        kc.assign([KTP("tiered", 0)])
        kc.seek(KTP("tiered", 0), 0)
        got: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + T
        while len(got) < local_start and time.monotonic() < deadline:
            for batch in kc.poll(timeout_ms=500).values():
                got += [(r.offset, r.value) for r in batch]
        _assert_exact(got[:local_start], 0, local_start)
    finally:
        kc.close()


def test_tiered_records_survive_kill_9_and_the_log_continues(broker_factory: Any) -> None:
    broker = broker_factory(TIERED)
    n = 3000
    _tier(broker, "tk", n)
    broker.kill9()
    broker.start()
    _assert_exact(_read(broker.bootstrap, "tk", 0, n), 0, n)
    _produce(broker.bootstrap, "tk", n, 10)
    _assert_exact(_read(broker.bootstrap, "tk", n - 5, n + 10), n - 5, n + 10)


def test_segments_rolled_before_a_kill_9_are_tiered_without_new_writes(
    broker_factory: Any,
) -> None:
    """After a crash the recovery point is the last checkpoint's, below segments rolled
    since: they are flushed at start-up and copied, not left until a roll that a quiet topic
    may never have."""
    held = {"remote.log.manager.copy.max.bytes.per.second": "1"}  # nothing copied before
    broker = broker_factory({**TIERED, **held})
    n = 3000
    _create(broker.bootstrap, "quiet", TOPIC_CONFIG)
    _produce(broker.bootstrap, "quiet", 0, n)
    rolled = len(_local_segments(broker, "quiet")) - 1
    assert rolled >= 2
    broker.kill9()
    del broker.settings["remote.log.manager.copy.max.bytes.per.second"]
    broker.start()
    _wait(lambda: len(_local_segments(broker, "quiet")) == 1, "the rolled segments to be tiered")
    assert len(_remote_objects(broker, ".metadata.json", "quiet")) >= rolled
    _assert_exact(_read(broker.bootstrap, "quiet", 0, n), 0, n)


def test_a_lost_local_disk_is_restored_from_tiered_storage(broker_factory: Any) -> None:
    """A broker whose partition directory is gone lists the remote segments at start-up and
    continues the log after them: every tiered record is read back and no offset is reused."""
    broker = broker_factory(TIERED)
    n = 3000
    _tier(broker, "restore", n)
    highest = _list_offset(broker.port, "restore", -5)
    broker.stop()
    shutil.rmtree(broker.data_dir / "logs" / "restore-0")
    broker.start()
    assert _list_offset(broker.port, "restore", -1) == highest + 1
    assert _list_offset(broker.port, "restore", -2) == 0
    _assert_exact(_read(broker.bootstrap, "restore", 0, highest + 1), 0, highest + 1)
    _produce(broker.bootstrap, "restore", highest + 1, 5)
    _assert_exact(
        _read(broker.bootstrap, "restore", highest + 1, highest + 6), highest + 1, highest + 6
    )


def test_remote_retention_moves_the_log_start_offset(module_broker_factory: Any) -> None:
    broker = module_broker_factory(TIERED)  # shared: the topic is this test's own
    config = {**TOPIC_CONFIG, "retention.bytes": str(2 << 20), "local.retention.bytes": "1"}
    n = 5000
    _tier(broker, "rr", n, config)
    # retention.bytes counts the whole log (about 5 MiB), local segments included: the oldest
    # remote segment goes while the log would still hold 2 MiB or more without it (Kafka's rule).
    limit = 2 << 20

    def retained() -> bool:
        remote = [p.stat().st_size for p in _remote_objects(broker, ".log", "rr")]
        local = sum(p.stat().st_size for p in _local_segments(broker, "rr"))
        return bool(remote) and sum(remote) + local - remote[0] < limit  # [0]: the oldest

    _wait(retained, "remote retention")
    start = _list_offset(broker.port, "rr", -2)
    assert start > 0
    # The first segment's objects are gone (names are <20-digit start offset>-<id>.<suffix>).
    remote = _remote_objects(broker, "", "rr")
    assert remote and not [p for p in remote if p.name.startswith(f"{0:020d}-")]
    _assert_exact(_read(broker.bootstrap, "rr", start, n), start, n)
    # A consumer below the log start resets to it (auto.offset.reset=earliest).
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "rr-reset",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        c.assign([TopicPartition("rr", 0, 0)])
        msg = None
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                break
        assert msg is not None and msg.offset() == start
    finally:
        c.close()


def test_timestamp_lookup_finds_records_in_tiered_storage(module_broker_factory: Any) -> None:
    broker = module_broker_factory(TIERED)  # shared: the topic is this test's own
    n = 3000
    local_start = _tier(broker, "ts", n)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts"})
    try:
        for target in (0, 17, local_start - 1, local_start + 3):
            (tp,) = c.offsets_for_times([TopicPartition("ts", 0, BASE_TS + target)], timeout=T)
            assert tp.offset == target, (target, tp.offset)
    finally:
        c.close()


def test_read_committed_skips_aborted_records_in_tiered_storage(module_broker_factory: Any) -> None:
    broker = module_broker_factory(TIERED)  # shared: the topic is this test's own
    _create(broker.bootstrap, "txn", TOPIC_CONFIG)
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tiered-txn"})
    p.init_transactions(T)
    expected: list[int] = []
    offset = 0
    for round_ in range(5):  # ~5 MiB: the early transactions end up in tiered storage
        p.begin_transaction()
        for i in range(1000):
            p.produce("txn", _value(offset + i))
        p.flush(T)
        if round_ % 2:
            p.abort_transaction(T)
        else:
            p.commit_transaction(T)
            expected += range(offset, offset + 1000)
        offset += 1001  # 1000 records and the marker
    _wait(lambda: len(_local_segments(broker, "txn")) == 1, "local segments to be deleted")
    assert _list_offset(broker.port, "txn", -4) > 2002
    # The last transaction commits, so the read ends at its last record.
    records = _read(
        broker.bootstrap, "txn", 0, expected[-1] + 1, **{"isolation.level": "read_committed"}
    )
    assert [o for o, _ in records] == expected
    assert all(v == _value(o) for o, v in records)


def test_deleting_a_tiered_topic_deletes_its_remote_objects(module_broker_factory: Any) -> None:
    broker = module_broker_factory(TIERED)  # shared: the topic is this test's own
    _tier(broker, "gone", 3000)
    assert _remote_objects(broker, ".log", "gone")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.delete_topics(["gone"]).values():
        f.result(T)
    _wait(lambda: not _remote_objects(broker, ".log", "gone"), "remote objects to be deleted")


def test_disabling_tiered_storage_needs_delete_on_disable(module_broker_factory: Any) -> None:
    broker = module_broker_factory(TIERED)  # shared: the topic is this test's own
    local_start = _tier(broker, "off", 3000)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def alter(**configs: str) -> None:
        entries = [
            ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
            for k, v in configs.items()
        ]
        res = ConfigResource("topic", "off", incremental_configs=entries)
        admin.incremental_alter_configs([res])[res].result(T)

    with pytest.raises(KafkaException) as e:
        alter(remote_storage_enable="false")
    assert e.value.args[0].code() == 40  # INVALID_CONFIG
    alter(remote_storage_enable="false", remote_log_delete_on_disable="true")
    _wait(lambda: not _remote_objects(broker, ".log", "off"), "remote objects to be deleted")
    # The log starts at its local start again.
    assert _list_offset(broker.port, "off", -2) == local_start
    _assert_exact(_read(broker.bootstrap, "off", local_start, 3000), local_start, 3000)


@pytest.mark.parametrize(
    ("settings", "config", "message"),
    [
        ({}, {"remote.storage.enable": "true"}, "Tiered Storage functionality is disabled"),
        (
            TIERED,
            {"remote.storage.enable": "true", "cleanup.policy": "compact"},
            "only supports topics with cleanup.policy=delete",
        ),
        (
            TIERED,
            {"remote.storage.enable": "true", "retention.ms": "1000", "local.retention.ms": "2000"},
            "must not be more than retention.ms",
        ),
        (
            TIERED,
            {
                "remote.storage.enable": "true",
                "retention.bytes": "1000",
                "local.retention.bytes": "-1",
            },
            "must not be -1 as retention.bytes",
        ),
    ],
)
def test_invalid_tiered_topic_configs_are_refused(
    module_broker_factory: Any, settings: dict[str, str], config: dict[str, str], message: str
) -> None:
    broker = module_broker_factory(settings)  # nothing is created: "bad" is free for the next
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (f,) = admin.create_topics([NewTopic("bad", 1, 1, config=config)]).values()
    with pytest.raises(KafkaException) as e:
        f.result(T)
    err = e.value.args[0]
    assert err.code() == 40, err  # INVALID_CONFIG
    assert message in err.str()


def test_broker_refuses_to_start_without_tiered_storage_while_topics_use_it(
    broker_factory: Any,
) -> None:
    broker = broker_factory(TIERED)
    _create(broker.bootstrap, "needs-tiering", TOPIC_CONFIG)
    broker.stop()
    broker.settings["remote.log.storage.system.enable"] = "false"
    with pytest.raises(RuntimeError) as e:
        broker.start()
    assert "exited with 2" in str(e.value)
    assert "delete all topics with the property remote.storage.enable=true" in broker.log_tail()
    assert "needs-tiering" in broker.log_tail()


def test_tiered_storage_metrics_count_copies_reads_and_remote_size(broker_factory: Any) -> None:
    from tests.broker.test_metrics import scrape
    from tests.broker_process import free_port

    metrics_port = free_port()
    broker = broker_factory({**TIERED, "artesian.metrics.port": str(metrics_port)})
    n = 3000
    local_start = _tier(broker, "mt", n)
    copied = sum(p.stat().st_size for p in _remote_objects(broker, ".log"))
    segments = len(_remote_objects(broker, ".log"))
    _assert_exact(_read(broker.bootstrap, "mt", 0, local_start), 0, local_start)
    topic = (("topic", "mt"),)

    def settled() -> bool:
        m = scrape(metrics_port)
        return m.get(("kafka_server_broker_topic_remote_log_size_bytes", topic)) == copied

    _wait(settled, "the remote log size gauge")
    m = scrape(metrics_port)
    assert m[("kafka_server_broker_topic_remote_copy_bytes_total", topic)] == copied
    assert m[("kafka_server_broker_topic_remote_copy_requests_total", topic)] == segments
    assert m.get(("kafka_server_broker_topic_remote_copy_errors_total", topic), 0) == 0
    assert m[("kafka_server_broker_topic_remote_fetch_requests_total", topic)] >= 1
    assert m.get(("kafka_server_broker_topic_remote_fetch_errors_total", topic), 0) == 0
    # Every byte below the local log start came from the remote tier, whole batches only.
    below_local = sum(p.stat().st_size for p in _remote_objects(broker, ".log")[:-1])
    assert m[("kafka_server_broker_topic_remote_fetch_bytes_total", topic)] >= below_local


def test_an_unusable_object_store_url_stops_the_broker(broker_factory: Any, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(RuntimeError) as e:
        broker_factory({**TIERED, "rsm.config.store.url": not_a_dir.as_uri() + "/sub"})
    assert "exited with 2" in str(e.value)
    assert "cannot use the object store named by rsm.config.store.url" in str(e.value)


def test_an_active_segment_past_retention_is_rolled_tiered_and_deleted(
    module_broker_factory: Any,
) -> None:
    """A quiet tiered topic whose records are all past retention: its active segment is
    rolled so it is copied and deleted (Kafka's KAFKA-15047), rather than kept and served
    until segment.ms (7 days) rolls it. Local retention moves it to the remote tier; whole-log
    retention deletes it there too."""
    broker = module_broker_factory(TIERED)
    configs = {
        "quiet-local": {
            "remote.storage.enable": "true",
            "local.retention.ms": "1000",
            "retention.ms": "-1",
        },
        "quiet-total": {"remote.storage.enable": "true", "retention.ms": "86400000"},
    }
    for topic, config in configs.items():
        _create(broker.bootstrap, topic, config)
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        for i in range(200):  # written in 2023: far past both retentions
            p.produce(topic, _value(i), timestamp=BASE_TS + i)
        assert p.flush(T) == 0
    # Local retention: the records leave the local log for the remote tier, still readable.
    _wait(lambda: _list_offset(broker.port, "quiet-local", -4) == 200, "the local log emptied")
    assert _list_offset(broker.port, "quiet-local", -5) == 199  # tiered up to the last
    assert _list_offset(broker.port, "quiet-local", -2) == 0
    _assert_exact(_read(broker.bootstrap, "quiet-local", 0, 200), 0, 200)
    # Whole-log retention: gone from both tiers.
    _wait(lambda: _list_offset(broker.port, "quiet-total", -2) == 200, "the records deleted")
