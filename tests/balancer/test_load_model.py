"""The self-balancer's inputs, sans I/O: load samples survive their trip through the store,
byte counters become rates, the model reads the metadata image the way the executor will
leave it, and the private APIs' frames decode exactly or fail with DecodeError."""

from __future__ import annotations

import math
import struct
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artesian.balancer.executor import plan_execution
from artesian.balancer.load import BrokerSample, LoadSampler, PartitionSample, build_model
from artesian.balancer.model import UNLIMITED
from artesian.balancer.optimizer import PartitionProposal
from artesian.metadata.image import MetadataImage
from artesian.metadata.records import (
    BrokerRemovalRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    TopicRecord,
    UnregisterBrokerRecord,
)
from artesian.protocol.balancer_admin import (
    decode_request_body,
    decode_response_body,
    encode_request_body,
    encode_response_body,
)
from artesian.protocol.codec import DecodeError


def _image(*partitions: PartitionRecord, brokers: int = 3) -> MetadataImage:
    image = MetadataImage()
    offset = 0
    for b in range(1, brokers + 1):
        image.apply(offset, RegisterBrokerRecord(b, "127.0.0.1", 9000 + b, f"r{b % 2}"))
        offset += 1
    image.apply(offset, TopicRecord("t", str(TOPIC_ID)))
    for p in partitions:
        offset += 1
        image.apply(offset, p)
    return image


TOPIC_ID = uuid.UUID(int=7)


def _p(i: int, replicas: tuple[int, ...], leader: int, **kw: tuple[int, ...]) -> PartitionRecord:
    return PartitionRecord(str(TOPIC_ID), i, replicas, kw.pop("isr", replicas), leader, **kw)


def test_a_sample_survives_json_with_unlimited_capacities() -> None:
    s = BrokerSample(3, 1234, 5e9, UNLIMITED, 1e6, {("t", 0): PartitionSample(100, 2.5, 0.0)})
    back = BrokerSample.from_json(s.to_json())
    assert back == s
    assert math.isinf(back.network_in_capacity)


@dataclass
class _FakeLog:
    size_in_bytes: int


@dataclass
class _Counters:
    topic: str
    index: int
    log: _FakeLog
    bytes_in_total: int = 0
    bytes_out_total: int = 0


def test_the_sampler_turns_counters_into_rates_between_samples() -> None:
    p = _Counters("t", 0, _FakeLog(500))
    sampler = LoadSampler()
    first = sampler.sample(1, [p], 10_000, 1e9, UNLIMITED, UNLIMITED)  # type: ignore[list-item]
    assert first.partitions[("t", 0)] == PartitionSample(500, 0.0, 0.0)
    p.bytes_in_total, p.bytes_out_total = 4000, 10_000
    second = sampler.sample(1, [p], 12_000, 1e9, UNLIMITED, UNLIMITED)  # type: ignore[list-item]
    assert second.partitions[("t", 0)] == PartitionSample(500, 2000.0, 5000.0)


def test_the_model_reads_moves_in_flight_as_their_targets_and_puts_leaders_first() -> None:
    image = _image(
        _p(0, (1, 2), leader=2),
        # Moving from (1, 2) to (2, 3): 3 joining, 1 leaving.
        _p(1, (2, 3, 1), leader=1, isr=(1, 2), adding_replicas=(3,), removing_replicas=(1,)),
    )
    samples = {
        2: BrokerSample(2, 0, 1e9, UNLIMITED, UNLIMITED, {("t", 0): PartitionSample(800, 10, 5)}),
        1: BrokerSample(1, 0, 1e9, UNLIMITED, UNLIMITED, {("t", 1): PartitionSample(300, 1, 1)}),
    }
    model = build_model(image, {1, 2, 3}, samples, excluded=frozenset({3}))
    p0, p1 = model.partitions[("t", 0)], model.partitions[("t", 1)]
    assert (p0.replicas, p0.size_bytes, p0.bytes_in_rate, p0.movable) == ([2, 1], 800, 10, True)
    assert (p1.replicas, p1.size_bytes, p1.movable, p1.in_sync) == ([2, 3], 300, False, {2})
    assert model.brokers[3].excluded and not model.brokers[3].eligible
    assert model.brokers[1].rack == "r1" and model.brokers[1].disk_capacity == 1e9
    assert math.isinf(model.brokers[3].disk_capacity)  # no sample yet
    assert (model.load(2).replicas, model.load(2).leaders, model.load(2).disk) == (2, 2, 1100)
    # Leading both once the move ends: consumers plus one follower each.
    assert model.load(2).network_out == (5 + 10 * 1) + (1 + 1 * 1)


