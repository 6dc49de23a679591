"""Client metrics (KIP-714) against a real broker: CLIENT_METRICS subscriptions through
kafka-python's admin client, librdkafka pushing its metrics to the broker's Prometheus
endpoint, and GetTelemetrySubscriptions / PushTelemetry over raw frames with Kafka's error
codes."""

from __future__ import annotations

import time
import urllib.request
import uuid
from typing import Any

import cramjam
import pytest
from confluent_kafka import Producer
from kio.schema.get_telemetry_subscriptions.v0 import request as get_req
from kio.schema.list_config_resources.v0 import request as list_req
from kio.schema.push_telemetry.v0 import request as push_req
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as otlp
from prometheus_client.parser import text_string_to_metric_families

from artesian.broker.client_metrics_manager import subscription_id
from artesian.config.client_metrics import subscription_of
from tests.broker_process import free_port
from tests.kafka_wire import WireConn

NONE, INVALID_REQUEST, UNSUPPORTED_COMPRESSION_TYPE, INVALID_RECORD = 0, 42, 76, 87
UNSUPPORTED_VERSION = 35
THROTTLING_QUOTA_EXCEEDED, UNKNOWN_SUBSCRIPTION_ID, TELEMETRY_TOO_LARGE = 89, 117, 118
MAX_BYTES = 4096


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    port = free_port()
    proc = module_broker_factory(
        {
            "artesian.metrics.port": str(port),
            "telemetry.max.bytes": str(MAX_BYTES),
            "artesian.client.metrics.enable": "true",
        }
    )
    proc.metrics_port = port
    return proc


def _admin(broker: Any) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=broker.bootstrap)


def _subscribe(admin: Any, name: str, **configs: Any) -> str:
    from kafka.admin._configs import ConfigResource, ConfigResourceType

    result = admin.alter_configs(
        [ConfigResource(ConfigResourceType.CLIENT_METRICS, name, configs=configs)],
        incremental=True,
        raise_on_unknown=False,  # kafka-python does not know these names; the broker does
    )
    return str(result["client_metrics"][name])


def _series(broker: Any, name: str) -> list[dict[str, str]]:
    url = f"http://127.0.0.1:{broker.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return [
        {**s.labels, "value": str(s.value)}
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def test_subscriptions_are_configs_checked_as_kafka_checks_them(broker: Any) -> None:
    from kafka.admin._configs import ConfigResource, ConfigResourceType

    admin = _admin(broker)
    assert (
        _subscribe(
            admin, "cm-a", **{"metrics": "org.apache.kafka.producer.", "interval.ms": "60000"}
        )
        == "OK"
    )
    refusals = {
        (
            "colour",
            "blue",
        ): "[Error 42] InvalidRequestError: Unknown client metrics configuration: colour",
        ("interval.ms", "50"): "[Error 42] InvalidRequestError: Invalid value 50 for interval.ms, "
        "interval must be between 100 and 3600000 (1 hour)",
        ("match", "client_colour=blue"): "[Error 40] InvalidConfigurationError: Illegal client "
        "matching pattern: client_colour=blue",
        ("match", "client_id=("): "[Error 40] InvalidConfigurationError: Client match pattern "
        "`client_id=(` is not a valid regular expression: missing ): (.",
        ("metrics", "a,a"): "[Error 40] InvalidConfigurationError: Configuration 'metrics' "
        "values must not be duplicated.",
    }
    for (name, value), message in refusals.items():
        assert _subscribe(admin, "cm-a", **{name: value}).startswith(message)
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.CLIENT_METRICS, "cm-a")], config_filter="all"
    )["client_metrics"]["cm-a"]
    assert {k: (v["value"], v["config_source"]) for k, v in described.items()} == {
        # CLIENT_METRICS_CONFIG (7), as kafka-python names it
        "interval.ms": ("60000", "DYNAMIC_CLIENT_METRICS_CONFIG"),
        "metrics": ("org.apache.kafka.producer.", "DYNAMIC_CLIENT_METRICS_CONFIG"),
    }
    with WireConn(broker.port) as conn:
        listed = conn.request(74, 0, list_req.ListConfigResourcesRequest())
        assert "cm-a" in [r.resource_name for r in listed.config_resources]
        # Every config removed: the subscription is gone.
        assert _subscribe(admin, "cm-a", metrics=("DELETE", None)) == "OK"
        assert _subscribe(admin, "cm-a", **{"interval.ms": ("DELETE", None)}) == "OK"
        listed = conn.request(74, 0, list_req.ListConfigResourcesRequest())
        assert "cm-a" not in [r.resource_name for r in listed.config_resources]
    admin.close()


