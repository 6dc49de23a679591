"""Client metrics (KIP-714), Kafka's ClientMetricsManager: clients ask which of their metrics
to push (GetTelemetrySubscriptions), then push them as OTLP (PushTelemetry); the broker keeps
the latest values and serves them on its Prometheus endpoint, so an operator sees, say, every
producer's record queue time next to the broker's own metrics.

Kafka hands pushes to a plugin and, without one, does not offer the APIs; Artesian has its
receiver built in (``artesian.client.metrics.enable``). What is pushed is what the
CLIENT_METRICS subscriptions ask of each client (``config/client_metrics.py``): nothing until
one matches.

Each client instance is remembered for max(60 s, 3 push intervals) after its last request,
16384 at most (Kafka's), and its series leave the endpoint with it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import crc32c
from kio.schema.errors import ErrorCode
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from artesian.config.client_metrics import DEFAULT_INTERVAL_MS, Subscription
from artesian.protocol.compression import CompressionError, DecompressedSizeExceeded, decompress

__all__ = ["ClientMetricsManager", "GetResult"]

log = logging.getLogger("artesian.client_metrics")

MAX_INSTANCES = 16_384
# Bounds on what clients make the broker hold: series per instance and in all, attributes per
# data point, a label value's length.
MAX_SERIES_PER_INSTANCE = 1_000
MAX_SERIES = 100_000
MAX_ATTRIBUTES = 16
MAX_LABEL_VALUE = 200
MIN_EXPIRY_MS = 60_000
# zstd, lz4, gzip, snappy: Kafka's order of preference.
ACCEPTED_COMPRESSION = (4, 3, 1, 2)
_RESERVED = (uuid.UUID(int=0), uuid.UUID(int=1))
_DELTA, _CUMULATIVE = 1, 2  # OTLP AggregationTemporality


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(slots=True)
class ClientInstance:
    instance_id: uuid.UUID
    client: dict[str, str]  # the attributes subscriptions match on
    subscription_id: int
    metrics: tuple[str, ...]
    push_interval_ms: int
    version: int  # of the subscriptions it was made from
    last_get_ms: int = 0
    last_push_ms: int = 0
    terminating: bool = False
    last_error: ErrorCode = ErrorCode.none
    seen_ms: int = 0
    # Latest values: (metric name, labels) -> (kind, value); kind "gauge" or "counter".
    series: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]] = field(
        default_factory=dict
    )

    @property
    def expiry_ms(self) -> int:
        return max(MIN_EXPIRY_MS, 3 * self.push_interval_ms)


@dataclass(slots=True, frozen=True)
class GetResult:
    error: ErrorCode
    message: str | None
    instance_id: uuid.UUID | None = None
    subscription_id: int = 0
    push_interval_ms: int = DEFAULT_INTERVAL_MS
    metrics: tuple[str, ...] = ()


def subscription_id(instance_id: uuid.UUID, metrics: tuple[str, ...], interval_ms: int) -> int:
    """The same on every broker for the same instance and subscriptions (a client may push
    to another broker than the one it asked): Kafka's CRC32C of the metric set and interval,
    mixed with the instance id."""
    crc = crc32c.crc32c(f"[{', '.join(sorted(metrics))}]{interval_ms}".encode())
    h = (instance_id.int >> 64) ^ (instance_id.int & ((1 << 64) - 1))
    return _int32(crc ^ (h >> 32) ^ h)


def _int32(value: int) -> int:
    """The low 32 bits as Java's int."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class ClientMetricsManager:
    def __init__(
        self,
        subscriptions: Callable[[], tuple[int, list[Subscription]]],
        max_bytes: int,
        now_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._subscriptions = subscriptions
        self.max_bytes = max_bytes
        self._now = now_ms
        self.instances: OrderedDict[uuid.UUID, ClientInstance] = OrderedDict()
        self._expired_at = -(1 << 62)  # when _expire last looked
        self._full_warned = False
        self._series_total = 0  # series kept over all instances

    # --- GetTelemetrySubscriptions ----------------------------------------------------------

    def get_subscriptions(
        self, instance_id: uuid.UUID | None, client: Mapping[str, str]
    ) -> GetResult:
        now = self._now()
        self._expire(now)
        if instance_id is None or instance_id == _RESERVED[0]:
            instance_id = uuid.uuid4()
            while instance_id in self.instances or instance_id in _RESERVED:
                instance_id = uuid.uuid4()
        instance = self._instance(instance_id, client, now)
        waited = now - max(instance.last_get_ms, instance.last_push_ms)
        exempt = instance.last_error in (
            ErrorCode.unknown_subscription_id,
            ErrorCode.unsupported_compression_type,
        )
        asked_before = instance.last_get_ms or instance.last_push_ms
        if asked_before and waited < instance.push_interval_ms and not exempt:
            instance.last_error = ErrorCode.throttling_quota_exceeded
            return GetResult(
                ErrorCode.throttling_quota_exceeded,
                f"Request from the client [{instance_id}] arrived before the next push "
                "interval time",
                instance_id,
            )
        instance.last_get_ms = now
        instance.last_error = ErrorCode.none
        return GetResult(
            ErrorCode.none,
            None,
            instance_id,
            instance.subscription_id,
            instance.push_interval_ms,
            instance.metrics,
        )

    # --- PushTelemetry ----------------------------------------------------------------------

    def push(
        self,
        instance_id: uuid.UUID | None,
        client: Mapping[str, str],
        subscription: int,
        terminating: bool,
        compression: int,
        payload: bytes,
    ) -> tuple[ErrorCode, str | None]:
        now = self._now()
        self._expire(now)
        if instance_id is None or instance_id in _RESERVED:
            return (
                ErrorCode.invalid_request,
                "Invalid request from the client, invalid client instance id",
            )
        instance = self._instance(instance_id, client, now)
        code, message = self._check_push(
            instance, subscription, terminating, compression, payload, now
        )
        instance.last_error = code
        instance.terminating = instance.terminating or terminating
        if code is ErrorCode.none and payload:
            try:
                self._record(instance, decompress(compression, payload, self.max_bytes))
            except DecompressedSizeExceeded:
                code = ErrorCode.telemetry_too_large
                message = (
                    f"The metrics decompress to more than telemetry.max.bytes {self.max_bytes}"
                )
            except CompressionError as e:
                code, message = ErrorCode.invalid_record, f"Cannot decompress the metrics: {e}"
            except ValueError as e:  # not OTLP
                code, message = ErrorCode.invalid_record, f"Cannot read the metrics: {e}"
            instance.last_error = code
        if terminating and code is ErrorCode.none:
            self._forget(instance)  # the client has gone
        return code, message

    def _check_push(
        self,
        instance: ClientInstance,
        subscription: int,
        terminating: bool,
        compression: int,
        payload: bytes,
        now: int,
    ) -> tuple[ErrorCode, str | None]:
        iid = instance.instance_id
        if instance.terminating:
            return ErrorCode.invalid_request, (
                f"Client [{iid}] sent the previous request with state terminating to TRUE, can "
                "not accept any requests after that"
            )
        early = instance.last_get_ms <= instance.last_push_ms and (
            now - instance.last_push_ms < instance.push_interval_ms
        )
        if early and not terminating:
            return ErrorCode.throttling_quota_exceeded, (
                f"Request from the client [{iid}] arrived before the next push interval time"
            )
        instance.last_push_ms = now
        if subscription != instance.subscription_id:
            return ErrorCode.unknown_subscription_id, (
                f"Unknown client subscription id for the client [{iid}]"
            )
        if compression not in (0, *ACCEPTED_COMPRESSION):
            return ErrorCode.unsupported_compression_type, (
                f"Unknown compression type {compression} from the client [{iid}]"
            )
        if len(payload) > self.max_bytes:
            return ErrorCode.telemetry_too_large, (
                f"Telemetry size {len(payload)} is larger than telemetry.max.bytes "
                f"{self.max_bytes} for the client [{iid}]"
            )
        return ErrorCode.none, None

    def _record(self, instance: ClientInstance, data: bytes) -> None:
        """Keep the latest value of each pushed series the subscription asked for, within
        bounds: a client picks the names, attributes and instance ids it sends."""
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData

        parsed = MetricsData()
        try:
            parsed.ParseFromString(data)
        except (DecodeError, RecursionError) as e:
            raise ValueError(str(e) or type(e).__name__) from None
        # The broker's own labels win over any attribute of the same name; not the source
        # port: a new connection would make every series new.
        base = {k: v for k, v in instance.client.items() if k != "client_source_port"}
        base["client_instance_id"] = str(instance.instance_id)
        for resource in parsed.resource_metrics:
            resource_labels = _labels(resource.resource.attributes)
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if not _requested(metric.name, instance.metrics):
                        continue
                    name = _metric_name(metric.name)
                    kind_of = metric.WhichOneof("data")
                    if name is None or kind_of not in ("gauge", "sum"):
                        continue  # histograms and summaries: librdkafka sends none
                    if kind_of == "gauge":
                        points, kind, delta = metric.gauge.data_points, "gauge", False
                    else:
                        kind = "counter" if metric.sum.is_monotonic else "gauge"
                        points = metric.sum.data_points
                        delta = metric.sum.aggregation_temporality == _DELTA
                    for point in points:
                        key = (name, _label_key(resource_labels, point.attributes, base))
                        if key not in instance.series and not self._room(instance):
                            continue
                        value = point.as_double if point.HasField("as_double") else point.as_int
                        if delta:  # deltas add up to what Prometheus expects: a running total
                            value += instance.series.get(key, (kind, 0.0))[1]
                        instance.series[key] = (kind, float(value))

    def _room(self, instance: ClientInstance) -> bool:
        """Whether one more series may be kept, for this instance and in all."""
        if len(instance.series) < MAX_SERIES_PER_INSTANCE and self._series_total < MAX_SERIES:
            self._series_total += 1
            return True
        if not self._full_warned:
            self._full_warned = True
            log.warning(
                "client metrics: at most %d series per client and %d in all are kept; more "
                "were pushed and left out. Narrow the CLIENT_METRICS subscriptions' metrics",
                MAX_SERIES_PER_INSTANCE,
                MAX_SERIES,
            )
        return False

    # --- instances --------------------------------------------------------------------------

    def _instance(
        self, instance_id: uuid.UUID, client: Mapping[str, str], now: int
    ) -> ClientInstance:
        version, subscriptions = self._subscriptions()
        instance = self.instances.get(instance_id)
        if instance is None or instance.version != version:
            # Made anew when the subscriptions change, it keeps what the client first said
            # of itself (as Kafka): a request naming its id from elsewhere changes nothing.
            client = instance.client if instance is not None else client
            attributes = {**client, "client_instance_id": str(instance_id)}
            matched = [s for s in subscriptions if s.matches(attributes)]
            metrics: set[str] = set()
            for s in matched:
                metrics.update(s.metrics)
            interval = min((s.interval_ms for s in matched), default=DEFAULT_INTERVAL_MS)
            interval = min(interval, DEFAULT_INTERVAL_MS)  # Kafka's starts from the default
            wanted = ("*",) if "*" in metrics else tuple(sorted(metrics))
            fresh = ClientInstance(
                instance_id,
                dict(client),
                subscription_id(instance_id, wanted, interval),
                wanted,
                interval,
                version,
            )
            if instance is not None:  # the subscriptions changed: same client, new terms
                fresh.terminating = instance.terminating
                kept = {k: v for k, v in instance.series.items() if _requested_name(k[0], wanted)}
                self._series_total -= len(instance.series) - len(kept)
                fresh.series = kept
            instance = self.instances[instance_id] = fresh
        instance.seen_ms = now
        self.instances.move_to_end(instance_id)
        while len(self.instances) > MAX_INSTANCES:
            self._forget(self.instances.popitem(last=False)[1])
        return instance

    def _expire(self, now: int) -> None:
        """Forget instances silent past their expiry. Expiries differ (they follow each
        one's push interval), so this looks at all of them, at most once a second."""
        if now - self._expired_at < 1000:
            return
        self._expired_at = now
        for instance_id in [
            i for i, inst in self.instances.items() if now - inst.seen_ms > inst.expiry_ms
        ]:
            self._forget(self.instances.pop(instance_id))

    def _forget(self, instance: ClientInstance) -> None:
        self._series_total -= len(instance.series)
        instance.series = {}

    # --- Prometheus -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The clients' latest values, one family per printed name (prometheus-client's
        custom collector protocol). Called from prometheus-client's scrape thread while the
        event loop changes the instances: it only reads, from copies (list() of a dict runs
        under the GIL), and leaves expired instances out rather than removing them."""
        now = self._now()
        families: dict[str, tuple[str, list[tuple[dict[str, str], float]]]] = {}
        instances = sorted(list(self.instances.values()), key=lambda i: i.instance_id)
        for instance in instances:
            if now - instance.seen_ms > instance.expiry_ms:
                continue
            for (name, pairs), (kind, value) in sorted(list(instance.series.items())):
                printed = f"{name}_total" if kind == "counter" else name
                family = families.setdefault(printed, (kind, []))
                if family[0] == kind:  # a name pushed as both kinds: the first one wins
                    family[1].append((dict(pairs), value))
        for printed, (kind, samples) in sorted(families.items()):
            label_names = sorted({k for labels, _ in samples for k in labels})
            family_metric: GaugeMetricFamily | CounterMetricFamily
            help_text = "Pushed by clients (KIP-714)."
            if kind == "counter":
                family_metric = CounterMetricFamily(printed, help_text, labels=label_names)
            else:
                family_metric = GaugeMetricFamily(printed, help_text, labels=label_names)
            for sample_labels, value in samples:
                family_metric.add_metric([sample_labels.get(k, "") for k in label_names], value)
            yield family_metric


def _requested(name: str, metrics: tuple[str, ...]) -> bool:
    return metrics == ("*",) or any(name.startswith(prefix) for prefix in metrics)


def _requested_name(printed: str, metrics: tuple[str, ...]) -> bool:
    """``_requested`` for a series already kept (its Prometheus name)."""
    return metrics == ("*",) or any(printed.startswith(_metric_name(p) or "\0") for p in metrics)


def _label_key(
    resource: list[tuple[str, str]], attributes: Any, base: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    labels = dict(resource[:MAX_ATTRIBUTES])
    for label, value in _labels(attributes)[:MAX_ATTRIBUTES]:
        labels[label] = value
    labels.update(base)
    return tuple(sorted(labels.items()))


def _labels(attributes: Any) -> list[tuple[str, str]]:
    out = []
    for kv in attributes:
        which = kv.value.WhichOneof("value")
        if which not in ("string_value", "int_value", "double_value", "bool_value"):
            continue
        label = _label_name(kv.key)
        if label is None:
            continue
        raw = getattr(kv.value, which)
        value = ("true" if raw else "false") if which == "bool_value" else str(raw)
        out.append((label, value[:MAX_LABEL_VALUE]))
    return out


_PREFIX = "org.apache.kafka."


def _metric_name(otlp: str) -> str | None:
    """A Kafka client metric's Prometheus name: org.apache.kafka.x.y -> org_apache_kafka_x_y.
    Only Kafka's own namespace (KIP-714's), so no client can shadow a broker metric; a
    monotonic sum's name loses a trailing _total, which the exposition adds back."""
    if not otlp.startswith(_PREFIX) or len(otlp) > 200:
        return None
    return _word(otlp).removesuffix("_total") or None


def _label_name(key: str) -> str | None:
    if not key or len(key) > 100:
        return None
    label = _word(key)
    if label[0].isdigit() or label.startswith("__"):
        return None
    return label


def _word(text: str) -> str:
    """ASCII letters, digits and underscores; anything else becomes an underscore."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in text)
