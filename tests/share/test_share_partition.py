"""SharePartition, the sans-I/O state machine of a share group's partition (KIP-932): what
is acquired, acknowledged, released, expired and archived, how the start offset moves, and
what a reload from the stored state gives back."""

from __future__ import annotations

import time

from artesian.share.share_partition import (
    AckBatch,
    AcquiredRange,
    RecordState,
    SharePartition,
    StateBatch,
    validate_ack_batches,
)

ACCEPT, RELEASE, REJECT, GAP = 1, 2, 3, 0
NONE, INVALID_REQUEST, INVALID_RECORD_STATE = 0, 42, 121
LATER = 1e12


def _consistent(sp: SharePartition) -> None:
    """The count of available records a fetch relies on matches the records."""
    assert sp.available == sum(1 for r in sp.records.values() if r.state is RecordState.AVAILABLE)


def test_acquire_acknowledge_and_the_start_offset() -> None:
    sp = SharePartition(0)
    assert sp.acquire_new("m", [(0, 2), (3, 4)], 10, LATER) == [AcquiredRange(0, 4, 1)]
    assert sp.next_offset == 5
    assert sp.acknowledge("m", [AckBatch(0, 4, (ACCEPT, RELEASE, ACCEPT, REJECT, ACCEPT))]) == (
        NONE,
        None,
    )
    assert sp.start_offset == 1  # offset 1 went back: the start stops there
    _consistent(sp)
    assert sp.acquire_available("n", 10, LATER) == [AcquiredRange(1, 1, 2)]
    assert sp.acknowledge("n", [AckBatch(1, 1, (ACCEPT,))])[0] == NONE
    assert (sp.start_offset, sp.records) == (5, {})
    _consistent(sp)


def test_whole_batches_until_max_records_and_the_lock_window() -> None:
    sp = SharePartition(0, max_record_locks=100)
    # At least the first batch; then whole batches while under max_records.
    assert sp.acquire_new("m", [(0, 9), (10, 19), (20, 29)], 5, LATER) == [AcquiredRange(0, 9, 1)]
    assert sp.acquire_new("m", [(10, 19), (20, 29)], 15, LATER) == [AcquiredRange(10, 29, 1)]
    sp.acquire_new("m", [(30, 99)], 1000, LATER)
    assert sp.window_full()
    assert sp.acquire_new("m", [(100, 109)], 10, LATER) == []
    _consistent(sp)


def test_offsets_between_batches_are_done_at_once() -> None:
    """A compacted or cleaned log has holes between batches: nothing to hand out there."""
    sp = SharePartition(0)
    assert sp.acquire_new("m", [(0, 0), (5, 6)], 10, LATER) == [
        AcquiredRange(0, 0, 1),
        AcquiredRange(5, 6, 1),
    ]
    assert sp.acknowledge("m", [AckBatch(5, 6, (ACCEPT,))])[0] == NONE
    assert sp.state_batches() == [
        StateBatch(0, 0, RecordState.AVAILABLE, 1),
        StateBatch(1, 4, RecordState.ARCHIVED, 0),
        StateBatch(5, 6, RecordState.ACKNOWLEDGED, 1),
    ]
    assert sp.expire(LATER + 1)
    assert sp.acquire_available("m", 10, LATER * 2) == [AcquiredRange(0, 0, 2)]
    assert sp.acknowledge("m", [AckBatch(0, 0, (ACCEPT,))])[0] == NONE
    assert (sp.start_offset, sp.next_offset, sp.records) == (7, 7, {})
    _consistent(sp)


