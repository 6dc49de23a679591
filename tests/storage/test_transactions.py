"""Transactions in the storage layer, on real logs: producer transaction state, markers, the
last stable offset, read_committed reads, aborted transaction indexes (across restarts,
crashes and truncation), snapshots, and log compaction of transactional data."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from artesian.protocol.record_codec import (
    EndTransactionMarker,
    decode_end_txn_marker,
    decode_records,
    encode_batch,
)
from artesian.protocol.records import (
    ATTR_CONTROL,
    ATTR_DELETE_HORIZON,
    ATTR_TRANSACTIONAL,
    iter_batches,
    read_batch_header,
)
from artesian.storage.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    TransactionCoordinatorFencedError,
)
from artesian.storage.log import Log
from artesian.storage.log_cleaner import CleanerConfig, LogCleaner
from artesian.storage.log_config import LogConfig
from artesian.storage.log_manager import LogManager
from artesian.storage.producer_state import (
    CorruptSnapshotError,
    ProducerStateEntry,
    decode_snapshot,
    encode_snapshot,
)
from artesian.storage.transaction_index import AbortedTxn
from tests.storage.batches import decode_batches, make_batch
from tests.storage.crashes import clean_and_crash_in_swap
from tests.storage.test_log import NOW, open_log, read_all

A, B = 1000, 2000
TXN_CONTROL = ATTR_TRANSACTIONAL | ATTR_CONTROL


def txn_batch(
    pid: int,
    seq: int,
    n: int = 1,
    epoch: int = 0,
    rows: list[tuple[bytes, bytes]] | None = None,
) -> bytearray:
    if rows is None:
        rows = [(f"{pid}-{seq + i}".encode(), b"v") for i in range(n)]
    return encode_batch(
        [(k, v, NOW, ()) for k, v in rows],
        attributes=ATTR_TRANSACTIONAL,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def append(log: Log, batch: bytearray) -> tuple[int, int]:
    info = log.append_as_leader(batch, 3, NOW)
    log.high_watermark = log.log_end_offset  # one replica: the HW follows the LEO
    return info.first_offset, info.last_offset


def marker(log: Log, pid: int, commit: bool, epoch: int = 0, coordinator_epoch: int = 0) -> int:
    info = log.append_transaction_marker(pid, epoch, commit, coordinator_epoch, 3, NOW)
    log.high_watermark = log.log_end_offset
    assert info.first_offset == info.last_offset and info.records_count == 1
    return info.first_offset


def plain(log: Log, n: int = 1) -> tuple[int, int]:
    return append(log, make_batch(n=n))


def offsets_in(data: bytes) -> list[int]:
    """Every record offset of possibly control batches (the strict decoder skips nothing)."""
    out = []
    for pos, h in iter_batches(data):
        out += [r.offset for r in decode_records(data[pos:], h)]
    return out


def entry(log: Log, pid: int) -> ProducerStateEntry:
    e = log.producer_state.last_entry(pid)
    assert e is not None
    return e


# -- producer transaction state -------------------------------------------------------------


def test_transactional_batches_start_then_continue_a_transaction(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    assert plain(log, 2) == (0, 1)
    assert log.first_unstable_offset is None
    assert append(log, txn_batch(A, 0, n=3)) == (2, 4)
    assert entry(log, A).current_txn_first_offset == 2
    assert log.first_unstable_offset == 2
    assert plain(log) == (5, 5)  # other producers are not held back from writing
    assert append(log, txn_batch(A, 3, n=2)) == (6, 7)
    assert entry(log, A).current_txn_first_offset == 2  # continued, not restarted
    assert log.producer_state.first_unstable_offset() == 2
    assert log.last_stable_offset == 2
    assert log.high_watermark == 8


def test_plain_batch_from_producer_with_open_transaction_is_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, txn_batch(A, 0))
    idem = make_batch(producer_id=A, producer_epoch=0, base_sequence=1)
    with pytest.raises(InvalidTxnStateError) as e:
        log.append_as_leader(idem, 3, NOW)
    assert e.value.error_code == 48
    assert log.log_end_offset == 1
    assert append(log, make_batch(producer_id=B, producer_epoch=0, base_sequence=0)) == (1, 1)
    assert marker(log, A, commit=True) == 2
    # Once committed the same producer may write outside a transaction, sequence continuing.
    assert append(log, make_batch(producer_id=A, producer_epoch=0, base_sequence=1)) == (3, 3)
    assert entry(log, A).current_txn_first_offset is None


def test_coordinator_writes_skip_sequence_checks_but_not_epoch(tmp_path: Path) -> None:
    """TxnOffsetCommit: the group coordinator writes a producer's transactional batches
    without sequence numbers (Kafka's COORDINATOR origin)."""
    log = open_log(tmp_path / "t-0")

    def offsets(epoch: int) -> bytearray:
        return encode_batch(
            [(b"g", b"o", NOW, ())],
            attributes=ATTR_TRANSACTIONAL,
            producer_id=A,
            producer_epoch=epoch,
        )

    client = open_log(tmp_path / "c-0")
    # From a client, a producer id without a sequence is refused (Kafka's INVALID_RECORD).
    with pytest.raises(InvalidRecordError, match="invalid sequence number -1"):
        client.append_as_leader(offsets(1), 3, NOW)
    assert client.log_end_offset == 0
    client.close()
    first = log.append_as_leader(offsets(1), 3, NOW, from_coordinator=True)
    second = log.append_as_leader(offsets(1), 3, NOW, from_coordinator=True)
    assert (first.first_offset, second.first_offset, second.duplicate) == (0, 1, False)
    assert log.first_unstable_offset == 0
    with pytest.raises(InvalidProducerEpochError):
        log.append_as_leader(offsets(0), 3, NOW, from_coordinator=True)
    assert log.append_transaction_marker(A, 1, True, 0, 3, NOW).first_offset == 2
    assert log.first_unstable_offset is None


# -- markers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("commit", "control_type"), [(True, 1), (False, 0)])
def test_marker_is_a_control_batch_with_end_transaction_record(
    tmp_path: Path, commit: bool, control_type: int
) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, txn_batch(A, 0, n=2, epoch=4))
    assert marker(log, A, commit, epoch=4, coordinator_epoch=9) == 2
    assert log.log_end_offset == 3
    assert log.first_unstable_offset is None
    info = log.read(2, 1 << 20)
    assert info.records is not None
    data = info.records.read_bytes()
    h = read_batch_header(data)
    assert (h.base_offset, h.last_offset_delta, h.records_count) == (2, 0, 1)
    assert (h.partition_leader_epoch, h.magic, h.attributes) == (3, 2, TXN_CONTROL)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (A, 4, -1)
    assert (h.base_timestamp, h.max_timestamp) == (NOW, NOW)
    assert len(data) == h.size
    (record,) = decode_records(data, h)  # the CRC is checked by the strict decoder below
    assert decode_batches(data)[0].records == [(2, NOW, record.key, record.value)]
    assert record.key == struct.pack(">hh", 0, control_type)
    assert record.value == struct.pack(">hi", 0, 9)
    assert decode_end_txn_marker(record) == EndTransactionMarker(commit, 9)


