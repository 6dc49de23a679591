"""Usage metering end to end, with real processes: a tenant's cluster run by a data plane
that meters it every second. The ledger's bytes equal the broker's own counters exactly,
through a kill -9 of the agent and after the cluster is deleted; a tenant sees only its own
usage."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from tests.consuming import read_range
from tests.controlplane.platform import Platform

pytestmark = pytest.mark.slow


def _counters(platform: Platform, cluster_id: str) -> tuple[int, int]:
    """The one broker's client bytes in and out, from its own metrics endpoint."""
    first_port = json.loads((platform.cells / "allocations.json").read_text())[cluster_id]
    with urllib.request.urlopen(f"http://127.0.0.1:{first_port + 1000}/metrics") as r:
        text = r.read().decode()
    totals = {"in": 0.0, "out": 0.0}
    for line in text.splitlines():
        for key, name in (
            ("in", "kafka_server_broker_topic_bytes_in_total"),
            ("out", "kafka_server_broker_topic_bytes_out_total"),
        ):
            if line.startswith(name):
                totals[key] += float(line.rsplit(" ", 1)[1])
    return int(totals["in"]), int(totals["out"])


def _usage(api: httpx.Client, **params: Any) -> dict[str, Any]:
    r = api.get("/v1/usage", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _metered(platform: Platform, cluster_id: str, expected: tuple[int, int]) -> dict[str, Any]:
    def caught_up() -> dict[str, Any] | None:
        r = platform.api.get("/v1/usage", params={"cluster": cluster_id})
        if r.status_code == 503:  # the ledger is still being read
            return None
        assert r.status_code == 200, r.text
        total: dict[str, Any] = r.json()["total"]
        seen.append(total)
        return total if (total["bytes_in"], total["bytes_out"]) == expected else None

    seen: list[dict[str, Any]] = []
    what = f"usage of {cluster_id} to reach {expected} (last read: {{}})"
    try:
        return platform.until(caught_up, 30, what)  # type: ignore[no-any-return]
    except AssertionError as e:
        raise AssertionError(str(e).replace("{}", str(seen[-1:]), 1)) from None


def _produce(bootstrap: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for v in values:
        producer.produce("metered", v)
    assert producer.flush(30) == 0


def test_usage_is_metered_exactly_through_an_agent_kill_and_a_deletion(
    platform: Platform,
) -> None:
    acme = platform.api.post("/v1/tenants", json={"name": "acme"}).json()
    globex = platform.api.post("/v1/tenants", json={"name": "globex"}).json()
    tenant_api = httpx.Client(
        base_url=str(platform.api.base_url),
        headers={"authorization": f"Bearer {acme['token']}"},
        timeout=30,
    )
    cluster_id = tenant_api.post("/v1/clusters", json={"name": "events"}).json()["id"]
    platform.start_data_plane("--metering-interval", "1")
    doc = platform.until(lambda: platform.ready(cluster_id, 1, 1), 90, "events on 1 broker")
    bootstrap = doc["status"]["bootstrap"]

    first = [f"a-{n}".encode() * 50 for n in range(200)]
    _produce(bootstrap, first)
    assert read_range(bootstrap, "metered", 0, 200) == list(enumerate(first))
    counted = _counters(platform, cluster_id)
    assert counted[0] > 200 * 150 and counted[1] > 0
    total = _metered(platform, cluster_id, counted)
    assert total["broker_seconds"] > 0 and total["storage_byte_seconds"] > 0

    # kill -9 the agent (its brokers live on), traffic while it is away, then a new agent.
    assert platform.data_plane is not None
    platform.data_plane.proc.kill()
    platform.data_plane.proc.wait()
    second = [f"b-{n}".encode() * 80 for n in range(300)]
    _produce(bootstrap, second)
    assert read_range(bootstrap, "metered", 200, 500) == list(enumerate(second, start=200))
    platform.start_data_plane("--metering-interval", "1")
    counted = _counters(platform, cluster_id)
    assert counted[0] > 200 * 150 + 300 * 240
    _metered(platform, cluster_id, counted)  # nothing lost, nothing counted twice

    # The records since the last one are metered before the brokers stop.
    _produce(bootstrap, [b"last" * 100])
    counted = _counters(platform, cluster_id)
    assert tenant_api.delete(f"/v1/clusters/{cluster_id}").status_code == 202
    platform.until(
        lambda: platform.api.get(f"/v1/clusters/{cluster_id}").status_code == 404,
        90,
        "the cluster forgotten",
    )
    total = _metered(platform, cluster_id, counted)

    # Its usage stays the tenant's after the cluster is gone, and only the tenant's.
    mine = _usage(tenant_api)
    assert {h["cluster"] for h in mine["hours"]} == {cluster_id}
    assert mine["total"]["bytes_in"] == counted[0]
    assert all(h["tenant"] == acme["id"] for h in mine["hours"])
    with httpx.Client(
        base_url=str(platform.api.base_url),
        headers={"authorization": f"Bearer {globex['token']}"},
        timeout=30,
    ) as other:
        assert _usage(other)["hours"] == []
        assert _usage(other, cluster=cluster_id)["hours"] == []
        assert other.get("/v1/usage", params={"tenant": acme["id"]}).status_code == 404
    assert _usage(platform.api, tenant=acme["id"])["total"] == total
    tenant_api.close()
