"""Log.append_as_follower: a follower's log takes the leader's batches as they are, byte for
byte, with their offsets and leader epochs, and rebuilds producer and transaction state from
them as the leader's did; bad input from a leader changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from artesian.protocol.records import iter_batches, patch_batch
from artesian.storage.errors import CorruptRecordError
from artesian.storage.log import Log
from artesian.storage.log_config import LogConfig
from artesian.storage.transaction_index import AbortedTxn
from tests.storage.batches import make_batch
from tests.storage.test_log import NOW, open_log, read_all
from tests.storage.test_transactions import A, B, append, marker, txn_batch


def _everything(log: Log) -> bytes:
    """The whole log: a read stops at its segment's end, so read segment by segment."""
    out, offset = b"", log.log_start_offset
    while offset < log.log_end_offset:
        chunk = read_all(log, offset)
        out += chunk
        offset = [h for _, h in iter_batches(chunk)][-1].next_offset
    return out


def _leader_log(tmp_path: Path) -> bytes:
    """A leader's log across two epochs, with an aborted and a committed transaction."""
    leader = open_log(tmp_path / "leader" / "t-0", LogConfig(segment_bytes=300))
    append(leader, make_batch(n=3))  # 0-2, epoch 3 (the helper's)
    append(leader, txn_batch(A, 0, n=2))  # 3-4
    marker(leader, A, commit=False)  # 5
    append(leader, txn_batch(B, 0))  # 6
    marker(leader, B, commit=True)  # 7
    leader.append_as_leader(make_batch(n=2), 9, NOW)  # 8-9, epoch 9
    leader.high_watermark = leader.log_end_offset
    assert len(leader.segments) > 1
    return _everything(leader)


def test_a_follower_holds_the_same_bytes_offsets_epochs_and_transactions(
    tmp_path: Path,
) -> None:
    data = _leader_log(tmp_path)
    follower = open_log(tmp_path / "follower" / "t-0", LogConfig(segment_bytes=300))
    # In two fetches, the second starting mid-log.
    cut = len(data) // 2
    first = follower.append_as_follower(data[:cut], NOW)
    second = follower.append_as_follower(data[first:], NOW)
    assert first + second == len(data)
    assert follower.log_end_offset == 10
    follower.high_watermark = 10
    assert _everything(follower) == data
    assert len(follower.segments) > 1  # it rolled by its own segment.bytes
    assert follower.leader_epoch_cache.entries == [(3, 0), (9, 8)]
    assert follower.collect_aborted_transactions(0, 100) == [AbortedTxn(A, 3, 5, 6)]
    assert follower.last_stable_offset == 10
    # Producer state came along: the follower could take over as leader and spot a retry.
    entry = follower.producer_state.last_entry(B)
    assert entry is not None and entry.current_txn_first_offset is None


def test_an_open_transaction_holds_back_the_followers_last_stable_offset(
    tmp_path: Path,
) -> None:
    leader = open_log(tmp_path / "leader" / "t-0")
    append(leader, make_batch(n=1))
    append(leader, txn_batch(A, 0, n=2))
    follower = open_log(tmp_path / "follower" / "t-0")
    follower.append_as_follower(read_all(leader), NOW)
    follower.high_watermark = follower.log_end_offset
    assert (follower.first_unstable_offset, follower.last_stable_offset) == (1, 1)


def test_bad_batches_from_a_leader_are_refused_and_change_nothing(tmp_path: Path) -> None:
    follower = open_log(tmp_path / "t-0")
    good = bytes(make_batch(n=2))
    assert follower.append_as_follower(good, NOW) == len(good)
    before = read_all(follower)
    # Offsets that go backwards.
    with pytest.raises(CorruptRecordError):
        follower.append_as_follower(good, NOW)
    # A flipped byte under the CRC.
    bad = bytearray(make_batch(n=1))
    patch_batch(bad, 0, 2, 0)
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        follower.append_as_follower(bytes(bad), NOW)
    assert follower.log_end_offset == 2
    assert read_all(follower) == before
    # A partial batch at the end waits for the next fetch.
    nxt = bytearray(make_batch(n=1))
    patch_batch(nxt, 0, 2, 0)
    assert follower.append_as_follower(bytes(nxt[:-5]), NOW) == 0
    assert follower.append_as_follower(bytes(nxt), NOW) == len(nxt)
    assert follower.log_end_offset == 3