def test_list_config_resources_by_type(broker: Any) -> None:
    """ListConfigResources v1 (KIP-1142): groups with configs of their own, client metrics
    subscriptions, brokers and topics, in Kafka's order of types; v0 the subscriptions."""
    from kio.schema.list_config_resources.v1 import request as list_v1

    from tests.broker.test_share_groups import _set_group_configs
    from tests.kafka_wire import create_topic

    admin = _admin(broker)
    assert _subscribe(admin, "lcr-sub", metrics="org.apache.kafka.") == "OK"
    admin.close()
    _set_group_configs(broker, "lcr-g", {"consumer.session.timeout.ms": "50000"})
    with WireConn(broker.port) as conn:
        create_topic(conn, "lcr-t", 1)

        def listed(*types: int) -> tuple[int, list[tuple[int, str]]]:
            """The answer's error and entries, but for other tests' (this broker is the
            module's)."""
            r = conn.request(74, 1, list_v1.ListConfigResourcesRequest(resource_types=types))
            found = [(int(c.resource_type), c.resource_name) for c in r.config_resources]
            return int(r.error_code), [
                (k, n) for k, n in found if n.startswith("lcr-") or k in (4, 8)
            ]

        code, every = listed()
        assert code == NONE
        kinds = [k for k, _ in every]
        assert kinds == sorted(kinds, key=[32, 16, 8, 4, 2].index)  # Kafka's order of types
        assert {(32, "lcr-g"), (16, "lcr-sub"), (8, "1"), (4, "1"), (2, "lcr-t")} <= set(every)
        assert listed(4, 32) == (NONE, [(32, "lcr-g"), (4, "1")])
        assert listed(16) == (NONE, [(16, "lcr-sub")])
        assert listed(2, 64) == (UNSUPPORTED_VERSION, [])  # never a part of the answer
        assert listed(0) == (UNSUPPORTED_VERSION, [])
        v0 = conn.request(74, 0, list_req.ListConfigResourcesRequest())
        assert "lcr-sub" in [c.resource_name for c in v0.config_resources]
        assert not {"lcr-g", "lcr-t"} & {c.resource_name for c in v0.config_resources}


def test_librdkafka_pushes_what_its_subscription_asks_for(broker: Any) -> None:
    admin = _admin(broker)
    assert (
        _subscribe(
            admin,
            "cm-producers",
            metrics="org.apache.kafka.producer.node.request.latency,org.apache.kafka.producer.connection",
            **{"interval.ms": "500", "match": "client_id=cm-telemetry-.*"},
        )
        == "OK"
    )
    admin.close()
    watched = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "cm-telemetry-1"})
    other = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "cm-unwatched"})
    latency = "org_apache_kafka_producer_node_request_latency_avg"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for p in (watched, other):
            p.produce("cm-topic", b"x")
            p.poll(0.05)
        if _series(broker, latency):
            break
    (series,) = _series(broker, latency)
    assert series["client_id"] == "cm-telemetry-1"
    assert series["client_software_name"] == "confluent-kafka-python"
    assert series["node_id"] == "1" and float(series["value"]) >= 0
    uuid.UUID(series["client_instance_id"])
    # Only the prefixes asked for: no record queue time.
    assert _series(broker, "org_apache_kafka_producer_record_queue_time_avg") == []
    # A monotonic sum is a counter.
    (total,) = _series(broker, "org_apache_kafka_producer_connection_creation_total")
    assert float(total["value"]) >= 0
    # On close the client pushes a last time, terminating: its series leave.
    assert watched.flush(10) == 0 and other.flush(10) == 0
    del watched
    deadline = time.monotonic() + 10
    while _series(broker, latency) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _series(broker, latency) == []


def _point(value: float, **attributes: Any) -> Any:
    return otlp.NumberDataPoint(
        as_double=value,
        attributes=[
            KeyValue(
                key=k,
                value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v),
            )
            for k, v in attributes.items()
        ],
    )


