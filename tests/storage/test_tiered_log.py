"""The tiered parts of the local log (KIP-405), on real logs: reads below the local log start
offset, local.retention.* bounded by the highest offset in remote storage, which segments the
copy task may take, a checkpointed log start offset below the first local segment, a lost
local log restarted after the remote one, and the log start offset moved by remote retention.

Every segment here is rolled by hand at exact offsets: three one-record batches of the same
size per segment unless a test says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artesian.storage.errors import OffsetMovedToTieredStorageError, OffsetOutOfRangeError
from artesian.storage.log import EARLIEST_LOCAL_TIMESTAMP, EARLIEST_TIMESTAMP, Log
from artesian.storage.log_config import LogConfig
from tests.storage.batches import make_batch
from tests.storage.test_log import NOW, offsets_of, open_log
from tests.storage.test_transactions import marker, txn_batch

BATCH = len(make_batch(n=1, value_size=100))
A = 1000


def tiered(**kw: object) -> LogConfig:
    """Tiered, never rolled by size or time, no retention unless asked."""
    base: dict[str, object] = {
        "remote_storage_enable": True,
        "segment_bytes": 1 << 20,
        "retention_ms": -1,
        "retention_bytes": -1,
    }
    base.update(kw)
    return LogConfig(**base)


def build(log: Log, layout: list[int], epoch: int = 0, ts: int = NOW) -> None:
    """One-record batches of BATCH bytes: ``layout[i]`` of them in segment i, rolling after
    each segment but the last (the active one). The high watermark follows the LEO."""
    for i, count in enumerate(layout):
        for _ in range(count):
            log.append_as_leader(make_batch(n=1, value_size=100, timestamp=ts), epoch, ts)
        if i + 1 < len(layout):
            log.roll(ts)
    log.high_watermark = log.log_end_offset


def bases(log: Log) -> list[int]:
    return [s.base_offset for s in log.segments]


def copyable(log: Log) -> list[tuple[int, int]]:
    return [(seg.base_offset, nxt) for seg, nxt in log.segments_to_copy()]


def local_files(directory: Path, suffix: str = ".log") -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(suffix))


# -- reads below the local log start offset ---------------------------------------------------


def test_offset_moved_to_tiered_storage_is_offset_out_of_range() -> None:
    assert issubclass(OffsetMovedToTieredStorageError, OffsetOutOfRangeError)
    assert OffsetMovedToTieredStorageError.error_code == 1
    assert OffsetMovedToTieredStorageError("x").error_code == 1


def test_reads_below_local_log_start_raise_offset_moved_to_tiered_storage(
    tmp_path: Path,
) -> None:
    log = open_log(tmp_path / "t-0", tiered(local_retention_bytes=1))
    build(log, [3, 3, 3, 1])  # segments 0, 3, 6, active 9; LEO 10
    log.flush()
    log.highest_offset_in_remote_storage = 5
    assert log.delete_old_segments(NOW) == 2
    assert bases(log) == [6, 9]
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (0, 6, 10)

    for off in (0, 1, 2, 3, 5):
        with pytest.raises(OffsetMovedToTieredStorageError) as e:
            log.read(off, 1 << 20)
        assert e.value.error_code == 1
        assert "local log start offset 6" in str(e.value)
    info = log.read(6, 1 << 20)
    assert info.records is not None
    assert offsets_of(info.records.read_bytes()) == [6, 7, 8]  # one segment per read
    assert info.fetch_offset_metadata.segment_base_offset == 6
    assert log.read(10, 1 << 20).records is None  # at the LEO: nothing, no error
    # Past the LEO it is a plain OFFSET_OUT_OF_RANGE, not a tiered read.
    with pytest.raises(OffsetOutOfRangeError) as past:
        log.read(11, 1 << 20)
    assert type(past.value) is OffsetOutOfRangeError

    # ListOffsets: earliest is the log start offset, earliest-local the first local offset.
    assert log.fetch_offset_by_timestamp(EARLIEST_TIMESTAMP) == (0, -1, 0)
    assert log.fetch_offset_by_timestamp(EARLIEST_LOCAL_TIMESTAMP) == (6, -1, 0)
    log.close()


def test_reads_below_log_start_offset_are_out_of_range_not_tiered(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered(local_retention_bytes=1))
    build(log, [3, 3, 3, 1])
    log.flush()
    log.highest_offset_in_remote_storage = 5
    log.delete_old_segments(NOW)
    assert log.maybe_increment_log_start_offset(2, NOW) == 2
    with pytest.raises(OffsetOutOfRangeError) as below:
        log.read(1, 1 << 20)
    assert type(below.value) is OffsetOutOfRangeError
    with pytest.raises(OffsetMovedToTieredStorageError):
        log.read(2, 1 << 20)
    log.close()


def test_a_log_that_is_not_tiered_never_raises_offset_moved(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(retention_ms=-1, local_retention_bytes=1))
    build(log, [3, 3, 1])
    log.flush()
    log.highest_offset_in_remote_storage = 5  # ignored: local.retention.* is for tiered logs
    assert log.delete_old_segments(NOW) == 0
    assert log.delete_records_before(3, NOW) == 3
    assert bases(log) == [3, 6]
    assert log.local_log_start_offset == log.log_start_offset == 3
    with pytest.raises(OffsetOutOfRangeError) as e:
        log.read(0, 1 << 20)
    assert type(e.value) is OffsetOutOfRangeError
    log.close()


# -- local retention ----------------------------------------------------------------------------


def test_local_retention_bytes_deletes_only_segments_in_remote_storage(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered(local_retention_bytes=1))
    build(log, [3, 3, 3, 1])  # segments [0, 2], [3, 5], [6, 8], active [9]
    log.flush()
    assert log.highest_offset_in_remote_storage == -1
    assert log.delete_old_segments(NOW) == 0  # nothing copied yet
    log.highest_offset_in_remote_storage = 1  # segment 0 is only partly in remote storage
    assert log.delete_old_segments(NOW) == 0
    assert bases(log) == [0, 3, 6, 9]

    log.highest_offset_in_remote_storage = 2  # exactly segment 0
    assert log.delete_old_segments(NOW) == 1
    assert bases(log) == [3, 6, 9]
    assert (log.log_start_offset, log.local_log_start_offset) == (0, 3)
    assert local_files(log.dir) == [f"{b:020d}.log" for b in (3, 6, 9)]
    assert local_files(log.dir, ".log.deleted") == [f"{0:020d}.log.deleted"]

    log.highest_offset_in_remote_storage = 7  # segment 3 and part of segment 6
    assert log.delete_old_segments(NOW) == 1
    assert bases(log) == [6, 9]
    assert (log.log_start_offset, log.local_log_start_offset) == (0, 6)
    assert log.size_in_bytes == 4 * BATCH

    log.highest_offset_in_remote_storage = 8
    assert log.delete_old_segments(NOW) == 1
    assert bases(log) == [9]  # the active segment stays: it was never copied
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (0, 9, 10)
    assert log.delete_old_segments(NOW) == 0
    log.close()


def test_local_retention_bytes_keeps_what_fits(tmp_path: Path) -> None:
    # local.retention.bytes = 7 batches: of 10 batches, segment 0 (3 batches) must go and
    # segment 3 would bring the log below the limit, so it stays.
    log = open_log(tmp_path / "t-0", tiered(local_retention_bytes=7 * BATCH))
    build(log, [3, 3, 3, 1])
    log.flush()
    log.highest_offset_in_remote_storage = 8
    assert log.delete_old_segments(NOW) == 1
    assert bases(log) == [3, 6, 9]
    assert (log.log_start_offset, log.local_log_start_offset) == (0, 3)
    log.close()


def test_local_retention_bytes_minus_two_follows_retention_bytes(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered(retention_bytes=4 * BATCH))  # local: -2
    build(log, [3, 3, 3, 1])
    log.flush()
    log.highest_offset_in_remote_storage = 2
    assert log.delete_old_segments(NOW) == 1  # retention.bytes wants two, one is copied
    assert bases(log) == [3, 6, 9]
    log.highest_offset_in_remote_storage = 8
    assert log.delete_old_segments(NOW) == 1
    assert bases(log) == [6, 9]
    assert log.log_start_offset == 0  # remote retention moves it, not local retention
    log.close()


def test_local_retention_ms_deletes_only_segments_in_remote_storage(tmp_path: Path) -> None:
    old, new = NOW - 10_000, NOW
    log = open_log(tmp_path / "t-0", tiered(local_retention_ms=5_000, retention_ms=-1))
    for ts in (old, old, old):
        log.append_as_leader(make_batch(n=2, timestamp=ts), 0, NOW)
    log.roll(NOW)  # [0, 5]
    log.append_as_leader(make_batch(n=2, timestamp=old), 0, NOW)
    log.roll(NOW)  # [6, 7]
    log.append_as_leader(make_batch(n=2, timestamp=new), 0, NOW)
    log.roll(NOW)  # [8, 9], young
    log.append_as_leader(make_batch(n=2, timestamp=old), 0, NOW)  # active [10, 11]
    log.high_watermark = log.log_end_offset
    log.flush()
    assert log.delete_old_segments(NOW) == 0
    log.highest_offset_in_remote_storage = 5
    assert log.delete_old_segments(NOW) == 1
    assert bases(log) == [6, 8, 10]
    log.highest_offset_in_remote_storage = 9
    assert log.delete_old_segments(NOW) == 1  # segment 8 is too young
    assert bases(log) == [8, 10]
    assert (log.log_start_offset, log.local_log_start_offset) == (0, 8)
    log.close()


def test_local_retention_waits_for_the_high_watermark(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered(local_retention_bytes=1))
    build(log, [3, 3, 1])
    log.flush()
    log.high_watermark = 4
    log.highest_offset_in_remote_storage = 5
    assert log.delete_old_segments(NOW) == 1  # segment 3 ends above the HW
    assert bases(log) == [3, 6]
    log.close()


# -- which segments the copy task takes ----------------------------------------------------------


def test_segments_to_copy_stop_at_recovery_point_and_never_take_the_active_one(
    tmp_path: Path,
) -> None:
    log = open_log(tmp_path / "t-0", tiered())
    build(log, [3, 3, 3, 2])  # segments 0, 3, 6, active 9 [9, 10]
    assert log.recovery_point == 0
    assert copyable(log) == []  # nothing flushed
    log.flush(up_to_offset=5)
    assert log.recovery_point == 5
    assert copyable(log) == [(0, 3)]  # segment 3 ends at 5, flushed only up to 4
    log.flush(up_to_offset=6)
    assert copyable(log) == [(0, 3), (3, 6)]
    log.flush()
    assert log.recovery_point == 11
    assert copyable(log) == [(0, 3), (3, 6), (6, 9)]
    seg0 = log.segments[0]
    assert copyable(log)[0] == (0, 3) and log.segments_to_copy()[0][0] is seg0

    log.highest_offset_in_remote_storage = 2
    assert copyable(log) == [(3, 6), (6, 9)]
    log.highest_offset_in_remote_storage = 4  # mid-segment: segment 3 is not copied again
    assert copyable(log) == [(6, 9)]
    log.highest_offset_in_remote_storage = 8
    assert copyable(log) == []
    log.roll(NOW)
    log.flush()
    assert copyable(log) == [(9, 11)]
    log.close()


def test_segments_to_copy_stop_at_the_high_watermark(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered())
    build(log, [3, 3, 3, 1])
    log.flush()
    log.high_watermark = 5
    assert copyable(log) == [(0, 3)]
    log.high_watermark = 6
    assert copyable(log) == [(0, 3), (3, 6)]
    log.close()


def test_segments_to_copy_stop_at_the_last_stable_offset(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered())
    build(log, [3])  # [0, 2]
    log.roll(NOW)
    log.append_as_leader(make_batch(), 0, NOW)  # 3
    log.append_as_leader(txn_batch(A, 0), 0, NOW)  # 4: opens A's transaction
    log.append_as_leader(make_batch(), 0, NOW)  # 5
    log.roll(NOW)
    build(log, [3, 1])  # [6, 8], active [9]
    log.flush()
    assert log.high_watermark == log.recovery_point == 10
    assert log.last_stable_offset == 4
    assert copyable(log) == [(0, 3)]
    marker(log, A, commit=True)  # 10, in the active segment
    log.flush()
    assert log.last_stable_offset == 11
    assert copyable(log) == [(0, 3), (3, 6), (6, 9)]
    log.close()


# -- reopening with a log start offset below the first local segment ----------------------------


def _tiered_log_with_local_start_6(path: Path) -> None:
    log = open_log(path, tiered(local_retention_bytes=1))
    build(log, [3, 3, 3, 1], epoch=4)
    log.flush()
    log.highest_offset_in_remote_storage = 5
    assert log.delete_old_segments(NOW) == 2
    assert (log.log_start_offset, bases(log)) == (0, [6, 9])
    log.close()


def test_reopen_keeps_a_checkpointed_log_start_below_local_segments_when_tiered(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t-0"
    _tiered_log_with_local_start_6(path)
    log = open_log(path, tiered(), log_start_offset=0)
    assert local_files(path, ".deleted") == []  # an interrupted delete finishes at open
    assert bases(log) == [6, 9]
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (0, 6, 10)
    assert log.recovery_point == log.high_watermark == 10
    assert log.highest_offset_in_remote_storage == -1  # the remote log manager sets it
    assert log.leader_epoch_cache.entries == [(4, 0)]
    with pytest.raises(OffsetMovedToTieredStorageError):
        log.read(3, 1 << 20)
    assert log.fetch_offset_by_timestamp(EARLIEST_TIMESTAMP) == (0, -1, 4)
    log.close()

    # A checkpoint inside the local log is kept as it is.
    log = open_log(path, tiered(), log_start_offset=7)
    assert (log.log_start_offset, log.local_log_start_offset) == (7, 7)
    log.close()


def test_reopen_clamps_a_log_start_below_local_segments_when_not_tiered(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    _tiered_log_with_local_start_6(path)
    log = open_log(path, LogConfig(retention_ms=-1), log_start_offset=0)
    assert bases(log) == [6, 9]
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (6, 6, 10)
    assert log.leader_epoch_cache.entries == [(4, 6)]
    with pytest.raises(OffsetOutOfRangeError) as e:
        log.read(3, 1 << 20)
    assert type(e.value) is OffsetOutOfRangeError
    log.close()


def test_reconcile_remote_log_start(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    _tiered_log_with_local_start_6(path)
    log = open_log(path, tiered(), log_start_offset=0)
    log.reconcile_remote_log_start(3)  # remote retention went further than the checkpoint
    assert (log.log_start_offset, log.local_log_start_offset) == (3, 6)
    log.reconcile_remote_log_start(0)  # never moves back
    assert log.log_start_offset == 3
    log.reconcile_remote_log_start(None)  # nothing remote: the local log is all there is
    assert log.log_start_offset == 6
    log.close()


# -- truncate_fully_and_start_at -----------------------------------------------------------------


def test_truncate_fully_and_start_at(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, tiered())
    idem = make_batch(producer_id=A, producer_epoch=0, base_sequence=0)
    log.append_as_leader(idem, 2, NOW)  # 0
    build(log, [2, 3], epoch=2)  # [0, 2], active [3, 5]
    log.flush()
    assert log.producer_state.last_entry(A) is not None

    log.truncate_fully_and_start_at(50, 20, NOW)
    assert bases(log) == [50]
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (20, 50, 50)
    assert (log.high_watermark, log.recovery_point) == (50, 50)
    assert log.size_in_bytes == 0
    assert log.leader_epoch_cache.entries == []
    assert log.producer_state.last_entry(A) is None
    assert local_files(path) == [f"{50:020d}.log"]
    assert local_files(path, ".log.deleted") == [f"{0:020d}.log.deleted", f"{3:020d}.log.deleted"]
    assert log.read(50, 1 << 20).records is None
    with pytest.raises(OffsetMovedToTieredStorageError):
        log.read(20, 1 << 20)
    with pytest.raises(OffsetOutOfRangeError) as below:
        log.read(19, 1 << 20)
    assert type(below.value) is OffsetOutOfRangeError
    assert copyable(log) == []

    info = log.append_as_leader(make_batch(n=2), 3, NOW)
    assert (info.first_offset, info.last_offset, info.log_start_offset) == (50, 51, 20)
    assert log.leader_epoch_cache.entries == [(3, 50)]
    log.high_watermark = log.log_end_offset
    data = log.read(50, 1 << 20).records
    assert data is not None and offsets_of(data.read_bytes()) == [50, 51]
    log.close()

    log = open_log(path, tiered(), log_start_offset=20)
    assert bases(log) == [50]
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (20, 50, 52)
    log.close()


def test_truncate_fully_and_start_at_caps_the_log_start_at_the_new_end(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered())
    build(log, [3])
    log.truncate_fully_and_start_at(8, 12, NOW)
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (8, 8, 8)
    log.close()


# -- the log start offset moved by remote retention -----------------------------------------------


def test_maybe_increment_log_start_offset_deletes_local_segments_below_it(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered())
    build(log, [3, 3, 3, 1], epoch=1)
    log.leader_epoch_cache.assign(2, 10)
    log.flush()
    assert log.maybe_increment_log_start_offset(2, NOW) == 2
    assert bases(log) == [0, 3, 6, 9]  # segment 0 still holds offset 2
    assert log.maybe_increment_log_start_offset(4, NOW) == 4
    assert bases(log) == [3, 6, 9]
    assert (log.log_start_offset, log.local_log_start_offset) == (4, 4)
    assert log.leader_epoch_cache.entries == [(1, 4), (2, 10)]
    assert log.maybe_increment_log_start_offset(1, NOW) == 4  # never backwards
    assert log.maybe_increment_log_start_offset(6, NOW) == 6
    assert bases(log) == [6, 9]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(5, 1 << 20)

    log.high_watermark = 9
    assert log.maybe_increment_log_start_offset(100, NOW) == 9  # capped by the HW
    assert bases(log) == [9]
    assert (log.log_start_offset, log.local_log_start_offset, log.log_end_offset) == (9, 9, 10)
    info = log.read(9, 1 << 20)
    assert info.records is not None and offsets_of(info.records.read_bytes()) == [9]
    log.close()


def test_maybe_increment_log_start_offset_below_local_log_deletes_nothing(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", tiered(local_retention_bytes=1))
    build(log, [3, 3, 3, 1])
    log.flush()
    log.highest_offset_in_remote_storage = 5
    log.delete_old_segments(NOW)
    assert bases(log) == [6, 9]
    assert log.maybe_increment_log_start_offset(3, NOW) == 3
    assert bases(log) == [6, 9]
    assert (log.log_start_offset, log.local_log_start_offset) == (3, 6)
    assert log.maybe_increment_log_start_offset(9, NOW) == 9
    assert bases(log) == [9]
    assert (log.log_start_offset, log.local_log_start_offset) == (9, 9)
    log.close()


def test_with_copying_disabled_local_retention_follows_retention_bytes(tmp_path: Path) -> None:
    """remote.log.copy.disable: nothing new reaches remote storage, so local retention applies
    retention.* as for a plain log (local.retention.* no longer matter, as in Kafka) without
    waiting for copies, and the log start offset follows it (Kafka's incrementStartOffset when
    copying is off): no hole between remote and local data."""
    config = tiered(
        remote_log_copy_disable=True, retention_bytes=4 * BATCH, local_retention_bytes=1
    )
    log = open_log(tmp_path / "t-0", config)
    build(log, [3, 3, 3, 1])  # segments 0, 3, 6, active 9
    log.flush()
    assert log.highest_offset_in_remote_storage == -1
    # 10 batches, at most 4 kept: the first two segments go, the third would leave 1.
    assert log.delete_old_segments(NOW) == 2
    assert bases(log) == [6, 9]
    assert (log.log_start_offset, log.local_log_start_offset) == (6, 6)
    log.close()
