"""The two documents the control plane and the data planes exchange, one per cluster, keyed by
cluster id in compacted Kafka topics:

- ``ClusterDesire`` (control plane → data plane, topic ``_artesian_cluster_desired``): what the
  user asked for. Every change bumps ``generation``; ``deleted`` asks for deprovisioning.
- ``ClusterReport`` (data plane → control plane, topic ``_artesian_cluster_observed``): what
  runs, for which generation, and the load it carries (what the autoscaler decides on).

Both are JSON. Decoding validates every field: a bad record is skipped with a log line, never
trusted, since anything that can write to the topic can write to it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from artesian.config.broker import BrokerConfig
from artesian.config.definitions import ConfigError
from artesian.operator.spec import PER_BROKER_PROPERTIES

DESIRED_TOPIC = "_artesian_cluster_desired"
OBSERVED_TOPIC = "_artesian_cluster_observed"
# Compacted: the latest document per cluster is the state; a tombstone forgets the cluster.
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}

MAX_BROKERS = 20
CLUSTER_ID = re.compile(r"lkc-[a-z0-9]{6,32}")  # fullmatch: "$" would let a newline in
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# The operator sets these per broker; the data plane, the cluster's wiring.
RESERVED_CONFIG = (
    *PER_BROKER_PROPERTIES,
    "artesian.metadata.store.url",
    "rsm.config.store.url",
)
_PLACE = re.compile(r"dir|url|file|path|listener|socket|host")
PHASES = ("Reconciling", "Ready", "Degraded", "Deleted", "Failed")


class DocumentError(ValueError):
    pass


def _check_broker_config(config: dict[str, str]) -> None:
    """Known broker properties with valid values, and none that names a place on the data
    plane's machines (a directory, a URL, a listener): a user's cluster must not reach into
    another's data."""
    reserved = sorted(k for k in config if k in RESERVED_CONFIG or _PLACE.search(k))
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
class ClusterDesire:
    id: str
    name: str
    brokers: int
    cell: str = "local"
    version: str = "1"
    config: dict[str, str] = field(default_factory=dict)
    autoscale: Autoscale | None = None
    generation: int = 1
    deleted: bool = False

    def validate(self) -> ClusterDesire:
        if not CLUSTER_ID.fullmatch(self.id):
            raise DocumentError(f"cluster id {self.id!r} is not lkc- and 6-32 [a-z0-9]")
        if not NAME.fullmatch(self.name):
            raise DocumentError(
                f"cluster name {self.name!r}: 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if not NAME.fullmatch(self.cell):
            raise DocumentError(f"cell name {self.cell!r} is not a valid name")
        if not 1 <= self.brokers <= MAX_BROKERS:
            raise DocumentError(f"brokers must be 1 to {MAX_BROKERS}, not {self.brokers}")
        _check_broker_config(self.config)
        if self.autoscale is not None:
            self.autoscale.validate()
            if not self.autoscale.min_brokers <= self.brokers <= self.autoscale.max_brokers:
                raise DocumentError(
                    f"brokers {self.brokers} is outside autoscale's "
                    f"{self.autoscale.min_brokers}..{self.autoscale.max_brokers}"
                )
        if self.generation < 1:
            raise DocumentError("generation starts at 1")
        return self

    def changed(self, **changes: Any) -> ClusterDesire:
        """The next generation with ``changes`` applied, validated."""
        return replace(self, generation=self.generation + 1, **changes).validate()

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ClusterDesire:
        doc = _object(raw)
        auto = doc.get("autoscale")
        try:
            desire = cls(
                id=_str(doc, "id"),
                name=_str(doc, "name"),
                brokers=_int(doc, "brokers"),
                cell=_str(doc, "cell"),
                version=_str(doc, "version"),
                config=_str_map(doc.get("config", {}), "config"),
                autoscale=None
                if auto is None
                else Autoscale(
                    _int(_dict(auto, "autoscale"), "min_brokers"),
                    _int(auto, "max_brokers"),
                    _int(auto, "broker_bytes_per_second"),
                ),
                generation=_int(doc, "generation"),
                deleted=_bool(doc, "deleted"),
            )
        except TypeError as e:
            raise DocumentError(str(e)) from e
        return desire.validate()


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

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ClusterReport:
        doc = _object(raw)
        brokers = doc.get("brokers", [])
        if not isinstance(brokers, list):
            raise DocumentError("brokers must be a list")
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
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# --- field checks ---------------------------------------------------------------------------


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


def _str_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise DocumentError(f"{what} must map names to string values")
    return dict(value)
