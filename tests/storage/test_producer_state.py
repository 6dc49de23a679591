"""Idempotent producer state on a real Log: duplicates, sequence and epoch checks, snapshots,
and recovery after clean and unclean shutdowns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artesian.protocol.records import ATTR_TRANSACTIONAL
from artesian.storage.errors import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
)
from artesian.storage.log import Log
from artesian.storage.log_config import LogConfig
from artesian.storage.producer_state import (
    INT32_MAX,
    MAX_BATCHES_PER_PRODUCER,
    ProducerStateEntry,
    decode_snapshot,
    encode_snapshot,
    snapshot_file_name,
)
from tests.storage.batches import make_batch
from tests.storage.test_log import NOW, offsets_of, open_log, read_all

PID = 4000


def idem(seq: int, n: int = 1, epoch: int = 0, pid: int = PID, ts: int = NOW) -> bytearray:
    return make_batch(n=n, producer_id=pid, producer_epoch=epoch, base_sequence=seq, timestamp=ts)


def append(log: Log, batch: bytearray, now: int = NOW) -> tuple[int, int, bool]:
    info = log.append_as_leader(batch, 0, now)
    return info.first_offset, info.last_offset, info.duplicate


def snapshots(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".snapshot"))


def test_duplicate_returns_original_offsets_and_is_not_appended(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    assert append(log, idem(0, n=3)) == (0, 2, False)
    assert append(log, make_batch(n=2)) == (3, 4, False)  # a plain producer in between
    assert append(log, idem(3, n=2)) == (5, 6, False)
    size = log.size_in_bytes
    # Retries of both batches, even the older one, get their first answer back.
    assert append(log, idem(0, n=3)) == (0, 2, True)
    assert append(log, idem(3, n=2)) == (5, 6, True)
    assert log.log_end_offset == 7
    assert log.size_in_bytes == size
    assert offsets_of(read_all(log)) == list(range(7))
    assert append(log, idem(5)) == (7, 7, False)


def test_only_the_last_five_batches_are_remembered(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    for seq in range(MAX_BATCHES_PER_PRODUCER + 1):
        append(log, idem(seq))
    for seq in range(1, MAX_BATCHES_PER_PRODUCER + 1):
        assert append(log, idem(seq)) == (seq, seq, True)
    # Older than the last five: neither a duplicate nor in sequence.
    with pytest.raises(OutOfOrderSequenceError):
        append(log, idem(0))


def test_sequence_gap_is_rejected_and_nothing_is_written(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, idem(0, n=2))
    with pytest.raises(OutOfOrderSequenceError) as e:
        append(log, idem(3))
    assert e.value.error_code == 45
    assert log.log_end_offset == 2
    assert append(log, idem(2)) == (2, 2, False)


def test_partially_matching_retry_is_out_of_order(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, idem(0, n=3))
    with pytest.raises(OutOfOrderSequenceError):
        append(log, idem(0, n=2))  # same first sequence, different last one


def test_all_batches_are_checked_before_any_is_written(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, idem(0))
    request = idem(1) + idem(2) + idem(4)
    with pytest.raises(OutOfOrderSequenceError):
        log.append_as_leader(request, 0, NOW)
    assert log.log_end_offset == 1
    assert log.producer_state.last_entry(PID) is not None
    assert log.producer_state.producers[PID].last_seq == 0
    info = log.append_as_leader(idem(1) + idem(2) + idem(3), 0, NOW)
    assert (info.first_offset, info.last_offset) == (1, 3)


def test_unknown_producer_accepts_any_sequence(tmp_path: Path) -> None:
    # Kafka 2.5+ (KIP-360): no state (expired, or its batches deleted) is not an error.
    log = open_log(tmp_path / "t-0")
    assert append(log, idem(17)) == (0, 0, False)
    assert append(log, idem(18)) == (1, 1, False)


def test_epoch_fencing(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, idem(0, epoch=3))
    append(log, idem(1, epoch=3))
    with pytest.raises(InvalidProducerEpochError) as e:
        append(log, idem(2, epoch=2))
    assert e.value.error_code == 47
    # A new epoch must start at sequence 0.
    with pytest.raises(OutOfOrderSequenceError):
        append(log, idem(2, epoch=4))
    assert append(log, idem(0, epoch=4)) == (2, 2, False)
    # The old epoch is fenced now, even for what used to be a duplicate.
    with pytest.raises(InvalidProducerEpochError):
        append(log, idem(1, epoch=3))
    assert append(log, idem(1, epoch=4)) == (3, 3, False)


def test_sequence_wraps_after_int32_max(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, idem(INT32_MAX - 1, n=2))  # sequences MAX-1 and MAX
    assert log.producer_state.producers[PID].last_seq == INT32_MAX
    assert append(log, idem(0, n=2)) == (2, 3, False)
    # A batch that wraps in the middle.
    log2 = open_log(tmp_path / "t-1")
    append(log2, idem(INT32_MAX, n=3))  # MAX, 0, 1
    assert log2.producer_state.producers[PID].last_seq == 1
    assert append(log2, idem(INT32_MAX, n=3)) == (0, 2, True)
    assert append(log2, idem(2)) == (3, 3, False)


def test_producers_are_independent(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, idem(0, pid=1))
    append(log, idem(0, pid=2))
    assert append(log, idem(0, pid=1)) == (0, 0, True)
    assert append(log, idem(1, pid=2)) == (2, 2, False)


def test_plain_batch_during_open_transaction_is_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    batch = make_batch(
        producer_id=PID, producer_epoch=0, base_sequence=0, attributes=ATTR_TRANSACTIONAL
    )
    assert append(log, batch) == (0, 0, False)
    with pytest.raises(InvalidTxnStateError) as e:
        log.append_as_leader(idem(1), 0, NOW)
    assert e.value.error_code == 48
    assert log.log_end_offset == 1


def test_snapshot_round_trip() -> None:
    e = ProducerStateEntry(7, 2, [], NOW)
    data = encode_snapshot(42, [e])
    assert decode_snapshot(data) == (42, {7: e})


# --- restarts -----------------------------------------------------------------------------


def fill(log: Log, batches: int, pid: int = PID) -> None:
    for seq in range(batches):
        append(log, idem(seq, pid=pid))


def test_clean_restart_loads_the_snapshot_written_at_close(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path)
    fill(log, 7)
    log.close()
    assert snapshots(path) == [snapshot_file_name(7)]
    log = open_log(path)
    assert append(log, idem(6)) == (6, 6, True)
    assert append(log, idem(2)) == (2, 2, True)
    with pytest.raises(OutOfOrderSequenceError):
        append(log, idem(9))
    assert append(log, idem(7)) == (7, 7, False)


def test_unclean_restart_rebuilds_from_snapshot_and_log(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    batch_size = len(idem(0))
    config = LogConfig(segment_bytes=batch_size * 4, index_interval_bytes=1)
    log = open_log(path, config)
    fill(log, 10)
    fill(log, 3, pid=PID + 1)
    # Rolls wrote snapshots at segment bases; the state after the last one is only in the log.
    assert snapshot_file_name(8) in snapshots(path)
    assert log.log_end_offset == 13
    # Dropped without close: what kill -9 leaves.
    log = open_log(path, config, clean=False)
    assert log.log_end_offset == 13
    assert append(log, idem(9)) == (9, 9, True)
    assert append(log, idem(2, pid=PID + 1)) == (12, 12, True)
    assert append(log, idem(10)) == (13, 13, False)


def test_unclean_restart_without_snapshots_scans_the_whole_log(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path)
    fill(log, 4)
    for name in snapshots(path):
        os.unlink(path / name)
    log = open_log(path, clean=False)
    assert append(log, idem(3)) == (3, 3, True)


def test_corrupt_snapshot_falls_back_to_an_older_one(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path)
    fill(log, 3)
    log.close()
    log = open_log(path)
    fill_more = [idem(s) for s in range(3, 6)]
    for b in fill_more:
        append(log, b)
    log.close()
    assert snapshots(path) == [snapshot_file_name(3), snapshot_file_name(6)]
    (path / snapshot_file_name(6)).write_bytes(b"ARPS garbage")
    log = open_log(path)
    assert snapshots(path) == [snapshot_file_name(3)]
    assert append(log, idem(5)) == (5, 5, True)


def test_snapshot_past_the_log_end_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path)
    fill(log, 5)
    log.close()
    log = open_log(path)
    assert log.truncate_to(3)
    assert snapshots(path) == []
    with pytest.raises(OutOfOrderSequenceError):
        append(log, idem(5))
    assert append(log, idem(3)) == (3, 3, False)


def test_retention_deletes_old_snapshots_but_keeps_the_latest(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    batch_size = len(idem(0))
    config = LogConfig(segment_bytes=batch_size * 2, index_interval_bytes=1)
    log = open_log(path, config)
    fill(log, 9)
    assert snapshots(path) == [snapshot_file_name(o) for o in (2, 4, 6, 8)]
    log.high_watermark = log.log_end_offset
    log.delete_records_before(7, NOW)
    assert snapshots(path) == [snapshot_file_name(o) for o in (6, 8)]
    # Producer state outlives the batches that built it.
    assert append(log, idem(8)) == (8, 8, True)


def test_expired_producers_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "t-0"
    log = Log.open(
        path,
        "t",
        0,
        LogConfig(),
        recovery_point=0,
        log_start_offset=0,
        now_ms=NOW,
        clean_shutdown=True,
        producer_id_expiration_ms=1000,
    )
    fill(log, 2)
    log.delete_old_segments(NOW + 500)
    assert PID in log.producer_state.producers
    log.delete_old_segments(NOW + 1000)
    assert PID not in log.producer_state.producers
    # Unknown again: any sequence is accepted, and the retry is no longer recognised.
    assert append(log, idem(1), now=NOW + 1000) == (2, 2, False)
