"""TransactionCoordinator: Kafka's transaction protocol for one broker.

A transactional producer gets its producer id and epoch from InitProducerId, names each
partition it is about to write to (AddPartitionsToTxn, or AddOffsetsToTxn for a group's
offsets), then ends the transaction with EndTxn. Every state change is written to
``__transaction_state`` before it takes effect. Ending is Kafka's two phases: PrepareCommit
(or PrepareAbort) is written, then a COMMIT (ABORT) marker goes to every partition of the
transaction, then CompleteCommit (CompleteAbort). A coordinator that restarts between the
phases finds the Prepare state and writes the markers again.

A new InitProducerId for the same transactional id bumps the epoch, which fences the previous
producer (its writes and EndTxn get PRODUCER_FENCED or INVALID_PRODUCER_EPOCH), and aborts its
open transaction. Transactions open longer than their timeout are aborted the same way.

Where we differ from Kafka: markers are written in-process, before EndTxn is answered, since
this broker leads every partition (Kafka answers after PrepareCommit and sends WriteTxnMarkers
to the partition leaders); the answer is the same, it only comes once the markers are written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from kio.schema.errors import ErrorCode

from artesian.coordinator.serde import LoggedRecord, partition_for
from artesian.coordinator.transaction import records as rec
from artesian.coordinator.transaction.transaction_metadata import (
    COMPLETED,
    MAX_PRODUCER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    PREPARING,
    TransactionMetadata,
    TransactionState,
    by_topic,
)

log = logging.getLogger("artesian.transaction_coordinator")

E = ErrorCode
S = TransactionState
TopicPartition = tuple[str, int]


class TransactionLog(Protocol):
    """The coordinator's view of ``__transaction_state``."""

    @property
    def num_partitions(self) -> int: ...

    def append(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        """Append durably as one batch; raises on failure."""

    def read(self, partition: int) -> Iterator[LoggedRecord]:
        """Every record in the partition, in offset order."""

    def ensure(self) -> None:
        """Create the topic if it does not exist yet; raises if it cannot."""


class MarkersPending(Exception):
    """Markers are on their way (replicating, or sent to other leaders): the transaction stays
    in its Prepare state and the writer calls ``retry_markers`` when they land."""


class MarkerWriter(Protocol):
    def write_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        partitions: Iterable[TopicPartition],
        state_partition: int,
    ) -> None:
        """Append a COMMIT or ABORT marker to each partition, once what the coordinator wrote
        to ``state_partition`` of its log (the Prepare state) is durable; raises if any could
        not be written (partitions that no longer exist are skipped)."""


@dataclass(slots=True, frozen=True)
class TransactionConfig:
    max_timeout_ms: int = 900_000
    transactional_id_expiration_ms: int = 604_800_000


def _now_ms() -> int:
    return int(time.time() * 1000)


