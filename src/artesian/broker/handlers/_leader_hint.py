"""KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER (or, in a Fetch, FENCED_LEADER_EPOCH)
names its current leader, and the response carries that leader's endpoint (Produce v10+,
Fetch v16+), so that a client moves to it without waiting for a metadata refresh.

Kafka takes both from its metadata cache; here they come from the broker's image, and the
endpoint is the one of the listener the request came in on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kio.schema.errors import ErrorCode

# Fetch names the leader for both; Produce, which has no leader epoch, for the first only.
LEADER_MOVED = frozenset({ErrorCode.not_leader_or_follower, ErrorCode.fenced_leader_epoch})
NOT_LEADER = frozenset({ErrorCode.not_leader_or_follower})


def current_leader(
    broker: Any, listener: str, topic: str, partition: int
) -> tuple[int, int] | None:
    """(leader id, leader epoch) of a partition by the image, when a live broker that the
    client's listener reaches leads it. This broker too: a fenced epoch's hint is the new one."""
    timg = broker.image.topics.get(topic)
    pimg = timg.partitions.get(partition) if timg is not None else None
    if pimg is None or pimg.leader < 0:
        return None
    if pimg.leader not in broker.live_brokers:
        return None
    b = broker.image.brokers.get(pimg.leader)
    if b is None or b.endpoint(listener) is None:
        return None
    return pimg.leader, pimg.leader_epoch


def node_endpoints(
    broker: Any, listener: str, nodes: Iterable[int]
) -> list[tuple[int, str, int, str | None]]:
    """(node id, host, port, rack) of each node on ``listener``, by id."""
    out = []
    for node in sorted(set(nodes)):
        b = broker.image.brokers.get(node)
        address = b.endpoint(listener) if b is not None else None
        if address is not None:
            out.append((node, address[0], address[1], b.rack))
    return out