def test_acknowledging_what_is_not_yours_changes_nothing() -> None:
    sp = SharePartition(0)
    sp.acquire_new("m", [(0, 3)], 10, LATER)
    before = sp.state_batches()
    # One bad offset refuses the whole request: nothing before it applies.
    code, message = sp.acknowledge("other", [AckBatch(0, 1, (ACCEPT,))])
    assert code == INVALID_RECORD_STATE and message is not None
    code, _ = sp.acknowledge("m", [AckBatch(0, 0, (ACCEPT,)), AckBatch(2, 9, (ACCEPT,))])
    assert code == INVALID_REQUEST  # past what was acquired
    assert sp.state_batches() == before and sp.start_offset == 0
    # A range from far below the start costs nothing: those offsets are done.
    assert sp.acknowledge("m", [AckBatch(-(2**62), 3, (ACCEPT,))])[0] == NONE
    assert sp.start_offset == 4
    _consistent(sp)


def test_one_type_for_a_whole_batch_releases_every_record() -> None:
    """A consumer releasing a run of records sends one batch with one type (the Java client
    does, and librdkafka): each record is released on its own, the delivery limit deciding."""
    sp = SharePartition(0, delivery_limit=2)
    sp.acquire_new("m", [(0, 4)], 10, LATER)
    assert sp.acknowledge("m", [AckBatch(0, 4, (RELEASE,))]) == (NONE, None)
    assert [sp.records[o].state for o in range(5)] == [RecordState.AVAILABLE] * 5
    _consistent(sp)
    assert sp.acquire_available("n", 10, LATER) == [AcquiredRange(0, 4, 2)]
    assert sp.acknowledge("n", [AckBatch(0, 4, (RELEASE,))]) == (NONE, None)
    assert (sp.start_offset, sp.records) == (5, {})  # the second delivery was the last
    _consistent(sp)


def test_an_offset_acknowledged_twice_in_one_request_refuses_it() -> None:
    """Kafka changes each batch's records as it goes: a second batch over the same offset
    finds it acknowledged already, and the whole request is undone."""
    sp = SharePartition(0)
    sp.acquire_new("m", [(0, 5)], 10, LATER)
    before = sp.state_batches()
    code, message = sp.acknowledge("m", [AckBatch(0, 3, (ACCEPT,)), AckBatch(3, 5, (REJECT,))])
    assert (code, message) == (
        INVALID_RECORD_STATE,
        "The record at offset 3 is not acquired by this member.",
    )
    assert sp.state_batches() == before
    _consistent(sp)


def test_the_delivery_limit_archives_and_a_release_by_a_leaving_member_is_not_counted() -> None:
    sp = SharePartition(0, delivery_limit=3)
    sp.acquire_new("m", [(0, 1)], 10, LATER)
    for delivery in (2, 3):
        assert sp.acknowledge("m", [AckBatch(0, 0, (RELEASE,))])[0] == NONE
        assert sp.acquire_available("m", 1, LATER)[0] == AcquiredRange(0, 0, delivery)
    assert sp.acknowledge("m", [AckBatch(0, 0, (RELEASE,))])[0] == NONE  # third delivery done
    assert 0 not in sp.records and sp.start_offset == 1  # archived: the start moved past it
    # Offset 1, held when the member's session ended: available again, count lowered.
    assert sp.release_member("m")
    assert (sp.records[1].state, sp.records[1].delivery_count) == (RecordState.AVAILABLE, 0)
    _consistent(sp)
    assert sp.start_offset == 1
    # An expired lock counts: at the limit, archived.
    for _ in range(3):
        sp.acquire_available("n", 1, 0.0)
        sp.expire(1.0)
    assert (sp.start_offset, sp.records) == (2, {})
    _consistent(sp)


def test_the_log_start_moving_past_the_start_offset() -> None:
    sp = SharePartition(0)
    sp.acquire_new("m", [(0, 9)], 100, LATER)
    assert sp.move_start(4) and sp.start_offset == 4
    started = time.monotonic()
    assert sp.move_start(50_000_000)  # far past everything in flight: no record per offset
    assert time.monotonic() - started < 0.5
    assert (sp.start_offset, sp.next_offset, sp.records) == (50_000_000, 50_000_000, {})
    assert not sp.move_start(10)
    _consistent(sp)


