"""The control plane and a data plane as users run them, each its own process, sharing only a
real Artesian broker that carries the state topics: a cluster asked for over the REST API is
provisioned, serves records at exact offsets, grows, follows its load, and is deleted whole.
The API takes requests while no data plane runs; the data plane catches up when it starts."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from confluent_kafka import Producer

from tests.broker_process import free_port
from tests.consuming import read_range
from tests.controlplane.platform import Platform, Service
from tests.operator.test_local_operator import _free_block
from tests.operator.test_operator_cli import _alive, _broker_pids

pytestmark = pytest.mark.slow


def test_a_cluster_is_provisioned_served_grown_and_deleted(platform: Platform) -> None:
    # No data plane yet: the API still takes the request; it waits in the desired-state topic.
    r = platform.api.post("/v1/clusters", json={"name": "orders", "brokers": 1})
    assert r.status_code == 201, r.text
    created = r.json()
    cluster_id = created["id"]
    assert cluster_id.startswith("lkc-")
    assert created["spec"]["generation"] == 1 and created["status"] is None
    time.sleep(1.0)
    assert platform.cluster(cluster_id)["status"] is None

    platform.start_data_plane()
    doc = platform.until(lambda: platform.ready(cluster_id, 1, 1), 90, "orders on 1 broker")
    bootstrap = doc["status"]["bootstrap"]
    assert doc["status"]["cell"] == "local"

    # This cell takes clients without a login: an API key would not be checked.
    r = platform.api.post(f"/v1/clusters/{cluster_id}/api-keys", json={})
    assert r.status_code == 409 and "PLAINTEXT" in r.json()["detail"]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    values = [f"order-{n}".encode() for n in range(10)]
    for v in values:
        producer.produce("orders", v)
    assert producer.flush(30) == 0
    assert read_range(bootstrap, "orders", 0, 10) == list(enumerate(values))

    r = platform.api.patch(f"/v1/clusters/{cluster_id}", json={"brokers": 2})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["generation"] == 2
    platform.until(lambda: platform.ready(cluster_id, 2, 2), 90, "orders on 2 brokers")
    assert read_range(bootstrap, "orders", 0, 10) == list(enumerate(values))

    listed = platform.api.get("/v1/clusters").json()["clusters"]
    assert [(c["id"], c["spec"]["brokers"]) for c in listed] == [(cluster_id, 2)]
    metrics = platform.api.get("/metrics").text
    assert 'artesian_controlplane_clusters{phase="Ready"} 1.0' in metrics

    data_dir = platform.cells / cluster_id
    pids = _broker_pids(data_dir)
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    r = platform.api.delete(f"/v1/clusters/{cluster_id}")
    assert r.status_code == 202 and r.json()["spec"]["deleted"] is True
    platform.until(
        lambda: platform.api.get(f"/v1/clusters/{cluster_id}").status_code == 404,
        90,
        "the cluster forgotten",
    )
    assert not any(_alive(p) for p in pids)
    assert not data_dir.exists()


def test_the_autoscaler_follows_the_load(platform: Platform) -> None:
    platform.start_data_plane()
    r = platform.api.post(
        "/v1/clusters",
        json={
            "name": "clicks",
            "brokers": 1,
            "autoscale": {"min_brokers": 1, "max_brokers": 2, "broker_bytes_per_second": 20000},
        },
    )
    assert r.status_code == 201, r.text
    cluster_id = r.json()["id"]
    doc = platform.until(lambda: platform.ready(cluster_id, 1, 1), 90, "clicks on 1 broker")
    bootstrap = doc["status"]["bootstrap"]

    # About 100 kB/s against 20 kB/s of capacity: the autoscaler wants 2 brokers (its max).
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    deadline = time.monotonic() + 60
    while platform.cluster(cluster_id)["spec"]["brokers"] < 2:
        assert time.monotonic() < deadline, "no scale-out under load"
        for _ in range(10):
            producer.produce("clicks", b"x" * 1000)
        producer.poll(0)
        time.sleep(0.1)
    assert producer.flush(30) == 0
    scaled = platform.cluster(cluster_id)["spec"]
    assert scaled["brokers"] == 2 and scaled["generation"] == 2
    platform.until(lambda: platform.ready(cluster_id, 2, 2), 90, "clicks on 2 brokers")

    # Idle now: after the cooldown it shrinks one broker at a time, to the minimum.
    platform.until(
        lambda: platform.ready(cluster_id, 3, 1), 120, "clicks back on 1 broker when idle"
    )
    assert platform.cluster(cluster_id)["spec"]["brokers"] == 1


def test_the_api_refuses_bad_requests_with_the_reason(platform: Platform) -> None:
    api = platform.api
    assert api.post("/v1/clusters", json={"name": "a", "brokers": 0}).status_code == 422
    assert api.post("/v1/clusters", json={"name": "a", "brokers": 21}).status_code == 422
    assert api.post("/v1/clusters", json={"name": "a", "colour": "red"}).status_code == 422
    r = api.post("/v1/clusters", json={"name": "a", "config": {"listeners": "PLAINTEXT://:1"}})
    assert r.status_code == 422 and "listeners" in r.json()["detail"]
    # Another cluster's storage, a directory, or a key the broker parser would strip.
    for key in (" rsm.config.store.url", "log.dirs", "artesian.metadata.store.url"):
        r = api.post("/v1/clusters", json={"name": "a", "config": {key: "file:///tmp/x"}})
        assert r.status_code == 422 and "set by the data plane" in r.json()["detail"], key
    r = api.post("/v1/clusters", json={"name": "a", "config": {"num.partitons": "3"}})
    assert r.status_code == 422 and "did you mean num.partitions" in r.json()["detail"]
    r = api.post("/v1/clusters", json={"name": "a", "config": {"num.partitions": "many"}})
    assert r.status_code == 422 and "num.partitions" in r.json()["detail"]
    r = api.post("/v1/clusters", json={"name": "../etc"})
    assert r.status_code == 422 and "name" in r.json()["detail"]
    # Clusters that could never run, or read as something else, are refused.
    for key in ("process.roles", "controller.quorum.voters"):
        r = api.post("/v1/clusters", json={"name": "a", "config": {key: "controller"}})
        assert r.status_code == 422 and "set by the data plane" in r.json()["detail"], key
    assert api.post("/v1/clusters", json={"name": "a", "brokers": True}).status_code == 422
    r = api.post(
        "/v1/clusters",
        json={
            "name": "a",
            "brokers": 3,
            "autoscale": {"min_brokers": 1, "max_brokers": 2, "broker_bytes_per_second": 1},
        },
    )
    assert r.status_code == 422 and "outside autoscale" in r.json()["detail"]
    assert api.post("/v1/clusters", json={"name": "a"}).status_code == 201
    r = api.post("/v1/clusters", json={"name": "a"})
    assert r.status_code == 409 and "exists" in r.json()["detail"]
    assert api.get("/v1/clusters/lkc-nosuch").status_code == 404
    assert api.patch("/v1/clusters/lkc-nosuch", json={"brokers": 2}).status_code == 404
    made = api.get("/v1/clusters").json()["clusters"][0]["id"]
    for version in ("", "v" * 1_500_000):  # no version; one the state topic cannot carry
        assert api.patch(f"/v1/clusters/{made}", json={"version": version}).status_code == 422
    assert api.delete("/v1/clusters/lkc-nosuch").status_code == 404
    # Nothing but the one good request reached the desired state.
    assert [c["spec"]["name"] for c in api.get("/v1/clusters").json()["clusters"]] == ["a"]


def test_a_second_control_plane_fences_the_first(platform: Platform) -> None:
    """Two control planes on one Kafka would race on generations: the newer one's
    transactional writers fence the older one's (Kafka's zombie fencing), which answers 503
    from then on and stops, while the newer one serves everything written before."""
    first = platform.api
    assert first.post("/v1/clusters", json={"name": "before"}).status_code == 201
    port = free_port()
    second = Service(
        platform.root / "control-plane-2.log",
        *("controlplane", "run", "-b", platform.kafka.bootstrap),
        *("--port", str(port), "--admin-token-file", str(platform.admin_token_file)),
    )
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        timeout=30,
        headers={"authorization": f"Bearer {platform.admin_token()}"},
    )
    try:
        platform.until(lambda: _up(api), 60, "the second control plane's API")
        r = first.post("/v1/clusters", json={"name": "late"})
        assert r.status_code == 503, r.text
        assert "replaced by another one" in r.json()["detail"]
        assert platform.control_plane is not None
        assert platform.control_plane.proc.wait(30) == 1
        log = platform.control_plane.log_path.read_text()
        assert "another control plane started on these state topics and took over" in log
        # The newer one has what the older one wrote, nothing of its refused write, and
        # writes on.
        assert [c["spec"]["name"] for c in api.get("/v1/clusters").json()["clusters"]] == ["before"]
        assert api.post("/v1/clusters", json={"name": "after"}).status_code == 201
        names = sorted(c["spec"]["name"] for c in api.get("/v1/clusters").json()["clusters"])
        assert names == ["after", "before"]
    finally:
        api.close()
        second.stop()


def _up(api: httpx.Client) -> bool:
    try:
        return api.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_patch_changes_only_what_it_names(platform: Platform) -> None:
    api = platform.api
    auto = {"min_brokers": 1, "max_brokers": 3, "broker_bytes_per_second": 1000}
    created = api.post("/v1/clusters", json={"name": "p", "brokers": 2, "autoscale": auto}).json()
    url = f"/v1/clusters/{created['id']}"
    same = api.patch(url, json={"brokers": 2}).json()["spec"]
    assert same["generation"] == 1  # nothing changed: no new generation for the data plane
    spec = api.patch(url, json={"version": "2"}).json()["spec"]
    assert (spec["generation"], spec["version"], spec["brokers"], spec["autoscale"]) == (
        2,
        "2",
        2,
        auto,
    )
    assert api.patch(url, json={"brokers": None}).status_code == 422
    spec = api.patch(url, json={"autoscale": None}).json()["spec"]
    assert (spec["generation"], spec["autoscale"], spec["brokers"]) == (3, None, 2)
    assert api.get(url).json()["spec"] == spec
    # Health is for probes without a token: it tells nothing about the clusters.
    assert httpx.get(f"{api.base_url}/healthz").json() == {"ok": True}


def test_a_restarted_data_plane_adopts_its_running_clusters(platform: Platform) -> None:
    first = Service(
        platform.root / "data-plane-1.log",
        *("dataplane", "run", str(platform.cells), "-b", platform.kafka.bootstrap),
        *("--first-port", str(_free_block(20)), "--interval", "0.5"),
    )
    platform.data_plane = first
    cluster_id = platform.api.post("/v1/clusters", json={"name": "kept"}).json()["id"]
    doc = platform.until(lambda: platform.ready(cluster_id, 1, 1), 90, "kept on 1 broker")
    bootstrap = doc["status"]["bootstrap"]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for n in range(5):
        producer.produce("kept", f"k{n}".encode())
    assert producer.flush(30) == 0
    pids = _broker_pids(platform.cells / cluster_id)

    first.stop()  # without --stop-on-exit: the brokers keep running
    assert len(pids) == 1 and _alive(pids[0])
    platform.start_data_plane()
    time.sleep(3)  # several passes of the new agent
    assert _alive(pids[0]) and _broker_pids(platform.cells / cluster_id) == pids
    doc = platform.until(lambda: platform.ready(cluster_id, 1, 1), 30, "kept adopted")
    assert doc["status"]["bootstrap"] == bootstrap
    assert read_range(bootstrap, "kept", 0, 5) == [(n, f"k{n}".encode()) for n in range(5)]


def test_a_second_data_plane_fences_the_first(platform: Platform) -> None:
    """Two agents running one cell would both operate its brokers and meter their usage
    twice: the newer one's transactional writer fences the older one's, which stops, leaving
    the brokers to it even with --stop-on-exit, and the newer one reports on."""
    first = Service(
        platform.root / "data-plane-1.log",
        *("dataplane", "run", str(platform.cells), "-b", platform.kafka.bootstrap),
        *("--first-port", str(_free_block(20)), "--interval", "0.5", "--stop-on-exit"),
    )
    cluster_id = platform.api.post("/v1/clusters", json={"name": "fenced"}).json()["id"]
    try:
        platform.data_plane = first
        platform.until(lambda: platform.ready(cluster_id, 1, 1), 90, "fenced on 1 broker")
        pids = _broker_pids(platform.cells / cluster_id)
        platform.start_data_plane()
        assert first.proc.wait(60) == 1
    finally:
        first.stop()
    log = first.log_path.read_text()
    assert "another data plane agent of cell local started and took over" in log
    assert "keep running for the agent that took over" in log
    assert "another data plane agent of cell 'local' took over; this one stopped" in log
    assert len(pids) == 1 and _alive(pids[0])
    # The new agent touched nothing before the old one let go of the cell's root.
    assert platform.data_plane is not None
    newer = platform.data_plane.log_path.read_text()
    assert f"waiting for the agent this one replaced (pid {first.proc.pid})" in newer
    stopped_ms = int(time.time() * 1000)
    status = platform.until(
        lambda: (s := platform.cluster(cluster_id)["status"])["time_ms"] > stopped_ms and s,
        30,
        "a report from the agent that took over",
    )
    assert status["phase"] == "Ready" and _broker_pids(platform.cells / cluster_id) == pids


def test_an_idle_data_plane_is_taken_over_too(platform: Platform) -> None:
    """An agent with no cluster writes nothing, so no refused write tells it it was fenced:
    the new agent asks it to go through the cell's root, and it does."""
    first = Service(
        platform.root / "data-plane-1.log",
        *("dataplane", "run", str(platform.cells), "-b", platform.kafka.bootstrap),
        *("--first-port", str(_free_block(20)), "--interval", "0.5"),
    )
    try:
        platform.until(
            lambda: "Data plane of cell 'local'" in first.log_path.read_text(), 60, "the agent"
        )
        platform.start_data_plane()
        assert first.proc.wait(60) == 1
    finally:
        first.stop()
    assert "it is waiting for this one to let go of the cell's root" in first.log_path.read_text()
    assert platform.data_plane is not None
    platform.until(
        lambda: "Data plane of cell 'local'" in platform.data_plane.log_path.read_text(),  # type: ignore[union-attr]
        60,
        "the new agent running",
    )
    assert platform.data_plane.proc.poll() is None


