"""Log compaction on real logs: what survives, offsets, tombstones, thresholds, codecs, reads
while cleaning, and crash consistency of the segment swap."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from artesian.protocol.record_codec import decode_records, encode_batch
from artesian.protocol.records import (
    ATTR_DELETE_HORIZON,
    CompressionType,
    batch_crc_ok,
    iter_batches,
)
from artesian.storage.errors import InvalidRecordError
from artesian.storage.log import Log
from artesian.storage.log_cleaner import CLEANER_OFFSET_CHECKPOINT, CleanerConfig, LogCleaner
from artesian.storage.log_config import LogConfig
from artesian.storage.log_manager import LogManager, read_offset_checkpoint
from tests.storage.batches import Rec, make_batch
from tests.storage.crashes import clean_and_crash_in_swap

NOW = 1_700_000_000_000
DAY = 86_400_000

Row = tuple[int, bytes | None, bytes | None]  # offset, key, value


@dataclass
class Batch:
    base_offset: int
    attributes: int
    records: list[tuple[int, int, bytes | None, bytes | None]]  # offset, ts, key, value


def decode_batches(data: bytes) -> list[Batch]:
    """Cleaned batches may hold fewer records than lastOffsetDelta + 1 (Kafka keeps the last
    offset), so tests.storage.batches' strict decoder does not apply."""
    out = []
    for pos, h in iter_batches(data):
        assert batch_crc_ok(data, pos, h)
        recs = [(r.offset, r.timestamp, r.key, r.value) for r in decode_records(data[pos:], h)]
        out.append(Batch(h.base_offset, h.attributes, recs))
    return out


def compact_config(**kw: object) -> LogConfig:
    base: dict[str, object] = {
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": 0.01,
        "file.delete.delay.ms": 60_000,
    }
    base.update(kw)
    return LogConfig.from_properties(base)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[LogManager, Log, LogCleaner]]:
    config = compact_config()
    lm = LogManager(tmp_path, config)
    lm.startup(NOW)
    log = lm.get_or_create_log("t", 0, config, NOW)
    cleaner = LogCleaner(lm, CleanerConfig(io_buffer_size=4096), clock=lambda: NOW)
    yield lm, log, cleaner
    for lg in lm.all_logs():
        lg.close()


def produce(
    log: Log, rows: list[tuple[bytes | None, bytes | None]], ts: int = NOW, **kw: int
) -> None:
    log.append_as_leader(make_batch([Rec(k, v, ts) for k, v in rows], **kw), 0, ts)
    log.high_watermark = log.log_end_offset


def read_everything(log: Log) -> bytes:
    """All batches from the log start (a read returns one segment at most)."""
    out = bytearray()
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        info = log.read(offset, 1 << 30)
        if info.records is None:
            break
        data = info.records.read_bytes()
        pos = 0
        while pos + 61 <= len(data):  # the next offset is past the last batch's last offset
            offset = int.from_bytes(data[pos : pos + 8], "big")
            offset += int.from_bytes(data[pos + 23 : pos + 27], "big") + 1
            pos += int.from_bytes(data[pos + 8 : pos + 12], "big") + 12
        out += data
    return bytes(out)


def rows_of(log: Log) -> list[Row]:
    data = read_everything(log)
    return [(o, k, v) for b in decode_batches(data) for o, _, k, v in b.records]


def latest_per_key(rows: list[Row]) -> list[Row]:
    last = {k: o for o, k, _ in rows}
    return [r for r in rows if last[r[1]] == r[0]]


def fill(log: Log, rounds: int = 3, keys: int = 5) -> None:
    """``rounds`` segments, each updating every key once."""
    for r in range(rounds):
        produce(log, [(f"k{i}".encode(), f"v{r}-{i}".encode()) for i in range(keys)])
        log.roll(NOW)