def _metrics_payload(value: float, delta: float = 1.0) -> bytes:
    """A poll idle ratio gauge (with a node.id, and a client_id attribute trying to pass for
    another client), a delta counter, and two metrics nobody asked for."""
    delta_sum = otlp.Sum(data_points=[_point(delta)], aggregation_temporality=1, is_monotonic=True)
    metrics = [
        otlp.Metric(
            name="org.apache.kafka.consumer.poll.idle.ratio.avg",
            gauge=otlp.Gauge(data_points=[_point(value, **{"node.id": 7, "client_id": "spoof"})]),
        ),
        otlp.Metric(
            name="org.apache.kafka.consumer.coordinator.rebalance.latency.total", sum=delta_sum
        ),
        otlp.Metric(
            name="org.apache.kafka.producer.record.queue.time.avg",
            gauge=otlp.Gauge(data_points=[_point(1.0)]),
        ),
        otlp.Metric(
            name="kafka.server.socket.server.connection.count",
            gauge=otlp.Gauge(data_points=[_point(9.0)]),
        ),
    ]
    data = otlp.MetricsData(
        resource_metrics=[otlp.ResourceMetrics(scope_metrics=[otlp.ScopeMetrics(metrics=metrics)])]
    )
    return data.SerializeToString()


def test_telemetry_requests_get_kafkas_error_codes(broker: Any) -> None:
    admin = _admin(broker)
    assert (
        _subscribe(
            admin,
            "cm-wire",
            metrics="org.apache.kafka.consumer.",
            **{"interval.ms": "100", "match": "client_id=cm-wire"},
        )
        == "OK"
    )
    admin.close()
    with WireConn(broker.port) as conn:

        def get(instance: uuid.UUID | None) -> Any:
            return conn.request(
                71,
                0,
                get_req.GetTelemetrySubscriptionsRequest(client_instance_id=instance),
                client_id="cm-wire",
            )

        def push(sub: int, payload: bytes, compression: int = 0, terminating: bool = False) -> int:
            r = conn.request(
                72,
                0,
                push_req.PushTelemetryRequest(
                    client_instance_id=instance,
                    subscription_id=sub,
                    terminating=terminating,
                    compression_type=compression,
                    metrics=payload,
                ),
                client_id="cm-wire",
            )
            return int(r.error_code)

        first = get(uuid.UUID(int=0))
        assert int(first.error_code) == NONE
        instance = first.client_instance_id
        assert instance is not None and instance.int > 1  # assigned by the broker
        assert first.requested_metrics == ("org.apache.kafka.consumer.",)
        assert first.push_interval.total_seconds() == 0.1
        assert first.delta_temporality is True
        assert tuple(first.accepted_compression_types) == (4, 3, 1, 2)
        assert first.telemetry_max_bytes == MAX_BYTES
        # The same on every broker: from the subscriptions and the instance id alone.
        sub = subscription_of(
            "cm-wire", {"metrics": "org.apache.kafka.consumer.", "interval.ms": "100"}
        )
        assert first.subscription_id == subscription_id(instance, sub.metrics, 100)
        assert int(get(instance).error_code) == THROTTLING_QUOTA_EXCEEDED  # too soon
        good = first.subscription_id
        assert push(good + 1, b"") == UNKNOWN_SUBSCRIPTION_ID
        time.sleep(0.12)
        assert push(good, _metrics_payload(0.25)) == NONE
        assert push(good, _metrics_payload(0.5)) == THROTTLING_QUOTA_EXCEEDED  # too soon
        (series,) = _series(broker, "org_apache_kafka_consumer_poll_idle_ratio_avg")
        # The client's own id, not the attribute that claimed another.
        assert (series["client_id"], series["node_id"], series["value"]) == ("cm-wire", "7", "0.25")
        # Only the prefixes asked for, and only Kafka's namespace.
        assert _series(broker, "org_apache_kafka_producer_record_queue_time_avg") == []
        # (The broker's own metric of that name stays the broker's alone.)
        assert [
            x
            for x in _series(broker, "kafka_server_socket_server_connection_count")
            if "client_id" in x
        ] == []
        time.sleep(0.12)
        assert push(good, b"x", compression=9) == UNSUPPORTED_COMPRESSION_TYPE
        time.sleep(0.12)
        assert push(good, b"x" * (MAX_BYTES + 1)) == TELEMETRY_TOO_LARGE
        time.sleep(0.12)
        assert push(good, b"\xff\x00garbage") == INVALID_RECORD
        time.sleep(0.12)
        zstd = bytes(cramjam.zstd.compress(_metrics_payload(0.75, delta=2.5)))
        assert push(good, zstd, compression=4) == NONE
        (series,) = _series(broker, "org_apache_kafka_consumer_poll_idle_ratio_avg")
        assert series["value"] == "0.75"
        # Delta sums add up into a counter: 1 + 2.5.
        (total,) = _series(broker, "org_apache_kafka_consumer_coordinator_rebalance_latency_total")
        assert total["value"] == "3.5"
        time.sleep(0.12)
        # A zstd bomb: more than telemetry.max.bytes once decompressed.
        bomb = bytes(cramjam.zstd.compress(b"\x00" * (MAX_BYTES * 8)))
        assert push(good, bomb, compression=4) == TELEMETRY_TOO_LARGE
        # Terminating: accepted at once, then nothing more.
        assert push(good, b"", terminating=True) == NONE
        assert push(good, b"") == INVALID_REQUEST
        assert _series(broker, "org_apache_kafka_consumer_poll_idle_ratio_avg") == []
        instance = uuid.UUID(int=1)  # reserved
        assert push(good, b"") == INVALID_REQUEST
    assert broker.alive()


