"""Server-side assignors of the consumer group protocol (KIP-848): ``uniform`` and ``range``.

Sans-I/O: an assignor maps each member's subscribed topics (already resolved to existing
topics) and the topics' partition counts to a target assignment. The coordinator runs it
when the group epoch moves past the assignment epoch; members then converge on the target
through CurrentAssignmentBuilder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

TopicPartition = tuple[str, int]
Assignment = frozenset[TopicPartition]
Assignor = Callable[
    [Mapping[str, frozenset[str]], Mapping[str, int], Mapping[str, Assignment]],
    dict[str, Assignment],
]


def uniform(
    subscriptions: Mapping[str, frozenset[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Spread partitions evenly over the members subscribed to them, moving as few as
    possible from the previous target (Kafka's UniformAssignor: balance first, then
    stickiness).

    Every partition a member keeps stays put; orphaned partitions go to the least-loaded
    eligible member; then partitions move, one at a time, from the most loaded member to an
    eligible one holding at least two fewer, until no such move exists. With identical
    subscriptions this ends with every member holding the floor or the ceiling of the
    average.
    """
    if len(set(subscriptions.values())) == 1:
        return _uniform_homogeneous(subscriptions, partition_counts, previous)
    owned: dict[str, set[TopicPartition]] = {m: set() for m in subscriptions}
    taken: set[TopicPartition] = set()
    for member, topics in subscriptions.items():
        for tp in previous.get(member, ()):
            if tp[0] in topics and tp[1] < partition_counts.get(tp[0], 0) and tp not in taken:
                owned[member].add(tp)
                taken.add(tp)
    subscribers: dict[str, list[str]] = {}
    for member in sorted(subscriptions):
        for topic in subscriptions[member]:
            if partition_counts.get(topic, 0) > 0:
                subscribers.setdefault(topic, []).append(member)
    # Topics with the fewest subscribers first: their partitions have the fewest homes.
    for topic in sorted(subscribers, key=lambda t: (len(subscribers[t]), t)):
        for index in range(partition_counts[topic]):
            tp = (topic, index)
            if tp not in taken:
                home = min(subscribers[topic], key=lambda m: (len(owned[m]), m))
                owned[home].add(tp)
                taken.add(tp)
    _even_out(owned, subscribers)
    return {member: frozenset(tps) for member, tps in owned.items()}


def _uniform_homogeneous(
    subscriptions: Mapping[str, frozenset[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Every member subscribes to the same topics (the usual group): each gets the floor or
    the ceiling of the average, in O(partitions + members). The ceilings go to the members
    keeping the most of what they had; each keeps what it can up to its share, and the rest
    is dealt out in order."""
    topics = next(iter(subscriptions.values()))
    everything = sorted((t, i) for t in topics for i in range(partition_counts.get(t, 0)))
    valid = set(everything)
    kept: dict[str, list[TopicPartition]] = {}
    taken: set[TopicPartition] = set()
    for member in sorted(subscriptions):
        mine = [tp for tp in sorted(previous.get(member, ())) if tp in valid and tp not in taken]
        kept[member] = mine
        taken.update(mine)
    quota, extra = divmod(len(everything), len(subscriptions))
    order = sorted(subscriptions, key=lambda m: (-len(kept[m]), m))
    share = {m: quota + (1 if i < extra else 0) for i, m in enumerate(order)}
    owned = {m: set(kept[m][: share[m]]) for m in subscriptions}
    assigned = {tp for tps in owned.values() for tp in tps}
    free = iter(tp for tp in everything if tp not in assigned)
    for member in sorted(subscriptions):
        for _ in range(share[member] - len(owned[member])):
            owned[member].add(next(free))
    return {member: frozenset(tps) for member, tps in owned.items()}


def _even_out(owned: dict[str, set[TopicPartition]], subscribers: dict[str, list[str]]) -> None:
    """Move one partition at a time from the most loaded member able to give one to an
    eligible member holding at least two fewer. Each move lowers the sum of squared loads,
    so this ends; taking from the most loaded first moves no partition twice."""
    while True:
        for giver in sorted(owned, key=lambda m: (-len(owned[m]), m)):
            move = _one_move(owned, subscribers, giver)
            if move is not None:
                tp, taker = move
                owned[giver].remove(tp)
                owned[taker].add(tp)
                break
        else:
            return


def _one_move(
    owned: dict[str, set[TopicPartition]], subscribers: dict[str, list[str]], giver: str
) -> tuple[TopicPartition, str] | None:
    for tp in sorted(owned[giver]):
        taker = min(subscribers[tp[0]], key=lambda m: (len(owned[m]), m))
        if len(owned[taker]) + 1 < len(owned[giver]):
            return tp, taker
    return None


def range_(
    subscriptions: Mapping[str, frozenset[str]],
    partition_counts: Mapping[str, int],
    previous: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Per topic, contiguous ranges to its subscribers in member id order, the first ones
    taking one extra (Kafka's RangeAssignor): co-partitioned topics land together."""
    owned: dict[str, set[TopicPartition]] = {m: set() for m in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    for topic in topics:
        count = partition_counts.get(topic, 0)
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        if not count or not members:
            continue
        quota, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            size = quota + (1 if i < extra else 0)
            owned[member].update((topic, p) for p in range(start, start + size))
            start += size
    return {member: frozenset(tps) for member, tps in owned.items()}


ASSIGNORS: Mapping[str, Assignor] = {"uniform": uniform, "range": range_}
