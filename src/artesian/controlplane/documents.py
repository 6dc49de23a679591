"""The two documents the control plane and the data planes exchange, one per cluster, keyed by
cluster id in compacted Kafka topics:

- ``ClusterDesire`` (control plane → data plane, topic ``_artesian_cluster_desired``): what the
  user asked for, its API keys included. Every change bumps ``generation``; ``deleted`` asks
  for deprovisioning. An API key travels as its SCRAM verifiers only: they check a secret,
  they cannot stand in for one, so the topic holds nothing a client could log in with.
- ``ClusterReport`` (data plane → control plane, topic ``_artesian_cluster_observed``): what
  runs, for which generation, and the load it carries (what the autoscaler decides on).

A third, ``Tenant`` (topic ``_artesian_tenants``), stays within the control plane: an account
that owns clusters, with its quotas and the API tokens it calls the control plane with (as
SHA-256 digests only).

``UsageRecord`` (data plane → control plane, topic ``_artesian_usage``, a ledger: kept, not
compacted): what a cluster used over one metering interval, and the counters it was measured
from, so that the next interval, even a restarted agent's, starts where it ended.

Both are JSON. Decoding validates every field: a bad record is skipped with a log line, never
trusted, since anything that can write to the topic can write to it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from artesian.broker.quota_manager import LOGICAL_CLUSTER_QUOTA_KEYS, rate_problem
from artesian.config.broker import BrokerConfig
from artesian.config.definitions import ConfigError
from artesian.operator.spec import OPERATOR_PROPERTIES
from artesian.security.scram import MAX_ITERATIONS, MIN_ITERATIONS, mechanism_by_type

log = logging.getLogger("artesian.controlplane")

DESIRED_TOPIC = "_artesian_cluster_desired"
OBSERVED_TOPIC = "_artesian_cluster_observed"
TENANTS_TOPIC = "_artesian_tenants"
MAX_TIME_MS = 253_402_300_799_999  # the last ms of year 9999: any later cannot be shown as a date
USAGE_TOPIC = "_artesian_usage"
# Compacted: the latest document per cluster is the state; a tombstone forgets the cluster.
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
# The usage ledger is what bills are made from: every record is kept, stamped with the
# broker's time (a resume looks back by it, whatever the agents' clocks say).
USAGE_TOPIC_CONFIG = {
    "cleanup.policy": "delete",
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "message.timestamp.type": "LogAppendTime",
}

MAX_BROKERS = 20

MAX_API_KEYS = 100
MAX_TOKENS = 20
MAX_TOKEN_DAYS = 3650
CLUSTER_ID = re.compile(r"lkc-[a-z0-9]{6,32}")  # fullmatch: "$" would let a newline in
TENANT_ID = re.compile(r"t-[a-z0-9]{6,32}")
TOKEN_ID = re.compile(r"[a-z0-9]{16}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# An API key is a SASL username of this shape; the data plane owns every SCRAM user and ACL
# principal of this shape on its clusters.
API_KEY = re.compile(r"[A-Z2-7]{16}")
# Topic-legal characters, not starting with "_": such a prefix would reach __consumer_offsets
# and __transaction_state.
RESOURCE_PREFIX = re.compile(r"[A-Za-z0-9.-][A-Za-z0-9._-]{0,248}")
# The operator sets these; the data plane, the cluster's wiring and its access control.
RESERVED_CONFIG = (
    *OPERATOR_PROPERTIES,
    "artesian.metadata.store.url",
    "rsm.config.store.url",
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
    # A data plane's brokers are brokers; Artesian has no KRaft controllers to point at.
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
)
# What the API takes as a version (checked there: stored desires from before are read as
# they are).
MAX_VERSION_LENGTH = 64
_PLACE = re.compile(r"dir|url|file|path|listener|socket|host|^sasl\.|^ssl\.|principal")
PHASES = ("Reconciling", "Ready", "Degraded", "Deleted", "Failed")


class DocumentError(ValueError):
    pass


def _reserved(key: str) -> bool:
    return key in RESERVED_CONFIG or _PLACE.search(key) is not None


def _check_broker_config(config: dict[str, str]) -> None:
    """Known broker properties with valid values, and none that names a place on the data
    plane's machines (a directory, a URL, a listener) or its access control: a user's
    cluster must not reach into another's data, nor past its API keys."""
    reserved = sorted(k for k in config if _reserved(k))
    if reserved:
        raise DocumentError(f"{reserved} are set by the data plane, not in config")
    try:
        BrokerConfig(config)
    except ConfigError as e:
        raise DocumentError(str(e)) from e


