"""The self-balancing optimizer on synthetic load models (sans-I/O, no broker process): each
goal does what it promises, hard goals are never broken, soft goals keep their priority, and
the caller's model is left as it was."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

from artesian.balancer.goals import GOAL_NAMES, HARD_GOAL_NAMES
from artesian.balancer.model import BrokerState, ClusterModel, PartitionLoad
from artesian.balancer.optimizer import (
    GoalConfig,
    OptimizerResult,
    PartitionProposal,
    optimize,
    violated_goals,
)


def _part(
    topic: str,
    partition: int,
    replicas: list[int],
    *,
    size: float = 0.0,
    rate_in: float = 0.0,
    rate_out: float = 0.0,
    movable: bool = True,
    in_sync: set[int] | None = None,
) -> PartitionLoad:
    return PartitionLoad(
        topic,
        partition,
        list(replicas),
        size_bytes=size,
        bytes_in_rate=rate_in,
        bytes_out_rate=rate_out,
        movable=movable,
        in_sync=set(replicas) if in_sync is None else in_sync,
    )


def _model(brokers: list[BrokerState] | int, parts: list[PartitionLoad]) -> ClusterModel:
    states = [BrokerState(b) for b in range(brokers)] if isinstance(brokers, int) else brokers
    return ClusterModel({s.node_id: s for s in states}, {p.key: p for p in parts})


def _applied(model: ClusterModel, result: OptimizerResult) -> ClusterModel:
    """A fresh model with the proposals carried out and every replica caught up."""
    parts = {
        key: dataclasses.replace(
            p, replicas=list(p.replicas), follower_bytes_out=dict(p.follower_bytes_out)
        )
        for key, p in model.partitions.items()
    }
    for prop in result.proposals:
        p = parts[(prop.topic, prop.partition)]
        assert tuple(p.replicas) == prop.old_replicas
        p.replicas = list(prop.new_replicas)
        p.in_sync = set(prop.new_replicas)
        gone = [r for r in prop.old_replicas if r not in prop.new_replicas]
        came = [r for r in prop.new_replicas if r not in prop.old_replicas]
        for old, new in zip(gone, came, strict=True):  # a moved replica keeps its consumers
            if old in p.follower_bytes_out:
                p.follower_bytes_out[new] = p.follower_bytes_out.pop(old)
    brokers = {b: dataclasses.replace(s) for b, s in model.brokers.items()}
    return ClusterModel(brokers, parts)


def _run(
    model: ClusterModel, config: GoalConfig = GoalConfig()
) -> tuple[OptimizerResult, ClusterModel]:
    """Optimize and check what must hold whatever the input: sorted proposals that change
    something and only movable partitions, no duplicate replicas, no replica sent to an
    ineligible broker, and a ``violated_after`` that matches the model the proposals produce."""
    result = optimize(model, config)
    keys = [(p.topic, p.partition) for p in result.proposals]
    assert keys == sorted(keys)
    for prop in result.proposals:
        assert model.partitions[(prop.topic, prop.partition)].movable
        assert prop.new_replicas != prop.old_replicas
        assert len(set(prop.new_replicas)) == len(prop.new_replicas) == len(prop.old_replicas)
        for b in set(prop.new_replicas) - set(prop.old_replicas):
            assert model.brokers[b].eligible, f"{b} received a replica of {prop}"
    after = _applied(model, result)
    assert violated_goals(after, config) == result.violated_after
    assert set(result.unfixable) <= set(result.violated_after) & HARD_GOAL_NAMES
    return result, after


def _counts(model: ClusterModel) -> dict[int, int]:
    return {b: model.load(b).replicas for b in sorted(model.brokers)}


def _leaders(model: ClusterModel) -> dict[int, int]:
    return {b: model.load(b).leaders for b in sorted(model.brokers)}


def _even(
    brokers: int,
    partitions: int,
    rf: int,
    size: float = 0.0,
    rate_in: float = 0.0,
    rate_out: float = 0.0,
) -> list[PartitionLoad]:
    """Round-robin placement: every broker holds and leads the same number."""
    return [
        _part(
            "t",
            i,
            [(i + r) % brokers for r in range(rf)],
            size=size,
            rate_in=rate_in,
            rate_out=rate_out,
        )
        for i in range(partitions)
    ]


# --- API -------------------------------------------------------------------------------------


def test_goal_names_in_priority_order() -> None:
    assert GOAL_NAMES == (
        "ReplicaExclusion",
        "RackAware",
        "DiskCapacity",
        "NetworkInboundCapacity",
        "NetworkOutboundCapacity",
        "ReplicaDistribution",
        "LeaderDistribution",
        "DiskUsageDistribution",
        "NetworkInboundUsageDistribution",
        "NetworkOutboundUsageDistribution",
    )
    assert set(GOAL_NAMES[:5]) == HARD_GOAL_NAMES


def test_violated_goals_names_what_is_uneven_and_leaves_model_alone() -> None:
    model = _model(
        [BrokerState(0), BrokerState(1), BrokerState(2, excluded=True)],
        [_part("t", 0, [2, 0], size=10), _part("t", 1, [0, 1], size=10)],
    )
    before = {b: dataclasses.astuple(model.load(b)) for b in model.brokers}
    # Replicas: average 2 over the 2 eligible brokers, [1, 3] allowed; 0 holds 2, 1 holds 1.
    # Disk: average 20, [18, 22] allowed; broker 1 holds 10.
    assert violated_goals(model) == ["ReplicaExclusion", "DiskUsageDistribution"]
    assert {b: dataclasses.astuple(model.load(b)) for b in model.brokers} == before
    assert violated_goals(_model(3, _even(3, 6, 2, size=5))) == []


# --- soft goals ------------------------------------------------------------------------------


def test_new_broker_gets_its_share_of_replicas() -> None:
    model = _model(4, _even(3, 12, 2))  # brokers 0-2 hold 8 each, broker 3 is new
    assert _counts(model) == {0: 8, 1: 8, 2: 8, 3: 0}
    result, after = _run(model)
    assert result.violated_before == ["ReplicaDistribution", "LeaderDistribution"]
    # avg 6 with 10 %: within [5, 7]; the empty broker pulls from the fullest first.
    assert _counts(after) == {0: 6, 1: 6, 2: 7, 3: 5}
    assert "ReplicaDistribution" not in result.violated_after
    assert len(result.proposals) == 5


def test_zero_threshold_balances_exactly() -> None:
    result, after = _run(_model(4, _even(3, 12, 2)), GoalConfig(balance_threshold=0.0))
    assert _counts(after) == {0: 6, 1: 6, 2: 6, 3: 6}
    assert "ReplicaDistribution" not in result.violated_after


def test_leader_distribution_fixed_by_leadership_transfers_only() -> None:
    parts = [_part("t", i, [0, 1 + i % 2, 2 - i % 2]) for i in range(12)]  # 0 leads all 12
    model = _model(3, parts)
    result, after = _run(model)
    assert result.violated_before == ["LeaderDistribution"]
    assert result.violated_after == []
    # Average 4, [3, 5] allowed: 0 hands over leaderships until it leads 5.
    assert _leaders(after) == {0: 5, 1: 4, 2: 3}
    for prop in result.proposals:
        assert sorted(prop.new_replicas) == sorted(prop.old_replicas)  # same replica set
    assert len(result.proposals) == 7

    _, exact = _run(model, GoalConfig(balance_threshold=0.0))
    assert _leaders(exact) == {0: 4, 1: 4, 2: 4}


def test_leadership_only_to_in_sync_replicas() -> None:
    parts = [_part("t", i, [0, 1, 2], in_sync={0}) for i in range(6)]
    result, _ = _run(_model(3, parts))
    assert result.proposals == []
    assert result.violated_after == ["LeaderDistribution"]
    assert result.unfixable == {}  # a soft goal: uneven, not an error


def test_disk_balanced_by_moving_big_replicas() -> None:
    sizes = [40, 10, 10, 10]
    parts = [_part("big", i, [0], size=size) for i, size in enumerate(sizes)]
    parts += [_part("small", i, [1], size=1) for i in range(4)]
    model = _model(2, parts)
    assert violated_goals(model) == ["DiskUsageDistribution"]
    result, after = _run(model, GoalConfig(balance_threshold=0.2))
    # Disk 70 and 4: average 37, [29.6, 44.4] allowed; counts [3, 5]. Moving the 40 fits both.
    assert result.violated_after == []
    assert result.proposals == [PartitionProposal("big", 0, (0,), (1,))]
    assert (after.load(0).disk, after.load(1).disk) == (30, 44)


def test_disk_balancing_never_breaks_replica_distribution() -> None:
    # Equal replica counts; broker 0's replicas are big. One move keeps counts within [9, 11],
    # a second would not: the rest of the disk balancing swaps big for small replicas.
    parts = [_part("big", i, [0], size=10) for i in range(10)]
    parts += [_part("small", i, [1], size=1) for i in range(10)]
    model = _model(2, parts)
    result, after = _run(model)
    assert result.violated_before == ["DiskUsageDistribution"]
    assert result.violated_after == []
    assert 9 <= after.load(0).replicas <= 11
    assert 49.5 <= after.load(0).disk <= 60.5  # average 55
    moved = Counter(p.topic for p in result.proposals)
    assert moved["big"] > 1  # more big replicas left broker 0 than counts alone allowed


def test_disk_stays_uneven_rather_than_break_replica_distribution() -> None:
    # Broker 1 has nothing to swap back (empty partitions carry no disk to trade).
    parts = [_part("big", i, [0], size=10) for i in range(10)]
    parts += [_part("empty", i, [1]) for i in range(10)]
    result, after = _run(_model(2, parts))
    assert _counts(after) == {0: 9, 1: 11}
    assert result.violated_after == ["DiskUsageDistribution"]
    assert [(p.topic, p.new_replicas) for p in result.proposals] == [("big", (1,))]


def test_network_out_balanced_by_leadership_first() -> None:
    parts = [_part("t", i, [0, 1], rate_out=100.0) for i in range(2)]
    parts += [_part("u", i, [1, 0], rate_out=1.0) for i in range(2)]
    result, after = _run(_model(2, parts))
    assert result.violated_before == ["NetworkOutboundUsageDistribution"]
    assert result.violated_after == []
    # 200 and 2 out: average 101, [90.9, 111.1] allowed; one leadership does it.
    assert result.proposals == [PartitionProposal("t", 0, (0, 1), (1, 0))]
    assert (after.load(0).network_out, after.load(1).network_out) == (100.0, 102.0)


def test_low_utilization_skips_resource_distribution() -> None:
    parts = [_part("t", 0, [0], size=50), _part("t", 1, [1], size=1)]
    brokers = [BrokerState(b, disk_capacity=1000) for b in range(2)]
    model = _model(brokers, parts)
    assert violated_goals(model) == ["DiskUsageDistribution"]
    cfg = GoalConfig(low_utilization_threshold=0.05)  # 51 of 2000 bytes: 2.6 %
    assert violated_goals(model, cfg) == []
    assert optimize(model, cfg).proposals == []


def test_dead_broker_never_receives_replicas() -> None:
    brokers = [BrokerState(0), BrokerState(1), BrokerState(2, alive=False)]
    parts = [_part("t", i, [0]) for i in range(6)]
    result, after = _run(_model(brokers, parts), GoalConfig(balance_threshold=0.0))
    assert _counts(after) == {0: 3, 1: 3, 2: 0}
    assert result.violated_after == []


# --- hard goals ------------------------------------------------------------------------------


def test_excluded_broker_is_drained_and_its_leaderships_move() -> None:
    brokers = [BrokerState(b) for b in range(3)] + [BrokerState(3, excluded=True)]
    model = _model(brokers, _even(4, 8, 2))
    led_by_3 = {p.key for p in model.partitions.values() if p.leader == 3}
    assert len(led_by_3) == 2
    result, after = _run(model)
    assert "ReplicaExclusion" in result.violated_before
    assert after.load(3).replicas == 0
    assert after.load(3).leaders == 0
    assert result.violated_after == []
    assert result.unfixable == {}
    for prop in result.proposals:
        if (prop.topic, prop.partition) in led_by_3:
            # The replica that replaced 3's took its place at the head of the list.
            assert prop.old_replicas[0] == 3
            assert prop.new_replicas[1:] == prop.old_replicas[1:]
    assert sorted(_counts(after).values()) == [0, 5, 5, 6]


def test_a_dead_broker_keeps_its_replicas_until_excluded() -> None:
    # Down for a restart: its replicas stay (they are back soon), but it receives none.
    brokers = [BrokerState(0), BrokerState(1), BrokerState(2), BrokerState(3, alive=False)]
    result, after = _run(_model(brokers, _even(4, 8, 2)))
    assert "ReplicaExclusion" not in result.violated_before
    assert after.load(3).replicas == 4
    assert all(3 not in set(p.new_replicas) - set(p.old_replicas) for p in result.proposals)
    # Dead past the healing threshold, it is excluded: then it is emptied.
    brokers[3] = BrokerState(3, alive=False, excluded=True)
    result, after = _run(_model(brokers, _even(4, 8, 2)))
    assert result.violated_before[:1] == ["ReplicaExclusion"]
    assert after.load(3).replicas == 0
    assert "ReplicaExclusion" not in result.violated_after


def test_replicas_on_an_unknown_broker_are_moved() -> None:
    model = _model(3, [_part("t", 0, [7, 0])])
    result, _ = _run(model)
    assert result.violated_before == ["ReplicaExclusion"]
    assert result.proposals == [PartitionProposal("t", 0, (7, 0), (1, 0))]


def test_replication_factor_above_eligible_brokers_is_unfixable() -> None:
    brokers = [BrokerState(0), BrokerState(1), BrokerState(2, excluded=True)]
    model = _model(brokers, [_part("t", 0, [2, 0, 1])])
    result, after = _run(model)
    assert result.violated_after == ["ReplicaExclusion"]
    assert result.unfixable == {
        "ReplicaExclusion": "3 replicas of t-0 need 3 eligible brokers, 2 remain"
    }
    # The replica has to stay, but it no longer leads.
    assert [(p.old_replicas, p.new_replicas) for p in result.proposals] == [((2, 0, 1), (0, 2, 1))]
    assert after.load(2).leaders == 0


def test_several_unfixable_partitions_are_summarized() -> None:
    brokers = [BrokerState(0), BrokerState(1, excluded=True)]
    model = _model(brokers, [_part("t", i, [1, 0]) for i in range(3)])
    result = optimize(model)
    assert result.unfixable == {
        "ReplicaExclusion": "2 replicas of t-0 need 2 eligible brokers, 1 remain (and 2 more)"
    }


def test_non_movable_partitions_are_untouched() -> None:
    brokers = [BrokerState(0), BrokerState(1), BrokerState(2, excluded=True)]
    parts = [_part("t", 0, [2, 0], movable=False, in_sync={0, 2})]
    parts += [_part("t", i, [0, 1], movable=False) for i in range(1, 5)]  # all on 0 and 1
    parts += [_part("u", 0, [2, 0])]
    result, after = _run(_model(brokers, parts))
    assert [(p.topic, p.partition) for p in result.proposals] == [("u", 0)]
    assert after.partitions[("t", 0)].replicas == [2, 0]  # not even its leadership moved
    assert result.unfixable == {
        "ReplicaExclusion": "t-0 is being reassigned; its replica on broker 2 stays until that "
        "finishes"
    }


def test_rack_awareness_spreads_replicas_across_racks() -> None:
    brokers = [BrokerState(b, rack="a" if b < 2 else "b") for b in range(4)]
    parts = [_part("t", 0, [0, 1]), _part("t", 1, [2, 3])]
    parts += [_part("w", 0, [0, 1, 2])]  # RF 3 over 2 racks: both racks suffice
    model = _model(brokers, parts)
    assert violated_goals(model) == ["RackAware", "LeaderDistribution"]
    result, _ = _run(model)
    assert result.violated_after == []
    # A follower on the doubled rack moves to the least-loaded broker of the other rack; then
    # broker 0, leading two of three partitions, hands one leadership over.
    assert result.proposals == [
        PartitionProposal("t", 0, (0, 1), (0, 3)),
        PartitionProposal("t", 1, (2, 3), (2, 1)),
        PartitionProposal("w", 0, (0, 1, 2), (1, 0, 2)),
    ]


def test_rack_awareness_ignored_when_a_broker_has_no_rack() -> None:
    brokers = [BrokerState(0, rack="a"), BrokerState(1, rack="a"), BrokerState(2)]
    model = _model(brokers, [_part("t", 0, [0, 1]), _part("t", 1, [0, 2])])
    assert "RackAware" not in violated_goals(model)


def test_balancing_keeps_rack_awareness() -> None:
    # Rack a has brokers 0, 1, 2; rack b only broker 3: every partition needs a replica on 3,
    # so replica counts cannot even out and moves stay within rack a.
    brokers = [BrokerState(b, rack="a" if b < 3 else "b") for b in range(4)]
    parts = [_part("t", i, [0, 3]) for i in range(6)]
    result, after = _run(_model(brokers, parts))
    assert after.load(3).replicas == 6
    assert all(3 in p.replicas for p in after.partitions.values())
    assert "RackAware" not in result.violated_after
    assert _counts(after) == {0: 2, 1: 2, 2: 2, 3: 6}


def test_disk_capacity_is_never_exceeded() -> None:
    brokers = [BrokerState(0, disk_capacity=250), BrokerState(1), BrokerState(2)]
    parts = [_part("t", i, [0], size=100) for i in range(4)]
    parts += [_part("s", i, [1 + i % 2], size=1) for i in range(20)]
    model = _model(brokers, parts)
    assert violated_goals(model)[0] == "DiskCapacity"
    result, after = _run(model)
    # Two of the big replicas leave; replica balancing then refills broker 0 with small ones,
    # within its capacity. No 100-byte replica fits anywhere else within the disk bounds.
    assert [(p.topic, p.partition, p.new_replicas) for p in result.proposals if p.topic == "t"] == [
        ("t", 0, (1,)),
        ("t", 1, (2,)),
    ]
    assert _counts(after) == {0: 7, 1: 8, 2: 9}
    assert after.load(0).disk == 205
    assert result.violated_after == ["DiskUsageDistribution"]


def test_disk_capacity_unfixable_reason() -> None:
    brokers = [BrokerState(0, disk_capacity=50), BrokerState(1, disk_capacity=50)]
    model = _model(brokers, [_part("t", 0, [0], size=100)])
    result, _ = _run(model)
    assert result.unfixable == {
        "DiskCapacity": "broker 0 uses 100 disk bytes of its 50; nothing more can move off it "
        "within the hard goals"
    }
    assert result.proposals == []


def test_network_in_capacity_is_never_exceeded() -> None:
    brokers = [BrokerState(b, network_in_capacity=100.0) for b in range(3)]
    parts = [_part("t", i, [0, 1], rate_in=30.0) for i in range(4)]  # 0 and 1 take 120
    result, after = _run(_model(brokers, parts))
    assert "NetworkInboundCapacity" not in result.violated_after
    assert all(after.load(b).network_in <= 100.0 for b in range(3))


def test_network_out_capacity_fixed_by_leadership_before_moves() -> None:
    brokers = [BrokerState(0, network_out_capacity=150.0), BrokerState(1), BrokerState(2)]
    parts = [_part("t", i, [0, 1 + i % 2], rate_out=100.0) for i in range(3)]  # 0 leads all
    model = _model(brokers, parts)
    assert violated_goals(model)[0] == "NetworkOutboundCapacity"
    result, after = _run(model)
    assert result.violated_after == []
    assert after.load(0).network_out == 100.0
    # The biggest leaderships go first, to the follower with the most headroom.
    assert result.proposals == [
        PartitionProposal("t", 0, (0, 1), (1, 0)),
        PartitionProposal("t", 1, (0, 2), (2, 0)),
    ]


def test_network_out_capacity_moves_replicas_when_no_follower_can_lead() -> None:
    brokers = [BrokerState(0, network_out_capacity=150.0), BrokerState(1), BrokerState(2)]
    parts = [_part("t", i, [0, 1], rate_out=100.0, in_sync={0}) for i in range(2)]
    result, after = _run(_model(brokers, parts))
    assert "NetworkOutboundCapacity" not in result.violated_after
    assert after.load(0).network_out == 100.0
    # The leader's replica moves (to the only broker without one) and leads there.
    assert result.proposals == [PartitionProposal("t", 0, (0, 1), (2, 1))]


def test_network_out_counts_the_consumers_a_follower_serves() -> None:
    """Fetch from follower (KIP-392): broker 1 only follows t-0, but serves 200 B/s to
    consumers in its rack, over its capacity; its replica moves, consumers and all."""
    brokers = [BrokerState(0), BrokerState(1, network_out_capacity=150.0), BrokerState(2)]
    part = _part("t", 0, [0, 1], rate_out=10.0)
    part.follower_bytes_out = {1: 200.0}
    model = _model(brokers, [part])
    assert (model.load(0).network_out, model.load(1).network_out) == (10.0, 200.0)
    assert violated_goals(model)[0] == "NetworkOutboundCapacity"
    result, after = _run(model)
    assert "NetworkOutboundCapacity" not in result.violated_after
    # Not a leadership move: broker 1 would then send the leader's 10 B/s as well.
    assert result.proposals == [PartitionProposal("t", 0, (0, 1), (0, 2))]
    assert (after.load(1).network_out, after.load(2).network_out) == (0.0, 200.0)


def test_hard_goals_veto_soft_goal_moves() -> None:
    # Broker 2 is empty but can hold nothing more than one replica's bytes.
    brokers = [BrokerState(0), BrokerState(1), BrokerState(2, disk_capacity=10)]
    parts = [_part("t", i, [i % 2], size=10) for i in range(9)]
    result, after = _run(_model(brokers, parts))
    # Average 3, [2, 4] allowed: broker 2 would need 2 replicas but has room for 1.
    assert _counts(after) == {0: 4, 1: 4, 2: 1}
    assert after.load(2).disk <= 10
    assert "ReplicaDistribution" in result.violated_after
    assert "DiskCapacity" not in result.violated_after


def test_swaps_respect_capacity_on_both_sides() -> None:
    # Broker 0's replicas are big but quiet, broker 1's small but busy: every swap that evens
    # out disk brings broker 0 one more B/s of produce, and it may take only 12.
    brokers = [BrokerState(0, network_in_capacity=12.0), BrokerState(1)]
    parts = [_part("big", i, [0], size=10, rate_in=1.0) for i in range(10)]
    parts += [_part("busy", i, [1], size=1, rate_in=2.0) for i in range(10)]
    result, after = _run(_model(brokers, parts))
    assert after.load(0).network_in == 12.0
    assert "NetworkInboundCapacity" not in result.violated_after
    assert "DiskUsageDistribution" in result.violated_after
    assert 9 <= after.load(0).replicas <= 11


def test_no_eligible_broker_is_reported_not_crashed() -> None:
    brokers = [BrokerState(0, excluded=True), BrokerState(1, alive=False)]
    result, _ = _run(_model(brokers, [_part("t", 0, [0, 1])]))
    assert result.proposals == []
    assert result.violated_after == ["ReplicaExclusion"]
    assert result.unfixable == {
        "ReplicaExclusion": "2 replicas of t-0 need 2 eligible brokers, 0 remain"
    }


def test_empty_model() -> None:
    assert optimize(_model(0, [])) == OptimizerResult([], [], [], {})
    assert optimize(_model(3, [])) == OptimizerResult([], [], [], {})


# --- stability and isolation -----------------------------------------------------------------


def test_balanced_model_yields_no_proposals() -> None:
    model = _model(3, _even(3, 9, 3, size=10, rate_in=5, rate_out=7))
    result = optimize(model)
    assert result == OptimizerResult([], [], [], {})


def test_optimizing_the_result_again_changes_nothing() -> None:
    parts = [
        _part("t", i, [i % 3, (i + 1) % 3], size=10 + i % 4, rate_in=1 + i % 3, rate_out=5)
        for i in range(24)
    ]
    model = _model(5, parts)  # brokers 3 and 4 are new
    result, after = _run(model)
    assert result.proposals
    assert result.violated_after == []
    again = optimize(after)
    assert again == OptimizerResult([], [], [], {})


def test_callers_model_is_not_mutated() -> None:
    brokers = [BrokerState(b) for b in range(3)] + [BrokerState(3, excluded=True)]
    model = _model(brokers, _even(4, 8, 2, size=3))
    snapshot = [(p.key, list(p.replicas), set(p.in_sync)) for p in model.partitions.values()]
    loads = {b: dataclasses.astuple(model.load(b)) for b in model.brokers}
    result = optimize(model)
    assert result.proposals
    assert [(p.key, p.replicas, p.in_sync) for p in model.partitions.values()] == snapshot
    assert {b: dataclasses.astuple(model.load(b)) for b in model.brokers} == loads


def test_proposals_record_old_and_new_lists() -> None:
    model = _model(2, [_part("b", 0, [0]), _part("a", 1, [0]), _part("a", 0, [0])])
    result = optimize(model, GoalConfig(balance_threshold=0.0))
    # 3 replicas over 2 brokers: [1, 2] is balanced; one moves, the first candidate by key.
    assert result.proposals == [PartitionProposal("a", 0, (0,), (1,))]


def test_larger_cluster_ends_balanced_with_each_goal_respected() -> None:
    # 12 brokers in 3 racks, the last three new; 300 RF-3 partitions of varied sizes.
    brokers = [BrokerState(b, rack=f"r{b % 3}") for b in range(12)]
    parts = []
    for i in range(300):
        replicas = [(i + r) % 9 for r in range(3)]  # consecutive brokers: three racks
        parts.append(_part("t", i, replicas, size=1 + i % 7, rate_in=1 + i % 5, rate_out=3 + i % 4))
    model = _model(brokers, parts)
    result, after = _run(model)
    assert result.violated_after == []
    avg = 900 / 12
    for b in range(12):
        assert math.floor(avg * 0.9) <= after.load(b).replicas <= math.ceil(avg * 1.1)
    racks = Counter(
        len({after.brokers[b].rack for b in p.replicas}) for p in after.partitions.values()
    )
    assert racks == Counter({3: 300})


def test_pinned_partitions_keep_their_replicas_for_balance_only() -> None:
    """A pinned partition (moved already in this rebalance, or placed by a user) keeps its
    replicas whatever the soft goals want; its leadership may move, and a hard goal (here,
    emptying an excluded broker) still moves its replicas."""
    model = _model(4, _even(3, 12, 2))  # broker 3 is new and empty
    for p in model.partitions.values():
        p.pinned = True
    result, after = _run(model)
    assert _counts(after) == {0: 8, 1: 8, 2: 8, 3: 0}  # no replica moved for balance
    assert all(sorted(p.new_replicas) == sorted(p.old_replicas) for p in result.proposals)
    assert "ReplicaDistribution" in result.violated_after

    pinned_off = _model(4, _even(3, 12, 2))
    for p in pinned_off.partitions.values():
        p.pinned = p.partition % 2 == 0  # half of them free
    _, spread = _run(pinned_off)
    moved = {
        key
        for key, p in spread.partitions.items()
        if set(p.replicas) != set(pinned_off.partitions[key].replicas)
    }
    assert moved and all(key[1] % 2 == 1 for key in moved)

    brokers = [BrokerState(b) for b in range(3)] + [BrokerState(3, excluded=True)]
    leaving = _model(brokers, _even(4, 8, 2))
    for p in leaving.partitions.values():
        p.pinned = True
    result, after = _run(leaving)
    assert after.load(3).replicas == 0 and result.unfixable == {}
