"""The consumer group protocol's sans-I/O parts (KIP-848): the server-side assignors and
CurrentAssignmentBuilder's revoke-then-assign steps."""

from __future__ import annotations

import itertools
import random

from artesian.coordinator.group.assignors import range_, uniform
from artesian.coordinator.group.current_assignment_builder import (
    EMPTY,
    MemberAssignment,
    MemberState,
    reconcile,
)


def _parts(topic: str, *indexes: int) -> frozenset[tuple[str, int]]:
    return frozenset((topic, i) for i in indexes)


def _check_valid(result: dict, subs: dict, counts: dict) -> None:
    """Every partition of a subscribed topic goes to exactly one subscriber."""
    owners = [tp for tps in result.values() for tp in tps]
    assert len(owners) == len(set(owners))
    wanted = {(t, i) for ts in subs.values() for t in ts for i in range(counts.get(t, 0))}
    assert set(owners) == wanted
    for member, tps in result.items():
        assert all(t in subs[member] for t, _ in tps)


def test_uniform_balances_and_sticks() -> None:
    counts = {"a": 7, "b": 5}
    subs = {f"m{i}": frozenset(counts) for i in range(3)}
    first = uniform(subs, counts, {})
    _check_valid(first, subs, counts)
    assert sorted(len(v) for v in first.values()) == [4, 4, 4]
    # A fourth member: balance again, and the three keep all but what it must take.
    subs["m3"] = frozenset(counts)
    second = uniform(subs, counts, first)
    _check_valid(second, subs, counts)
    assert sorted(len(v) for v in second.values()) == [3, 3, 3, 3]
    for m in ("m0", "m1", "m2"):
        assert second[m] <= first[m]
    # A member leaves: its partitions move, the others keep theirs.
    del subs["m1"]
    third = uniform(subs, counts, {k: v for k, v in second.items() if k != "m1"})
    _check_valid(third, subs, counts)
    assert sorted(len(v) for v in third.values()) == [4, 4, 4]
    for m in ("m0", "m2", "m3"):
        assert second[m] <= third[m]
    # Nothing changed: nothing moves.
    assert uniform(subs, counts, third) == third


def test_uniform_with_different_subscriptions() -> None:
    counts = {"a": 6, "b": 2, "gone": 0}
    subs = {"x": frozenset({"a"}), "y": frozenset({"a", "b"}), "z": frozenset({"b", "gone"})}
    result = uniform(subs, counts, {"x": _parts("b", 0)})  # x no longer subscribes to b
    _check_valid(result, subs, {"a": 6, "b": 2})
    assert result["z"] == _parts("b", 0, 1)
    assert len(result["x"]) == len(result["y"]) == 3
    rng = random.Random(7)
    for _ in range(200):
        counts = {t: rng.randint(0, 6) for t in "abcd"}
        subs = {
            f"m{i}": frozenset(rng.sample(sorted(counts), rng.randint(0, 4)))
            for i in range(rng.randint(1, 5))
        }
        previous = {m: frozenset(rng.sample([(t, 0), (t, 1)], 1)) for m in subs for t in "ab"}
        result = uniform(subs, counts, previous)
        _check_valid(result, subs, counts)
        # Balanced: no partition could move to an eligible member holding two fewer.
        for giver, taker in itertools.permutations(result, 2):
            if len(result[giver]) >= len(result[taker]) + 2:
                assert not any(t in subs[taker] for t, _ in result[giver])


def test_range_gives_contiguous_ranges_per_topic() -> None:
    counts = {"a": 5, "b": 5}
    subs = {"m2": frozenset(counts), "m1": frozenset(counts), "m3": frozenset({"a"})}
    result = range_(subs, counts, {})
    _check_valid(result, subs, counts)
    assert result["m1"] == _parts("a", 0, 1) | _parts("b", 0, 1, 2)
    assert result["m2"] == _parts("a", 2, 3) | _parts("b", 3, 4)
    assert result["m3"] == _parts("a", 4)


def _member(
    epoch: int, assigned: frozenset, state: MemberState = MemberState.STABLE
) -> MemberAssignment:
    return MemberAssignment(epoch, epoch - 1, state, assigned, EMPTY)


