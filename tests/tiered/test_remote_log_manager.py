"""The RemoteLogManager driven directly, on a real Log and a real object store (a local
directory through obstore): the copy task, local retention after it, remote reads at exact
offsets and byte limits, timestamp lookups, a restart (listing, orphans, a lost local log),
remote retention by size, time and log start offset, corrupt metadata objects, and turning
tiered storage off.

The standard log (``fill``): 13 batches of two records, batch ``i`` holding offsets
``2i, 2i + 1`` with timestamps ``NOW + 100 i`` and ``+ 1``, written by leader epoch 5 up to
batch 4 and epoch 7 from batch 5 (offset 10) on; three batches a segment, so segments
0, 6, 12 and 18 are rolled and 24 (batch 12) is active."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from artesian.broker.metrics import BrokerMetrics
from artesian.storage.errors import OffsetOutOfRangeError
from artesian.storage.log import Log
from artesian.storage.log_config import LogConfig
from artesian.tiered.remote_log_manager import (
    RemoteLogManager,
    RemoteLogManagerConfig,
    RemotePartition,
)
from artesian.tiered.remote_log_segment_metadata import RemoteLogSegmentMetadata
from artesian.tiered.remote_storage_manager import RemoteStorageManager
from tests.storage.batches import decode_batches, make_batch
from tests.storage.test_log import NOW, open_log
from tests.storage.test_transactions import marker, txn_batch

T = TypeVar("T")

TOPIC = "t"
TOPIC_ID = uuid.UUID("00000000-0000-4000-8000-00000000000a")
PREFIX = f"{TOPIC}-0-{TOPIC_ID}"
BATCH = len(make_batch(n=2, value_size=100))
DAY_MS = 86_400_000
A, B = 1000, 2000


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def config(**kw: object) -> LogConfig:
    """Tiered, rolled by hand, every batch but a segment's first indexed, only the active
    segment kept locally, no remote retention unless asked."""
    base: dict[str, object] = {
        "remote_storage_enable": True,
        "segment_bytes": 1 << 24,
        "retention_ms": -1,
        "retention_bytes": -1,
        "local_retention_bytes": 1,
        "index_interval_bytes": 1,
    }
    base.update(kw)
    return LogConfig(**base)


def manager(remote: Path, log: Log, metrics: BrokerMetrics | None = None) -> RemoteLogManager:
    return RemoteLogManager(
        RemoteStorageManager.from_url(remote.as_uri()),
        RemoteLogManagerConfig(broker_id=1),
        metrics if metrics is not None else BrokerMetrics(),
        lambda: [(TOPIC, 0, TOPIC_ID, log)],
    )


def fill(log: Log) -> list[bytes]:
    """The standard log (see the module docstring); returns each batch as stored."""
    out = []
    for i in range(13):
        if i and i % 3 == 0:
            log.roll(NOW)
        b = make_batch(n=2, timestamp=NOW + 100 * i, value_size=100)
        log.append_as_leader(b, 5 if i < 5 else 7, NOW)
        out.append(bytes(b))  # offsets and epoch patched in place: the stored bytes
    log.high_watermark = log.log_end_offset
    return out


def keys(remote: Path) -> list[str]:
    """Every object in the store, as a path relative to it."""
    return sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())


def key(meta: RemoteLogSegmentMetadata, suffix: str) -> str:
    return f"{PREFIX}/{meta.start_offset:020d}-{meta.segment_id}{suffix}"


def starts(st: RemotePartition | None) -> list[tuple[int, int]]:
    assert st is not None
    return [(m.start_offset, m.end_offset) for m in st.segments]


def sample(metrics: BrokerMetrics, name: str) -> float | None:
    value: float | None = metrics.registry.get_sample_value(name, {"topic": TOPIC})
    return value


def state(rlm: RemoteLogManager) -> RemotePartition:
    st = rlm.partition(TOPIC, 0)
    assert st is not None
    return st


async def copied(tmp_path: Path, **kw: object) -> tuple[Log, RemoteLogManager, list[bytes]]:
    """The standard log, flushed, copied (segments 0-18) and deleted locally (all but 24)."""
    log = open_log(tmp_path / "t-0", config(**kw))
    batches = fill(log)
    log.flush()
    rlm = manager(tmp_path / "remote", log)
    await rlm.run_once()
    assert log.highest_offset_in_remote_storage == 23
    assert log.delete_old_segments(NOW) == 4
    assert [s.base_offset for s in log.segments] == [24]
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (0, 24, 26)
    return log, rlm, batches


# -- the copy task ------------------------------------------------------------------------------


def test_run_once_copies_rolled_flushed_segments_then_local_retention_deletes_them(
    tmp_path: Path,
) -> None:
    remote = tmp_path / "remote"
    log = open_log(tmp_path / "t-0", config())
    batches = fill(log)
    metrics = BrokerMetrics()
    rlm = manager(remote, log, metrics)

    async def scenario() -> None:
        await rlm.run_once()  # nothing flushed: nothing may be copied
        assert starts(rlm.partition(TOPIC, 0)) == []
        assert log.highest_offset_in_remote_storage == -1
        assert keys(remote) == []

        log.flush()
        local = {s.base_offset: s for s in log.segments}
        await rlm.run_once()
        st = state(rlm)
        assert starts(st) == [(0, 5), (6, 11), (12, 17), (18, 23)]
        assert log.highest_offset_in_remote_storage == 23
        expected_keys = []
        for j, meta in enumerate(st.segments):
            seg = local[meta.start_offset]
            assert (meta.topic, meta.partition, meta.topic_id) == (TOPIC, 0, TOPIC_ID)
            assert meta.size_in_bytes == 3 * BATCH
            assert meta.max_timestamp == NOW + 100 * (3 * j + 2) + 1
            assert meta.has_txn_index is False
            assert meta.broker_id == 1
            assert abs(meta.event_timestamp_ms - time.time() * 1000) < 60_000
            data = (remote / key(meta, ".log")).read_bytes()
            assert data == b"".join(batches[3 * j : 3 * j + 3])
            assert data == seg.log_path.read_bytes()
            assert (remote / key(meta, ".index")).read_bytes() == seg.offset_index.to_bytes()
            assert seg.offset_index.entries == 2  # batches 2 and 3 of the segment
            assert (remote / key(meta, ".timeindex")).read_bytes() == seg.time_index.to_bytes()
            raw = (remote / key(meta, ".metadata.json")).read_bytes()
            assert RemoteLogSegmentMetadata.from_json(raw) == meta
            assert RemoteLogSegmentMetadata.from_json(raw).to_json() == raw
            doc = json.loads(raw)
            assert (doc["version"], doc["start_offset"], doc["end_offset"]) == (
                1,
                6 * j,
                6 * j + 5,
            )
            expected_keys += [key(meta, s) for s in (".index", ".log", ".metadata.json")]
            expected_keys.append(key(meta, ".timeindex"))
        assert keys(remote) == sorted(expected_keys)  # no .txnindex: no aborted transactions
        # Epoch 5 wrote offsets 0-9, epoch 7 from 10 on.
        assert [m.segment_leader_epochs for m in st.segments] == [
            ((5, 0),),
            ((5, 6), (7, 10)),
            ((7, 12),),
            ((7, 18),),
        ]
        assert sample(metrics, "kafka_server_broker_topic_remote_copy_requests_total") == 4
        assert sample(metrics, "kafka_server_broker_topic_remote_copy_bytes_total") == 12 * BATCH
        assert sample(metrics, "kafka_server_broker_topic_remote_log_size_bytes") == 12 * BATCH

        await rlm.run_once()  # copied once only
        assert keys(remote) == sorted(expected_keys)
        assert sample(metrics, "kafka_server_broker_topic_remote_copy_requests_total") == 4

        assert log.delete_old_segments(NOW) == 4
        assert [s.base_offset for s in log.segments] == [24]
        assert (log.log_start_offset, log.local_log_start_offset) == (0, 24)
        assert starts(st) == [(0, 5), (6, 11), (12, 17), (18, 23)]  # remote ones stay

        log.roll(NOW)
        log.flush()
        await rlm.run_once()
        assert starts(st) == [(0, 5), (6, 11), (12, 17), (18, 23), (24, 25)]
        assert log.highest_offset_in_remote_storage == 25
        assert (remote / key(st.segments[-1], ".log")).read_bytes() == batches[12]

    run(scenario())
    log.close()


def test_has_txn_index_only_for_segments_with_aborted_transactions(
    tmp_path: Path,
) -> None:
    remote = tmp_path / "remote"
    log = open_log(tmp_path / "t-0", config())

    def append(batch: bytearray) -> int:
        info = log.append_as_leader(batch, 3, NOW)
        log.high_watermark = log.log_end_offset
        first: int = info.first_offset
        return first

    assert append(txn_batch(A, 0)) == 0  # A opens a transaction
    assert append(make_batch(n=1)) == 1
    log.roll(NOW)  # [0, 1]
    assert append(make_batch(n=1)) == 2
    assert marker(log, A, commit=False) == 3  # A aborts: segment 2 indexes it
    log.roll(NOW)  # [2, 3]
    assert append(txn_batch(B, 0)) == 4
    assert marker(log, B, commit=True) == 5
    log.roll(NOW)  # [4, 5]
    assert append(make_batch(n=1)) == 6  # active
    rlm = manager(remote, log)

    async def scenario() -> None:
        log.flush()
        await rlm.run_once()
        st = state(rlm)
        assert starts(st) == [(0, 1), (2, 3), (4, 5)]
        assert [m.has_txn_index for m in st.segments] == [False, True, False]
        txn_keys = [k for k in keys(remote) if k.endswith(".txnindex")]
        assert txn_keys == [key(st.segments[1], ".txnindex")]
        txn_data = (remote / txn_keys[0]).read_bytes()
        assert txn_data == log.segments[1].txn_index.to_bytes()
        assert len(txn_data) == 34

        assert log.delete_old_segments(NOW) == 3
        # read_committed from remote segments gets A's aborted transaction, exactly.
        res = await rlm.read(st, 0, 1 << 20, True, True)
        assert [b.base_offset for b in decode_batches(res.records)] == [0, 1]
        assert res.aborted_transactions == [(A, 0)]
        res = await rlm.read(st, 2, 1 << 20, True, True)
        assert res.aborted_transactions == [(A, 0)]
        res = await rlm.read(st, 4, 1 << 20, True, True)
        assert res.aborted_transactions == []
        res = await rlm.read(st, 0, 1 << 20, True, False)
        assert res.aborted_transactions is None

    run(scenario())
    log.close()


def test_copy_leaves_segments_of_an_open_transaction(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    log = open_log(tmp_path / "t-0", config())
    log.append_as_leader(make_batch(n=2), 0, NOW)
    log.roll(NOW)  # [0, 1]
    log.append_as_leader(txn_batch(A, 0), 0, NOW)  # 2, open
    log.roll(NOW)  # [2]
    log.append_as_leader(make_batch(n=2), 0, NOW)
    log.roll(NOW)  # [3, 4]
    log.append_as_leader(make_batch(n=1), 0, NOW)  # active 5
    log.high_watermark = log.log_end_offset
    log.flush()
    rlm = manager(remote, log)

    async def scenario() -> None:
        await rlm.run_once()
        assert starts(state(rlm)) == [(0, 1)]
        assert log.last_stable_offset == 2
        marker(log, A, commit=True)  # 6
        log.flush()
        await rlm.run_once()
        assert starts(state(rlm)) == [(0, 1), (2, 2), (3, 4)]

    run(scenario())
    log.close()


# -- remote reads -------------------------------------------------------------------------------


def test_read_returns_the_exact_batches_from_the_fetch_offset(tmp_path: Path) -> None:
    async def scenario() -> None:
        log, rlm, batches = await copied(tmp_path)
        st = state(rlm)
        for offset in range(24):
            first, seg_end = offset // 2, (offset // 6 + 1) * 3
            res = await rlm.read(st, offset, 1 << 20, True, False)
            # From the batch holding the offset (mid-batch too) to the end of its segment.
            assert res.records == b"".join(batches[first:seg_end]), offset
            assert res.aborted_transactions is None
            decoded = decode_batches(res.records)
            assert decoded[0].base_offset == 2 * first
            assert [r[0] for b in decoded for r in b.records] == list(
                range(2 * first, 6 * (offset // 6) + 6)
            )
        log.close()

    run(scenario())


def _kafka_remote_read(segment: list[bytes], first: int, max_bytes: int, min_one: bool) -> bytes:
    """Kafka's remote read over a segment's batches, from batch ``first``: max_bytes of the
    segment's bytes (a trailing partial batch included), at least the whole first batch with
    min_one_message, nothing when the first batch does not fit without it."""
    data = b"".join(segment[first:])
    head = len(segment[first])
    if min_one:
        return data[: max(max_bytes, head)]
    return data[:max_bytes] if head <= max_bytes else b""


def test_read_honours_max_bytes(tmp_path: Path) -> None:
    async def scenario() -> None:
        log, rlm, batches = await copied(tmp_path)
        st = state(rlm)

        async def read(offset: int, max_bytes: int, min_one: bool) -> bytes:
            return bytes((await rlm.read(st, offset, max_bytes, min_one, False)).records)

        # Offset 7 is in batch 3, the first of segment 6 (batches 3-5).
        assert await read(7, 3 * BATCH, True) == b"".join(batches[3:6])
        # A trailing partial batch, as Kafka sends it (the client drops it).
        assert await read(7, 3 * BATCH - 1, True) == b"".join(batches[3:6])[: 3 * BATCH - 1]
        assert await read(7, 2 * BATCH, True) == b"".join(batches[3:5])
        assert await read(7, BATCH, False) == batches[3]
        assert await read(7, BATCH + 1, False) == b"".join(batches[3:5])[: BATCH + 1]
        # The first batch exceeds max_bytes: whole with min_one_message, else nothing.
        assert await read(7, BATCH - 1, True) == batches[3]
        assert await read(7, 1, True) == batches[3]
        assert await read(7, 0, True) == batches[3]
        assert await read(7, BATCH - 1, False) == b""
        assert await read(7, 0, False) == b""
        assert await read(11, 1 << 30, True) == batches[5]  # never past the segment
        for offset in range(6, 12):
            for max_bytes in (0, 1, BATCH - 1, BATCH, BATCH + 7, 2 * BATCH + 3, 1 << 20):
                for min_one in (True, False):
                    first = offset // 2 - 3
                    want = _kafka_remote_read(batches[3:6], first, max_bytes, min_one)
                    assert await read(offset, max_bytes, min_one) == want
        log.close()

    run(scenario())


def test_read_large_batches_across_fetch_windows(tmp_path: Path) -> None:
    """Batches of 60-200 KB, segments spanning several 4 MiB chunks' worth of reads: every
    offset with several limits gives exactly the bytes Kafka's rule gives."""
    remote = tmp_path / "remote"
    log = open_log(tmp_path / "t-0", config(index_interval_bytes=150_000))
    sizes = [60_000, 200_000, 90_000, 130_000, 170_000, 75_000, 110_000, 190_000, 65_000]
    batches: list[bytes] = []
    segs: list[list[int]] = []  # segments of batches [0-3], [4-7], active [8]
    for i, size in enumerate(sizes):
        if i in (4, 8):
            log.roll(NOW)
        if i in (0, 4):
            segs.append([])
        b = make_batch(n=2, timestamp=NOW + i, value_size=size)
        log.append_as_leader(b, 0, NOW)
        batches.append(bytes(b))
        if i < 8:
            segs[-1].append(i)
    log.high_watermark = log.log_end_offset
    log.flush()
    rlm = manager(remote, log)

    def model(offset: int, max_bytes: int, min_one: bool) -> bytes:
        first = offset // 2
        seg = next(s for s in segs if first in s)
        segment = [batches[i] for i in seg]
        return _kafka_remote_read(segment, seg.index(first), max_bytes, min_one)

    async def scenario() -> None:
        await rlm.run_once()
        st = state(rlm)
        assert starts(st) == [(0, 7), (8, 15)]
        assert log.delete_old_segments(NOW) == 2
        for offset in range(16):
            for max_bytes in (1, 70_000, 200_000, 300_000, 420_000, 1 << 20):
                for min_one in (True, False):
                    res = await rlm.read(st, offset, max_bytes, min_one, False)
                    assert bytes(res.records) == model(offset, max_bytes, min_one), (
                        offset,
                        max_bytes,
                        min_one,
                    )
                    assert len(res.records) <= max_bytes or (
                        min_one and bytes(res.records) == batches[offset // 2]
                    )

    run(scenario())
    log.close()


def test_reads_outside_remote_segments_are_out_of_range(tmp_path: Path) -> None:
    async def scenario() -> None:
        log, rlm, batches = await copied(tmp_path)
        st = state(rlm)
        for offset in (24, 25, 26, 1000, -1):  # local, at/past the LEO, negative
            with pytest.raises(OffsetOutOfRangeError) as e:
                await rlm.read(st, offset, 1 << 20, True, False)
            assert e.value.error_code == 1

        # Below the log start offset (DeleteRecords or remote retention moved it).
        assert log.maybe_increment_log_start_offset(8, NOW) == 8
        for offset in (0, 5, 6, 7):
            with pytest.raises(OffsetOutOfRangeError):
                await rlm.read(st, offset, 1 << 20, True, False)
        res = await rlm.read(st, 8, 1 << 20, True, False)
        assert res.records == b"".join(batches[4:6])
        log.close()

    run(scenario())


# -- timestamps ---------------------------------------------------------------------------------


def test_find_offset_by_timestamp_returns_the_first_record_at_or_after_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        log, rlm, _ = await copied(tmp_path)
        st = state(rlm)
        find = rlm.find_offset_by_timestamp
        assert await find(st, 0) == (0, NOW, 5)
        assert await find(st, NOW) == (0, NOW, 5)
        assert await find(st, NOW + 1) == (1, NOW + 1, 5)
        assert await find(st, NOW + 2) == (2, NOW + 100, 5)
        assert await find(st, NOW + 150) == (4, NOW + 200, 5)
        assert await find(st, NOW + 201) == (5, NOW + 201, 5)
        assert await find(st, NOW + 500) == (10, NOW + 500, 7)  # segment 6's last batch
        assert await find(st, NOW + 502) == (12, NOW + 600, 7)  # next segment
        assert await find(st, NOW + 1101) == (23, NOW + 1101, 7)
        assert await find(st, NOW + 1102) is None  # only the local log has later records
        assert log.fetch_offset_by_timestamp(NOW + 1102) == (24, NOW + 1200, 7)

        assert log.maybe_increment_log_start_offset(9, NOW) == 9
        assert await find(st, NOW) == (9, NOW + 401, 5)  # never below the log start offset
        assert await find(st, NOW + 402) == (10, NOW + 500, 7)
        log.close()

    run(scenario())


# -- restarts -----------------------------------------------------------------------------------


def test_restart_with_a_lost_local_log_continues_after_the_remote_one(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    orphan_stem = f"{PREFIX}/{24:020d}-{uuid.UUID(int=7)}"
    other = f"{TOPIC}-1-{TOPIC_ID}/{0:020d}-{uuid.UUID(int=8)}.log"

    async def scenario() -> None:
        old, _, batches = await copied(tmp_path)
        committed = keys(remote)
        assert len(committed) == 16
        old.close()
        # A copy that crashed before its metadata object, and another partition's object.
        for suffix in (".log", ".index", ".timeindex"):
            (remote / (orphan_stem + suffix)).write_bytes(b"partial")
        (remote / other).parent.mkdir()
        (remote / other).write_bytes(b"not this partition's")

        log = open_log(tmp_path / "fresh" / "t-0", config())  # the disk was lost
        assert (log.log_start_offset, log.log_end_offset) == (0, 0)
        rlm2 = manager(remote, log)
        await rlm2.load()
        st = state(rlm2)
        assert st.loaded
        assert starts(st) == [(0, 5), (6, 11), (12, 17), (18, 23)]
        assert keys(remote) == sorted([*committed, other])  # orphans gone, only ours
        assert log.highest_offset_in_remote_storage == 23
        assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (
            0,
            24,
            24,
        )
        assert [s.base_offset for s in log.segments] == [24]
        assert log.high_watermark == log.recovery_point == 24
        assert log.leader_epoch_cache.entries == [(5, 0), (7, 10)]

        info = log.append_as_leader(make_batch(n=1), 8, NOW)
        assert info.first_offset == 24  # no offset handed out twice
        res = await rlm2.read(st, 7, 1 << 20, True, False)
        assert res.records == b"".join(batches[3:6])
        await rlm2.run_once()  # nothing to copy again
        assert keys(remote) == sorted([*committed, other])
        log.close()

    run(scenario())


def test_restart_with_the_local_log_keeps_it_and_copies_nothing_twice(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    path = tmp_path / "t-0"

    async def scenario() -> None:
        old, _, batches = await copied(tmp_path)
        committed = keys(remote)
        old.close()
        log = Log.open(path, TOPIC, 0, config(), 26, 0, NOW, clean_shutdown=True)
        assert log.highest_offset_in_remote_storage == -1
        rlm = manager(remote, log)
        await rlm.run_once()
        st = state(rlm)
        assert starts(st) == [(0, 5), (6, 11), (12, 17), (18, 23)]
        assert log.highest_offset_in_remote_storage == 23
        assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (
            0,
            24,
            26,
        )
        assert keys(remote) == committed
        log.roll(NOW)
        log.flush()
        await rlm.run_once()
        assert starts(st)[-1] == (24, 25)
        assert (remote / key(st.segments[-1], ".log")).read_bytes() == batches[12]
        log.close()

    run(scenario())


def test_restart_moves_a_stale_log_start_checkpoint_to_the_first_remote_segment(
    tmp_path: Path,
) -> None:
    """Remote retention deleted segment 0, but the broker stopped before checkpointing the
    new log start offset: the listing puts it at the first remote segment."""
    remote = tmp_path / "remote"

    async def scenario() -> None:
        old, rlm, _ = await copied(tmp_path)
        st = state(rlm)
        await rlm.rsm.delete_log_segment_data(st.segments[0])
        old.close()
        log = Log.open(tmp_path / "t-0", TOPIC, 0, config(), 26, 0, NOW, clean_shutdown=True)
        assert log.log_start_offset == 0
        rlm2 = manager(remote, log)
        await rlm2.load()
        assert starts(state(rlm2)) == [(6, 11), (12, 17), (18, 23)]
        assert (log.log_start_offset, log.local_log_start_offset) == (6, 24)
        log.close()

    run(scenario())


def test_restoring_a_lost_local_log_never_moves_the_log_start_offset_back(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        old, _, _ = await copied(tmp_path)
        old.close()
        # The segments were lost; the log start offset checkpoint (20) was not.
        log = Log.open(tmp_path / "fresh", TOPIC, 0, config(), 0, 20, NOW, clean_shutdown=True)
        assert (log.log_start_offset, log.log_end_offset) == (20, 20)
        rlm = manager(tmp_path / "remote", log)
        await rlm.load()
        assert log.log_end_offset == 24
        assert log.log_start_offset == 20
        log.close()

    run(scenario())


# -- remote retention ---------------------------------------------------------------------------


def test_expiration_by_retention_bytes_deletes_the_oldest_remote_segments(
    tmp_path: Path,
) -> None:
    remote = tmp_path / "remote"
    # 4 remote segments of 3 batches and one local-only batch: 13 batches in all.
    log = open_log(tmp_path / "t-0", config(retention_bytes=7 * BATCH))
    fill(log)
    log.flush()
    metrics = BrokerMetrics()
    rlm = manager(remote, log, metrics)

    async def scenario() -> None:
        await rlm.run_once()  # copies, then expires: 13 - 7 = 6 batches, two segments
        st = state(rlm)
        assert starts(st) == [(12, 17), (18, 23)]
        assert log.log_start_offset == 12
        assert [s.base_offset for s in log.segments] == [12, 18, 24]  # below it: gone
        assert log.local_log_start_offset == 12
        assert len(keys(remote)) == 8
        assert all(k.split("/")[1][:20] in (f"{12:020d}", f"{18:020d}") for k in keys(remote))
        assert sample(metrics, "kafka_server_broker_topic_remote_delete_requests_total") == 2
        assert sample(metrics, "kafka_server_broker_topic_remote_log_size_bytes") == 6 * BATCH
        with pytest.raises(OffsetOutOfRangeError):
            await rlm.read(st, 11, 1 << 20, True, False)
        assert (await rlm.find_offset_by_timestamp(st, 0)) == (12, NOW + 600, 7)

        await rlm.run_once()  # 7 batches: within the limit
        assert starts(st) == [(12, 17), (18, 23)]
        assert log.log_start_offset == 12

    run(scenario())
    log.close()


def test_expiration_by_retention_ms_deletes_the_oldest_remote_segments(tmp_path: Path) -> None:
    """Remote retention runs on the wall clock: segments 0 and 6 hold records from NOW (long
    ago), segments 12, 18 and 24 records from a minute ago."""
    remote = tmp_path / "remote"
    log = open_log(tmp_path / "t-0", config(retention_ms=DAY_MS))
    recent = int(time.time() * 1000) - 60_000
    for i in range(13):
        if i and i % 3 == 0:
            log.roll(recent)
        ts = NOW + i if i < 6 else recent + i
        log.append_as_leader(make_batch(n=2, timestamp=ts), 0, recent)
    log.high_watermark = log.log_end_offset
    log.flush()
    assert [s.base_offset for s in log.segments] == [0, 6, 12, 18, 24]
    rlm = manager(remote, log)

    async def scenario() -> None:
        await rlm.run_once()
        st = state(rlm)
        assert starts(st) == [(12, 17), (18, 23)]
        assert log.log_start_offset == 12
        assert [s.base_offset for s in log.segments] == [12, 18, 24]
        assert {k.split("/")[1][:20] for k in keys(remote)} == {f"{12:020d}", f"{18:020d}"}
        await rlm.run_once()
        assert starts(st) == [(12, 17), (18, 23)]

    run(scenario())
    log.close()


def test_copy_disabled_copies_nothing_but_still_expires(tmp_path: Path) -> None:
    async def scenario() -> None:
        log, rlm, _ = await copied(tmp_path)
        st = state(rlm)
        log.update_config(config(remote_log_copy_disable=True, retention_bytes=7 * BATCH))
        log.roll(NOW)
        log.append_as_leader(make_batch(n=2), 7, NOW)
        log.high_watermark = log.log_end_offset
        log.flush()
        assert [seg.base_offset for seg in log.segments] == [24, 26]
        await rlm.run_once()
        # Nothing copied. 14 batches over a limit of 7: remote 0 and 6 go, leaving 8 (without
        # segment 12 too there would be 5).
        assert starts(st) == [(12, 17), (18, 23)]
        assert log.highest_offset_in_remote_storage == 23
        assert log.log_start_offset == 12
        log.close()

    run(scenario())


def test_expiration_deletes_remote_segments_below_the_log_start_offset(tmp_path: Path) -> None:
    async def scenario() -> None:
        log, rlm, _ = await copied(tmp_path)
        st = state(rlm)
        assert log.maybe_increment_log_start_offset(11, NOW) == 11  # DeleteRecords
        await rlm.run_once()
        assert starts(st) == [(6, 11), (12, 17), (18, 23)]  # 6 still holds offset 11
        assert len(keys(tmp_path / "remote")) == 12
        assert log.log_start_offset == 11
        assert log.maybe_increment_log_start_offset(12, NOW) == 12
        await rlm.run_once()
        assert starts(st) == [(12, 17), (18, 23)]
        assert log.log_start_offset == 12
        log.close()

    run(scenario())


# -- corrupt and foreign objects ---------------------------------------------------------------


_GOOD = {
    "version": 1,
    "topic": TOPIC,
    "partition": 0,
    "topic_id": str(TOPIC_ID),
    "segment_id": str(uuid.UUID(int=9)),
    "start_offset": 30,
    "end_offset": 31,
    "max_timestamp": NOW,
    "size_in_bytes": 100,
    "segment_leader_epochs": [[7, 30]],
    "has_txn_index": False,
    "event_timestamp_ms": NOW,
    "broker_id": 1,
}


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b"null",
        json.dumps({**_GOOD, "version": 2}).encode(),
        json.dumps({**_GOOD, "end_offset": 29}).encode(),
        json.dumps({**_GOOD, "topic_id": "not-a-uuid"}).encode(),
        json.dumps({**_GOOD, "start_offset": None}).encode(),
        json.dumps({k: v for k, v in _GOOD.items() if k != "broker_id"}).encode(),
        json.dumps({**_GOOD, "segment_leader_epochs": [[7]]}).encode(),
    ],
    ids=[
        "empty",
        "not-json",
        "not-utf8",
        "list",
        "null",
        "version-2",
        "end-before-start",
        "bad-uuid",
        "null-offset",
        "missing-field",
        "bad-epochs",
    ],
)
def test_corrupt_metadata_object_is_skipped_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    remote = tmp_path / "remote"
    bad = f"{PREFIX}/{30:020d}-{uuid.UUID(int=9)}"

    async def scenario() -> None:
        old, _, _ = await copied(tmp_path)
        old.close()
        (remote / (bad + ".metadata.json")).write_bytes(content)
        (remote / (bad + ".log")).write_bytes(b"x" * 100)
        before = keys(remote)
        log = Log.open(tmp_path / "t-0", TOPIC, 0, config(), 26, 0, NOW, clean_shutdown=True)
        rlm = manager(remote, log)
        with caplog.at_level(logging.WARNING, logger="artesian.tiered"):
            await rlm.run_once()
        st = state(rlm)
        assert st.loaded
        assert starts(st) == [(0, 5), (6, 11), (12, 17), (18, 23)]
        assert log.highest_offset_in_remote_storage == 23
        # Not ours to delete: neither it nor its data object is treated as an orphan.
        assert keys(remote) == before
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert warnings[0].startswith(f"ignoring remote object {bad}.metadata.json: ")
        res = await rlm.read(st, 0, 1 << 20, True, False)
        assert len(decode_batches(res.records)) == 3
        log.close()

    run(scenario())


def test_a_foreign_object_without_a_dot_does_not_stop_the_listing(tmp_path: Path) -> None:
    remote = tmp_path / "remote"

    async def scenario() -> None:
        old, _, _ = await copied(tmp_path)
        old.close()
        (remote / PREFIX / "README").write_bytes(b"left here by someone")
        log = Log.open(tmp_path / "t-0", TOPIC, 0, config(), 26, 0, NOW, clean_shutdown=True)
        rlm = manager(remote, log)
        segments, orphans = await rlm.rsm.list_segments(PREFIX)
        assert [m.start_offset for m in segments] == [0, 6, 12, 18]
        assert orphans == []  # not one of our object names: left alone
        await rlm.run_once()
        assert (remote / PREFIX / "README").read_bytes() == b"left here by someone"
        assert starts(state(rlm)) == [(0, 5), (6, 11), (12, 17), (18, 23)]
        assert log.highest_offset_in_remote_storage == 23
        log.close()

    run(scenario())


def test_a_deeply_nested_metadata_object_is_skipped_too(tmp_path: Path) -> None:
    remote = tmp_path / "remote"

    async def scenario() -> None:
        old, rlm, _ = await copied(tmp_path)
        old.close()
        bad = f"{PREFIX}/{30:020d}-{uuid.UUID(int=9)}.metadata.json"
        (remote / bad).write_bytes(b"[" * 100_000)
        segments, orphans = await rlm.rsm.list_segments(PREFIX)
        assert ([m.start_offset for m in segments], orphans) == ([0, 6, 12, 18], [])

    run(scenario())


# -- turning tiered storage off -----------------------------------------------------------------


def test_disabling_remote_storage_deletes_every_remote_segment(tmp_path: Path) -> None:
    async def scenario() -> None:
        log, rlm, _ = await copied(tmp_path)
        assert log.maybe_increment_log_start_offset(3, NOW) == 3
        log.update_config(config(remote_storage_enable=False, remote_log_delete_on_disable=True))
        await rlm.run_once()
        assert rlm.partition(TOPIC, 0) is None
        assert keys(tmp_path / "remote") == []
        assert log.highest_offset_in_remote_storage == -1
        assert (log.log_start_offset, log.local_log_start_offset) == (24, 24)
        await rlm.run_once()  # not tiered and forgotten: nothing happens
        assert rlm.partition(TOPIC, 0) is None
        log.close()

    run(scenario())


def test_read_of_a_partition_never_listed_loads_it_first(tmp_path: Path) -> None:
    remote = tmp_path / "remote"

    async def scenario() -> None:
        old, _, batches = await copied(tmp_path)
        old.close()
        log = Log.open(tmp_path / "t-0", TOPIC, 0, config(), 26, 0, NOW, clean_shutdown=True)
        rlm = manager(remote, log)
        st = rlm.state_for(TOPIC, 0, TOPIC_ID, log)
        assert not st.loaded
        res = await rlm.read(st, 13, 1 << 20, True, False)
        assert st.loaded
        assert res.records == b"".join(batches[6:9])
        log.close()

    run(scenario())


def test_a_follower_reads_the_leaders_copies_and_leaves_them_and_its_log_alone(
    tmp_path: Path,
) -> None:
    """KIP-392 on a tiered partition: a follower serving a consumer below its local log
    lists the leader's copies read-only. An unfinished copy (the leader's, in progress) is
    not deleted as an orphan, an empty local log is not moved past the remote one, and the
    partition is not taken for one this broker leads. The listing follows the leader's
    copies each round, and is taken again at once when a segment the leader's retention
    deleted since is read."""
    remote = tmp_path / "remote"
    unfinished = f"{PREFIX}/{24:020d}-{uuid.UUID(int=7)}.log"

    async def scenario() -> None:
        leader_log, leader_rlm, batches = await copied(tmp_path)
        (remote / unfinished).write_bytes(b"being copied")
        follower_log = open_log(tmp_path / "follower" / "t-0", config())
        rlm = RemoteLogManager(
            RemoteStorageManager.from_url(remote.as_uri()),
            RemoteLogManagerConfig(broker_id=2),
            BrokerMetrics(),
            lambda: [],
            lambda: [(TOPIC, 0, TOPIC_ID, follower_log)],
        )
        st = rlm.followed_state_for(TOPIC, 0, TOPIC_ID, follower_log)
        res = await rlm.read_as_follower(st, 7, 1 << 20, True, False)
        assert res.records == b"".join(batches[3:6])
        assert (remote / unfinished).exists()
        assert (follower_log.log_start_offset, follower_log.log_end_offset) == (0, 0)
        assert rlm.partition(TOPIC, 0) is None
        assert rlm.followed_state_for(TOPIC, 0, TOPIC_ID, follower_log) is st

        # The leader copies one more segment: the follower's round lists it.
        leader_log.roll(NOW)
        leader_log.append_as_leader(make_batch(n=2, value_size=100), 7, NOW)
        leader_log.high_watermark = leader_log.log_end_offset
        leader_log.flush()
        await leader_rlm.run_once()
        assert starts(leader_rlm.partition(TOPIC, 0))[-1] == (24, 25)
        await rlm.run_once()
        assert starts(st)[-1] == (24, 25)

        # The leader's retention deletes segment 0: reading it lists again, and finds the
        # offset in no copy any more.
        for path in remote.glob(f"{PREFIX}/{0:020d}-*"):
            path.unlink()
        with pytest.raises(OffsetOutOfRangeError):
            await rlm.read_as_follower(st, 1, 1 << 20, True, False)
        assert starts(st) == [(6, 11), (12, 17), (18, 23), (24, 25)]
        res = await rlm.read_as_follower(st, 13, 1 << 20, True, False)
        assert res.records == b"".join(batches[6:9])

        # Once this broker no longer follows it, the listing is dropped.
        rlm._followed = lambda: []
        await rlm.run_once()
        assert rlm.followed_state_for(TOPIC, 0, TOPIC_ID, follower_log) is not st
        follower_log.close()
        leader_log.close()

    run(scenario())


def test_metadata_object_names(tmp_path: Path) -> None:
    async def scenario() -> None:
        log, rlm, _ = await copied(tmp_path)
        names = os.listdir(tmp_path / "remote")
        assert names == [PREFIX]
        st = state(rlm)
        assert st.prefix == PREFIX
        assert st.size_in_bytes == 12 * BATCH
        assert st.segment_for(17) is st.segments[2]
        assert st.segment_for(18) is st.segments[3]
        assert st.segment_for(24) is None
        log.close()

    run(scenario())


def test_a_restart_after_tiering_was_turned_off_deletes_the_remote_objects(
    tmp_path: Path,
) -> None:
    """remote.storage.enable=false with remote.log.delete.on.disable=true, and the broker
    restarted before its task ran: the new manager deletes the objects at start-up."""

    async def scenario() -> None:
        log, _, _ = await copied(tmp_path)
        assert keys(tmp_path / "remote")
        log.update_config(config(remote_storage_enable=False, remote_log_delete_on_disable=True))
        restarted = manager(tmp_path / "remote", log)
        await restarted.load()
        assert keys(tmp_path / "remote") == []
        assert log.log_start_offset == log.local_log_start_offset
        assert log.remote_log_ready
        log.close()

    run(scenario())


def test_a_read_that_gives_up_does_not_cancel_the_download_others_share(tmp_path: Path) -> None:
    """A fetch past remote.fetch.max.wait.ms cancels only its own wait: a second reader of the
    same chunk still gets it, and the chunk is cached for the next fetch."""

    async def scenario() -> None:
        log, rlm, batches = await copied(tmp_path)
        st = state(rlm)
        real = rlm.rsm.fetch_log_segment
        gate = asyncio.Event()
        calls = 0

        async def slow(meta: Any, start: int, end: int) -> Any:
            nonlocal calls
            calls += 1
            await gate.wait()
            return await real(meta, start, end)

        rlm.rsm.fetch_log_segment = slow  # type: ignore[method-assign]
        first = asyncio.ensure_future(rlm.read(st, 0, 1 << 20, True, False))
        second = asyncio.ensure_future(rlm.read(st, 0, 1 << 20, True, False))
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.sleep(0.05)
        gate.set()
        got = await second
        assert bytes(got.records) == b"".join(batches[:3])
        assert first.cancelled()
        again = await rlm.read(st, 0, 1 << 20, True, False)
        assert bytes(again.records) == b"".join(batches[:3])
        assert calls == 1  # one download, shared and then cached
        log.close()

    run(scenario())


def test_a_tiered_log_is_not_ready_until_its_remote_segments_are_listed(tmp_path: Path) -> None:
    """A store that fails at start-up keeps the tiered log unavailable (Produce and Fetch
    answer KAFKA_STORAGE_ERROR) until a later round lists it: a lost local log must not hand
    out offsets the store already holds."""

    async def scenario() -> None:
        log, _, _ = await copied(tmp_path)
        restarted = manager(tmp_path / "remote", log)
        real = restarted.rsm.list_segments

        async def down(prefix: str) -> Any:
            raise ConnectionError("store unreachable")

        restarted.rsm.list_segments = down  # type: ignore[method-assign]
        await restarted.load()
        assert not log.remote_log_ready
        await restarted.run_once()
        assert not log.remote_log_ready
        restarted.rsm.list_segments = real  # type: ignore[method-assign]
        await restarted.run_once()
        assert log.remote_log_ready
        log.close()

    run(scenario())


def test_fetch_quota_skips_remote_reads_until_the_rate_drops(tmp_path: Path) -> None:
    from artesian.tiered.quota import ByteRateQuota

    now = [0.0]

    async def scenario() -> None:
        log, rlm, batches = await copied(tmp_path)
        st = state(rlm)
        first_segment = b"".join(batches[:3])
        rlm.fetch_quota = ByteRateQuota(len(first_segment), lambda: now[0])
        got = await rlm.read(st, 0, 1 << 20, True, False)
        assert bytes(got.records) == first_segment  # a second's worth: allowed
        got = await rlm.read(st, 0, 1 << 20, True, False)
        assert bytes(got.records) == first_segment  # the bucket is empty now, not in debt
        skipped = await rlm.read(st, 0, 1 << 20, True, True)
        assert (bytes(skipped.records), skipped.aborted_transactions) == (b"", [])
        throttled = "kafka_server_remote_log_manager_fetch_throttled_total"
        assert rlm.metrics.registry.get_sample_value(throttled) == 1
        now[0] += 1.0
        got = await rlm.read(st, 0, 1 << 20, True, False)
        assert bytes(got.records) == first_segment
        log.close()

    run(scenario())


def test_copy_quota_makes_copies_wait_and_still_copies_everything(tmp_path: Path) -> None:
    """remote.log.manager.copy.max.bytes.per.second: the first second's worth goes at once,
    the rest waits its turn; every segment still lands, in order."""
    log = open_log(tmp_path / "t-0", config())
    fill(log)
    log.flush()
    segment = log.segments[0].size  # four segments of about this size
    metrics = BrokerMetrics()
    rlm = RemoteLogManager(
        RemoteStorageManager.from_url((tmp_path / "remote").as_uri()),
        RemoteLogManagerConfig(broker_id=1, copy_max_bytes_per_second=8 * segment),
        metrics,
        lambda: [(TOPIC, 0, TOPIC_ID, log)],
    )
    rlm.copy_quota.record(8 * segment + 2 * segment)  # a busy second already: 2 in debt

    async def scenario() -> None:
        await rlm.run_once()
        assert starts(state(rlm)) == [(0, 5), (6, 11), (12, 17), (18, 23)]

    run(scenario())
    waited = metrics.registry.get_sample_value(
        "kafka_server_remote_log_manager_copy_throttle_seconds_total"
    )
    assert waited is not None and waited > 0
    log.close()