def test_marker_epoch_checks(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, txn_batch(A, 0, epoch=1))
    with pytest.raises(InvalidProducerEpochError) as e:
        log.append_transaction_marker(A, 0, False, 0, 3, NOW)
    assert e.value.error_code == 47
    assert marker(log, A, commit=True, epoch=1, coordinator_epoch=5) == 1
    append(log, txn_batch(A, 1, epoch=1))
    with pytest.raises(TransactionCoordinatorFencedError) as f:
        log.append_transaction_marker(A, 1, True, 4, 3, NOW)
    assert f.value.error_code == 52
    assert log.log_end_offset == 3
    assert log.first_unstable_offset == 2  # the refused markers changed nothing
    assert entry(log, A).coordinator_epoch == 5
    # A newer epoch (the coordinator aborting for a re-initialised producer) ends it and bumps
    # the producer: its sequence restarts at 0.
    assert marker(log, A, commit=False, epoch=2, coordinator_epoch=6) == 3
    a = entry(log, A)
    assert (a.producer_epoch, a.coordinator_epoch, a.batches) == (2, 6, [])
    assert log.collect_aborted_transactions(0, 100) == [AbortedTxn(A, 2, 3, 4)]
    with pytest.raises(OutOfOrderSequenceError):
        log.append_as_leader(txn_batch(A, 2, epoch=2), 3, NOW)
    assert append(log, txn_batch(A, 0, epoch=2)) == (4, 4)


def test_marker_without_open_transaction_is_written_and_completes_nothing(
    tmp_path: Path,
) -> None:
    log = open_log(tmp_path / "t-0")
    plain(log)
    assert marker(log, 999, commit=False, epoch=0, coordinator_epoch=2) == 1
    assert log.log_end_offset == 2
    assert log.first_unstable_offset is None
    assert log.last_stable_offset == 2
    assert log.active_segment.txn_index.entries == []
    assert not list((tmp_path / "t-0").glob("*.txnindex"))
    assert offsets_in(read_all(log)) == [0, 1]
    assert entry(log, 999).coordinator_epoch == 2