def test_latest_value_per_key_survives_with_original_offsets(
    env: tuple[LogManager, Log, LogCleaner],
) -> None:
    lm, log, cleaner = env
    fill(log)
    produce(log, [(b"k0", b"active")])  # the active segment: never cleaned
    before = rows_of(log)
    active_bytes = os.pread(log.active_segment.fd, 1 << 20, 0)
    stats = cleaner.clean_once()
    assert stats.cleaned and stats.end_offset == 15
    after = rows_of(log)
    # Offsets 10..14 (round 2) are each key's latest in the cleaned part; the active row stays.
    assert after == [r for r in before if r[0] >= 10]
    assert os.pread(log.active_segment.fd, 1 << 20, 0) == active_bytes
    assert log.log_end_offset == 16
    assert read_offset_checkpoint(lm.data_dir / CLEANER_OFFSET_CHECKPOINT) == {("t", 0): 15}
    # Nothing new is dirty: the next round has nothing to do.
    assert not cleaner.clean_once().cleaned


def test_partially_retained_batch_keeps_offsets_and_last_offset_delta(
    env: tuple[LogManager, Log, LogCleaner],
) -> None:
    _, log, cleaner = env
    produce(log, [(b"a", b"1"), (b"b", b"1"), (b"c", b"1")])
    produce(log, [(b"b", b"2")])
    log.roll(NOW)
    produce(log, [(b"x", b"y")])
    assert cleaner.clean_once().cleaned
    data = read_everything(log)
    batches = decode_batches(data)
    assert [(o, k, v) for o, _, k, v in batches[0].records] == [(0, b"a", b"1"), (2, b"c", b"1")]
    assert batches[0].base_offset == 0
    lod = int.from_bytes(data[23:27], "big")
    assert lod == 2  # Kafka keeps the original last offset
    assert [b.base_offset for b in batches] == [0, 3, 4]


def test_tombstones_removed_only_after_delete_retention(
    env: tuple[LogManager, Log, LogCleaner],
) -> None:
    _, log, cleaner = env
    produce(log, [(b"a", b"1"), (b"b", b"1")])
    produce(log, [(b"a", None)])
    log.roll(NOW)
    produce(log, [(b"z", b"active")])
    assert cleaner.clean_once(NOW).cleaned
    assert rows_of(log) == [(1, b"b", b"1"), (2, b"a", None), (3, b"z", b"active")]
    info = log.read(2, 1 << 20)
    assert info.records is not None
    tomb = decode_batches(info.records.read_bytes())[0]
    assert tomb.attributes & ATTR_DELETE_HORIZON  # the horizon is now + delete.retention.ms

    def dirty_again(ts: int) -> None:
        produce(log, [(b"z", str(ts).encode())], ts=NOW)
        log.roll(ts)

    dirty_again(NOW + DAY - 1)
    assert cleaner.clean_once(NOW + DAY - 1).cleaned
    assert (2, b"a", None) in rows_of(log)
    dirty_again(NOW + DAY)
    assert cleaner.clean_once(NOW + DAY).cleaned
    assert [r for r in rows_of(log) if r[1] == b"a"] == []
    assert (1, b"b", b"1") in rows_of(log)


def test_nothing_cleaned_below_min_cleanable_dirty_ratio(tmp_path: Path) -> None:
    config = compact_config(**{"min.cleanable.dirty.ratio": 0.9})
    lm = LogManager(tmp_path, config)
    log = lm.get_or_create_log("t", 0, config, NOW)
    cleaner = LogCleaner(lm, clock=lambda: NOW)
    fill(log)
    assert cleaner.clean_once().cleaned  # all dirty: ratio 1.0
    fill(log, rounds=1)  # one dirty segment against a clean one: ratio ~0.5
    before = rows_of(log)
    assert not cleaner.clean_once().cleaned
    assert rows_of(log) == before