def _cli(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artesian.cli.main", "clusters", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=platform.cli_env(),
    )


def test_the_clusters_command_drives_the_api(platform: Platform) -> None:
    created = _cli(
        platform,
        *("create", "events", "--brokers", "2", "--config", "num.partitions=3"),
        *("--autoscale", "1:4:5000", "--json"),
    )
    assert created.returncode == 0, created.stderr
    spec = json.loads(created.stdout)["spec"]
    cluster_id = json.loads(created.stdout)["id"]
    assert (spec["brokers"], spec["config"], spec["autoscale"]) == (
        2,
        {"num.partitions": "3"},
        {"min_brokers": 1, "max_brokers": 4, "broker_bytes_per_second": 5000},
    )
    listed = _cli(platform, "list")
    assert listed.returncode == 0 and cluster_id in listed.stdout and "events" in listed.stdout

    assert _cli(platform, "update", cluster_id, "--brokers", "3").returncode == 0
    off = _cli(platform, "update", cluster_id, "--autoscale", "off", "--json")
    assert json.loads(off.stdout)["spec"]["autoscale"] is None
    assert json.loads(off.stdout)["spec"]["generation"] == 3
    described = json.loads(_cli(platform, "describe", cluster_id, "--json").stdout)
    assert (described["spec"]["brokers"], described["spec"]["generation"]) == (3, 3)
    # As text: the row, then the spec's version and config, and how old the report is.
    text = _cli(platform, "describe", cluster_id).stdout
    assert "version 1" in text and "config num.partitions=3" in text
    assert "reported " in text or "no report yet: is a data plane running for cell local?" in text

    nothing = _cli(platform, "update", cluster_id)
    assert nothing.returncode == 1 and "nothing to change" in nothing.stderr
    twice = _cli(platform, "create", "events")
    assert twice.returncode == 1 and "409" in twice.stderr and "exists" in twice.stderr
    bad = _cli(platform, "create", "x", "--autoscale", "1:2")
    assert bad.returncode == 2 and "MIN:MAX:BYTES_PER_SECOND" in bad.stderr

    assert _cli(platform, "delete", cluster_id).returncode == 0
    # No data plane ran it and none reported it: the control plane forgets it at once.
    platform.until(
        lambda: _cli(platform, "describe", cluster_id).returncode == 1, 30, "the cluster gone"
    )