def test_by_default_the_apis_are_not_offered(broker_factory: Any) -> None:
    """As a Kafka broker without a telemetry receiver plugin."""
    from kio.schema.api_versions.v3.request import ApiVersionsRequest

    proc = broker_factory(name="no-telemetry")
    with WireConn(proc.port) as conn:
        r = conn.request(
            18,
            3,
            ApiVersionsRequest(client_software_name="t", client_software_version="1"),
        )
    keys = {int(k.api_key) for k in r.api_keys}
    assert 71 not in keys and 72 not in keys and 74 in keys


def test_matching_expiry_and_changed_subscriptions_without_sockets() -> None:
    from artesian.broker.client_metrics_manager import ClientMetricsManager

    now = [1_000_000]
    subs: list[Any] = [
        subscription_of(
            "s",
            {
                "metrics": "org.apache.kafka.producer.",
                "interval.ms": "1000",
                "match": "client_id=app-.*,client_software_name=librdkafka",
            },
        )
    ]
    version = [1]
    a = ClientMetricsManager(lambda: (version[0], subs), 1 << 20, lambda: now[0])
    b = ClientMetricsManager(lambda: (version[0], subs), 1 << 20, lambda: now[0])
    client = {"client_id": "app-1", "client_software_name": "librdkafka"}
    first = a.get_subscriptions(None, client)
    assert first.metrics == ("org.apache.kafka.producer.",) and first.push_interval_ms == 1000
    # Another broker gives the same instance the same subscription id.
    assert b.get_subscriptions(first.instance_id, client).subscription_id == first.subscription_id
    # Full matches of every selector: "app-1x" matches app-.*, "xapp-1" does not.
    for client_id, wanted in (("app-1x", True), ("xapp-1", False)):
        other = a.get_subscriptions(None, {**client, "client_id": client_id})
        assert bool(other.metrics) is wanted
    unmatched = a.get_subscriptions(None, {"client_id": "app-1"})  # no software name: no match
    assert (unmatched.metrics, unmatched.push_interval_ms) == ((), 300_000)
    # Asked again too soon: throttled; a changed subscription makes the instance anew, and
    # its new terms come at once.
    assert a.get_subscriptions(first.instance_id, client).error == 89
    subs[0] = subscription_of("s", {"metrics": "*", "interval.ms": "2000"})
    version[0] += 1
    changed = a.get_subscriptions(first.instance_id, client)
    assert (changed.error, changed.metrics, changed.push_interval_ms) == (0, ("*",), 2000)
    assert changed.subscription_id != first.subscription_id
    # Forgotten after max(60 s, 3 intervals) without a request.
    now[0] += 60_001
    a.get_subscriptions(None, {"client_id": "someone-else"})
    assert first.instance_id not in a.instances
    assert unmatched.instance_id in a.instances  # 3 x its 300 s interval: still remembered


def test_the_cli_manages_subscriptions(broker: Any) -> None:
    from tests.cli.test_admin_cli import cli, cli_json, fails

    cli(
        broker,
        "client-metrics",
        "set",
        "cm-cli",
        "--metrics",
        "org.apache.kafka.consumer.",
        "--interval",
        "1000",
        "--match",
        "client_id=billing-.*",
        "--match",
        "client_software_name=librdkafka",
    )
    listed = {s["name"]: s for s in cli_json(broker, "client-metrics", "list")}
    assert listed["cm-cli"] == {
        "name": "cm-cli",
        "metrics": "org.apache.kafka.consumer.",
        "interval.ms": "1000",
        "match": "client_id=billing-.*,client_software_name=librdkafka",
    }
    assert "nothing to set" in fails(broker, "client-metrics", "set", "cm-cli")
    refused = fails(broker, "client-metrics", "set", "cm-cli", "--interval", "5")
    assert "INVALID_REQUEST: Invalid value 5 for interval.ms" in refused
    cli(broker, "client-metrics", "delete", "cm-cli")
    assert "cm-cli" not in {s["name"] for s in cli_json(broker, "client-metrics", "list")}
