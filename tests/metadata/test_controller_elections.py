"""The controller's leader elections, on a metadata image built from records: who leads after
a broker is fenced, leaves cleanly or comes back, and what the ISR becomes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from artesian.metadata.controller import Controller, ControllerError
from artesian.metadata.image import MetadataImage
from artesian.metadata.records import PartitionRecord, RegisterBrokerRecord, TopicRecord
from artesian.metadata.store import SqliteMetadataStore

TID = "00000000-0000-0000-0000-000000000001"


def _controller(tmp_path: Path, *partitions: PartitionRecord) -> Controller:
    image = MetadataImage()
    records = [RegisterBrokerRecord(b, "127.0.0.1", 9090 + b) for b in (1, 2, 3)]
    records += [TopicRecord("t", TID), *partitions]
    for offset, r in enumerate(records):
        image.apply(offset, r)
    return Controller(SqliteMetadataStore(tmp_path / "m.db"), image)


def _p(
    partition: int, replicas: tuple[int, ...], isr: tuple[int, ...], leader: int, epoch: int = 0
) -> PartitionRecord:
    return PartitionRecord(TID, partition, replicas, isr, leader, epoch, 0)


def test_a_fenced_leader_is_replaced_by_the_first_live_isr_member(tmp_path: Path) -> None:
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1, 3), 1, epoch=4))
    (r,) = c.plan_elections({2, 3}, unclean=False)
    # 2 is out of sync: 3 leads, in the next epoch; the fenced broker leaves the ISR.
    assert (r.leader, r.isr, r.leader_epoch, r.partition_epoch) == (3, (3,), 5, 1)


def test_a_fenced_follower_leaves_the_isr_and_the_leader_stays(tmp_path: Path) -> None:
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1, 2, 3), 1, epoch=2))
    (r,) = c.plan_elections({1, 3}, unclean=False)
    assert (r.leader, r.isr, r.leader_epoch) == (1, (1, 3), 2)
    assert c.plan_elections({1, 2, 3}, unclean=False) == []


def test_no_live_isr_member_takes_the_partition_offline_unless_unclean(tmp_path: Path) -> None:
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1,), 1, epoch=0))
    (r,) = c.plan_elections({2, 3}, unclean=False)
    assert (r.leader, r.isr, r.leader_epoch) == (-1, (1,), 1)
    (u,) = c.plan_elections({2, 3}, unclean=True)
    assert (u.leader, u.isr, u.leader_epoch) == (2, (2,), 1)


def test_unclean_election_may_be_decided_per_topic(tmp_path: Path) -> None:
    """The topic's unclean.leader.election.enable decides (Kafka's topic config wins)."""
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1,), 1, epoch=0))
    seen: list[str] = []

    def unclean(topic: Any) -> bool:
        seen.append(topic.name)
        return False

    (r,) = c.plan_elections({2, 3}, unclean)
    assert (r.leader, seen) == (-1, [c.image.topics_by_id[uuid.UUID(TID)].name])
    (u,) = c.plan_elections({2, 3}, lambda topic: True)
    assert (u.leader, u.isr) == (2, (2,))


def test_an_offline_partition_gets_its_isr_member_back_as_leader(tmp_path: Path) -> None:
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1,), -1, epoch=1))
    assert c.plan_elections({2, 3}, unclean=False) == []
    (r,) = c.plan_elections({1, 2}, unclean=False)
    assert (r.leader, r.isr, r.leader_epoch) == (1, (1,), 2)


def test_a_leaving_broker_hands_over_only_where_someone_in_sync_remains(tmp_path: Path) -> None:
    c = _controller(
        tmp_path,
        _p(0, (1, 2, 3), (1, 2, 3), 1),  # led by the leaving broker
        _p(1, (2, 1, 3), (2, 1), 2),  # followed by it
        _p(2, (1, 2, 3), (1,), 1),  # it is the only one in sync: it keeps it
    )
    planned = {r.partition: r for r in c.plan_elections({1, 2, 3}, False, leaving=1)}
    assert set(planned) == {0, 1}
    assert (planned[0].leader, planned[0].isr, planned[0].leader_epoch) == (2, (2, 3), 1)
    assert (planned[1].leader, planned[1].isr, planned[1].leader_epoch) == (2, (2,), 0)


def test_a_leaving_broker_takes_only_itself_out_of_isrs(tmp_path: Path) -> None:
    # Its view of the others may be a heartbeat old: broker 2 just rejoined and looks fenced
    # to it. Dropping 2 too took a partition with min.insync.replicas=2 down to one replica
    # in sync (CI saw an idempotent producer bump its epoch over it and duplicate a record).
    c = _controller(
        tmp_path,
        _p(0, (3, 1, 2), (3, 1, 2), 3),  # led by the leaving broker
        _p(1, (1, 2, 3), (1, 2, 3), 1),  # followed by it
    )
    planned = {r.partition: r for r in c.plan_elections({1, 3}, False, leaving=3)}
    assert (planned[0].leader, planned[0].isr, planned[0].leader_epoch) == (1, (1, 2), 1)
    assert (planned[1].leader, planned[1].isr, planned[1].leader_epoch) == (1, (1, 2), 0)


def test_preferred_leaders_return_past_the_imbalance_threshold(tmp_path: Path) -> None:
    c = _controller(
        tmp_path,
        _p(0, (1, 2, 3), (1, 2, 3), 2, epoch=1),
        _p(1, (1, 2, 3), (2, 3), 2, epoch=1),  # 1 is out of sync here: no move
        _p(2, (2, 3, 1), (2, 3, 1), 2),
    )
    planned = c.plan_preferred_leaders({1, 2, 3}, imbalance_percent=10)
    assert [(r.partition, r.leader, r.leader_epoch) for r in planned] == [(0, 1, 2)]
    # 2 of broker 1's partitions led elsewhere is 100%: over any threshold below it.
    assert c.plan_preferred_leaders({1, 2, 3}, imbalance_percent=100) == []
    assert c.plan_preferred_leaders({2, 3}, imbalance_percent=10) == []  # 1 is not live


def test_an_isr_change_from_a_stale_leader_epoch_is_refused(tmp_path: Path) -> None:
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1, 2, 3), 1, epoch=3))
    (r,) = c.plan_alter_isr(uuid.UUID(TID), 0, 3, (1, 2))
    assert (r.isr, r.leader, r.leader_epoch, r.partition_epoch) == ((1, 2), 1, 3, 1)
    with pytest.raises(ControllerError):
        c.plan_alter_isr(uuid.UUID(TID), 0, 2, (1, 2))
    with pytest.raises(ControllerError):
        c.plan_alter_isr(uuid.UUID(TID), 0, 3, (2, 3))  # without its leader


def test_a_reassignment_adds_first_and_drops_the_leaving_replicas_once_in_sync(
    tmp_path: Path,
) -> None:
    c = _controller(tmp_path, _p(0, (1, 2), (1, 2), 1, epoch=3))
    (start,) = c.plan_reassignment("t", 0, (2, 3))
    assert (start.replicas, start.adding_replicas, start.removing_replicas) == (
        (2, 3, 1),
        (3,),
        (1,),
    )
    assert (start.leader, start.isr, start.leader_epoch) == (1, (1, 2), 3)
    c.image.apply(10, start)
    assert c.plan_completed_reassignments({1, 2, 3}) == []  # 3 is not in sync yet
    c.image.apply(11, c._changed(uuid.UUID(TID), c.image.topics["t"].partitions[0], isr=(1, 2, 3)))
    (done,) = c.plan_completed_reassignments({1, 2, 3})
    # The leaving leader hands over to the first in-sync replica of the target.
    assert (done.replicas, done.isr, done.leader, done.leader_epoch) == ((2, 3), (2, 3), 2, 4)
    assert (done.adding_replicas, done.removing_replicas) == ((), ())


def test_a_cancelled_reassignment_goes_back_to_the_original_replicas(tmp_path: Path) -> None:
    c = _controller(tmp_path, _p(0, (1,), (1,), 1))
    with pytest.raises(ControllerError) as e:
        c.plan_reassignment("t", 0, None)
    assert e.value.code == ErrorCode.no_reassignment_in_progress
    (start,) = c.plan_reassignment("t", 0, (1, 2))
    c.image.apply(10, start)
    (cancel,) = c.plan_reassignment("t", 0, None)
    assert (cancel.replicas, cancel.isr, cancel.leader, cancel.adding_replicas) == (
        (1,),
        (1,),
        1,
        (),
    )
    with pytest.raises(ControllerError) as e:
        c.plan_reassignment("t", 0, (1, 7))
    assert e.value.code == ErrorCode.invalid_replica_assignment


def test_a_reassignment_that_only_drops_replicas_takes_them_out(tmp_path: Path) -> None:
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1, 2, 3), 1, epoch=2))
    # The leader leaves: the first in-sync replica of the target takes over, in a new epoch.
    (done,) = c.plan_reassignment("t", 0, (3, 2))
    assert (done.replicas, done.isr, done.leader, done.leader_epoch) == ((3, 2), (2, 3), 3, 3)
    assert (done.adding_replicas, done.removing_replicas) == ((), ())
    # A replica that stays but is out of sync: the move waits for it.
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1, 2), 1, epoch=2))
    (start,) = c.plan_reassignment("t", 0, (1, 3))
    assert (start.replicas, start.adding_replicas, start.removing_replicas) == (
        (1, 3, 2),
        (),
        (2,),
    )
    c.image.apply(10, start)
    assert c.plan_completed_reassignments({1, 2, 3}) == []
    c.image.apply(11, c._changed(uuid.UUID(TID), c.image.topics["t"].partitions[0], isr=(1, 2, 3)))
    (done,) = c.plan_completed_reassignments({1, 2, 3})
    assert (done.replicas, done.isr, done.leader) == ((1, 3), (1, 3), 1)


def test_cancelling_a_move_led_by_a_joining_replica_hands_leadership_back(
    tmp_path: Path,
) -> None:
    """Moving (1, 2, 3) to (4, 5, 3): 4 joins the ISR and leads once 1 dies; a cancel goes
    back to the original replicas (in the move's order, as Kafka's revert), where 4 is no
    replica, so the in-sync 3 takes over in a new epoch."""
    image_records = [RegisterBrokerRecord(b, "127.0.0.1", 9090 + b) for b in (4, 5)]
    c = _controller(tmp_path, _p(0, (1, 2, 3), (1, 2, 3), 1, epoch=2))
    for offset, r in enumerate(image_records, start=10):
        c.image.apply(offset, r)
    (start,) = c.plan_reassignment("t", 0, (4, 5, 3))
    c.image.apply(20, start)
    p = c.image.topics["t"].partitions[0]
    c.image.apply(21, c._changed(uuid.UUID(TID), p, isr=(3, 4), leader=4, leader_epoch=3))
    (cancel,) = c.plan_reassignment("t", 0, None)
    assert (cancel.replicas, cancel.isr, cancel.leader, cancel.leader_epoch) == (
        (3, 1, 2),
        (3,),
        3,
        4,
    )
    assert (cancel.adding_replicas, cancel.removing_replicas) == ((), ())