def test_only_the_clusters_own_cell_reports_on_it(platform: Platform) -> None:
    from artesian.controlplane.documents import OBSERVED_TOPIC, ClusterReport
    from artesian.controlplane.state_topics import StateWriter

    cluster_id = platform.api.post("/v1/clusters", json={"name": "c"}).json()["id"]
    writer = StateWriter(platform.kafka.bootstrap, OBSERVED_TOPIC)
    now = int(time.time() * 1000)
    writer.put(cluster_id, ClusterReport(cluster_id, "elsewhere", 1, "Ready", time_ms=now).encode())
    writer.put("lkc-notjson0", b"{not json")  # skipped with a log line; reading carries on
    writer.put(cluster_id, ClusterReport(cluster_id, "local", 1, "Degraded", time_ms=now).encode())
    status = platform.until(lambda: platform.cluster(cluster_id)["status"], 30, "the report")
    assert (status["cell"], status["phase"]) == ("local", "Degraded")
    writer.put(cluster_id, ClusterReport(cluster_id, "elsewhere", 1, "Ready", time_ms=now).encode())
    platform.until(
        lambda: platform.cluster(cluster_id)["status"] is None, 30, "the stray report ignored"
    )
    writer.close()
    assert platform.api.get("/healthz").json()["ok"] is True