def test_min_compaction_lag_keeps_recent_segments(tmp_path: Path) -> None:
    config = compact_config(**{"min.compaction.lag.ms": 60_000})
    lm = LogManager(tmp_path, config)
    log = lm.get_or_create_log("t", 0, config, NOW)
    cleaner = LogCleaner(lm)
    fill(log)
    before = rows_of(log)
    assert not cleaner.clean_once(NOW + 30_000).cleaned
    assert rows_of(log) == before
    assert cleaner.clean_once(NOW + 60_001).cleaned
    assert rows_of(log) == latest_per_key(before)


def test_max_compaction_lag_forces_cleaning(tmp_path: Path) -> None:
    config = compact_config(**{"min.cleanable.dirty.ratio": 0.9, "max.compaction.lag.ms": 1000})
    lm = LogManager(tmp_path, config)
    log = lm.get_or_create_log("t", 0, config, NOW)
    cleaner = LogCleaner(lm)
    fill(log)
    assert cleaner.clean_once(NOW).cleaned
    fill(log, rounds=1)
    assert not cleaner.clean_once(NOW + 500).cleaned  # below the ratio, not overdue yet
    assert cleaner.clean_once(NOW + 1001).cleaned
    assert rows_of(log) == latest_per_key(rows_of(log))


@pytest.mark.parametrize(
    "codec",
    [CompressionType.GZIP, CompressionType.SNAPPY, CompressionType.LZ4, CompressionType.ZSTD],
)
def test_compressed_batches_recompressed_with_same_codec(
    env: tuple[LogManager, Log, LogCleaner], codec: int
) -> None:
    _, log, cleaner = env
    for r in range(3):
        produce(log, [(f"k{i}".encode(), f"v{r}-{i}".encode() * 20) for i in range(4)], codec=codec)
        produce(log, [(b"k0", f"w{r}".encode())], codec=codec)
    log.roll(NOW)
    produce(log, [(b"x", b"y")])
    before = rows_of(log)
    assert cleaner.clean_once().cleaned
    assert rows_of(log) == latest_per_key(before)
    for b in decode_batches(read_everything(log))[:-1]:
        assert b.attributes & 7 == codec


def test_keyless_records_refused_on_compacted_topics_only(tmp_path: Path) -> None:
    compacted = Log.open(tmp_path / "c-0", "c", 0, compact_config(), 0, 0, NOW, True)
    with pytest.raises(InvalidRecordError):
        compacted.append_as_leader(make_batch([Rec(b"k", b"v", NOW), Rec(None, b"v", NOW)]), 0, NOW)
    with pytest.raises(InvalidRecordError):
        batch = make_batch([Rec(None, b"v", NOW)], codec=CompressionType.LZ4)
        compacted.append_as_leader(batch, 0, NOW)
    plain = Log.open(tmp_path / "p-0", "p", 0, LogConfig(), 0, 0, NOW, True)
    plain.append_as_leader(make_batch([Rec(None, b"v", NOW)]), 0, NOW)
    compacted.close()
    plain.close()


def test_emptied_batch_of_a_producer_kept_only_if_it_is_its_last(
    env: tuple[LogManager, Log, LogCleaner],
) -> None:
    lm, log, cleaner = env
    idem = encode_batch([(b"a", b"1", NOW, ())], producer_id=7, producer_epoch=0, base_sequence=0)
    log.append_as_leader(idem, 0, NOW)
    idem2 = encode_batch([(b"b", b"1", NOW, ())], producer_id=8, producer_epoch=0, base_sequence=0)
    log.append_as_leader(idem2, 0, NOW)
    idem3 = encode_batch([(b"c", b"1", NOW, ())], producer_id=8, producer_epoch=0, base_sequence=1)
    log.append_as_leader(idem3, 0, NOW)
    produce(log, [(b"a", b"2"), (b"b", b"2")])
    log.roll(NOW)
    produce(log, [(b"x", b"y")])
    assert cleaner.clean_once().cleaned
    batches = decode_batches(read_everything(log))
    # Producer 7's only batch lost its record but stays as an empty header; producer 8's first
    # batch goes (its second is its last and keeps its record).
    assert [(b.base_offset, len(b.records)) for b in batches] == [(0, 0), (2, 1), (3, 2), (5, 1)]
    path = log.dir
    log.close()
    reopened = Log.open(path, "t", 0, compact_config(), 0, 0, NOW, clean_shutdown=False)
    assert reopened.log_end_offset == 6
    assert rows_of(reopened) == [(2, b"c", b"1"), (3, b"a", b"2"), (4, b"b", b"2"), (5, b"x", b"y")]
    reopened.close()
    lm._logs.clear()


