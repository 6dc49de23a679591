"""Load samples: what each broker measures of the partitions it hosts, and the model the
self-balancer builds from them and the metadata image.

Every broker publishes a sample to the metadata store every
``artesian.balancer.load.sample.interval.ms`` (Cruise Control's metrics reporter does this
through a topic; a row per broker, overwritten in place, needs no topic to be consumed and
costs the log nothing). Sizes are local bytes, so with tiered storage only the hot tail
counts, which is what a move copies.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from artesian.balancer.model import UNLIMITED, BrokerState, ClusterModel, PartitionLoad

if TYPE_CHECKING:
    from artesian.broker.replica_manager import Partition
    from artesian.metadata.image import MetadataImage

log = logging.getLogger("artesian.balancer")


@dataclass(slots=True)
class PartitionSample:
    size_bytes: int
    bytes_in_rate: float
    bytes_out_rate: float


@dataclass(slots=True)
class BrokerSample:
    node_id: int
    time_ms: int
    disk_capacity: float
    """Bytes its logs may fill: capacity times artesian.balancer.disk.max.load."""
    network_in_capacity: float
    network_out_capacity: float
    partitions: dict[tuple[str, int], PartitionSample] = field(default_factory=dict)

    def to_json(self) -> str:
        def num(x: float) -> float | None:
            return None if math.isinf(x) else x

        return json.dumps(
            {
                "node_id": self.node_id,
                "time_ms": self.time_ms,
                "disk_capacity": num(self.disk_capacity),
                "network_in_capacity": num(self.network_in_capacity),
                "network_out_capacity": num(self.network_out_capacity),
                "partitions": [
                    [t, i, s.size_bytes, round(s.bytes_in_rate, 1), round(s.bytes_out_rate, 1)]
                    for (t, i), s in self.partitions.items()
                ],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> BrokerSample:
        d = json.loads(raw)

        def cap(x: float | None) -> float:
            return UNLIMITED if x is None else float(x)

        return cls(
            int(d["node_id"]),
            int(d["time_ms"]),
            cap(d["disk_capacity"]),
            cap(d["network_in_capacity"]),
            cap(d["network_out_capacity"]),
            {
                (str(t), int(i)): PartitionSample(int(size), float(rin), float(rout))
                for t, i, size, rin, rout in d["partitions"]
            },
        )


def parse_samples(raw: Mapping[int, str]) -> dict[int, BrokerSample]:
    samples: dict[int, BrokerSample] = {}
    for node, text in raw.items():
        try:
            samples[node] = BrokerSample.from_json(text)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ignoring broker %d's unreadable load sample: %s", node, e)
    return samples


class LoadSampler:
    """Turns the partitions' byte counters into rates over the time between two samples."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], tuple[int, int, int]] = {}

    def sample(
        self,
        node_id: int,
        partitions: Iterable[Partition],
        now_ms: int,
        disk_capacity: float,
        network_in_capacity: float,
        network_out_capacity: float,
    ) -> BrokerSample:
        out = BrokerSample(
            node_id, now_ms, disk_capacity, network_in_capacity, network_out_capacity
        )
        seen: dict[tuple[str, int], tuple[int, int, int]] = {}
        for p in partitions:
            key = (p.topic, p.index)
            seen[key] = (now_ms, p.bytes_in_total, p.bytes_out_total)
            rate_in = rate_out = 0.0
            last = self._last.get(key)
            if last is not None and now_ms > last[0]:
                seconds = (now_ms - last[0]) / 1000
                rate_in = max(0, p.bytes_in_total - last[1]) / seconds
                rate_out = max(0, p.bytes_out_total - last[2]) / seconds
            out.partitions[key] = PartitionSample(p.log.size_in_bytes, rate_in, rate_out)
        self._last = seen
        return out


def build_model(
    image: MetadataImage,
    live: Set[int],
    samples: Mapping[int, BrokerSample],
    excluded: Set[int],
    pinned: Set[tuple[str, int]] = frozenset(),
) -> ClusterModel:
    """The cluster as the optimizer sees it: each partition as it will be once moves in flight
    end (those are not movable), its current leader first, its size and consumer rate from
    the leader's sample (or any replica's, while the leader has not reported), its produce
    rate the highest any in-sync replica reports (followers count what they copy, and a
    replica new to a broker reports nothing for its first interval: a partition that just
    moved must not look weightless), and the consumer bytes each follower serves from its own sample.
    ``pinned`` partitions keep their replicas for balance's sake."""
    brokers: dict[int, BrokerState] = {}
    for node, b in image.brokers.items():
        s = samples.get(node)
        brokers[node] = BrokerState(
            node,
            rack=b.rack,
            alive=node in live,
            excluded=node in excluded,
            disk_capacity=s.disk_capacity if s else UNLIMITED,
            network_in_capacity=s.network_in_capacity if s else UNLIMITED,
            network_out_capacity=s.network_out_capacity if s else UNLIMITED,
        )
    model = ClusterModel(brokers)
    for topic in image.topics.values():
        for p in topic.partitions.values():
            key = (topic.name, p.partition)
            replicas = list(p.target_replicas)
            if p.leader in replicas:
                replicas.remove(p.leader)
                replicas.insert(0, p.leader)
            reported = [
                samples[r].partitions[key]
                for r in p.replicas
                if r in samples and key in samples[r].partitions
            ]
            # In-sync replicas only: one catching up counts its copying as bytes in.
            caught_up = [
                samples[r].partitions[key]
                for r in p.isr
                if r in samples and key in samples[r].partitions
            ]
            leader_sample = samples[p.leader].partitions.get(key) if p.leader in samples else None
            size = max((s.size_bytes for s in reported), default=0)
            if leader_sample is not None:
                size = leader_sample.size_bytes
            # Followers serving consumers in their racks (KIP-392) report those bytes.
            follower_out = {
                r: samples[r].partitions[key].bytes_out_rate
                for r in replicas[1:]
                if r in samples
                and key in samples[r].partitions
                and samples[r].partitions[key].bytes_out_rate > 0
            }
            model.partitions[key] = PartitionLoad(
                topic.name,
                p.partition,
                replicas,
                size_bytes=float(size),
                bytes_in_rate=max((s.bytes_in_rate for s in caught_up), default=0.0),
                bytes_out_rate=leader_sample.bytes_out_rate if leader_sample else 0.0,
                follower_bytes_out=follower_out,
                movable=not p.adding_replicas and not p.removing_replicas,
                pinned=key in pinned,
                in_sync={r for r in p.isr if r in live and r in replicas},
            )
    model.recompute()
    return model
