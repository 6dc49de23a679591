"""The transaction coordinator in process, against an in-memory __transaction_state that can
fail: a Complete state that cannot be stored (an ISR below min.insync.replicas) is stored by
the next retry, without the markers being written to every partition again."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from artesian.coordinator.transaction.coordinator import TransactionConfig, TransactionCoordinator
from artesian.coordinator.transaction.transaction_metadata import TransactionState
from tests.coordinator.test_consumer_group_store import FlakyTopic

NONE = 0


class TransactionLog(FlakyTopic):
    num_partitions = 1

    def __init__(self) -> None:
        super().__init__()
        self.refuse: set[int] = set()  # the numbers (1, 2, ...) of the appends that fail
        self.appends = 0

    def append(self, partition: int, records: list[tuple[bytes, bytes | None]], *a: Any) -> None:
        self.appends += 1
        if self.appends in self.refuse:
            raise OSError("the ISR is below min.insync.replicas")
        super().append(partition, records)


class Markers:
    """Records each marker write the coordinator asks for."""

    def __init__(self) -> None:
        self.written: list[tuple[int, int, bool, tuple[tuple[str, int], ...]]] = []

    def write_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        partitions: Iterable[tuple[str, int]],
        state_partition: int,
    ) -> None:
        self.written.append((producer_id, producer_epoch, commit, tuple(partitions)))


def test_a_complete_state_that_could_not_be_stored_is_stored_without_new_markers() -> None:
    log, markers = TransactionLog(), Markers()
    coordinator = TransactionCoordinator(
        TransactionConfig(), log, markers, iter(range(7, 99)).__next__
    )
    coordinator.load([0])
    code, pid, epoch = coordinator.init_producer_id("t", 60_000)
    assert (code, pid, epoch) == (NONE, 7, 0)
    assert coordinator.add_partitions("t", pid, epoch, [("a", 0), ("b", 1)]) == NONE

    # PrepareCommit is stored, the markers go out, then storing CompleteCommit fails.
    log.refuse = {log.appends + 2}
    assert coordinator.end_transaction("t", pid, epoch, commit=True) == NONE
    assert markers.written == [(7, 0, True, (("a", 0), ("b", 1)))]
    assert coordinator.describe("t").state is TransactionState.PREPARE_COMMIT  # type: ignore[union-attr]

    coordinator.retry_markers()  # the log works again
    assert markers.written == [(7, 0, True, (("a", 0), ("b", 1)))]  # not written twice
    meta = coordinator.describe("t")
    assert meta is not None and meta.state is TransactionState.COMPLETE_COMMIT
    assert meta.partitions == set()
