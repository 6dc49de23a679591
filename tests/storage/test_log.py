from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from artesian.storage.errors import OffsetOutOfRangeError, RecordBatchTooLargeError
from artesian.storage.log import Log
from artesian.storage.log_config import LogConfig
from tests.storage.batches import Rec, decode_batches, make_batch

NOW = 1_700_000_000_000


def open_log(path: Path, config: LogConfig | None = None, clean: bool = True, **kw: int) -> Log:
    return Log.open(
        path,
        "t",
        0,
        config or LogConfig(),
        recovery_point=kw.get("recovery_point", 0),
        log_start_offset=kw.get("log_start_offset", 0),
        now_ms=kw.get("now_ms", NOW),
        clean_shutdown=clean,
    )


def append_n(log: Log, count: int, per_batch: int = 3, value_size: int = 10, ts: int = NOW) -> None:
    for _ in range(count):
        log.append_as_leader(make_batch(n=per_batch, timestamp=ts, value_size=value_size), 0, ts)
    log.high_watermark = log.log_end_offset


def read_all(log: Log, start: int = 0) -> bytes:
    info = log.read(start, 1 << 30)
    return info.records.read_bytes() if info.records else b""


def offsets_of(buf: bytes) -> list[int]:
    return [r[0] for b in decode_batches(buf) for r in b.records]


def test_append_assigns_offsets_and_reads_back_exact_bytes(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    b1, b2 = make_batch(n=3), make_batch(n=2)
    i1 = log.append_as_leader(b1, 5, NOW)
    i2 = log.append_as_leader(b2, 5, NOW)
    assert (i1.first_offset, i1.last_offset, i2.first_offset, i2.last_offset) == (0, 2, 3, 4)
    assert log.log_end_offset == 5
    data = read_all(log)
    assert data == bytes(b1) + bytes(b2)  # patched in place: what we stored is what we return
    batches = decode_batches(data)
    assert [b.base_offset for b in batches] == [0, 3]
    assert [b.leader_epoch for b in batches] == [5, 5]
    assert offsets_of(data) == [0, 1, 2, 3, 4]
    # Reading from the middle of a batch returns that whole batch (Kafka semantics).
    assert offsets_of(read_all(log, 4)) == [3, 4]
    assert log.read(5, 100).records is None
    with pytest.raises(OffsetOutOfRangeError) as e:
        log.read(6, 100)
    assert e.value.error_code == 1
    assert log.leader_epoch_cache.entries == [(5, 0)]
    log.close()


def test_read_max_bytes_min_one_message_and_isolation(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append_n(log, 5, per_batch=2, value_size=100)
    size = len(make_batch(n=2, value_size=100))
    info = log.read(0, 10, min_one_message=True)
    assert info.records is not None and info.records.size == size
    info = log.read(0, 10, min_one_message=False)
    assert info.records is not None and info.records.size == 10  # partial batch, as Kafka
    info = log.read(0, size + 5)
    assert info.records is not None and info.records.size == size + 5
    # Isolation at offset 4 (start of the third batch) caps the read at two batches.
    info = log.read(0, 1 << 20, isolation_max_offset=4)
    assert info.records is not None and info.records.size == 2 * size
    assert offsets_of(info.records.read_bytes()) == [0, 1, 2, 3]
    assert log.read(4, 1 << 20, isolation_max_offset=4).records is None
    log.close()


def test_roll_by_size_and_index_lookups(tmp_path: Path) -> None:
    size = len(make_batch(n=1, value_size=200))
    config = LogConfig(segment_bytes=size * 10, index_interval_bytes=size * 2)
    log = open_log(tmp_path / "t-0", config)
    for _ in range(95):
        log.append_as_leader(make_batch(n=1, value_size=200), 0, NOW)
    log.high_watermark = log.log_end_offset
    assert [s.base_offset for s in log.segments] == [10 * i for i in range(10)]
    assert log.size_in_bytes == 95 * size
    for off in (0, 9, 10, 11, 37, 50, 89, 94):
        info = log.read(off, 1)
        assert info.records is not None
        assert offsets_of(info.records.read_bytes()) == [off]
        assert info.fetch_offset_metadata.segment_base_offset == off // 10 * 10
        assert info.records.position == (off % 10) * size
    assert offsets_of(read_all(log, 13)) == list(range(13, 20))  # stops at the segment end
    seg = log.segments[3]
    assert seg.offset_index.entries == 3  # every 2+ batches
    log.close()


def test_roll_by_time(tmp_path: Path) -> None:
    config = LogConfig(segment_ms=1000)
    log = open_log(tmp_path / "t-0", config)
    log.append_as_leader(make_batch(timestamp=NOW), 0, NOW)
    log.append_as_leader(make_batch(timestamp=NOW + 1000), 0, NOW + 1000)
    assert len(log.segments) == 1
    log.append_as_leader(make_batch(timestamp=NOW + 1001), 0, NOW + 1001)
    assert [s.base_offset for s in log.segments] == [0, 2]
    log.close()


def test_too_large_for_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=100))
    with pytest.raises(RecordBatchTooLargeError) as e:
        log.append_as_leader(make_batch(n=5), 0, NOW)
    assert e.value.error_code == 18
    assert log.log_end_offset == 0


