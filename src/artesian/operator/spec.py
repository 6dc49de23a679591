"""The declared cluster: what the operator reconciles towards (the custom resource's spec, for
the local-process runtime a TOML file).

    brokers = 3                 # node ids 1..3
    host = "127.0.0.1"
    first_port = 9091           # broker i listens on first_port + i - 1
    data_dir = "cluster-data"   # relative to this file; broker i keeps its data in broker-i/
    version = "1"               # change it to roll every broker, one at a time
    racks = ["a", "b"]          # broker i gets racks[(i - 1) % len(racks)] as broker.rack

    [config]                    # broker properties, Kafka's names, for every broker
    "default.replication.factor" = 3
    "min.insync.replicas" = 2

Every broker shares the metadata store ``artesian.metadata.store.url`` (default: an SQLite
file in data_dir). A broker's *revision* digests everything it is started with; a spec change
that alters it is what the rolling restart carries out.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The operator owns these per broker; a spec may not set them in [config].
PER_BROKER_PROPERTIES = (
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "artesian.metrics.port",
)


class SpecError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    brokers: int
    data_dir: Path
    host: str = "127.0.0.1"
    first_port: int = 9091
    version: str = "1"
    racks: tuple[str, ...] = ()
    config: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ClusterSpec:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SpecError(f"cannot read the cluster spec {path}: {e}") from e
        return cls.from_dict(raw, base=path.parent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base: Path) -> ClusterSpec:
        known = {"brokers", "host", "first_port", "data_dir", "version", "racks", "config"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SpecError(f"unknown spec fields {unknown}; known: {sorted(known)}")
        brokers = raw.get("brokers", 1)
        if not isinstance(brokers, int) or isinstance(brokers, bool) or not 1 <= brokers <= 100:
            raise SpecError(f"brokers must be a whole number from 1 to 100, not {brokers!r}")
        first_port = raw.get("first_port", 9091)
        # Broker i listens on first_port + i - 1 and serves metrics 1000 ports higher.
        if not isinstance(first_port, int) or not 1024 <= first_port <= 65535 - 1000 - brokers:
            raise SpecError(
                f"first_port {first_port!r} leaves no room for {brokers} brokers and their "
                "metrics ports (first_port + 1000 + ...)"
            )
        config = raw.get("config", {})
        if not isinstance(config, dict):
            raise SpecError("[config] must be a table of broker properties")
        owned = sorted(k for k in config if k in PER_BROKER_PROPERTIES)
        if owned:
            raise SpecError(
                f"{owned} are set per broker by the operator; remove them from [config]"
            )
        racks = raw.get("racks", [])
        if not isinstance(racks, list) or not all(isinstance(r, str) and r for r in racks):
            raise SpecError("racks must be a list of rack names")
        data_dir = Path(str(raw.get("data_dir", "cluster-data")))
        return cls(
            brokers=brokers,
            data_dir=data_dir if data_dir.is_absolute() else (base / data_dir).resolve(),
            host=str(raw.get("host", "127.0.0.1")),
            first_port=first_port,
            version=str(raw.get("version", "1")),
            racks=tuple(racks),
            config={str(k): _prop(v) for k, v in config.items()},
        )

    @property
    def store_url(self) -> str:
        return self.config.get(
            "artesian.metadata.store.url", f"sqlite:///{self.data_dir / 'metadata.db'}"
        )

    def port(self, node: int) -> int:
        return self.first_port + node - 1

    def metrics_port(self, node: int) -> int:
        """Each broker's Prometheus endpoint, which the rolling restart reads."""
        return self.first_port + 1000 + node - 1

    def broker_dir(self, node: int) -> Path:
        return self.data_dir / f"broker-{node}"

    def bootstrap(self, nodes: range | list[int] | None = None) -> str:
        ids = nodes if nodes is not None else range(1, self.brokers + 1)
        return ",".join(f"{self.host}:{self.port(i)}" for i in ids)

    def properties(self, node: int) -> dict[str, str]:
        """Everything broker ``node`` runs with."""
        props = {
            # One object store for the whole cluster: a new leader reads what the old one
            # uploaded (each broker's own directory would hide it).
            "rsm.config.store.url": f"file://{self.data_dir / 'remote-storage'}",
            **self.config,
            "node.id": str(node),
            "artesian.metadata.store.url": self.store_url,
            "artesian.metrics.port": str(self.metrics_port(node)),
        }
        if self.racks:
            props["broker.rack"] = self.racks[(node - 1) % len(self.racks)]
        return props

    def revision(self, node: int) -> str:
        doc = {"version": self.version, "port": self.port(node), "props": self.properties(node)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def _prop(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
