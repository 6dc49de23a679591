"""The declared cluster: what the operator reconciles towards (the custom resource's spec, for
the local-process runtime a TOML file).

    brokers = 3                 # node ids 1..3
    host = "127.0.0.1"
    first_port = 9091           # broker i listens on first_port + i - 1
    data_dir = "cluster-data"   # relative to this file; broker i keeps its data in broker-i/
    version = "1"               # change it to roll every broker, one at a time
    racks = ["a", "b"]          # broker i gets racks[(i - 1) % len(racks)] as broker.rack
    client_protocol = "SASL_SSL"  # optional: clients get a listener of their own (below)
    metadata_version = 2        # optional: finalize no newer artesian.metadata.version

    [config]                    # broker properties, Kafka's names, for every broker
    "default.replication.factor" = 3
    "min.insync.replicas" = 2

    [client_config]             # the client listener's own settings (listener.name.client.*)
    "sasl.enabled.mechanisms" = "SCRAM-SHA-512"
    "ssl.keystore.location" = "/etc/artesian/broker.pem"

With the default ``client_protocol = "PLAINTEXT"`` each broker has one PLAINTEXT listener,
``first_port + i - 1``. With any other protocol it has two: ``INTERNAL`` on that port, where
brokers replicate and the operator talks to them, and ``CLIENT`` (that protocol, on
``first_port + 2000 + i - 1``), the cluster's bootstrap for users. INTERNAL is SASL_PLAINTEXT
with PLAIN and one user, ``artesian-internal``, whose password the operator generates into
``data_dir/internal.secret`` and hands each broker in a file only its owner may read (never
on a command line); with an authorizer configured it is one of ``super.users``. Keep INTERNAL
on the operator's own network all the same, as Kafka's internal listeners are.

Every broker shares the metadata store ``artesian.metadata.store.url`` (default: an SQLite
file in data_dir). A broker's *revision* digests everything it is started with; a spec change
that alters it is what the rolling restart carries out.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artesian.security.secret_file import EmptySecretFile, read_or_create_secret

# The operator owns these; a spec may not set them in [config] (the client listener's
# wiring comes from client_protocol and [client_config]).
OPERATOR_PROPERTIES = (
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "artesian.metrics.port",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "security.inter.broker.protocol",
    "log.dirs",
    "log.dir",
    "controller.listener.names",
)
CLIENT_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
INTERNAL_LISTENER = "INTERNAL"
CLIENT_LISTENER = "CLIENT"
INTERNAL_USER = "artesian-internal"
CLIENT_PORT_OFFSET = 2000  # the client listener's ports, above the metrics ports (+1000)


class SpecError(ValueError):
    pass


# A DNS name, an IPv4 address or a bracketless IPv6 one: what URLs and listeners take.
_HOST = re.compile(r"[A-Za-z0-9._:-]{1,253}")


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    brokers: int
    data_dir: Path
    host: str = "127.0.0.1"
    first_port: int = 9091
    version: str = "1"
    racks: tuple[str, ...] = ()
    config: dict[str, str] = field(default_factory=dict)
    client_protocol: str = "PLAINTEXT"
    client_config: dict[str, str] = field(default_factory=dict)
    metadata_version: int | None = None
    """The artesian.metadata.version the operator finalizes after a roll, at most (None: the
    newest the brokers support). Pinning it keeps the way back to the older version open,
    as Strimzi's metadataVersion does."""

    @classmethod
    def load(cls, path: Path) -> ClusterSpec:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SpecError(f"cannot read the cluster spec {path}: {e}") from e
        # Required in a file: an empty or half-written one must not read as a cluster of
        # defaults (a new cluster in ./cluster-data, or one broker where there were three).
        missing = [name for name in ("brokers", "data_dir") if name not in raw]
        if missing:
            raise SpecError(f"the cluster spec {path} has no {' or '.join(missing)}")
        return cls.from_dict(raw, base=path.parent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base: Path) -> ClusterSpec:
        known = {
            "brokers",
            "host",
            "first_port",
            "data_dir",
            "version",
            "racks",
            "config",
            "client_protocol",
            "client_config",
            "metadata_version",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SpecError(f"unknown spec fields {unknown}; known: {sorted(known)}")
        brokers = raw.get("brokers", 1)
        if not isinstance(brokers, int) or isinstance(brokers, bool) or not 1 <= brokers <= 100:
            raise SpecError(f"brokers must be a whole number from 1 to 100, not {brokers!r}")
        client_protocol = raw.get("client_protocol", "PLAINTEXT")
        if client_protocol not in CLIENT_PROTOCOLS:
            raise SpecError(f"client_protocol {client_protocol!r} is not one of {CLIENT_PROTOCOLS}")
        first_port = raw.get("first_port", 9091)
        # Broker i listens on first_port + i - 1, serves metrics 1000 ports higher and, with a
        # client listener, takes clients 2000 ports higher.
        top = CLIENT_PORT_OFFSET if client_protocol != "PLAINTEXT" else 1000
        if not isinstance(first_port, int) or not 1024 <= first_port <= 65535 - top - brokers:
            ports = "metrics and client ports" if top == CLIENT_PORT_OFFSET else "metrics ports"
            raise SpecError(
                f"first_port {first_port!r} leaves no room for {brokers} brokers and their "
                f"{ports} (first_port + {top} + ...)"
            )
        client_config = raw.get("client_config", {})
        if not isinstance(client_config, dict):
            raise SpecError("[client_config] must be a table of listener properties")
        if client_config and client_protocol == "PLAINTEXT":
            raise SpecError("[client_config] needs a client_protocol other than PLAINTEXT")
        config = raw.get("config", {})
        if not isinstance(config, dict):
            raise SpecError("[config] must be a table of broker properties")
        owned = sorted(k for k in config if k in OPERATOR_PROPERTIES)
        if owned:
            raise SpecError(
                f"{owned} are set by the operator; remove them from [config] (each "
                "broker's directory comes from data_dir, a separate client listener from "
                "client_protocol)"
            )
        metadata_version = raw.get("metadata_version")
        if metadata_version is not None and (
            not isinstance(metadata_version, int)
            or isinstance(metadata_version, bool)
            or metadata_version < 1
        ):
            raise SpecError(f"metadata_version must be a level from 1, not {metadata_version!r}")
        racks = raw.get("racks", [])
        if not isinstance(racks, list) or not all(isinstance(r, str) and r for r in racks):
            raise SpecError("racks must be a list of rack names")
        host = raw.get("host", "127.0.0.1")
        if not isinstance(host, str) or not _HOST.fullmatch(host):
            raise SpecError(f"host must be a host name or an IP address, not {host!r}")
        data_dir = Path(str(raw.get("data_dir", "cluster-data")))
        return cls(
            brokers=brokers,
            data_dir=data_dir if data_dir.is_absolute() else (base / data_dir).resolve(),
            host=host,
            first_port=first_port,
            version=str(raw.get("version", "1")),
            racks=tuple(racks),
            config={str(k): _prop(v) for k, v in config.items()},
            client_protocol=client_protocol,
            client_config={str(k): _prop(v) for k, v in client_config.items()},
            metadata_version=metadata_version,
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

    @property
    def has_client_listener(self) -> bool:
        return self.client_protocol != "PLAINTEXT"

    def client_port(self, node: int) -> int:
        """Where clients connect to broker ``node``: its client listener if it has one."""
        offset = CLIENT_PORT_OFFSET if self.has_client_listener else 0
        return self.first_port + offset + node - 1

    def bootstrap(self, nodes: range | list[int] | None = None) -> str:
        """The brokers' PLAINTEXT (internal) addresses: what the operator itself talks to."""
        ids = nodes if nodes is not None else range(1, self.brokers + 1)
        return ",".join(f"{self.host}:{self.port(i)}" for i in ids)

    def client_bootstrap(self) -> str:
        """What users put in bootstrap.servers."""
        return ",".join(f"{self.host}:{self.client_port(i)}" for i in range(1, self.brokers + 1))

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
        if self.has_client_listener:
            internal = f"listener.name.{INTERNAL_LISTENER.lower()}."
            props["listeners"] = (
                f"{INTERNAL_LISTENER}://{self.host}:{self.port(node)},"
                f"{CLIENT_LISTENER}://{self.host}:{self.client_port(node)}"
            )
            props["listener.security.protocol.map"] = (
                f"{INTERNAL_LISTENER}:SASL_PLAINTEXT,{CLIENT_LISTENER}:{self.client_protocol}"
            )
            props["inter.broker.listener.name"] = INTERNAL_LISTENER
            props["sasl.mechanism.inter.broker.protocol"] = "PLAIN"
            props[internal + "sasl.enabled.mechanisms"] = "PLAIN"
            if props.get("authorizer.class.name"):
                supers = [u for u in props.get("super.users", "").split(";") if u.strip()]
                props["super.users"] = ";".join([*supers, f"User:{INTERNAL_USER}"])
            prefix = f"listener.name.{CLIENT_LISTENER.lower()}."
            props.update({prefix + k: v for k, v in self.client_config.items()})
        return props

    def secret_properties(self) -> dict[str, str]:
        """What a broker needs besides ``properties`` and must not show: the INTERNAL
        listener's PLAIN user (the broker's login to the others, and the one it accepts)."""
        if not self.has_client_listener:
            return {}
        password = self.internal_password()
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{INTERNAL_USER}" password="{password}" '
            f'user_{INTERNAL_USER}="{password}";'
        )
        return {f"listener.name.{INTERNAL_LISTENER.lower()}.plain.sasl.jaas.config": jaas}

    def internal_password(self) -> str:
        return _internal_password(self.data_dir / "internal.secret")

    def revision(self, node: int) -> str:
        doc = {"version": self.version, "port": self.port(node), "props": self.properties(node)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def _internal_password(path: Path) -> str:
    """The cluster's INTERNAL password, made on first use and kept, readable by its owner
    only."""
    try:
        return read_or_create_secret(path)
    except EmptySecretFile as e:
        raise SpecError(f"{e}: remove it and restart every broker of the cluster") from e


def _prop(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