class TransactionCoordinator:
    def __init__(
        self,
        config: TransactionConfig,
        txn_log: TransactionLog,
        markers: MarkerWriter,
        new_producer_id: Callable[[], int],
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.config = config
        self.txn_log = txn_log
        self.markers = markers
        self.new_producer_id = new_producer_id
        self.clock = clock
        self.transactions: dict[str, TransactionMetadata] = {}
        # The __transaction_state partitions this broker leads: it coordinates their ids.
        self.owned: set[int] = set()

    # --- ownership ------------------------------------------------------------------------

    def owns(self, transactional_id: str) -> bool:
        """Whether this coordinator serves ``transactional_id``; others get NOT_COORDINATOR."""
        if not self.owned:
            try:
                self.txn_log.ensure()  # first use creates the topic, as FindCoordinator does
            except Exception:
                return False
        return self._partition_for(transactional_id) in self.owned

    def unload(self, partition: int) -> None:
        """Another broker leads ``partition`` now: forget its transactional ids."""
        self.owned.discard(partition)
        for tid in [t for t in self.transactions if self._partition_for(t) == partition]:
            del self.transactions[tid]

    def load(self, partitions: Iterable[int] | None = None) -> None:
        """Take over ``partitions`` (default: all) of ``__transaction_state``: replay each
        (the last record per id wins), then finish the transactions caught between their
        two phases."""
        todo = range(self.txn_log.num_partitions) if partitions is None else list(partitions)
        todo = [p for p in todo if p not in self.owned]
        if not todo:
            return
        self.owned.update(todo)
        for partition in todo:
            for record in self.txn_log.read(partition):
                if record.key is None or record.control:
                    continue
                try:
                    tid = rec.parse_key(record.key)
                    if record.value is None:
                        self.transactions.pop(tid, None)
                        continue
                    v = rec.parse_value(record.value)
                    state = S(v.state)
                except (ValueError, UnicodeDecodeError) as e:
                    log.warning("skipping unreadable __transaction_state record: %s", e)
                    continue
                self.transactions[tid] = TransactionMetadata(
                    tid,
                    v.producer_id,
                    v.producer_epoch,
                    v.timeout_ms,
                    state,
                    {(t, p) for t, ps in v.partitions for p in ps},
                    v.start_ms,
                    v.last_update_ms,
                )
        mine = set(todo)
        pending = [
            m
            for m in self.transactions.values()
            if m.state in PREPARING and self._partition_for(m.transactional_id) in mine
        ]
        for meta in pending:
            self._send_markers(meta)
        log.info(
            "loaded %d transactional id(s) from __transaction_state (%d completed at start-up)",
            len(self.transactions),
            len(pending),
        )

    # --- InitProducerId -------------------------------------------------------------------

    def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        expected_producer_id: int = NO_PRODUCER_ID,
        expected_epoch: int = NO_PRODUCER_EPOCH,
    ) -> tuple[int, int, int]:
        """(error, producer id, epoch) for a transactional producer starting or restarting."""
        failed = NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        if not transactional_id:
            return E.invalid_request, *failed
        if not self.owns(transactional_id):
            return E.not_coordinator, *failed
        if timeout_ms <= 0 or timeout_ms > self.config.max_timeout_ms:
            return E.invalid_transaction_timeout, *failed
        meta = self.transactions.get(transactional_id)
        now = self.clock()
        if meta is None:
            meta = TransactionMetadata(
                transactional_id, self.new_producer_id(), 0, timeout_ms, S.EMPTY
            )
            if not self._persist(meta, S.EMPTY, set(), now):
                return E.coordinator_not_available, *failed
            self.transactions[transactional_id] = meta
            return E.none, meta.producer_id, meta.producer_epoch
        if meta.state in PREPARING:
            return E.concurrent_transactions, *failed
        if expected_producer_id != NO_PRODUCER_ID:
            if (expected_producer_id, expected_epoch) == (
                meta.producer_id,
                meta.last_producer_epoch,
            ) and meta.state is not S.ONGOING:
                # A retry whose answer was lost: it already got this epoch.
                return E.none, meta.producer_id, meta.producer_epoch
            if (expected_producer_id, expected_epoch) != (meta.producer_id, meta.producer_epoch):
                return E.producer_fenced, *failed
        if meta.state is S.ONGOING:
            # The previous producer of this id is fenced by the bump, and its transaction
            # aborted with the bumped epoch so its late writes are refused.
            code = self._abort_with_bumped_epoch(meta, "a new producer of the same id started")
            if code != E.none:
                return code, *failed
            meta = self.transactions[transactional_id]
        previous_epoch = meta.producer_epoch
        pid, epoch = self._bumped(meta)
        bumped = TransactionMetadata(
            transactional_id, pid, epoch, timeout_ms, meta.state, set(), meta.start_ms
        )
        if not self._persist(bumped, S.EMPTY, set(), now):
            return E.coordinator_not_available, *failed
        bumped.last_producer_epoch = previous_epoch if pid == meta.producer_id else -1
        self.transactions[transactional_id] = bumped
        return E.none, pid, epoch

    def _bumped(self, meta: TransactionMetadata) -> tuple[int, int]:
        if meta.producer_epoch >= MAX_PRODUCER_EPOCH:
            return self.new_producer_id(), 0
        return meta.producer_id, meta.producer_epoch + 1

    # --- AddPartitionsToTxn / AddOffsetsToTxn ---------------------------------------------

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> int:
        meta, code = self._producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return code
        if meta.state in PREPARING:
            return E.concurrent_transactions
        new = set(partitions)
        if meta.state is S.ONGOING and new <= meta.partitions:
            return E.none
        now = self.clock()
        start = meta.start_ms if meta.state is S.ONGOING else now
        if not self._persist(meta, S.ONGOING, meta.partitions | new, now, start):
            return E.coordinator_not_available
        meta.partitions |= new
        meta.start_ms = start
        return E.none

    # --- EndTxn ---------------------------------------------------------------------------

    def end_transaction(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> int:
        meta, code = self._producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return code
        state = meta.state
        if state is S.ONGOING:
            target = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
            if not self._persist(meta, target, meta.partitions, self.clock()):
                return E.coordinator_not_available
            self._send_markers(meta)
            return E.none
        # A retry of an EndTxn that already went through gets the same answer.
        if state is S.COMPLETE_COMMIT or state is S.PREPARE_COMMIT:
            return E.none if commit else E.invalid_txn_state
        if state is S.COMPLETE_ABORT or state is S.PREPARE_ABORT:
            return E.none if not commit else E.invalid_txn_state
        return E.invalid_txn_state  # Empty: nothing was added to a transaction

    def _send_markers(self, meta: TransactionMetadata) -> None:
        """Second phase: markers, then the Complete state. A failure leaves the Prepare state
        in place; ``retry_markers`` tries again."""
        commit = meta.state is S.PREPARE_COMMIT
        if not meta.markers_written:
            try:
                self.markers.write_markers(
                    meta.producer_id,
                    meta.producer_epoch,
                    commit,
                    sorted(meta.partitions),
                    self._partition_for(meta.transactional_id),
                )
            except MarkersPending:
                return
            except Exception as e:
                log.warning(
                    "could not write the %s markers of transactional id %r: %s; retrying later",
                    "COMMIT" if commit else "ABORT",
                    meta.transactional_id,
                    e,
                )
                return
            meta.markers_written = True
        done = S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT
        if self._persist(meta, done, set(), self.clock()):
            meta.partitions = set()
            meta.markers_written = False

    def retry_markers(self) -> None:
        for meta in list(self.transactions.values()):
            if meta.state in PREPARING:
                self._send_markers(meta)

    # --- checks for Produce and TxnOffsetCommit -------------------------------------------

    def verify_partition(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        tp: TopicPartition,
    ) -> int:
        """NONE if ``tp`` is part of the producer's ongoing transaction (KIP-890's check that
        a transactional write belongs to an open transaction)."""
        meta, code = self._producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return code
        if meta.state is not S.ONGOING or tp not in meta.partitions:
            return E.invalid_txn_state
        return E.none

    def _producer(
        self, transactional_id: str, producer_id: int, producer_epoch: int
    ) -> tuple[TransactionMetadata | None, int]:
        if not self.owns(transactional_id):
            return None, E.not_coordinator
        meta = self.transactions.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return None, E.invalid_producer_id_mapping
        if meta.producer_epoch != producer_epoch:
            return None, E.producer_fenced
        return meta, E.none

    # --- timeouts and expiry --------------------------------------------------------------

    def abort_timed_out_transactions(self) -> int:
        """Abort transactions open past their timeout, fencing their producers."""
        now = self.clock()
        aborted = 0
        for meta in list(self.transactions.values()):
            timed_out = meta.state is S.ONGOING and now - meta.start_ms > meta.timeout_ms
            if timed_out and self._abort_with_bumped_epoch(meta, "it passed its timeout") == E.none:
                aborted += 1
        return aborted

    def _abort_with_bumped_epoch(self, meta: TransactionMetadata, why: str) -> int:
        log.info(
            "aborting the transaction of transactional id %r (producer %d, epoch %d): %s",
            meta.transactional_id,
            meta.producer_id,
            meta.producer_epoch,
            why,
        )
        if meta.producer_epoch < MAX_PRODUCER_EPOCH:
            fenced = TransactionMetadata(
                meta.transactional_id,
                meta.producer_id,
                meta.producer_epoch + 1,
                meta.timeout_ms,
                meta.state,
                set(meta.partitions),
                meta.start_ms,
            )
        else:
            fenced = meta  # no epoch left to fence with; the next InitProducerId gets a new id
        if not self._persist(fenced, S.PREPARE_ABORT, fenced.partitions, self.clock()):
            return E.coordinator_not_available
        self.transactions[meta.transactional_id] = fenced
        self._send_markers(fenced)
        return E.none if fenced.state is S.COMPLETE_ABORT else E.concurrent_transactions

    def expire_transactional_ids(self) -> int:
        """Forget ids idle past transactional.id.expiration.ms (tombstones)."""
        limit = self.clock() - self.config.transactional_id_expiration_ms
        expired = [
            m
            for m in self.transactions.values()
            if (m.state is S.EMPTY or m.state in COMPLETED) and m.last_update_ms < limit
        ]
        for meta in expired:
            tid = meta.transactional_id
            try:
                self.txn_log.append(self._partition_for(tid), [(rec.key(tid), None)])
            except Exception as e:
                log.warning("could not expire transactional id %r: %s", tid, e)
                continue
            del self.transactions[tid]
        return len(expired)

    # --- admin ----------------------------------------------------------------------------

    def describe(self, transactional_id: str) -> TransactionMetadata | None:
        return self.transactions.get(transactional_id)

    def list_transactions(
        self,
        states: set[TransactionState] | None,
        producer_ids: set[int] | None,
        min_duration_ms: int = -1,
    ) -> list[TransactionMetadata]:
        now = self.clock()
        out = []
        for meta in self.transactions.values():
            if states and meta.state not in states:
                continue
            if producer_ids and meta.producer_id not in producer_ids:
                continue
            if min_duration_ms >= 0 and (
                meta.state is not S.ONGOING or now - meta.start_ms < min_duration_ms
            ):
                continue
            out.append(meta)
        return out

    # --- persistence ----------------------------------------------------------------------

    def _partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self.txn_log.num_partitions)

    def _persist(
        self,
        meta: TransactionMetadata,
        state: TransactionState,
        partitions: set[TopicPartition],
        now: int,
        start_ms: int | None = None,
    ) -> bool:
        """Write the next state first; only then does ``meta`` take it (Kafka's
        prepareTransitionTo, then completeTransitionTo once the append is durable)."""
        start = meta.start_ms if start_ms is None else start_ms
        value = rec.TransactionLogValue(
            meta.producer_id,
            meta.producer_epoch,
            meta.timeout_ms,
            int(state),
            by_topic(partitions),
            now,
            start,
        )
        tid = meta.transactional_id
        try:
            self.txn_log.append(self._partition_for(tid), [(rec.key(tid), rec.value(value))])
        except Exception as e:
            log.warning(
                "could not write state %s of transactional id %r to __transaction_state: %s",
                state.display_name,
                tid,
                e,
            )
            return False
        meta.state = state
        meta.last_update_ms = now
        return True
