from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from artesian.storage.log import Log
from artesian.storage.log_config import LogConfig
from artesian.storage.log_manager import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    LogManager,
    StartupAborted,
    parse_partition_dir,
)
from tests.storage.batches import decode_batches, make_batch
from tests.storage.test_log import NOW, offsets_of, open_log, read_all

BATCH = len(make_batch(n=3, value_size=50))
CONFIG = LogConfig(segment_bytes=BATCH * 4, index_interval_bytes=1)


def fill(path: Path, batches: int) -> list[bytes]:
    """Append and drop the Log without closing it: what a kill -9 leaves (page cache)."""
    log = open_log(path, CONFIG)
    out = []
    for _ in range(batches):
        b = make_batch(n=3, value_size=50)
        log.append_as_leader(b, 1, NOW)
        out.append(bytes(b))
    return out


def all_bytes(log: Log) -> bytes:
    return b"".join(read_all(log, s.base_offset) for s in log.segments if s.size)


def last_log_file(path: Path) -> Path:
    return sorted(path.glob("*.log"))[-1]


def garbage(f: Path) -> None:
    with f.open("ab") as fh:
        fh.write(b"\x00\x00\x00\x00\x00\x00\x00\x63\x00\x00\x01\x00garbage" * 5)


def cut_mid_batch(f: Path) -> None:
    os.truncate(f, f.stat().st_size - BATCH // 2)


def flip_last_batch(f: Path) -> None:
    with f.open("r+b") as fh:
        fh.seek(f.stat().st_size - 5)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))


@pytest.mark.parametrize(
    ("damage", "surviving"),
    [(garbage, 10), (cut_mid_batch, 9), (flip_last_batch, 9), (lambda f: None, 10)],
)
def test_crash_recovery_keeps_every_complete_batch(
    tmp_path: Path, damage: Callable[[Path], None], surviving: int
) -> None:
    d = tmp_path / "t-0"
    written = fill(d, 10)  # segments of 4 batches: [0..11] [12..23] [24..29]
    damage(last_log_file(d))
    log = open_log(d, CONFIG, clean=False, recovery_point=0)
    assert log.log_end_offset == 3 * surviving
    assert all_bytes(log) == b"".join(written[:surviving])
    assert offsets_of(all_bytes(log)) == list(range(3 * surviving))
    assert last_log_file(d).stat().st_size == (surviving - 8) * BATCH
    # The log continues right after the recovered tail.
    info = log.append_as_leader(make_batch(n=1), 1, NOW)
    assert info.first_offset == 3 * surviving
    log.close()


def test_corruption_in_middle_segment_deletes_later_segments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "t-0"
    written = fill(d, 10)
    mid = sorted(d.glob("*.log"))[1]
    with mid.open("r+b") as fh:  # damage the second batch of the middle segment
        fh.seek(BATCH + 70)
        fh.write(b"\xff\xff")
    with caplog.at_level("WARNING", logger="artesian.storage.log"):
        log = open_log(d, CONFIG, clean=False, recovery_point=0)
    # Said once, with what was cut: 3 of the segment's 4 batches, and the last segment.
    assert [r.getMessage() for r in caplog.records] == [
        f"t-0: {3 * BATCH} bytes of torn or corrupt batches at the end of segment 12 (from "
        "offset 15) truncated, and 1 later segment(s) deleted; a follower fetches them again from "
        "its leader"
    ]
    assert log.log_end_offset == 15
    assert [s.base_offset for s in log.segments] == [0, 12]
    assert all_bytes(log) == b"".join(written[:5])
    assert sorted(p.name for p in d.glob("*.log")) == [
        "00000000000000000000.log",
        "00000000000000000012.log",
    ]
    log.close()