def test_the_model_counts_the_consumers_a_follower_serves() -> None:
    image = _image(_p(0, (1, 2, 3), leader=1))
    samples = {
        1: BrokerSample(1, 0, 1e9, UNLIMITED, UNLIMITED, {("t", 0): PartitionSample(800, 10, 5)}),
        # Broker 2 serves consumers in its rack (KIP-392); broker 3 serves none.
        2: BrokerSample(2, 0, 1e9, UNLIMITED, UNLIMITED, {("t", 0): PartitionSample(800, 0, 40)}),
        3: BrokerSample(3, 0, 1e9, UNLIMITED, UNLIMITED, {("t", 0): PartitionSample(800, 0, 0)}),
    }
    model = build_model(image, {1, 2, 3}, samples, excluded=frozenset())
    p = model.partitions[("t", 0)]
    assert (p.bytes_out_rate, p.follower_bytes_out) == (5, {2: 40})
    loads = [model.load(b).network_out for b in (1, 2, 3)]
    assert loads == [5 + 10 * 2, 40, 0]
    # Leadership moving to broker 3 leaves broker 2's consumers where they are.
    model.move_leadership(("t", 0), 3)
    assert [model.load(b).network_out for b in (1, 2, 3)] == [0, 40, 25]
    # Broker 2, which serves consumers, taking leadership sends both loads.
    model.move_leadership(("t", 0), 2)
    assert [model.load(b).network_out for b in (1, 2, 3)] == [0, 40 + 25, 0]
    model.move_leadership(("t", 0), 3)
    # Broker 2's replica moving takes them along.
    model.move_replica(("t", 0), 2, 4)
    assert (model.load(2).network_out, model.load(4).network_out) == (0, 40)


def test_removal_and_unregistration_records_shape_the_image() -> None:
    image = _image(_p(0, (1, 2), leader=1))
    image.apply(10, BrokerRemovalRecord(3, "IN_PROGRESS"))
    assert image.removing() == {3}
    image.apply(11, BrokerRemovalRecord(3, "DRAINED"))
    assert image.removing() == {3}
    image.apply(12, UnregisterBrokerRecord(3))
    image.apply(13, BrokerRemovalRecord(3, "COMPLETE"))
    assert 3 not in image.brokers and image.removing() == frozenset()
    # Back under the same id: a new member, with no removal to its name.
    image.apply(14, RegisterBrokerRecord(3, "127.0.0.1", 9003))
    assert 3 in image.brokers and 3 not in image.removals


def test_the_executor_keeps_to_the_per_broker_limit_and_counts_moves_in_flight() -> None:
    image = _image(
        _p(0, (1, 2), leader=1),
        _p(1, (1, 2), leader=1),
        _p(2, (1, 2), leader=1),
        _p(3, (2, 3, 1), leader=1, adding_replicas=(3,), removing_replicas=(1,)),
    )
    proposals = [
        PartitionProposal("t", 0, (1, 2), (3, 2)),
        PartitionProposal("t", 1, (1, 2), (1, 3)),
        PartitionProposal("t", 2, (1, 2), (2, 1)),  # leadership only
    ]
    plan = plan_execution(proposals, image, max_moves_per_broker=2)
    # Broker 3 and 1 already have one move each: one more fits, the second waits.
    assert plan.reassignments == [("t", 0, (3, 2))]
    assert plan.leader_transfers == [("t", 2, (2, 1))]
    assert plan.deferred == 1


