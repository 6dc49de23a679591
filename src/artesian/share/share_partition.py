"""SharePartition: how a share group hands out one partition's records (KIP-932).

Sans-I/O. Records from the share-partition start offset (SPSO) up to ``next_offset`` are in
flight, each AVAILABLE, ACQUIRED by one member until its lock expires, or done
(ACKNOWLEDGED or ARCHIVED). A fetch acquires released records first, then new ones, whole
log batches at a time; an acknowledgement accepts (ACKNOWLEDGED), releases (AVAILABLE again)
or rejects (ARCHIVED) a member's acquired records; a record delivered
``group.share.delivery.count.limit`` times is archived instead of released. The SPSO moves
past the done records at its front, and the in-flight window is bounded
(``group.share.partition.max.record.locks``).
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from kio.schema.errors import ErrorCode


class RecordState(enum.IntEnum):
    """Kafka's RecordState; the persisted ones are AVAILABLE, ACKNOWLEDGED and ARCHIVED."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVED = 4


class AcknowledgeType(enum.IntEnum):
    GAP = 0  # an offset without a record (compacted away, or a transaction marker)
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3


_DONE = (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)
# By acknowledge type (plain ints: looked up per offset); a release is decided per record.
_ACK_STATE: dict[int, RecordState | None] = {
    AcknowledgeType.GAP: RecordState.ARCHIVED,
    AcknowledgeType.ACCEPT: RecordState.ACKNOWLEDGED,
    AcknowledgeType.RELEASE: None,
    AcknowledgeType.REJECT: RecordState.ARCHIVED,
}


@dataclass(slots=True, eq=False)
class InFlightRecord:
    state: RecordState
    delivery_count: int
    member_id: str | None = None
    deadline: float = 0.0
    """When its acquisition lock expires (loop time)."""
    pending: tuple[RecordState, str | None, float] | None = None
    """While an acknowledgement's state is being stored: what it was before (state, member,
    deadline), to go back to if the store fails. Such a record is neither handed out nor
    passed by the SPSO."""


@dataclass(slots=True, frozen=True)
class PendingAcknowledgement:
    """An acknowledgement applied but not yet stored (``SharePartition.complete`` ends it)."""

    records: tuple[InFlightRecord, ...]


@dataclass(slots=True, frozen=True)
class AcquiredRange:
    first_offset: int
    last_offset: int
    delivery_count: int


@dataclass(slots=True, frozen=True)
class StateBatch:
    """A run of in-flight offsets with one state and delivery count, as persisted (an
    acquired record is persisted AVAILABLE: acquisitions do not outlive a leader)."""

    first_offset: int
    last_offset: int
    state: RecordState
    delivery_count: int


@dataclass(slots=True, frozen=True)
class AckBatch:
    first_offset: int
    last_offset: int
    types: tuple[int, ...]
    """One type for the whole range, or one per offset."""


