"""FetchSessionCache on its own: epochs, slots and Kafka's eviction rule."""

from __future__ import annotations

from artesian.broker.fetch_session import (
    EVICTION_MS,
    FetchPartition,
    FetchSessionCache,
    next_epoch,
)


def every_partition(_p: FetchPartition) -> bool:
    return True


def parts(*partitions: int) -> list[FetchPartition]:
    return [FetchPartition("t", None, p, 0, 1 << 20) for p in partitions]


def test_epochs_wrap_to_one() -> None:
    assert [next_epoch(e) for e in (0, 1, 0x7FFFFFFF, -1)] == [1, 2, 1, -1]


def test_a_full_cache_evicts_a_stale_or_smaller_session_only() -> None:
    evicted: list[int] = []
    cache = FetchSessionCache(max_slots=1, on_evict=lambda: evicted.append(1))
    first = cache.create(parts(0, 1), by_id=False, now_ms=0, exists=every_partition)
    assert first != 0
    # Same size, not stale: no slot for the newcomer.
    assert cache.create(parts(0, 1), by_id=False, now_ms=1000, exists=every_partition) == 0
    # Bigger: the smaller session makes room.
    bigger = cache.create(parts(0, 1, 2), by_id=False, now_ms=2000, exists=every_partition)
    assert bigger != 0 and list(cache.sessions) == [bigger]
    # Stale: any newcomer may take its slot.
    late = cache.create(parts(0), by_id=False, now_ms=2000 + EVICTION_MS, exists=every_partition)
    assert late != 0 and list(cache.sessions) == [late]
    assert len(evicted) == 2


def test_forgetting_every_partition_ends_the_session() -> None:
    cache = FetchSessionCache(max_slots=10)
    sid = cache.create(parts(0), by_id=False, now_ms=0, exists=every_partition)
    context = cache.new_context(
        sid, 1, [], [("t", 0)], by_id=False, now_ms=1, exists=every_partition
    )
    assert context.session is None and context.response_session_id == 0
    assert sid not in cache.sessions


def test_no_slots_means_no_sessions() -> None:
    assert (
        FetchSessionCache(max_slots=0).create(
            parts(0), by_id=False, now_ms=0, exists=every_partition
        )
        == 0
    )


def test_sessions_hold_only_partitions_that_exist() -> None:
    cache = FetchSessionCache(max_slots=10)

    def only_0(p: FetchPartition) -> bool:
        return p.partition == 0

    assert cache.create(parts(0, 7), by_id=False, now_ms=0, exists=only_0) == 0
    sid = cache.create(parts(0), by_id=False, now_ms=0, exists=only_0)
    # Out of step first: the session stays.
    late = cache.new_context(sid, 5, parts(7), [], by_id=False, now_ms=1, exists=only_0)
    assert int(late.error) == 71 and sid in cache.sessions
    # Adding a partition that does not exist ends the session: a sessionless answer.
    context = cache.new_context(sid, 1, parts(7), [], by_id=False, now_ms=1, exists=only_0)
    assert context.session is None and context.response_session_id == 0
    assert context.partitions[0].partition == 7
    assert cache.sessions == {}