def test_private_api_frames_round_trip() -> None:
    body = encode_request_body({"remove_brokers": [3]})
    frame = memoryview(b"HEADER" + body)
    assert decode_request_body(frame, 6) == {"remove_brokers": [3]}
    resp = encode_response_body(102, "brokers [9] are not registered", {"a": 1})
    assert decode_response_body(resp) == (102, "brokers [9] are not registered", {"a": 1})
    assert decode_response_body(encode_response_body(0, None, {})) == (0, None, {})


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00",
        struct.pack(">i", -1),
        struct.pack(">i", 10) + b"{}",
        struct.pack(">i", 2) + b"[]",
        struct.pack(">i", 2) + b"\xff\xfe",
        struct.pack(">i", 2 << 20) + b"{}",
        struct.pack(">i", 200_000) + b"[" * 100_000 + b"]" * 100_000,  # nesting, not size
    ],
)
def test_malformed_request_bodies_raise_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_request_body(memoryview(body), 0)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for decode in (
        lambda: decode_request_body(memoryview(data), 0),
        lambda: decode_response_body(data),
    ):
        try:
            decode()
        except DecodeError:
            pass


def test_placements_that_change_while_the_balancer_works_are_pinned() -> None:
    """A partition whose replicas change between rounds of a rebalance (the balancer's own
    move, or a user's reassignment or cancel) is pinned until the balancer is idle again."""
    from types import SimpleNamespace

    from artesian.balancer.self_balancer import SelfBalancer

    def image(placements: dict[int, list[int]]) -> Any:
        parts = {
            i: SimpleNamespace(partition=i, target_replicas=replicas)
            for i, replicas in placements.items()
        }
        return SimpleNamespace(topics={"t": SimpleNamespace(name="t", partitions=parts)})

    balancer = SelfBalancer(SimpleNamespace())
    balancer._pin_moved(image({0: [1, 2], 1: [1, 2]}), active=True)
    assert balancer._pinned == set()
    balancer._pin_moved(image({0: [2, 3], 1: [1, 2]}), active=True)  # a user moved t-0
    assert balancer._pinned == {("t", 0)}
    balancer._pin_moved(image({0: [1, 2], 1: [1, 2]}), active=True)  # ...and cancelled
    assert balancer._pinned == {("t", 0)}
    balancer._pin_moved(image({0: [1, 2], 1: [1, 2]}), active=False)
    assert balancer._pinned == set()


def test_a_partition_whose_leader_just_moved_keeps_its_produce_rate() -> None:
    """The new leader's first sample has no rates yet; the follower that copies the same
    bytes does: the model takes the highest produce rate any replica reports."""
    image = _image(_p(0, (3, 2), leader=3))
    samples = {
        3: BrokerSample(3, 0, 1e9, UNLIMITED, UNLIMITED, {("t", 0): PartitionSample(800, 0, 0)}),
        2: BrokerSample(2, 0, 1e9, UNLIMITED, UNLIMITED, {("t", 0): PartitionSample(800, 70, 0)}),
    }
    p = build_model(image, {2, 3}, samples, excluded=frozenset(), pinned={("t", 0)}).partitions[
        ("t", 0)
    ]
    assert (p.bytes_in_rate, p.bytes_out_rate, p.pinned) == (70, 0, True)


def test_a_rebalance_that_ends_uneven_says_why() -> None:
    """COMPLETED with goals still off (no move within the hard limits evens them) carries
    a reason naming them, not None."""
    from types import SimpleNamespace

    from artesian.balancer.optimizer import OptimizerResult
    from artesian.balancer.self_balancer import SelfBalancer
    from artesian.metadata.records import BalancerTaskRecord

    committed: list[Any] = []
    balancer = SelfBalancer(SimpleNamespace(commit=committed.extend))
    image = SimpleNamespace(
        removals={}, balancer_task=BalancerTaskRecord("t1", "REQUESTED", "IN_PROGRESS")
    )
    balancer._close(
        image, OptimizerResult([], ["DiskUsageDistribution"], ["DiskUsageDistribution"], {})
    )  # type: ignore[arg-type]
    (task,) = committed
    assert (task.state, task.reason) == (
        "COMPLETED",
        "balanced as far as the hard goals allow; still off: DiskUsageDistribution",
    )
    committed.clear()
    balancer._close(image, OptimizerResult([], [], [], {}))  # type: ignore[arg-type]
    assert (committed[0].state, committed[0].reason) == ("COMPLETED", None)