@dataclass(frozen=True, slots=True)
class Autoscale:
    """Size the cluster to its load: one broker carries ``broker_bytes_per_second`` of produce
    plus consume traffic at full utilisation."""

    min_brokers: int
    max_brokers: int
    broker_bytes_per_second: int

    def validate(self) -> None:
        if not 1 <= self.min_brokers <= self.max_brokers <= MAX_BROKERS:
            raise DocumentError(
                f"autoscale needs 1 <= min_brokers <= max_brokers <= {MAX_BROKERS}, got "
                f"{self.min_brokers}..{self.max_brokers}"
            )
        if self.broker_bytes_per_second < 1:
            raise DocumentError("autoscale.broker_bytes_per_second must be at least 1")


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """What a broker needs to check an API key's secret with one SCRAM mechanism (Kafka's
    UserScramCredentialRecord): bytes as hex, mechanism as Kafka's id (1: SHA-256, 2: SHA-512)."""

    mechanism: int
    salt: str
    stored_key: str
    server_key: str
    iterations: int

    def validate(self) -> None:
        mechanism = mechanism_by_type(self.mechanism)
        if mechanism is None:
            raise DocumentError(f"unknown SCRAM mechanism {self.mechanism}")
        if not MIN_ITERATIONS <= self.iterations <= MAX_ITERATIONS:
            raise DocumentError(f"iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}")
        size = {"sha256": 32, "sha512": 64}[mechanism.hash_name]
        for name, value, lengths in (
            ("salt", self.salt, range(16, 65)),
            ("stored_key", self.stored_key, (size,)),
            ("server_key", self.server_key, (size,)),
        ):
            try:
                raw = bytes.fromhex(value)
            except ValueError as e:
                raise DocumentError(f"{name} is not hex") from e
            if len(raw) not in lengths:
                raise DocumentError(f"{name} has {len(raw)} bytes")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A credential for one cluster: ``key`` is the SASL username, the secret is known only to
    whoever created it. With a ``resource_prefix`` it reaches only topics, groups and
    transactional ids starting with it; without one, everything on the cluster."""

    key: str
    scram: tuple[ScramVerifier, ...]
    resource_prefix: str | None = None
    description: str = ""
    created_ms: int = 0

    def validate(self) -> None:
        if not API_KEY.fullmatch(self.key):
            raise DocumentError(f"API key {self.key!r} is not 16 of A-Z and 2-7")
        if self.resource_prefix is not None and not RESOURCE_PREFIX.fullmatch(self.resource_prefix):
            raise DocumentError(
                f"resource_prefix {self.resource_prefix!r}: 1-249 letters, digits, '.', '_', "
                "'-', not starting with '_' (internal topics)"
            )
        if len(self.description) > 256:
            raise DocumentError("description is longer than 256 characters")
        mechanisms = [v.mechanism for v in self.scram]
        if not mechanisms or len(set(mechanisms)) != len(mechanisms):
            raise DocumentError(f"API key {self.key}: one verifier per SCRAM mechanism")
        for verifier in self.scram:
            verifier.validate()

    def public(self) -> dict[str, Any]:
        """What the API shows of it: no verifiers."""
        return {
            "key": self.key,
            "resource_prefix": self.resource_prefix,
            "description": self.description,
            "created_ms": self.created_ms,
        }

    @classmethod
    def decode(cls, doc: dict[str, Any]) -> ApiKey:
        verifiers = _list(doc, "scram", required=True)
        prefix = doc.get("resource_prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise DocumentError("resource_prefix must be a string or null")
        return cls(
            key=_str(doc, "key"),
            scram=tuple(
                ScramVerifier(
                    _int(v, "mechanism"),
                    _str(v, "salt"),
                    _str(v, "stored_key"),
                    _str(v, "server_key"),
                    _int(v, "iterations"),
                )
                for v in (_dict(x, "scram verifier") for x in verifiers)
            ),
            resource_prefix=prefix,
            description=_str(doc, "description"),
            created_ms=_int(doc, "created_ms"),
        )


@dataclass(frozen=True, slots=True)
class ClusterDesire:
    id: str
    name: str
    brokers: int
    cell: str = "local"
    version: str = "1"
    config: dict[str, str] = field(default_factory=dict)
    autoscale: Autoscale | None = None
    api_keys: tuple[ApiKey, ...] = ()
    generation: int = 1
    deleted: bool = False
    # The owning tenant's id; "" for the platform's own clusters (and those made before
    # tenants), which only the admin sees.
    tenant: str = ""
    # A logical cluster (brokers 0) lives on the physical cluster ``host`` of its cell, in
    # the namespace "<id>_"; a ``shared`` physical cluster is one that takes them.
    host: str = ""
    shared: bool = False
    # A logical cluster's quotas (producer_byte_rate, ...), shared by its clients on each of
    # its host's brokers: the platform's to set.
    quotas: dict[str, float] = field(default_factory=dict)

    @property
    def logical(self) -> bool:
        return bool(self.host)

    def validate(self) -> ClusterDesire:
        if not CLUSTER_ID.fullmatch(self.id):
            raise DocumentError(f"cluster id {self.id!r} is not lkc- and 6-32 [a-z0-9]")
        if self.tenant and not TENANT_ID.fullmatch(self.tenant):
            raise DocumentError(f"tenant id {self.tenant!r} is not t- and 6-32 [a-z0-9]")
        if not NAME.fullmatch(self.name):
            raise DocumentError(
                f"cluster name {self.name!r}: 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if not NAME.fullmatch(self.cell):
            raise DocumentError(f"cell name {self.cell!r} is not a valid name")
        if self.quotas and not self.logical:
            raise DocumentError("quotas are a logical cluster's (a physical one has its brokers)")
        if self.logical:
            self._validate_logical()
        elif not 1 <= self.brokers <= MAX_BROKERS:
            raise DocumentError(f"brokers must be 1 to {MAX_BROKERS}, not {self.brokers}")
        _check_broker_config(self.config)
        if self.autoscale is not None:
            self.autoscale.validate()
            if not self.autoscale.min_brokers <= self.brokers <= self.autoscale.max_brokers:
                raise DocumentError(
                    f"brokers {self.brokers} is outside autoscale's "
                    f"{self.autoscale.min_brokers}..{self.autoscale.max_brokers}"
                )
        if len(self.api_keys) > MAX_API_KEYS:
            raise DocumentError(f"a cluster has at most {MAX_API_KEYS} API keys")
        if len({k.key for k in self.api_keys}) != len(self.api_keys):
            raise DocumentError("API keys must be unique")
        for api_key in self.api_keys:
            api_key.validate()
        if self.generation < 1:
            raise DocumentError("generation starts at 1")
        return self

    def _validate_logical(self) -> None:
        if not CLUSTER_ID.fullmatch(self.host) or self.host == self.id:
            raise DocumentError(f"host {self.host!r} is not another cluster's id")
        if self.brokers != 0 or self.autoscale is not None or self.shared:
            raise DocumentError(
                "a logical cluster has no brokers of its own: brokers 0, no autoscale, not shared"
            )
        if self.config:
            raise DocumentError(
                "a logical cluster's topics take their host's defaults: config must be empty"
            )
        for key, rate in self.quotas.items():
            if key not in LOGICAL_CLUSTER_QUOTA_KEYS:
                raise DocumentError(
                    f"quota {key!r} is not one of {sorted(LOGICAL_CLUSTER_QUOTA_KEYS)}"
                )
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise DocumentError(f"quota {key}: a rate, not {rate!r}")
            if (problem := rate_problem(key, float(rate))) is not None:
                raise DocumentError(problem)

    def public(self) -> dict[str, Any]:
        """The spec as the API shows it: API keys without their verifiers."""
        doc = asdict(self)
        doc["api_keys"] = [k.public() for k in self.api_keys]
        return doc

    def changed(self, **changes: Any) -> ClusterDesire:
        """The next generation with ``changes`` applied, validated."""
        return replace(self, generation=self.generation + 1, **changes).validate()

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ClusterDesire:
        doc = _object(raw)
        auto = doc.get("autoscale")
        keys = _list(doc, "api_keys")
        try:
            desire = cls(
                id=_str(doc, "id"),
                name=_str(doc, "name"),
                brokers=_int(doc, "brokers"),
                cell=_str(doc, "cell"),
                version=_str(doc, "version"),
                config=_without_reserved(_str_map(doc.get("config", {}), "config")),
                autoscale=None
                if auto is None
                else Autoscale(
                    _int(_dict(auto, "autoscale"), "min_brokers"),
                    _int(auto, "max_brokers"),
                    _int(auto, "broker_bytes_per_second"),
                ),
                api_keys=tuple(ApiKey.decode(_dict(k, "API key")) for k in keys),
                generation=_int(doc, "generation"),
                deleted=_bool(doc, "deleted"),
                tenant=_str(doc, "tenant"),
                host=_str(doc, "host"),
                shared=_bool(doc, "shared"),
                quotas=_rates(doc.get("quotas", {})),
            )
        except TypeError as e:
            raise DocumentError(str(e)) from e
        return desire.validate()

    def most_brokers(self) -> int:
        """What the cluster may grow to: a tenant's broker quota counts this."""
        return self.autoscale.max_brokers if self.autoscale is not None else self.brokers


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A credential for the control plane's API. ``id`` is public; the secret is known only to
    whoever created it, and the document keeps its SHA-256. The secret is 256 random bits,
    so a fast digest leaves nothing to search."""

    id: str
    secret_sha256: str
    description: str = ""
    created_ms: int = 0
    expires_ms: int = 0  # 0: never

    def validate(self) -> None:
        if not TOKEN_ID.fullmatch(self.id):
            raise DocumentError(f"token id {self.id!r} is not 16 of a-z and 0-9")
        if not SHA256_HEX.fullmatch(self.secret_sha256):
            raise DocumentError("secret_sha256 is not 64 lowercase hex digits")
        if len(self.description) > 256:
            raise DocumentError("description is longer than 256 characters")
        if not 0 <= self.expires_ms <= MAX_TIME_MS:
            raise DocumentError("expires_ms must be 0 (never) or a time in ms before year 10000")

    def expired(self, now_ms: int) -> bool:
        return 0 < self.expires_ms <= now_ms

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
        }


@dataclass(frozen=True, slots=True)
class Tenant:
    """An account: it owns clusters, up to ``max_clusters`` of them and ``max_brokers`` brokers
    in all (an autoscaled cluster counts its maximum), and calls the API with its tokens."""

    id: str
    name: str
    max_clusters: int = 10
    max_brokers: int = 20
    tokens: tuple[ApiToken, ...] = ()
    created_ms: int = 0
    generation: int = 1

    def validate(self) -> Tenant:
        if not TENANT_ID.fullmatch(self.id):
            raise DocumentError(f"tenant id {self.id!r} is not t- and 6-32 [a-z0-9]")
        if not NAME.fullmatch(self.name):
            raise DocumentError(
                f"tenant name {self.name!r}: 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if not 0 <= self.max_clusters <= 1000:
            raise DocumentError(f"max_clusters must be 0 to 1000, not {self.max_clusters}")
        if not 0 <= self.max_brokers <= 1000 * MAX_BROKERS:
            raise DocumentError(
                f"max_brokers must be 0 to {1000 * MAX_BROKERS}, not {self.max_brokers}"
            )
        if len(self.tokens) > MAX_TOKENS:
            raise DocumentError(f"a tenant has at most {MAX_TOKENS} tokens")
        if len({t.id for t in self.tokens}) != len(self.tokens):
            raise DocumentError("token ids must be unique")
        for token in self.tokens:
            token.validate()
        if self.generation < 1:
            raise DocumentError("generation starts at 1")
        return self

    def public(self) -> dict[str, Any]:
        """What the API shows: tokens without their digests."""
        doc = asdict(self)
        doc["tokens"] = [t.public() for t in self.tokens]
        return doc

    def changed(self, **changes: Any) -> Tenant:
        return replace(self, generation=self.generation + 1, **changes).validate()

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Tenant:
        doc = _object(raw)
        tokens = _list(doc, "tokens")
        return cls(
            id=_str(doc, "id"),
            name=_str(doc, "name"),
            max_clusters=_int(doc, "max_clusters"),
            max_brokers=_int(doc, "max_brokers"),
            tokens=tuple(
                ApiToken(
                    _str(t, "id"),
                    _str(t, "secret_sha256"),
                    _str(t, "description"),
                    _int(t, "created_ms"),
                    _int(t, "expires_ms") if "expires_ms" in t else 0,  # before expiry existed
                )
                for t in (_dict(x, "token") for x in tokens)
            ),
            created_ms=_int(doc, "created_ms"),
            generation=_int(doc, "generation"),
        ).validate()


@dataclass(frozen=True, slots=True)
class BrokerReport:
    id: int
    running: bool
    live: bool


@dataclass(frozen=True, slots=True)
class ClusterReport:
    id: str
    cell: str
    observed_generation: int
    phase: str
    bootstrap: str = ""
    brokers: tuple[BrokerReport, ...] = ()
    bytes_in_per_second: float = 0.0
    bytes_out_per_second: float = 0.0
    message: str = ""
    time_ms: int = 0
    # How the cell takes clients: PLAINTEXT (no login, no API keys) or SASL_*; "" from an
    # agent older than the field.
    client_protocol: str = ""
    # The largest replication factor among its topics: fewer brokers cannot hold them (0:
    # unknown, from an agent older than the field).
    replication_factor: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ClusterReport:
        doc = _object(raw)
        brokers = _list(doc, "brokers")
        phase = _str(doc, "phase")
        if phase not in PHASES:
            raise DocumentError(f"phase {phase!r} is not one of {PHASES}")
        cluster_id = _str(doc, "id")
        if not CLUSTER_ID.fullmatch(cluster_id):
            raise DocumentError(f"cluster id {cluster_id!r} is not lkc- and 6-32 [a-z0-9]")
        generation = _int(doc, "observed_generation")
        if generation < 1:
            raise DocumentError("observed_generation starts at 1")
        return cls(
            id=cluster_id,
            cell=_str(doc, "cell"),
            observed_generation=generation,
            phase=phase,
            bootstrap=_str(doc, "bootstrap"),
            brokers=tuple(
                BrokerReport(_int(b, "id"), _bool(b, "running"), _bool(b, "live"))
                for b in (_dict(x, "broker") for x in brokers)
            ),
            bytes_in_per_second=_num(doc, "bytes_in_per_second"),
            bytes_out_per_second=_num(doc, "bytes_out_per_second"),
            message=_str(doc, "message"),
            time_ms=_int(doc, "time_ms"),
            client_protocol=_str(doc, "client_protocol"),
            replication_factor=_int(doc, "replication_factor")
            if "replication_factor" in doc
            else 0,
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BrokerCounters:
    """One broker's Prometheus counters as last read, and when its process started: counters
    that went back, or a new start time, mean the broker restarted and counts from zero."""

    id: int
    started: float
    bytes_in: int
    bytes_out: int
    storage_bytes: int = 0  # what it stored when last read: counted while it does not answer


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What a cluster used from ``start_ms`` to ``end_ms``: client bytes in and out (Kafka's
    BytesInPerSec and BytesOutPerSec counters), broker-seconds (brokers running times time),
    and byte-seconds of storage (each partition once, remote segments included, times time).
    ``counters`` is where the next interval starts counting. ``seq`` numbers a cluster's
    records, increasing: a reader counts each number once, so a record sent again counts
    once."""

    id: str  # the cluster's
    tenant: str
    cell: str
    start_ms: int
    end_ms: int
    bytes_in: int
    bytes_out: int
    broker_seconds: float
    storage_byte_seconds: float
    counters: tuple[BrokerCounters, ...] = ()
    seq: int = 1

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> UsageRecord:
        doc = _object(raw)
        counters = _list(doc, "counters")
        record = cls(
            id=_str(doc, "id"),
            tenant=_str(doc, "tenant"),
            cell=_str(doc, "cell"),
            start_ms=_int(doc, "start_ms"),
            end_ms=_int(doc, "end_ms"),
            bytes_in=_int(doc, "bytes_in"),
            bytes_out=_int(doc, "bytes_out"),
            broker_seconds=_num(doc, "broker_seconds"),
            storage_byte_seconds=_num(doc, "storage_byte_seconds"),
            counters=tuple(
                BrokerCounters(
                    _int(c, "id"),
                    _num(c, "started"),
                    _int(c, "bytes_in"),
                    _int(c, "bytes_out"),
                    _int(c, "storage_bytes") if "storage_bytes" in c else 0,
                )
                for c in (_dict(x, "counters") for x in counters)
            ),
            seq=_int(doc, "seq") if "seq" in doc else 1,
        )
        if not CLUSTER_ID.fullmatch(record.id):
            raise DocumentError(f"cluster id {record.id!r} is not lkc- and 6-32 [a-z0-9]")
        if record.tenant and not TENANT_ID.fullmatch(record.tenant):
            raise DocumentError(f"tenant id {record.tenant!r} is not t- and 6-32 [a-z0-9]")
        if record.seq < 1:
            raise DocumentError("seq starts at 1")
        if not 0 <= record.start_ms <= record.end_ms:
            raise DocumentError("start_ms and end_ms must be 0 <= start_ms <= end_ms")
        if min(record.bytes_in, record.bytes_out) < 0 or any(
            min(c.bytes_in, c.bytes_out, c.storage_bytes) < 0 for c in record.counters
        ):
            raise DocumentError("byte counts must not be negative")
        return record