def test_recovery_starts_at_recovery_point(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    fill(d, 10)
    # Damage inside the first segment: below the recovery point, so not checked.
    first = sorted(d.glob("*.log"))[0]
    with first.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff")
    log = open_log(d, CONFIG, clean=False, recovery_point=12)
    assert log.log_end_offset == 30
    log.close()


def test_damaged_index_is_rebuilt_on_clean_open(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, CONFIG)
    for _ in range(10):
        log.append_as_leader(make_batch(n=3, value_size=50), 1, NOW)
    expected = all_bytes(log)
    log.close()
    idx = d / "00000000000000000000.index"
    good = idx.read_bytes()
    assert len(good) == 3 * 8  # entries for batches 1..3 (the first append is not indexed)
    idx.write_bytes(good[:-3])  # not a multiple of 8
    (d / "00000000000000000012.index").write_bytes(b"\x00\x00\x00\x05\x7f\x00\x00\x00")
    (d / "00000000000000000024.timeindex").write_bytes(b"\x01" * 24)
    log = open_log(d, CONFIG, clean=True)
    assert all_bytes(log) == expected
    assert log.log_end_offset == 30
    for off in range(30):
        info = log.read(off, BATCH)
        assert info.records is not None
        assert info.records.position == (off // 3 % 4) * BATCH
        assert decode_batches(info.records.read_bytes())[0].base_offset == off // 3 * 3
    assert log.segments[0].offset_index.entries == 3
    log.close()
    assert idx.read_bytes() == good


def test_log_manager_lifecycle(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lm = LogManager(data, LogConfig(segment_bytes=BATCH * 2, file_delete_delay_ms=0))
    lm.startup(NOW)
    a = lm.get_or_create_log("my.topic-with-dash", 3, None, NOW)
    b = lm.get_or_create_log("other", 0, None, NOW)
    assert (data / "my.topic-with-dash-3").is_dir()
    for _ in range(5):
        a.append_as_leader(make_batch(n=3, value_size=50), 0, NOW)
    b.append_as_leader(make_batch(n=1), 0, NOW)
    a.high_watermark = a.log_end_offset
    a.delete_records_before(7)
    lm.shutdown()
    assert (data / CLEAN_SHUTDOWN_FILE).exists()
    assert (data / RECOVERY_POINT_CHECKPOINT).read_text() == (
        "0\n2\nmy.topic-with-dash 3 15\nother 0 1\n"
    )
    assert (data / LOG_START_OFFSET_CHECKPOINT).read_text() == (
        "0\n2\nmy.topic-with-dash 3 7\nother 0 0\n"
    )
    assert (data / "my.topic-with-dash-3" / "leader-epoch-checkpoint").read_text() == "0\n1\n0 7\n"

    lm = LogManager(data, LogConfig(segment_bytes=BATCH * 2, file_delete_delay_ms=0))
    lm.startup(NOW)
    assert not (data / CLEAN_SHUTDOWN_FILE).exists()
    a2 = lm.get_log("my.topic-with-dash", 3)
    assert a2 is not None
    assert (a2.log_start_offset, a2.log_end_offset) == (7, 15)
    lm.update_config("other", LogConfig(retention_ms=1000, file_delete_delay_ms=0))
    b2 = lm.get_log("other", 0)
    assert b2 is not None and b2.config.retention_ms == 1000
    b2.append_as_leader(make_batch(n=1, timestamp=NOW + 5000), 0, NOW + 5000)
    b2.high_watermark = b2.log_end_offset
    assert lm.cleanup_logs(NOW + 6000) == 0  # newest batch of other-0 is NOW + 5000
    assert lm.cleanup_logs(NOW + 6001) == 1  # the active segment: rolled, then deleted
    assert [s.base_offset for s in b2.segments] == [2]
    assert b2.log_start_offset == 2
    assert lm.delete_log("other", 0, NOW)
    assert lm.get_log("other", 0) is None
    assert [p.name.endswith("-delete") for p in data.iterdir() if p.name.startswith("other")] == [
        True
    ]
    assert lm.remove_deleted_logs(NOW) == 1
    assert not [p for p in data.iterdir() if p.name.startswith("other")]
    a2.append_as_leader(make_batch(n=1), 0, NOW)
    assert a2.needs_flush(NOW + 10**19)
    # Crash: no shutdown. Recovery from the checkpointed recovery point keeps everything.
    lm.checkpoint()
    lm = LogManager(data, LogConfig(segment_bytes=BATCH * 2))
    lm.startup(NOW)
    a3 = lm.get_log("my.topic-with-dash", 3)
    assert a3 is not None and a3.log_end_offset == 16
    lm.shutdown()


def test_parse_partition_dir() -> None:
    assert parse_partition_dir("a-b.c-12") == ("a-b.c", 12)
    assert parse_partition_dir("topic") is None
    assert parse_partition_dir("x-1.abc-delete") is None


def test_a_load_asked_to_stop_leaves_everything_as_it_was(tmp_path: Path) -> None:
    """A SIGTERM while the logs load: those opened close again, and neither the checkpoints
    nor the clean-shutdown marker change, so the next start loads every log as before (a
    checkpoint written then would lose the log start offsets of the logs not loaded)."""
    data = tmp_path / "data"
    lm = LogManager(data, CONFIG)
    lm.startup(NOW)
    for p in range(4):
        log = lm.get_or_create_log("t", p, None, NOW)
        for _ in range(p + 1):
            log.append_as_leader(make_batch(n=3, value_size=50), 0, NOW)
        log.high_watermark = log.log_end_offset
    lm.get_log("t", 3).delete_records_before(5)  # type: ignore[union-attr]
    lm.shutdown()
    names = (RECOVERY_POINT_CHECKPOINT, LOG_START_OFFSET_CHECKPOINT, CLEAN_SHUTDOWN_FILE)
    before = {name: (data / name).read_bytes() for name in names}

    answers = iter([False, False, True])
    lm = LogManager(data, CONFIG)
    with pytest.raises(StartupAborted) as aborted:
        lm.startup(NOW, should_stop=lambda: next(answers))
    assert (aborted.value.loaded, aborted.value.total) == (2, 4)
    assert lm.all_logs() == []
    assert {name: (data / name).read_bytes() for name in names} == before

    lm = LogManager(data, CONFIG)
    lm.startup(NOW)
    assert [
        (log.partition, log.log_start_offset, log.log_end_offset)
        for log in sorted(lm.all_logs(), key=lambda log: log.partition)
    ] == [(0, 0, 3), (1, 0, 6), (2, 0, 9), (3, 5, 12)]
    lm.shutdown()