# -- last stable offset ---------------------------------------------------------------------


def test_last_stable_offset_follows_the_oldest_open_transaction(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    plain(log)  # 0
    assert log.last_stable_offset == 1
    append(log, txn_batch(A, 0))  # 1
    append(log, txn_batch(B, 0, n=2))  # 2-3
    append(log, txn_batch(A, 1))  # 4
    plain(log)  # 5
    assert (log.first_unstable_offset, log.last_stable_offset) == (1, 1)
    marker(log, A, commit=True)  # 6
    assert (log.first_unstable_offset, log.last_stable_offset) == (2, 2)
    append(log, txn_batch(A, 2))  # 7: A's next transaction, behind B's
    assert (log.first_unstable_offset, log.last_stable_offset) == (2, 2)
    marker(log, B, commit=False)  # 8
    assert (log.first_unstable_offset, log.last_stable_offset) == (7, 7)
    marker(log, A, commit=False)  # 9
    assert log.first_unstable_offset is None
    assert log.last_stable_offset == log.high_watermark == 10
    # Without open transactions the LSO is the high watermark, wherever that is.
    log.high_watermark = 4
    assert log.last_stable_offset == 4
    assert log.collect_aborted_transactions(0, 10) == [
        AbortedTxn(B, 2, 8, 7),
        AbortedTxn(A, 7, 9, 10),
    ]


# -- read_committed ---------------------------------------------------------------------------


def test_read_committed_stops_at_lso_and_lists_aborted_transactions(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, txn_batch(A, 0, n=2))  # 0-1
    plain(log)  # 2
    assert marker(log, A, commit=False) == 3
    append(log, txn_batch(B, 0))  # 4: open
    plain(log)  # 5
    lso = log.last_stable_offset
    assert lso == 4
    info = log.read(0, 1 << 20, lso, True, read_committed=True)
    assert info.records is not None
    assert offsets_in(info.records.read_bytes()) == [0, 1, 2, 3]
    assert info.aborted_transactions == [(A, 0)]
    # read_uncommitted: unchanged, up to the HW, no aborted list.
    info = log.read(0, 1 << 20, log.high_watermark, True)
    assert info.records is not None
    assert offsets_in(info.records.read_bytes()) == [0, 1, 2, 3, 4, 5]
    assert info.aborted_transactions is None
    # A fetch inside the aborted transaction, even at its marker, still gets it.
    assert log.read(1, 1 << 20, lso, read_committed=True).aborted_transactions == [(A, 0)]
    at_marker = log.read(3, 1 << 20, lso, read_committed=True)
    assert at_marker.records is not None
    assert offsets_in(at_marker.records.read_bytes()) == [3]
    assert at_marker.aborted_transactions == [(A, 0)]
    at_lso = log.read(4, 1 << 20, lso, read_committed=True)
    assert (at_lso.records, at_lso.aborted_transactions) == (None, [])
    # Without an explicit bound, read_committed reads up to the LSO itself.
    implicit = log.read(0, 1 << 20, read_committed=True)
    assert implicit.records is not None
    assert offsets_in(implicit.records.read_bytes()) == [0, 1, 2, 3]
    marker(log, B, commit=False)  # 6
    info = log.read(2, 1 << 20, log.last_stable_offset, read_committed=True)
    assert info.records is not None
    assert offsets_in(info.records.read_bytes()) == [2, 3, 4, 5, 6]
    assert info.aborted_transactions == [(A, 0), (B, 4)]
    # Past A's marker only B's transaction overlaps.
    assert log.read(4, 1 << 20, 7, read_committed=True).aborted_transactions == [(B, 4)]


def test_read_committed_finds_markers_in_later_segments(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, txn_batch(A, 0))  # 0
    plain(log)  # 1
    log.roll(NOW)
    plain(log)  # 2
    marker(log, A, commit=False)  # 3, in the second segment
    assert [s.base_offset for s in log.segments] == [0, 2]
    assert log.segments[0].txn_index.entries == []
    assert log.segments[1].txn_index.entries == [AbortedTxn(A, 0, 3, 4)]
    info = log.read(0, 1 << 20, log.last_stable_offset, read_committed=True)
    assert info.records is not None
    assert offsets_in(info.records.read_bytes()) == [0, 1]  # one segment per read
    assert info.aborted_transactions == [(A, 0)]


# -- the aborted transaction index ----------------------------------------------------------


def build_two_aborts(log: Log) -> None:
    append(log, txn_batch(A, 0, n=2))  # 0-1
    append(log, txn_batch(B, 0))  # 2
    marker(log, A, commit=False)  # 3: B still open, LSO 2
    plain(log)  # 4
    marker(log, B, commit=False)  # 5: nothing open, LSO 6


TWO_ABORTS = [AbortedTxn(A, 0, 3, 2), AbortedTxn(B, 2, 5, 6)]


def test_txn_index_file_holds_exact_entries_and_survives_reopen(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    build_two_aborts(log)
    assert log.active_segment.txn_index.entries == TWO_ABORTS
    path = d / "00000000000000000000.txnindex"
    assert path.read_bytes() == struct.pack(">hqqqq", 0, A, 0, 3, 2) + struct.pack(
        ">hqqqq", 0, B, 2, 5, 6
    )
    assert log.collect_aborted_transactions(0, 3) == TWO_ABORTS
    assert log.collect_aborted_transactions(4, 5) == [TWO_ABORTS[1]]
    assert log.collect_aborted_transactions(0, 2) == [TWO_ABORTS[0]]
    assert log.collect_aborted_transactions(6, 100) == []
    log.close()
    log = open_log(d)
    assert log.collect_aborted_transactions(0, 100) == TWO_ABORTS
    log.close()


def test_torn_txn_index_is_cut_and_rebuilt(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    build_two_aborts(log)
    log.close()
    path = d / "00000000000000000000.txnindex"
    good = path.read_bytes()
    path.write_bytes(good[:50])  # the second entry half written
    log = open_log(d)
    assert log.collect_aborted_transactions(0, 100) == TWO_ABORTS
    log.close()
    assert path.read_bytes() == good


def crash_log(d: Path, config: LogConfig) -> tuple[list[AbortedTxn], int | None, bytes]:
    """Transactions over three segments, then drop the Log without closing it (a kill -9)."""
    log = open_log(d, config)
    append(log, txn_batch(A, 0, n=2))  # 0-1
    plain(log)  # 2
    log.roll(NOW)
    append(log, txn_batch(B, 0))  # 3
    marker(log, A, commit=False)  # 4: B open, LSO 3
    append(log, txn_batch(A, 0, epoch=1))  # 5: A again, new epoch
    log.roll(NOW)
    marker(log, B, commit=False)  # 6: A open from 5
    append(log, txn_batch(B, 1))  # 7: open
    plain(log)  # 8
    aborted = log.collect_aborted_transactions(0, 100)
    assert aborted == [AbortedTxn(A, 0, 4, 3), AbortedTxn(B, 3, 6, 5)]
    assert log.first_unstable_offset == 5
    return aborted, log.first_unstable_offset, all_bytes(log)


def all_bytes(log: Log) -> bytes:
    return b"".join(read_all(log, s.base_offset) for s in log.segments if s.size)


@pytest.mark.parametrize("remove", ["txnindex", "snapshot", "both"])
def test_unclean_reopen_rebuilds_txn_index_and_open_transactions(
    tmp_path: Path, remove: str
) -> None:
    d = tmp_path / "t-0"
    config = LogConfig(segment_bytes=1 << 20)
    aborted, fuo, data = crash_log(d, config)
    assert sorted(p.name for p in d.glob("*.snapshot")) == [
        "00000000000000000003.snapshot",
        "00000000000000000006.snapshot",
    ]
    if remove in ("txnindex", "both"):
        for p in d.glob("*.txnindex"):
            p.unlink()
    if remove in ("snapshot", "both"):
        for p in d.glob("*.snapshot"):
            p.unlink()
    log = open_log(d, config, clean=False, recovery_point=0)
    assert log.log_end_offset == 9
    assert all_bytes(log) == data
    assert [s.txn_index.entries for s in log.segments] == [[], [aborted[0]], [aborted[1]]]
    assert log.collect_aborted_transactions(0, 100) == aborted
    assert (log.first_unstable_offset, log.last_stable_offset) == (fuo, 5)
    assert entry(log, A).current_txn_first_offset == 5
    assert entry(log, B).current_txn_first_offset == 7
    assert (entry(log, A).producer_epoch, entry(log, B).producer_epoch) == (1, 0)
    # The recovered state carries on: B's sequence continues, its abort is indexed.
    assert append(log, txn_batch(B, 2)) == (9, 9)
    assert marker(log, B, commit=False) == 10
    assert log.active_segment.txn_index.entries == [aborted[1], AbortedTxn(B, 7, 10, 5)]
    log.close()


def test_recovery_from_the_recovery_point_keeps_older_txn_indexes(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    config = LogConfig(segment_bytes=1 << 20)
    aborted, _, _ = crash_log(d, config)
    (d / "00000000000000000006.txnindex").unlink()
    # Only the last segment is recovered; its index is rebuilt from the snapshot at 6.
    log = open_log(d, config, clean=False, recovery_point=6)
    assert log.collect_aborted_transactions(0, 100) == aborted
    assert log.first_unstable_offset == 5
    log.close()


def test_truncate_to_drops_txn_index_entries_and_reopens_transactions(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d)
    build_two_aborts(log)
    assert log.truncate_to(5)  # B's marker goes: B's transaction is open again
    assert log.collect_aborted_transactions(0, 100) == TWO_ABORTS[:1]
    assert (d / "00000000000000000000.txnindex").stat().st_size == 34
    assert log.first_unstable_offset == 2
    assert log.truncate_to(3)  # A's marker goes too
    assert log.collect_aborted_transactions(0, 100) == []
    assert (d / "00000000000000000000.txnindex").stat().st_size == 0
    assert log.first_unstable_offset == 0
    assert entry(log, A).current_txn_first_offset == 0
    assert entry(log, B).current_txn_first_offset == 2
    assert marker(log, B, commit=True) == 3
    assert log.first_unstable_offset == 0
    log.close()
    log = open_log(d)
    assert log.first_unstable_offset == 0
    log.close()


def test_truncate_to_removed_segment_takes_its_txn_index(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, LogConfig(file_delete_delay_ms=0))
    append(log, txn_batch(A, 0))  # 0
    log.roll(NOW)
    marker(log, A, commit=False)  # 1
    assert (d / "00000000000000000001.txnindex").exists()
    log.truncate_to(1)
    assert (d / "00000000000000000001.txnindex.deleted").exists()
    log.remove_deleted_segments(NOW)
    assert not list(d.glob("*.txnindex*"))
    assert log.first_unstable_offset == 0
    log.close()


# -- snapshots and expiration ---------------------------------------------------------------


def test_snapshot_round_trip_with_open_transaction() -> None:
    open_txn = ProducerStateEntry(7, 2, [], NOW, current_txn_first_offset=41, coordinator_epoch=3)
    done = ProducerStateEntry(8, 0, [], NOW, current_txn_first_offset=None, coordinator_epoch=1)
    data = encode_snapshot(42, [open_txn, done])
    assert struct.unpack_from(">h", data, 4) == (2,)
    assert decode_snapshot(data) == (42, {7: open_txn, 8: done})
    v1 = bytearray(data)
    struct.pack_into(">h", v1, 4, 1)
    with pytest.raises(CorruptSnapshotError):
        decode_snapshot(bytes(v1))


def test_open_transaction_survives_clean_restart_and_never_expires(tmp_path: Path) -> None:
    d = tmp_path / "t-0"
    log = open_log(d, LogConfig(segment_bytes=1 << 20))
    plain(log)
    append(log, txn_batch(A, 0, n=2))  # 1-2
    append(log, txn_batch(B, 0))  # 3
    marker(log, B, commit=True)  # 4
    log.close()
    log = open_log(d)
    assert log.first_unstable_offset == 1
    assert entry(log, A).current_txn_first_offset == 1
    assert entry(log, B).coordinator_epoch == 0
    far = NOW + 10 * 86_400_000
    log.producer_state.remove_expired(far)
    assert log.producer_state.last_entry(B) is None
    assert entry(log, A).current_txn_first_offset == 1
    assert marker(log, A, commit=True) == 5
    assert log.first_unstable_offset is None
    log.producer_state.remove_expired(far)
    assert log.producer_state.last_entry(A) is None
    log.close()


def test_first_unstable_offset_not_below_log_start(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, txn_batch(A, 0))  # 0
    plain(log, 3)  # 1-3
    log.delete_records_before(2)
    assert log.first_unstable_offset == 2
    assert log.last_stable_offset == 2
    log.close()


# -- log compaction ---------------------------------------------------------------------------


def compact_config(**kw: object) -> LogConfig:
    base: dict[str, object] = {
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": 0.01,
        "file.delete.delay.ms": 60_000,
    }
    base.update(kw)
    return LogConfig.from_properties(base)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Log, LogCleaner]]:
    config = compact_config()
    lm = LogManager(tmp_path, config)
    lm.startup(NOW)
    log = lm.get_or_create_log("t", 0, config, NOW)
    yield log, LogCleaner(lm, CleanerConfig(io_buffer_size=4096), clock=lambda: NOW)
    for lg in lm.all_logs():
        lg.close()


def put(log: Log, key: bytes, value: bytes) -> int:
    return append(log, encode_batch([(key, value, NOW, ())]))[0]


Shape = tuple[int, int, list[tuple[int, bytes | None, bytes | None]]]


def shape(log: Log) -> list[Shape]:
    """(base offset, attributes, records) of every batch from the log start."""
    out = []
    for seg in log.segments:
        if not seg.size:
            continue
        data = read_all(log, seg.base_offset)
        for pos, h in iter_batches(data):
            recs = [(r.offset, r.key, r.value) for r in decode_records(data[pos:], h)]
            out.append((h.base_offset, h.attributes, recs))
    return out


def test_cleaner_drops_aborted_records_without_shadowing_committed_ones(
    env: tuple[Log, LogCleaner],
) -> None:
    log, cleaner = env
    assert put(log, b"k", b"committed") == 0
    assert append(log, txn_batch(A, 0, rows=[(b"k", b"aborted"), (b"x", b"aborted")])) == (1, 2)
    assert append(log, txn_batch(B, 0, rows=[(b"y", b"txn-old")])) == (3, 3)
    assert marker(log, A, commit=False) == 4
    assert marker(log, B, commit=True) == 5
    assert append(log, txn_batch(A, 0, epoch=1, rows=[(b"z", b"1")])) == (6, 6)
    assert marker(log, A, commit=True, epoch=1) == 7
    assert put(log, b"y", b"new") == 8
    log.roll(NOW)
    assert put(log, b"other", b"active") == 9
    stats = cleaner.clean_once()
    assert stats.cleaned
    assert stats.end_offset == 9
    assert shape(log) == [
        (0, 0, [(0, b"k", b"committed")]),  # not shadowed by the aborted k at 1
        # offsets 1-2 aborted: gone (not A's last batch, so no empty header either).
        # y at 3 committed, superseded by y at 8: compacted like any record; the header
        # stays as B's last batch.
        (3, ATTR_TRANSACTIONAL, []),
        # A's abort: nothing of its transaction is left, so it gets a delete horizon. B's
        # commit stays as long as B's batch (header) does.
        (
            4,
            TXN_CONTROL | ATTR_DELETE_HORIZON,
            [(4, b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00")],
        ),
        (5, TXN_CONTROL, [(5, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")]),
        (6, ATTR_TRANSACTIONAL, [(6, b"z", b"1")]),
        (7, TXN_CONTROL, [(7, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")]),
        (8, 0, [(8, b"y", b"new")]),
        (9, 0, [(9, b"other", b"active")]),
    ]
    # The cleaned segment took over the index entry of the abort, which stays with its marker.
    assert log.collect_aborted_transactions(0, 100) == [AbortedTxn(A, 1, 4, 3)]
    assert (log.dir / "00000000000000000000.txnindex").read_bytes() == struct.pack(
        ">hqqqq", 0, A, 1, 4, 3
    )
    assert (log.dir / "00000000000000000000.txnindex.deleted").exists()


@contextlib.contextmanager
def _cleaning(tmp_path: Path, config: LogConfig) -> Iterator[tuple[Log, LogCleaner, list[int]]]:
    """A compacted log and its cleaner, whose clock reads ``now[0]`` (tests move it)."""
    lm = LogManager(tmp_path, config)
    lm.startup(NOW)
    now = [NOW]
    try:
        yield (
            lm.get_or_create_log("t", 0, config, NOW),
            LogCleaner(lm, CleanerConfig(io_buffer_size=4096), clock=lambda: now[0]),
            now,
        )
    finally:
        for lg in lm.all_logs():
            lg.close()


def _assert_no_transaction_open_after_recovery(
    log: Log, config: LogConfig, recovery_point: int, now_ms: int, end: int
) -> None:
    """Close ``log`` and reopen it as after a crash: no transaction is open, the last stable
    offset is the log end."""
    path = log.dir
    log.close()
    reopened = Log.open(path, "t", 0, config, recovery_point, 0, now_ms, clean_shutdown=False)
    try:
        assert reopened.first_unstable_offset is None
        assert reopened.last_stable_offset == end
    finally:
        reopened.close()


def test_markers_go_once_their_transactions_have_nothing_left(tmp_path: Path) -> None:
    """A marker whose transaction has no batch left gets a delete horizon, and the first
    cleaning after it removes the marker and its aborted-transaction entry; markers of
    transactions with data stay. The log then reopens with no transaction open."""
    config = compact_config(**{"delete.retention.ms": 1000})
    with _cleaning(tmp_path, config) as (log, cleaner, now):
        assert append(log, txn_batch(A, 0, rows=[(b"k", b"1")])) == (0, 0)
        assert marker(log, A, commit=True) == 1
        assert append(log, txn_batch(A, 1, rows=[(b"k", b"2")])) == (2, 2)  # A's last
        assert marker(log, A, commit=True) == 3
        assert append(log, txn_batch(B, 0, rows=[(b"j", b"x")])) == (4, 4)
        assert marker(log, B, commit=False) == 5
        assert append(log, txn_batch(B, 1, rows=[(b"m", b"1")])) == (6, 6)  # B's last
        assert marker(log, B, commit=True) == 7
        log.roll(NOW)
        assert put(log, b"active", b"1") == 8
        assert cleaner.clean_once().cleaned
        horizon = TXN_CONTROL | ATTR_DELETE_HORIZON
        commit = (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00")
        abort = (b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00")
        assert shape(log) == [
            # k@0 is superseded by k@2: its batch goes, so its commit waits out a horizon.
            (1, horizon, [(1, *commit)]),
            (2, ATTR_TRANSACTIONAL, [(2, b"k", b"2")]),
            (3, TXN_CONTROL, [(3, *commit)]),
            # B's aborted batch goes; its abort waits out a horizon, with its entry.
            (5, horizon, [(5, *abort)]),
            (6, ATTR_TRANSACTIONAL, [(6, b"m", b"1")]),
            (7, TXN_CONTROL, [(7, *commit)]),
            (8, 0, [(8, b"active", b"1")]),
        ]
        assert log.collect_aborted_transactions(0, 100) == [AbortedTxn(B, 4, 5, 6)]

        # Before the horizon, another cleaning keeps them.
        now[0] = NOW + 999
        assert put(log, b"active", b"2") == 9
        log.roll(now[0])
        assert put(log, b"active", b"3") == 10
        assert cleaner.clean_once().cleaned
        assert [s[0] for s in shape(log)] == [1, 2, 3, 5, 6, 7, 9, 10]

        # After it, they go.
        now[0] = NOW + 2000
        assert put(log, b"active", b"4") == 11
        log.roll(now[0])
        assert put(log, b"active", b"5") == 12
        assert cleaner.clean_once().cleaned
        assert [(s[0], s[1]) for s in shape(log)] == [
            (2, ATTR_TRANSACTIONAL),
            (3, TXN_CONTROL),
            (6, ATTR_TRANSACTIONAL),
            (7, TXN_CONTROL),
            (11, 0),
            (12, 0),
        ]
        assert log.collect_aborted_transactions(0, 100) == []
        _assert_no_transaction_open_after_recovery(log, config, 0, now[0], 13)


def test_a_removed_marker_leaves_no_snapshot_that_reopens_its_transaction(
    tmp_path: Path,
) -> None:
    """A's transaction (offset 0) and its marker (2) sit in different segments, cleaned as
    different groups. Once the marker goes, the snapshots of the rewritten range go too: a
    rebuild that starts from the one at offset 2 (which holds the transaction open) would
    never see it end, and the last stable offset would stay at 0 for good."""
    config = compact_config(**{"delete.retention.ms": 1000, "segment.bytes": 100})
    with _cleaning(tmp_path, config) as (log, cleaner, now):
        assert append(log, txn_batch(A, 0, rows=[(b"k", b"1")])) == (0, 0)
        log.roll(NOW)
        assert put(log, b"k", b"2") == 1  # k@0 goes: nothing of A's transaction is left
        log.roll(NOW)
        assert marker(log, A, commit=True) == 2
        log.roll(NOW)
        plain = encode_batch(
            [(b"z", b"1", NOW, ())], producer_id=A, producer_epoch=0, base_sequence=1
        )
        assert append(log, plain) == (3, 3)  # A's last batch: not transactional
        log.roll(NOW)
        assert put(log, b"active", b"1") == 4
        assert 2 in log.producer_state.snapshot_offsets()
        assert cleaner.clean_once().cleaned  # the marker gets its horizon
        now[0] = NOW + 2000
        log.roll(now[0])
        assert put(log, b"active", b"2") == 5
        assert cleaner.clean_once().cleaned  # ... and goes
        assert [s[0] for s in shape(log)] == [1, 3, 4, 5]
        assert [o for o in log.producer_state.snapshot_offsets() if o < 4] == []
        # Recovery from offset 2 (the emptied segment of the marker) rebuilds the indexes from
        # there, starting from a snapshot at or below it if one is left.
        _assert_no_transaction_open_after_recovery(log, config, 2, now[0], 6)


def test_cleaner_keeps_header_of_aborted_last_batch_and_state_after_restart(
    env: tuple[Log, LogCleaner],
) -> None:
    log, cleaner = env
    assert put(log, b"k", b"1") == 0
    assert append(log, txn_batch(A, 0, rows=[(b"k", b"2")])) == (1, 1)
    assert marker(log, A, commit=False) == 2
    log.roll(NOW)
    put(log, b"active", b"x")
    assert cleaner.clean_once().cleaned
    # A's only data batch is its last: its header stays, without records.
    assert shape(log)[:3] == [
        (0, 0, [(0, b"k", b"1")]),
        (1, ATTR_TRANSACTIONAL, []),
        (2, TXN_CONTROL, [(2, b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00")]),
    ]
    path = log.dir
    log.close()
    reopened = Log.open(path, "t", 0, compact_config(), 0, 0, NOW, clean_shutdown=False)
    try:
        assert reopened.first_unstable_offset is None
        assert reopened.collect_aborted_transactions(0, 100) == [AbortedTxn(A, 1, 2, 3)]
        assert reopened.producer_state.last_entry(A) is not None
    finally:
        reopened.close()


def test_cleaner_never_cleans_at_or_after_first_unstable_offset(
    env: tuple[Log, LogCleaner],
) -> None:
    log, cleaner = env
    put(log, b"k", b"old")  # 0
    log.roll(NOW)
    put(log, b"j", b"1")  # 1
    append(log, txn_batch(A, 0, rows=[(b"t", b"open")]))  # 2: open transaction
    log.roll(NOW)
    put(log, b"k", b"new")  # 3: would make k@0 obsolete
    put(log, b"j", b"2")  # 4: would make j@1 obsolete
    log.roll(NOW)
    put(log, b"active", b"x")  # 5
    assert log.last_stable_offset == 2
    stats = cleaner.clean_once()
    # The dirty section ends at the segment holding the first unstable offset.
    assert stats.end_offset == 1
    assert [r for s in shape(log) for r in s[2]] == [
        (0, b"k", b"old"),
        (1, b"j", b"1"),
        (2, b"t", b"open"),
        (3, b"k", b"new"),
        (4, b"j", b"2"),
        (5, b"active", b"x"),
    ]
    marker(log, A, commit=True)  # 6: once committed, everything below the active segment
    log.roll(NOW)
    put(log, b"active", b"y")
    assert cleaner.clean_once().cleaned
    assert [r for s in shape(log) for r in s[2]] == [
        (2, b"t", b"open"),
        (3, b"k", b"new"),
        (4, b"j", b"2"),
        (5, b"active", b"x"),
        (6, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00"),
        (7, b"active", b"y"),
    ]


def test_txn_index_follows_a_crashed_swap(tmp_path: Path) -> None:
    """A ``.swap`` segment left by a crash is completed with its carried-over index."""
    config = compact_config()
    lm = LogManager(tmp_path, config)
    log = lm.get_or_create_log("t", 0, config, NOW)
    put(log, b"k", b"1")
    append(log, txn_batch(A, 0, rows=[(b"k", b"2")]))
    marker(log, A, commit=False)
    put(log, b"k", b"3")
    log.roll(NOW)
    put(log, b"z", b"active")
    cleaner = LogCleaner(lm, CleanerConfig(), clock=lambda: NOW)
    # Die right after the log's .swap is renamed to its final name.
    clean_and_crash_in_swap(log, cleaner, lambda dst, _n: dst.endswith(".log"), after_rename=True)
    d = tmp_path / "t-0"
    assert (d / "00000000000000000000.txnindex.swap").exists()
    reopened = Log.open(d, "t", 0, config, 4, 0, NOW, clean_shutdown=False)
    try:
        assert not [p.name for p in d.iterdir() if p.suffix in (".swap", ".cleaned")]
        assert reopened.collect_aborted_transactions(0, 100) == [AbortedTxn(A, 1, 2, 3)]
        assert [r for s in shape(reopened) for r in s[2]] == [
            (2, b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00"),
            (3, b"k", b"3"),
            (4, b"z", b"active"),
        ]
    finally:
        reopened.close()