def test_reads_keep_working_during_and_after_a_swap(
    env: tuple[LogManager, Log, LogCleaner],
) -> None:
    _, log, cleaner = env
    fill(log, rounds=4)
    old = log.read(0, 1 << 20).records
    assert old is not None
    old_bytes = old.read_bytes()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                rows = rows_of(log)
                keys = {k for _, k, _ in rows}
                assert keys == {f"k{i}".encode() for i in range(5)} | ({b"n"} & keys)
                assert [o for o, _, _ in rows] == sorted(o for o, _, _ in rows)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(20):
            produce(log, [(b"n", str(i).encode())])  # appends go on meanwhile
        assert cleaner.clean_once().cleaned
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    # A fetch holding the pre-swap file region still reads the old bytes (fd kept open).
    assert old.read_bytes() == old_bytes
    assert len(list(log.dir.glob("*.deleted"))) >= 3
    assert rows_of(log)[:5] == [(15 + i, f"k{i}".encode(), f"v3-{i}".encode()) for i in range(5)]


def _run_cleaning(path: Path, crash_at: int | None) -> None:
    """Fill a log and clean it; with ``crash_at``, the n-th rename of the swap raises."""
    config = compact_config(**{"segment.bytes": 1 << 20})
    lm = LogManager(path, config)
    log = lm.get_or_create_log("t", 0, config, NOW)
    fill(log, rounds=4)
    produce(log, [(b"k0", b"active")])
    cleaner = LogCleaner(lm, clock=lambda: NOW)
    if crash_at is None:
        assert cleaner.clean_once().cleaned
    else:
        clean_and_crash_in_swap(log, cleaner, lambda _dst, n: n == crash_at)
    # No close: the process "dies" here.


def _reopen(path: Path) -> Log:
    return Log.open(path / "t-0", "t", 0, compact_config(), 0, 0, NOW + 1, clean_shutdown=False)


# One group of 4 segments: 3 renames (.cleaned -> .swap), 12 (old -> .deleted), 3 (.swap -> "").
@pytest.mark.parametrize("crash_at", [1, 2, 3, 4, 8, 15, 16, 17, 18])
def test_crash_mid_swap_recovers_a_consistent_log(tmp_path: Path, crash_at: int) -> None:
    _run_cleaning(tmp_path / "clean", None)
    cleaned = _reopen(tmp_path / "clean")
    expected_cleaned = rows_of(cleaned)
    cleaned.close()
    original_dir = tmp_path / "orig"
    config = compact_config(**{"segment.bytes": 1 << 20})
    lm = LogManager(original_dir, config)
    orig = lm.get_or_create_log("t", 0, config, NOW)
    fill(orig, rounds=4)
    produce(orig, [(b"k0", b"active")])
    expected_original = rows_of(orig)
    orig.close()

    _run_cleaning(tmp_path / "crash", crash_at)
    log = _reopen(tmp_path / "crash")
    rows = rows_of(log)
    leftovers = [
        p.name for p in (tmp_path / "crash" / "t-0").iterdir() if p.suffix in (".cleaned", ".swap")
    ]
    assert leftovers == []
    if crash_at <= 3:  # .cleaned -> .swap not finished: roll back
        assert rows == expected_original
    else:  # every file was .swap: the swap completes
        assert rows == expected_cleaned
    assert log.log_end_offset == 21
    log.close()