class SharePartition:
    def __init__(
        self,
        start_offset: int,
        batches: Iterable[StateBatch] = (),
        delivery_limit: int = 5,
        max_record_locks: int = 2000,
    ) -> None:
        self.start_offset = start_offset
        self.next_offset = start_offset
        self.delivery_limit = delivery_limit
        self.max_record_locks = max_record_locks
        self.records: dict[int, InFlightRecord] = {}
        for b in batches:
            for offset in range(max(b.first_offset, start_offset), b.last_offset + 1):
                r = InFlightRecord(b.state, b.delivery_count)
                if r.state in (RecordState.ACQUIRED, RecordState.AVAILABLE):
                    r.state = self._released_state(r)  # at the limit: archived, not redelivered
                self.records[offset] = r
            self.next_offset = max(self.next_offset, b.last_offset + 1)
        for offset in range(self.start_offset, self.next_offset):
            self.records.setdefault(offset, InFlightRecord(RecordState.AVAILABLE, 0))
        self._advance()
        # How many records are AVAILABLE: a fetch looks for them only when there are some.
        self.available = sum(1 for r in self.records.values() if r.state is RecordState.AVAILABLE)

    # --- acquiring -------------------------------------------------------------------------

    def has_available(self) -> bool:
        return self.available > 0

    def window_full(self) -> bool:
        return self.next_offset - self.start_offset >= self.max_record_locks

    def first_available(self) -> int | None:
        if not self.available:
            return None
        for offset in range(self.start_offset, self.next_offset):
            r = self.records[offset]
            if r.state is RecordState.AVAILABLE and r.pending is None:
                return offset
        return None

    def acquire_available(
        self, member_id: str, max_records: int, deadline: float, up_to: int | None = None
    ) -> list[AcquiredRange]:
        """Records released or whose lock expired, oldest first, at most ``max_records`` and
        none past ``up_to`` (the end of the log batches read for them)."""
        taken: list[int] = []
        end = self.next_offset if up_to is None else min(self.next_offset, up_to + 1)
        for offset in range(self.start_offset, end):
            r = self.records[offset]
            if r.state is RecordState.AVAILABLE and r.pending is None:
                r.state, r.member_id, r.deadline = RecordState.ACQUIRED, member_id, deadline
                self.available -= 1
                r.delivery_count += 1
                taken.append(offset)
                if len(taken) >= max_records:
                    break
        return self._ranges(taken)

    def acquire_new(
        self,
        member_id: str,
        batches: Sequence[tuple[int, int]],
        max_records: int,
        deadline: float,
        aborted: Container[int] = (),
    ) -> list[AcquiredRange]:
        """New records of the log batches (base, last offset) read from ``next_offset``:
        whole batches, while fewer than ``max_records`` are taken and the window has room
        (the first batch always, if the window has any). Batches whose base offset is in
        ``aborted`` (an aborted transaction's, read_committed) are done at once instead."""
        taken: list[int] = []
        archived = False
        for base, last in batches:
            if last < self.next_offset:
                continue
            if self.window_full() or (taken and len(taken) >= max_records):
                break
            # Offsets between batches hold no record (compacted away, an aborted
            # transaction's batch cleaned): nothing to hand out, done at once.
            for offset in range(self.next_offset, base):
                self.records[offset] = InFlightRecord(RecordState.ARCHIVED, 0)
            records = self.records
            first = max(base, self.next_offset)
            if base in aborted:
                for offset in range(first, last + 1):
                    records[offset] = InFlightRecord(RecordState.ARCHIVED, 0)
                archived = True
            else:
                for offset in range(first, last + 1):
                    records[offset] = InFlightRecord(RecordState.ACQUIRED, 1, member_id, deadline)
                taken.extend(range(first, last + 1))
            self.next_offset = last + 1
        if archived:
            self._advance()
        return self._ranges(taken)

    def _ranges(self, offsets: list[int]) -> list[AcquiredRange]:
        """Contiguous offsets with one delivery count, as AcquiredRecords (runs found with
        plain ints: a fetch takes hundreds of records)."""
        out: list[AcquiredRange] = []
        if not offsets:
            return out
        records = self.records
        first = last = offsets[0]
        count = records[first].delivery_count
        for offset in offsets[1:]:
            c = records[offset].delivery_count
            if offset == last + 1 and c == count:
                last = offset
                continue
            out.append(AcquiredRange(first, last, count))
            first = last = offset
            count = c
        out.append(AcquiredRange(first, last, count))
        return out

    # --- acknowledging, releasing, expiring --------------------------------------------------

    def acknowledge(self, member_id: str, batches: Sequence[AckBatch]) -> tuple[int, str | None]:
        """Apply a member's acknowledgements, all or none, at once: (error code, message)."""
        code, message, pending = self.prepare_acknowledge(member_id, batches)
        if pending is not None:
            self.complete(pending, stored=True)
        return code, message

    def prepare_acknowledge(
        self, member_id: str, batches: Sequence[AckBatch]
    ) -> tuple[int, str | None, PendingAcknowledgement | None]:
        """Apply a member's acknowledgements, all or none, until their state is stored, as
        Kafka's SharePartition does: (error code, message, what ``complete`` ends). Offsets
        below the SPSO are already done and skipped."""
        changes: list[tuple[InFlightRecord, RecordState]] = []
        touched: set[int] = set()  # an offset acknowledged twice in one request: the second
        # finds it no longer acquired, as Kafka's in-place transitions would
        for b in batches:
            if b.last_offset >= self.next_offset:
                return (
                    ErrorCode.invalid_request,
                    f"Offset {b.last_offset} is past the acquired records "
                    f"(next {self.next_offset}).",
                    None,
                )
            # Offsets below the SPSO are done already (bounded: a range from far below it
            # must not cost a loop over every offset).
            # One type for the whole batch, or one per offset (Kafka's two forms).
            single = b.types[0] if len(b.types) == 1 else None
            for offset in range(max(b.first_offset, self.start_offset), b.last_offset + 1):
                r = self.records[offset]
                if (
                    r.state is not RecordState.ACQUIRED
                    or r.member_id != member_id
                    or offset in touched
                ):
                    return (
                        ErrorCode.invalid_record_state,
                        f"The record at offset {offset} is not acquired by this member.",
                        None,
                    )
                touched.add(offset)
                kind = single if single is not None else b.types[offset - b.first_offset]
                state = _ACK_STATE[kind]  # RELEASE: per record (the delivery limit decides)
                changes.append((r, state if state is not None else self._released_state(r)))
        for r, state in changes:
            r.pending = (r.state, r.member_id, r.deadline)
            r.state, r.member_id = state, None
        return ErrorCode.none, None, PendingAcknowledgement(tuple(r for r, _ in changes))

    def complete(self, pending: PendingAcknowledgement, stored: bool) -> None:
        """An acknowledgement's state was stored: released records may be handed out and the
        SPSO moves; or it was not: its records are the member's again, as if it never came
        (Kafka rolls them back), their locks running as before."""
        for r in pending.records:
            if r.pending is None:
                continue  # dropped meanwhile with the log's start
            if stored:
                self.available += r.state is RecordState.AVAILABLE
            else:
                r.state, r.member_id, r.deadline = r.pending
            r.pending = None
        if stored:
            self._advance()

    def release_member(self, member_id: str) -> bool:
        """A member's session ended: what it still holds is available again, not counted as
        delivered (it never reached the application)."""
        changed = False
        for r in self.records.values():
            if r.state is RecordState.ACQUIRED and r.member_id == member_id:
                r.delivery_count = max(r.delivery_count - 1, 0)
                r.state, r.member_id = self._released_state(r), None
                self.available += r.state is RecordState.AVAILABLE
                changed = True
        self._advance()
        return changed

    def expire(self, now: float) -> bool:
        """Acquisition locks past their deadline: the records are available again (or
        archived, at the delivery limit)."""
        changed = False
        for r in self.records.values():
            if r.state is RecordState.ACQUIRED and r.deadline <= now:
                r.state, r.member_id = self._released_state(r), None
                self.available += r.state is RecordState.AVAILABLE
                changed = True
        self._advance()
        return changed

    def next_deadline(self) -> float | None:
        deadlines = [r.deadline for r in self.records.values() if r.state is RecordState.ACQUIRED]
        return min(deadlines) if deadlines else None

    def move_start(self, log_start_offset: int) -> bool:
        """The log's start moved past the SPSO (retention, DeleteRecords): what it dropped is
        archived."""
        if log_start_offset <= self.start_offset:
            return False
        if log_start_offset >= self.next_offset:
            # Everything in flight is gone with the log's start: start over there (without
            # a record per skipped offset: the jump may be millions).
            for r in self.records.values():
                r.pending = None
            self.records.clear()
            self.start_offset = self.next_offset = log_start_offset
            self.available = 0
            return True
        for offset in range(self.start_offset, log_start_offset):
            r = self.records[offset]
            self.available -= r.state is RecordState.AVAILABLE and r.pending is None
            r.state, r.pending = RecordState.ARCHIVED, None
        self._advance()
        return True

    def _released_state(self, r: InFlightRecord) -> RecordState:
        if r.delivery_count >= self.delivery_limit:
            return RecordState.ARCHIVED
        return RecordState.AVAILABLE

    def _advance(self) -> None:
        """Move the SPSO past the done records at the front."""
        while self.start_offset < self.next_offset:
            r = self.records.get(self.start_offset)
            if r is not None and (r.state not in _DONE or r.pending is not None):
                return
            self.records.pop(self.start_offset, None)
            self.start_offset += 1

    # --- persistence ---------------------------------------------------------------------

    def stored_start_offset(self, pending: PendingAcknowledgement | None = None) -> int:
        """The SPSO to store: past ``pending``'s records too where they are at its front, as
        they will be once stored (Kafka writes the start offset with the update)."""
        states = self._stored_states(pending)
        return states[0][0] if states else self.next_offset

    def state_batches(self, pending: PendingAcknowledgement | None = None) -> list[StateBatch]:
        """The in-flight records to store, from ``stored_start_offset``, as runs of (state,
        delivery count), acquired ones as available. Acknowledgements not yet stored count as
        they were, but ``pending``'s."""
        out: list[StateBatch] = []
        for offset, state, count in self._stored_states(pending):
            last = out[-1] if out else None
            if (
                last is not None
                and last.last_offset == offset - 1
                and (last.state, last.delivery_count) == (state, count)
            ):
                out[-1] = StateBatch(last.first_offset, offset, state, count)
            else:
                out.append(StateBatch(offset, offset, state, count))
        return out

    def _stored_states(
        self, pending: PendingAcknowledgement | None
    ) -> list[tuple[int, RecordState, int]]:
        own = {id(r) for r in pending.records} if pending is not None else set()
        states: list[tuple[int, RecordState, int]] = []
        for offset in range(self.start_offset, self.next_offset):
            r = self.records[offset]
            state = r.state
            if r.pending is not None and id(r) not in own:
                state = r.pending[0]
            if state is RecordState.ACQUIRED:
                state = RecordState.AVAILABLE
            if states or state not in _DONE:  # done ones at the front: passed by the SPSO
                states.append((offset, state, r.delivery_count))
        return states


def validate_ack_batches(batches: Sequence[AckBatch], max_type: int = 3) -> str | None:
    """Kafka's validateAcknowledgementBatches: why the batches are an INVALID_REQUEST, or
    None."""
    previous_last = -1
    for b in batches:
        if b.first_offset > b.last_offset:
            return "First offset is greater than the last offset."
        if b.first_offset < previous_last:
            return "Acknowledgement batches overlap or are out of order."
        if not b.types:
            return "Acknowledge types are empty."
        if len(b.types) > 1 and len(b.types) != b.last_offset - b.first_offset + 1:
            return "The number of acknowledge types does not match the batch's offsets."
        if any(t < 0 or t > max_type for t in b.types):
            return "Invalid acknowledge type."
        previous_last = b.last_offset
    return None
