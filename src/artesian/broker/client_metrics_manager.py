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
    text = f"[{', '.join(sorted(metrics))}]{interval_ms}".encode()
    crc = crc32c.crc32c(text)
    crc = crc - (1 << 32) if crc >= 1 << 31 else crc
    hi, lo = instance_id.int >> 64, instance_id.int & ((1 << 64) - 1)
    h = hi ^ lo
    mixed = ((h >> 32) ^ h) & 0xFFFFFFFF
    mixed = mixed - (1 << 32) if mixed >= 1 << 31 else mixed
    value = (crc ^ mixed) & 0xFFFFFFFF
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
        if instance.last_get_ms and waited < instance.push_interval_ms and not exempt:
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
            instance.series.clear()  # the client has gone
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
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData

        parsed = MetricsData()
        try:
            parsed.ParseFromString(data)
        except DecodeError as e:
            raise ValueError(str(e)) from None
        # Not the source port: a new connection would make every series new.
        base = (
            ("client_instance_id", str(instance.instance_id)),
            *sorted((k, v) for k, v in instance.client.items() if k != "client_source_port"),
        )
        for resource in parsed.resource_metrics:
            resource_labels = _labels(resource.resource.attributes)
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    name = _metric_name(metric.name)
                    if not name:
                        continue
                    kind_of = metric.WhichOneof("data")
                    if kind_of == "gauge":
                        points, kind, delta = metric.gauge.data_points, "gauge", False
                    elif kind_of == "sum":
                        monotonic = metric.sum.is_monotonic
                        points, kind = metric.sum.data_points, "counter" if monotonic else "gauge"
                        delta = monotonic and metric.sum.aggregation_temporality == _DELTA
                    else:
                        continue  # histograms and summaries: librdkafka sends none
                    for point in points:
                        value = point.as_double if point.HasField("as_double") else point.as_int
                        labels = tuple(
                            sorted({*base, *resource_labels, *_labels(point.attributes)})
                        )
                        key = (name, labels)
                        if delta:
                            value += instance.series.get(key, (kind, 0.0))[1]
                        instance.series[key] = (kind, float(value))

    # --- instances --------------------------------------------------------------------------

    def _instance(
        self, instance_id: uuid.UUID, client: Mapping[str, str], now: int
    ) -> ClientInstance:
        version, subscriptions = self._subscriptions()
        instance = self.instances.get(instance_id)
        if instance is None or instance.version != version:
            attributes = {**client, "client_instance_id": str(instance_id)}
            matched = [s for s in subscriptions if s.matches(attributes)]
            metrics: set[str] = set()
            for s in matched:
                metrics.update(s.metrics)
            interval = min((s.interval_ms for s in matched), default=DEFAULT_INTERVAL_MS)
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
                fresh.series, fresh.terminating = instance.series, instance.terminating
            instance = self.instances[instance_id] = fresh
        instance.seen_ms = now
        self.instances.move_to_end(instance_id)
        while len(self.instances) > MAX_INSTANCES:
            self.instances.popitem(last=False)
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
            del self.instances[instance_id]

    # --- Prometheus -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The clients' latest values, one family per metric name (prometheus-client's
        custom collector protocol)."""
        self._expire(self._now())
        families: dict[str, tuple[str, list[tuple[dict[str, str], float]]]] = {}
        for instance in self.instances.values():
            for (name, pairs), (kind, value) in instance.series.items():
                families.setdefault(name, (kind, []))[1].append((dict(pairs), value))
        for name, (kind, samples) in sorted(families.items()):
            label_names = sorted({k for labels, _ in samples for k in labels})
            family: GaugeMetricFamily | CounterMetricFamily
            help_text = f"Pushed by clients (KIP-714): {name}"
            if kind == "counter":
                family = CounterMetricFamily(name, help_text, labels=label_names)
            else:
                family = GaugeMetricFamily(name, help_text, labels=label_names)
            for sample_labels, value in samples:
                family.add_metric([sample_labels.get(k, "") for k in label_names], value)
            yield family


def _labels(attributes: Any) -> list[tuple[str, str]]:
    out = []
    for kv in attributes:
        which = kv.value.WhichOneof("value")
        if which in ("string_value", "int_value", "double_value", "bool_value"):
            label = _metric_name(kv.key)
            if label and label not in ("client_instance_id",):
                out.append((label, str(getattr(kv.value, which))))
    return out


def _metric_name(otlp: str) -> str:
    """An OTLP name as a Prometheus one: org.apache.kafka.x.y -> org_apache_kafka_x_y."""
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in otlp.strip())
    if name and name[0].isdigit():
        name = "_" + name
    return name[:200]