def test_reconcile_revokes_before_it_assigns() -> None:
    held_by_other: set = set()
    current = _member(3, _parts("t", 0, 1, 2))
    target = _parts("t", 1, 2, 3)

    # Must give up t-0 first: the epoch stays, t-3 is not handed out yet.
    step = reconcile(current, 4, target, None, held_by_other.__contains__)
    assert step == MemberAssignment(
        3, 2, MemberState.UNREVOKED_PARTITIONS, _parts("t", 1, 2), _parts("t", 0)
    )
    # Still reporting t-0 (or nothing): no progress.
    assert reconcile(step, 4, target, _parts("t", 0, 1, 2), held_by_other.__contains__) == step
    assert reconcile(step, 4, target, None, held_by_other.__contains__) == step
    # t-0 revoked, but t-3 is still another member's: epoch 4, waiting for it.
    held_by_other.add(("t", 3))
    step = reconcile(step, 4, target, _parts("t", 1, 2), held_by_other.__contains__)
    assert step == MemberAssignment(
        4, 3, MemberState.UNRELEASED_PARTITIONS, _parts("t", 1, 2), EMPTY
    )
    # Released: the member takes it, still at epoch 4 (its previous epoch unchanged).
    held_by_other.clear()
    step = reconcile(step, 4, target, None, held_by_other.__contains__)
    assert step == MemberAssignment(4, 3, MemberState.STABLE, target, EMPTY)
    # Reconciled: nothing more happens until the target epoch moves.
    assert reconcile(step, 4, target, target, held_by_other.__contains__) is step


def test_reconcile_only_new_partitions_moves_the_epoch_at_once() -> None:
    current = _member(1, _parts("t", 0))
    step = reconcile(current, 2, _parts("t", 0, 1), None, lambda tp: False)
    assert step == MemberAssignment(2, 1, MemberState.STABLE, _parts("t", 0, 1), EMPTY)


def test_reconcile_skips_revoking_what_the_member_no_longer_holds() -> None:
    # A static member's new incarnation inherits partitions it does not hold yet.
    current = _member(0, _parts("t", 0, 1))
    step = reconcile(current, 5, _parts("t", 1, 2), frozenset(), lambda tp: False)
    assert step == MemberAssignment(5, 0, MemberState.STABLE, _parts("t", 1, 2), EMPTY)


def test_a_partition_is_held_since_the_epoch_the_member_got_it() -> None:
    """KIP-1251's assignment epochs: what a member keeps keeps its epoch, what it gains takes
    the new one, and a partition given up then given back starts over."""

    def free(tp: tuple[str, int]) -> bool:
        return False

    step = reconcile(_member(0, EMPTY), 1, _parts("t", 0, 1), None, free)
    assert [step.held_since(tp) for tp in _parts("t", 0, 1)] == [1, 1]
    # Gives t-1 up at epoch 2 (held until it confirms), then gains t-2 at epoch 3.
    step = reconcile(step, 2, _parts("t", 0), None, free)
    assert step.state is MemberState.UNREVOKED_PARTITIONS and step.held_since(("t", 1)) == 1
    step = reconcile(step, 2, _parts("t", 0), _parts("t", 0), free)
    assert step.held_since(("t", 1)) is None
    step = reconcile(step, 3, _parts("t", 0, 1, 2), None, free)
    assert {tp: step.held_since(tp) for tp in sorted(step.assigned)} == {
        ("t", 0): 1,
        ("t", 1): 3,  # given back: from now, not from epoch 1
        ("t", 2): 3,
    }
    # Without recorded epochs (state reloaded), a partition counts from the member's epoch.
    assert _member(7, _parts("t", 0)).held_since(("t", 0)) == 7


def test_uniform_homogeneous_is_valid_balanced_and_sticky() -> None:
    rng = random.Random(11)
    for _ in range(300):
        counts = {t: rng.randint(0, 5) for t in "abc"}
        topics = frozenset(rng.sample(sorted(counts), rng.randint(1, 3)))
        subs = {f"m{i}": topics for i in range(rng.randint(1, 8))}
        # Previous targets may overlap, name deleted topics or partitions out of range.
        previous = {
            m: frozenset((rng.choice("abcz"), rng.randint(0, 6)) for _ in range(rng.randint(0, 4)))
            for m in subs
        }
        result = uniform(subs, counts, previous)
        _check_valid(result, subs, counts)
        sizes = [len(v) for v in result.values()]
        assert max(sizes) - min(sizes) <= 1
        assert uniform(subs, counts, result) == result  # nothing changed: nothing moves
        # Sticky: with previous targets that do not overlap, no member both gains a
        # partition and loses one it had.
        owners = [tp for tps in previous.values() for tp in tps]
        if len(owners) == len(set(owners)):
            wanted = {(t, i) for t in topics for i in range(counts[t])}
            for m, tps in result.items():
                gained, lost = tps - previous[m], (previous[m] & wanted) - tps
                assert not (gained and lost), (m, previous[m], tps)
