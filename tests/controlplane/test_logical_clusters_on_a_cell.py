"""Logical clusters from the control plane, end to end with real processes: the admin's shared
cluster in a SASL cell, two logical clusters of a tenant placed on it, each with an API key
that real clients (librdkafka, kafka-python) use to see a cluster of their own; each metered
apart from the other; one deleted, its topics with it."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.controlplane.platform import Platform
from tests.kafka_wire import sample_request, scram_login
from tests.storage.batches import make_batch

pytestmark = pytest.mark.slow


@pytest.fixture
def cell(tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path)
    try:
        p.start_control_plane()
        p.start_data_plane("--client-protocol", "SASL_PLAINTEXT", "--metering-interval", "1")
        yield p
    finally:
        p.close()


def _conf(bootstrap: str, key: dict[str, Any]) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": key["key"],
        "sasl.password": key["secret"],
    }


def _write(conf: dict[str, Any], topic: str, values: list[bytes]) -> None:
    admin = AdminClient(conf)
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(20)
    producer = Producer({**conf, "acks": "all", "linger.ms": 0})
    for v in values:
        producer.produce(topic, v)
    assert producer.flush(30) == 0


def _read(
    conf: dict[str, Any], topic: str, n: int, group: str = "readers"
) -> list[tuple[int, bytes]]:
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        got: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.offset(), msg.value()))
        return got
    finally:
        consumer.close()


def _bytes_in(platform: Platform, host: str, lkc: str) -> int:
    """The shared broker's client bytes into one logical cluster's topics, from its metrics;
    with ``lkc`` "", into the topics of none."""
    first_port = json.loads((platform.cells / "allocations.json").read_text())[host]
    with urllib.request.urlopen(f"http://127.0.0.1:{first_port + 1000}/metrics") as r:
        text = r.read().decode()
    counted = 0.0
    for line in text.splitlines():
        head = 'kafka_server_broker_topic_bytes_in_total{topic="'
        if line.startswith(head):
            topic = line[len(head) :].split('"', 1)[0]
            if topic.startswith(f"{lkc}_") if lkc else not topic.startswith("lkc-"):
                counted += float(line.rsplit(" ", 1)[1])
    return int(counted)


def test_logical_clusters_share_a_cell_s_shared_cluster_and_are_metered_apart(
    cell: Platform,
) -> None:
    api = cell.api
    # No shared cluster yet: nowhere to place a logical one.
    refused = api.post("/v1/clusters", json={"name": "early", "logical": True})
    assert refused.status_code == 409 and "no shared cluster" in refused.text
    pool = api.post("/v1/clusters", json={"name": "pool", "shared": True}).json()["id"]
    acme = api.post("/v1/tenants", json={"name": "acme", "max_brokers": 0}).json()
    tenant = httpx.Client(
        base_url=str(api.base_url),
        headers={"authorization": f"Bearer {acme['token']}"},
        timeout=30,
    )
    assert tenant.post("/v1/clusters", json={"name": "mine", "shared": True}).status_code == 403
    bad = tenant.post("/v1/clusters", json={"name": "x", "logical": True, "brokers": 2})
    assert bad.status_code == 422, bad.text
    # A tenant without a broker quota may still have logical clusters: they have none.
    ids = {}
    for name in ("north", "south"):
        r = tenant.post("/v1/clusters", json={"name": name, "logical": True})
        assert r.status_code == 201, r.text
        spec = r.json()["spec"]
        assert (spec["host"], spec["brokers"]) == (pool, 0)
        ids[name] = r.json()["id"]
    keys = {}
    for name, lkc in ids.items():
        r = tenant.post(f"/v1/clusters/{lkc}/api-keys", json={"description": name})
        assert r.status_code == 201, r.text
        keys[name] = r.json()
    cell.until(lambda: cell.ready(pool, 1, 1), 90, "the shared cluster")
    docs = {
        name: cell.until(lambda lkc=lkc: cell.ready(lkc, 2, 0), 60, f"{name}'s key applied")
        for name, lkc in ids.items()
    }
    bootstrap = docs["north"]["status"]["bootstrap"]
    assert bootstrap == cell.cluster(pool)["status"]["bootstrap"]

    north, south = (_conf(bootstrap, keys[n]) for n in ("north", "south"))
    _write(north, "orders", [b"n0", b"n1", b"n2"])
    _write(south, "orders", [b"s0"])
    assert _read(north, "orders", 3) == [(0, b"n0"), (1, b"n1"), (2, b"n2")]
    assert _read(south, "orders", 1) == [(0, b"s0")]
    seen = AdminClient(north).list_topics(timeout=10)
    assert (set(seen.topics), seen.cluster_id) == ({"orders"}, ids["north"])

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        "orders",
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=keys["south"]["key"],
        sasl_plain_password=keys["south"]["secret"],
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    assert [(m.offset, m.value) for m in consumer] == [(0, b"s0")]
    consumer.close()

    # A quota that all of north's clients share: the platform's to set.
    quota = {"quotas": {"producer_byte_rate": 100000}}
    assert tenant.patch(f"/v1/clusters/{ids['north']}", json=quota).status_code == 403
    r = api.patch(f"/v1/clusters/{ids['north']}", json=quota)
    assert r.status_code == 200, r.text
    generation = r.json()["spec"]["generation"]
    cell.until(lambda: cell.ready(ids["north"], generation, 0), 60, "north's quota applied")
    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    for name, throttled in (("north", True), ("south", False)):
        key = keys[name]
        with scram_login(port, key["key"], key["secret"], "SCRAM-SHA-512") as conn:
            # 300 KB against 100 KB/s with one second of credit: about 2 s of debt.
            batch = make_batch(n=300, value_size=1000)
            answer = conn.request(0, 9, sample_request(0, 9, "orders", batch=batch, acks=1))
            throttle_ms = int(answer.throttle_time.total_seconds() * 1000)
            assert answer.responses[0].partition_responses[0].error_code == 0
            assert (1500 <= throttle_ms <= 2500) if throttled else throttle_ms == 0, throttle_ms

    # Each is metered from its own topics' counters on the shared broker.
    for name, lkc in ids.items():
        counted = _bytes_in(cell, pool, lkc)
        assert counted > 0

        def metered(lkc: str = lkc, counted: int = counted) -> dict[str, Any] | None:
            r = api.get("/v1/usage", params={"cluster": lkc})
            if r.status_code != 200:
                return None
            total: dict[str, Any] = r.json()["total"]
            return total if total["bytes_in"] == counted else None

        total = cell.until(metered, 30, f"{name}'s usage")
        assert total["broker_seconds"] == 0  # no brokers of its own
    # The shared cluster carries them: it cannot go first.
    assert api.delete(f"/v1/clusters/{pool}").status_code == 409

    # Deleting north removes its key, topics and groups from the shared cluster.
    assert tenant.delete(f"/v1/clusters/{ids['north']}").status_code == 202
    cell.until(
        lambda: api.get(f"/v1/clusters/{ids['north']}").status_code == 404, 90, "north forgotten"
    )
    pool_key = api.post(f"/v1/clusters/{pool}/api-keys", json={}).json()
    cell.until(lambda: cell.ready(pool, 2, 1), 60, "the shared cluster's own key")
    platform_admin = AdminClient(_conf(bootstrap, pool_key))
    physical = set(platform_admin.list_topics(timeout=10).topics)
    assert f"{ids['south']}_orders" in physical
    assert not [t for t in physical if t.startswith(ids["north"])], physical
    groups = {g.group_id for g in platform_admin.list_consumer_groups().result(10).valid}
    assert f"{ids['south']}_readers" in groups
    assert not [g for g in groups if g.startswith(ids["north"])], groups
    assert _read(south, "orders", 1, group="after") == [(0, b"s0")]
    # north's key no longer logs in.
    errors: list[KafkaError] = []
    locked_out = Producer({**north, "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        locked_out.poll(0.2)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    # The shared cluster is billed none of its guests' bytes: only its own topics' (here the
    # groups' commits into __consumer_offsets).
    own = _bytes_in(cell, pool, "")
    assert own > 0 and _bytes_in(cell, pool, "") == own

    def pool_metered() -> dict[str, Any] | None:
        r = api.get("/v1/usage", params={"cluster": pool})
        total: dict[str, Any] | None = r.json()["total"] if r.status_code == 200 else None
        return total if total is not None and total["bytes_in"] == own else None

    cell.until(pool_metered, 30, "the shared cluster's own usage")

    # south is being deleted: the shared cluster may go at once, taking south with it.
    assert tenant.delete(f"/v1/clusters/{ids['south']}").status_code == 202
    assert api.delete(f"/v1/clusters/{pool}").status_code == 202
    for gone in (ids["south"], pool):
        cell.until(lambda gone=gone: api.get(f"/v1/clusters/{gone}").status_code == 404, 90, gone)
    tenant.close()