# --- field checks ---------------------------------------------------------------------------


def _without_reserved(config: dict[str, str]) -> dict[str, str]:
    """A stored desire written before a key was reserved still reads (without that key): a
    desire that cannot be read would look deleted to its data plane."""
    dropped = sorted(k for k in config if _reserved(k))
    if dropped:
        log.warning("ignoring %s in a stored desire: the data plane sets them now", dropped)
    return {k: v for k, v in config.items() if k not in dropped}


def _object(raw: bytes) -> dict[str, Any]:
    if len(raw) > 1 << 20:
        raise DocumentError("document larger than 1 MiB")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise DocumentError(f"not JSON: {e}") from e
    return _dict(doc, "document")


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DocumentError(f"{what} must be an object")
    return value


def _list(doc: dict[str, Any], key: str, *, required: bool = False) -> list[Any]:
    """A list field; a missing one is empty unless ``required``."""
    value = doc.get(key) if required else doc.get(key, [])
    if not isinstance(value, list):
        raise DocumentError(f"{key} must be a list")
    return value


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise DocumentError(f"{key} must be a string")
    return value


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DocumentError(f"{key} must be a whole number")
    return value


def _num(doc: dict[str, Any], key: str) -> float:
    """A rate: finite and not negative (JSON's NaN and Infinity parse, and would not compare)."""
    value = doc.get(key, 0)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise DocumentError(f"{key} must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not 0 <= number < math.inf:
        raise DocumentError(f"{key} must be a finite number, at least 0")
    return number


def _bool(doc: dict[str, Any], key: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise DocumentError(f"{key} must be true or false")
    return value


def _rates(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise DocumentError("quotas must map quota names to numbers")
    return {k: float(v) for k, v in value.items()}


def _str_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise DocumentError(f"{what} must map names to string values")
    return dict(value)
