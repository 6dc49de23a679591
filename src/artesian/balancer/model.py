"""The balancer's load model (Cruise Control's ClusterModel): where each partition's replicas
are and what each costs a broker in replicas, leaderships, disk and network.

Sans-I/O: built by ``self_balancer`` from the metadata image and the brokers' load samples,
changed by the optimizer's actions, and read back as a proposal. Convention: ``replicas[0]``
is the partition's leader once the proposal is carried out (the executor orders replica lists
that way, so Kafka's preferred-leader rebalance agrees with the balancer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

UNLIMITED = math.inf


@dataclass(slots=True)
class PartitionLoad:
    topic: str
    partition: int
    replicas: list[int]
    """Replica order as it will be; ``replicas[0]`` leads."""
    size_bytes: float = 0.0
    """Bytes on each replica's local disk (with tiered storage, the hot tail only)."""
    bytes_in_rate: float = 0.0
    """Produce bytes per second into the leader; every follower fetches the same."""
    bytes_out_rate: float = 0.0
    """Consumer fetch bytes per second out of the leader."""
    follower_bytes_out: dict[int, float] = field(default_factory=dict)
    """Consumer fetch bytes per second each follower serves itself (fetch from follower,
    KIP-392), by broker: they stay with the replica when leadership moves, and move with it
    (an estimate: moved to another rack, those consumers would read elsewhere in theirs)."""
    movable: bool = True
    """False while a reassignment of it is in flight: the optimizer leaves it alone."""
    pinned: bool = False
    """Its replicas stay where they are for balance's sake (this rebalance moved it already,
    or a user placed it): only a hard goal, or its leadership, may move it."""
    in_sync: set[int] = field(default_factory=set)
    """Replicas that may take leadership now (in the ISR, on a live broker)."""

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def leader(self) -> int:
        return self.replicas[0] if self.replicas else -1

    def leader_network_out(self) -> float:
        """A leader sends to consumers and to each follower."""
        return self.bytes_out_rate + self.bytes_in_rate * (len(self.replicas) - 1)

    def network_out_on(self, broker: int) -> float:
        """What the replica on ``broker`` sends: the leader's load if it leads, plus the
        consumers it serves as a follower."""
        out = self.follower_bytes_out.get(broker, 0.0)
        if self.replicas and self.replicas[0] == broker:
            out += self.leader_network_out()
        return out

    def total_network_out(self) -> float:
        return self.leader_network_out() + sum(self.follower_bytes_out.values())


@dataclass(slots=True)
class BrokerState:
    node_id: int
    rack: str | None = None
    alive: bool = True
    excluded: bool = False
    """Being removed, or dead past the healing threshold: it must end with no replicas and
    never receives one."""
    disk_capacity: float = UNLIMITED
    """Bytes its logs may use (the log directory's size times the allowed load)."""
    network_in_capacity: float = UNLIMITED
    network_out_capacity: float = UNLIMITED

    @property
    def eligible(self) -> bool:
        """May receive replicas."""
        return self.alive and not self.excluded


@dataclass(slots=True)
class BrokerLoad:
    replicas: int = 0
    leaders: int = 0
    disk: float = 0.0
    network_in: float = 0.0
    network_out: float = 0.0


@dataclass(slots=True)
class ClusterModel:
    brokers: dict[int, BrokerState]
    partitions: dict[tuple[str, int], PartitionLoad] = field(default_factory=dict)
    _load: dict[int, BrokerLoad] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.recompute()

    def recompute(self) -> None:
        """Rebuild the per-broker totals from the partitions (after editing them directly)."""
        self._load = {b: BrokerLoad() for b in self.brokers}
        for p in self.partitions.values():
            self._add(p, +1)

    def _add(self, p: PartitionLoad, sign: int) -> None:
        for i, b in enumerate(p.replicas):
            load = self._load.get(b)
            if load is None:  # a replica on a broker the model does not know: count it
                load = self._load[b] = BrokerLoad()
            load.replicas += sign
            load.disk += sign * p.size_bytes
            load.network_in += sign * p.bytes_in_rate
            load.network_out += sign * p.network_out_on(b)
            if i == 0:
                load.leaders += sign

    def load(self, node_id: int) -> BrokerLoad:
        return self._load.setdefault(node_id, BrokerLoad())

    def replicas_on(self, node_id: int) -> list[PartitionLoad]:
        return [p for p in self.partitions.values() if node_id in p.replicas]

    # --- the optimizer's two actions ---------------------------------------------------

    def move_replica(self, key: tuple[str, int], source: int, destination: int) -> None:
        """The replica on ``source`` moves to ``destination``, taking its place in the list
        (a moving leader stays leader on its new broker)."""
        p = self.partitions[key]
        if source not in p.replicas or destination in p.replicas:
            raise ValueError(f"cannot move {key} from {source} to {destination}: {p.replicas}")
        self._add(p, -1)
        p.replicas[p.replicas.index(source)] = destination
        p.in_sync.discard(source)  # the new replica must copy the log first
        if source in p.follower_bytes_out:  # its consumers follow it
            p.follower_bytes_out[destination] = p.follower_bytes_out.pop(source)
        self._add(p, +1)

    def move_leadership(self, key: tuple[str, int], new_leader: int) -> None:
        """Another replica of the partition leads: it goes to the front of the list."""
        p = self.partitions[key]
        if new_leader not in p.in_sync:
            raise ValueError(f"{new_leader} is not an in-sync replica of {key}: {p.replicas}")
        self._add(p, -1)
        p.replicas.remove(new_leader)
        p.replicas.insert(0, new_leader)
        self._add(p, +1)