def test_a_reload_gives_back_what_was_stored() -> None:
    sp = SharePartition(10, delivery_limit=5)
    sp.acquire_new("m", [(10, 14)], 10, LATER)
    sp.acknowledge("m", [AckBatch(11, 11, (ACCEPT,)), AckBatch(12, 12, (RELEASE,))])
    stored = sp.state_batches()
    assert stored == [
        StateBatch(10, 10, RecordState.AVAILABLE, 1),  # acquired: stored as available
        StateBatch(11, 11, RecordState.ACKNOWLEDGED, 1),
        StateBatch(12, 14, RecordState.AVAILABLE, 1),
    ]
    again = SharePartition(sp.start_offset, stored, delivery_limit=5)
    assert (again.start_offset, again.next_offset) == (10, 15)
    assert again.acquire_available("n", 10, LATER) == [
        AcquiredRange(10, 10, 2),
        AcquiredRange(12, 14, 2),
    ]
    # A record stored available at the limit is archived, not delivered once more.
    at_limit = SharePartition(0, [StateBatch(0, 0, RecordState.AVAILABLE, 5)], delivery_limit=5)
    assert (at_limit.start_offset, at_limit.acquire_available("n", 10, LATER)) == (1, [])
    _consistent(sp)


def test_acknowledgement_batches_are_checked_as_kafka_checks_them() -> None:
    def check(*batches: tuple[int, int, tuple[int, ...]]) -> str | None:
        return validate_ack_batches([AckBatch(*b) for b in batches])

    assert check((0, 3, (ACCEPT,)), (4, 4, (GAP,))) is None
    assert check((0, 1, (ACCEPT, REJECT))) is None
    assert check((3, 1, (ACCEPT,))) is not None
    assert check((0, 3, ())) is not None
    assert check((0, 3, (ACCEPT, ACCEPT))) is not None
    assert check((0, 0, (4,))) is not None
    assert check((0, 5, (ACCEPT,)), (2, 6, (ACCEPT,))) is not None


def test_an_acknowledgement_holds_its_records_until_stored_and_can_be_undone() -> None:
    """While an acknowledgement's state is being stored its records are neither handed out
    nor passed by the SPSO; what is stored is the SPSO and states as they will be. Undone
    (the store failed), the records are the member's again; completed, they are done."""
    sp = SharePartition(0)
    sp.acquire_new("m", [(0, 3)], 10, LATER)
    code, _, pending = sp.prepare_acknowledge("m", [AckBatch(0, 1, (ACCEPT, RELEASE))])
    assert code == NONE and pending is not None
    assert sp.acquire_available("n", 10, LATER) == []  # 1's release is not stored yet
    assert sp.start_offset == 0
    assert sp.stored_start_offset(pending) == 1
    assert sp.state_batches(pending) == [StateBatch(1, 3, RecordState.AVAILABLE, 1)]
    # Another writer stores the records as they were.
    assert sp.stored_start_offset() == 0
    assert sp.state_batches() == [StateBatch(0, 3, RecordState.AVAILABLE, 1)]
    # A second acknowledgement of them meanwhile is refused: they are in transition.
    assert sp.acknowledge("m", [AckBatch(0, 0, (ACCEPT,))])[0] == INVALID_RECORD_STATE

    sp.complete(pending, stored=False)
    assert (sp.start_offset, sp.records[0].state, sp.records[0].member_id) == (
        0,
        RecordState.ACQUIRED,
        "m",
    )
    code, _, pending = sp.prepare_acknowledge("m", [AckBatch(0, 1, (ACCEPT, RELEASE))])
    assert pending is not None
    sp.complete(pending, stored=True)
    assert sp.start_offset == 1
    assert sp.acquire_available("n", 10, LATER) == [AcquiredRange(1, 1, 2)]
    _consistent(sp)