def test_retention_by_time_and_bytes(tmp_path: Path) -> None:
    size = len(make_batch(n=1))
    config = LogConfig(segment_bytes=size * 2, retention_ms=10_000, file_delete_delay_ms=500)
    log = open_log(tmp_path / "t-0", config)
    for i in range(6):  # segments [0,1] [2,3] [4,5] with timestamps NOW+i*1000
        log.append_as_leader(make_batch(timestamp=NOW + i * 1000), 0, NOW + i * 1000)
    log.high_watermark = log.log_end_offset
    assert [s.base_offset for s in log.segments] == [0, 2, 4]
    assert log.delete_old_segments(NOW + 11_000) == 0  # newest of seg 0 is NOW+1000
    assert log.delete_old_segments(NOW + 11_001) == 1
    assert log.log_start_offset == 2
    assert sorted(os.listdir(tmp_path / "t-0")).count("00000000000000000000.log.deleted") == 1
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1, 100)
    assert log.remove_deleted_segments(NOW + 11_400) == 0
    assert log.remove_deleted_segments(NOW + 11_501) == 1
    assert not any(n.startswith("00000000000000000000") for n in os.listdir(tmp_path / "t-0"))
    # Everything expired: the active segment goes too, after a roll to an empty one.
    assert log.delete_old_segments(NOW + 100_000) == 2
    assert [s.base_offset for s in log.segments] == [6]
    assert (log.log_start_offset, log.log_end_offset) == (6, 6)
    log.append_as_leader(make_batch(timestamp=NOW + 100_000), 0, NOW + 100_000)
    assert log.log_end_offset == 7
    log.close()

    config = LogConfig(segment_bytes=size * 2, retention_bytes=size * 3, retention_ms=-1)
    log = open_log(tmp_path / "t-1", config)
    for _ in range(7):
        log.append_as_leader(make_batch(), 0, NOW)
    log.high_watermark = log.log_end_offset
    # 7 batches in [2,2,2,1]: deleting whole segments while the rest stays >= 3 batches.
    assert log.delete_old_segments(NOW) == 2
    assert [s.base_offset for s in log.segments] == [4, 6]
    assert log.size_in_bytes == 3 * size
    log.close()


def test_retention_only_with_delete_policy(tmp_path: Path) -> None:
    size = len(make_batch(n=1))
    config = LogConfig(segment_bytes=size, retention_ms=1, cleanup_policy=("compact",))
    log = open_log(tmp_path / "t-0", config)
    append_n(log, 3, per_batch=1)
    assert log.delete_old_segments(NOW + 10**9) == 0
    log.close()


def test_delete_records(tmp_path: Path) -> None:
    size = len(make_batch(n=2))
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=size * 2))
    append_n(log, 5, per_batch=2)  # segments at 0, 4, 8
    log.high_watermark = 9
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(10)
    assert log.delete_records_before(5) == 5
    assert [s.base_offset for s in log.segments] == [4, 8]
    assert offsets_of(read_all(log, 5)) == [4, 5, 6, 7]  # whole batch holding 5
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 100)
    assert log.fetch_offset_by_timestamp(-2) == (5, -1, 0)
    assert log.delete_records_before(-1) == 9
    assert [s.base_offset for s in log.segments] == [8]
    log.close()
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=size * 2), log_start_offset=9)
    assert (log.log_start_offset, log.log_end_offset) == (9, 10)
    log.close()


def test_max_timestamp_below_log_start_keeps_its_batch_epoch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append_as_leader(make_batch(n=2, timestamp=NOW + 1000), 3, NOW)  # offsets 0-1, epoch 3
    log.append_as_leader(make_batch(n=2, timestamp=NOW), 4, NOW)  # offsets 2-3, epoch 4
    log.high_watermark = log.log_end_offset
    assert log.delete_records_before(2) == 2
    assert log.leader_epoch_cache.entries == [(4, 2)]
    # Kafka still answers -3 with the record at offset 1, and takes the epoch from its batch.
    assert log.fetch_offset_by_timestamp(-3) == (1, NOW + 1001, 3)
    log.close()


def test_reopen_after_clean_close(tmp_path: Path) -> None:
    size = len(make_batch(n=2))
    config = LogConfig(segment_bytes=size * 3, index_interval_bytes=1)
    log = open_log(tmp_path / "t-0", config)
    append_n(log, 10, per_batch=2)
    before = read_all(log) + read_all(log, 6) + read_all(log, 12) + read_all(log, 18)
    log.close()
    log = open_log(tmp_path / "t-0", config, clean=True)
    assert log.log_end_offset == 20
    assert [s.base_offset for s in log.segments] == [0, 6, 12, 18]
    after = read_all(log) + read_all(log, 6) + read_all(log, 12) + read_all(log, 18)
    assert after == before
    assert offsets_of(after) == list(range(20))
    assert log.segments[0].offset_index.entries == 2
    assert log.segments[0].max_timestamp == NOW + 1
    log.append_as_leader(make_batch(n=1), 0, NOW)
    assert log.log_end_offset == 21
    log.close()


