"""KIP-392: which replica a consumer should fetch from (Kafka's ReplicaSelector).

``replica.selector.class`` names the selector, as in Kafka. Unset, or LeaderSelector, keeps
every consumer on the leader. RackAwareReplicaSelector sends a consumer whose Fetch names
its rack (librdkafka's and Java's ``client.rack``) to an in-sync replica in that rack, so
that reads stay in the consumer's zone. The leader answers such a fetch with no records and
``preferred_read_replica``; the follower then serves it up to its high watermark.

Sans-I/O: the fetch handler passes the partition and what it knows of the brokers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from artesian.config.broker import RACK_AWARE_REPLICA_SELECTOR

if TYPE_CHECKING:
    from artesian.broker.replica_manager import Partition


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """One candidate replica, as Kafka's ReplicaView describes it."""

    node_id: int
    rack: str | None
    log_end_offset: int
    time_since_last_caught_up_ms: int


def select_rack_aware(
    client_rack: str, leader: ReplicaView, replicas: Iterable[ReplicaView]
) -> ReplicaView:
    """Kafka's RackAwareReplicaSelector: the leader when the client names no rack, when no
    replica is in its rack, or when the leader is; else the replica in its rack with the
    highest log end offset, then the one caught up most recently."""
    if not client_rack:
        return leader
    same_rack = [r for r in replicas if r.rack == client_rack]
    if not same_rack or leader in same_rack:
        return leader
    return max(same_rack, key=lambda r: (r.log_end_offset, -r.time_since_last_caught_up_ms))


def preferred_read_replica(
    selector: str | None,
    partition: Partition,
    client_rack: str,
    fetch_offset: int,
    now_ms: int,
    rack_of: Callable[[int], str | None],
    reachable: Callable[[int], bool],
) -> int:
    """The replica a consumer fetching ``fetch_offset`` from this leader should read from
    instead, or -1 to read here (Kafka's findPreferredReadReplica). Candidates are in-sync
    followers whose log holds the offset, on live brokers the client's listener reaches."""
    if selector != RACK_AWARE_REPLICA_SELECTOR or not client_rack:
        return -1
    log = partition.log
    leader = ReplicaView(partition.local_id, rack_of(partition.local_id), log.log_end_offset, 0)
    candidates = [leader]
    for node in partition.isr:
        st = partition.followers.get(node)
        if node == partition.local_id or st is None or not reachable(node):
            continue
        if st.log_start_offset <= fetch_offset <= st.log_end_offset:
            candidates.append(
                ReplicaView(node, rack_of(node), st.log_end_offset, now_ms - st.last_caught_up_ms)
            )
    chosen = select_rack_aware(client_rack, leader, candidates)
    return -1 if chosen is leader else chosen.node_id