def test_list_offsets_by_timestamp(tmp_path: Path) -> None:
    size = len(make_batch(n=2))
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=size * 3, index_interval_bytes=1))
    for i in range(10):  # batch i: offsets 2i, 2i+1, timestamps NOW+100i, NOW+100i+1
        log.append_as_leader(make_batch(n=2, timestamp=NOW + 100 * i), i // 4, NOW + 100 * i)
    assert log.fetch_offset_by_timestamp(-1) == (20, -1, 2)
    assert log.fetch_offset_by_timestamp(-2) == (0, -1, 0)
    assert log.fetch_offset_by_timestamp(-4) == (0, -1, 0)
    assert log.fetch_offset_by_timestamp(-3) == (19, NOW + 901, 2)
    # Record level, as Kafka: the first record at or after the timestamp.
    assert log.fetch_offset_by_timestamp(0) == (0, NOW, 0)
    assert log.fetch_offset_by_timestamp(NOW + 1) == (1, NOW + 1, 0)
    assert log.fetch_offset_by_timestamp(NOW + 2) == (2, NOW + 100, 0)
    assert log.fetch_offset_by_timestamp(NOW + 550) == (12, NOW + 600, 1)
    assert log.fetch_offset_by_timestamp(NOW + 901) == (19, NOW + 901, 2)
    assert log.fetch_offset_by_timestamp(NOW + 902) is None
    log.close()


def test_truncate_to(tmp_path: Path) -> None:
    size = len(make_batch(n=2))
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=size * 2))
    for i in range(5):
        log.append_as_leader(make_batch(n=2), i, NOW)
    assert log.truncate_to(6)
    assert log.log_end_offset == 6
    assert [s.base_offset for s in log.segments] == [0, 4]
    assert offsets_of(read_all(log, 4)) == [4, 5]
    assert log.leader_epoch_cache.entries == [(0, 0), (1, 2), (2, 4)]
    info = log.append_as_leader(make_batch(n=1), 7, NOW)
    assert info.first_offset == 6
    assert log.leader_epoch_cache.entries == [(0, 0), (1, 2), (2, 4), (7, 6)]
    assert log.truncate_to(0)
    assert (log.log_start_offset, log.log_end_offset) == (0, 0)
    assert log.append_as_leader(make_batch(n=1), 8, NOW).first_offset == 0
    log.close()


def test_flush_and_recovery_point(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(flush_messages=5, flush_ms=1000))
    append_n(log, 1, per_batch=4)
    assert not log.needs_flush(NOW)
    append_n(log, 1, per_batch=1)
    assert log.needs_flush(NOW)
    log.flush(now_ms=NOW)
    assert log.recovery_point == 5 and log.unflushed_messages == 0
    assert not log.needs_flush(NOW + 5000)
    append_n(log, 1, per_batch=1)
    assert not log.needs_flush(NOW + 999) and log.needs_flush(NOW + 1000)
    log.close()


def test_retention_keeps_segments_without_timestamps_until_their_mtime_expires(
    tmp_path: Path,
) -> None:
    """Batches with timestamp -1 (allowed for CreateTime): Kafka falls back to the file's
    modification time, so retention.ms does not delete them at once."""
    size = len(make_batch(records=[Rec(b"k", b"v", -1)]))
    log = open_log(tmp_path / "t-0", LogConfig(segment_bytes=size, retention_ms=60_000))
    now = int(time.time() * 1000)
    for _ in range(3):
        log.append_as_leader(make_batch(records=[Rec(b"k", b"v", -1)]), 0, now)
    log.high_watermark = log.log_end_offset  # retention only deletes what is committed
    assert len(log.segments) == 3
    assert log.delete_old_segments(now) == 0
    assert log.log_start_offset == 0
    # An hour later the files' modification times are past retention.ms.
    # Kafka rolls an expired active segment and deletes it too.
    assert log.delete_old_segments(now + 3_600_000) == 3
    assert (log.log_start_offset, log.log_end_offset) == (3, 3)
    log.close()


def test_unflushed_messages_follow_the_recovery_point(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(flush_messages=5))
    log.append_as_leader(make_batch(n=3), 0, NOW)
    assert (log.unflushed_messages, log.needs_flush(NOW)) == (3, False)
    log.append_as_leader(make_batch(n=3), 0, NOW)
    assert (log.unflushed_messages, log.needs_flush(NOW)) == (6, True)
    log.flush(up_to_offset=4)
    assert log.unflushed_messages == 2
    log.flush()
    assert (log.unflushed_messages, log.needs_flush(NOW), log.recovery_point) == (0, False, 6)
    log.close()
