"""The operator on real broker processes (the local runtime), driven through its spec file as
a user would: it starts a declared cluster; scaling out gives the new broker its share;
an upgrade restarts one broker at a time, only when nothing is under-replicated, with the
controller last, while an idempotent acks=all producer writes on; scaling in drains the
broker before stopping it. Every record is read back at its offset."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from artesian.metadata.features import LATEST
from artesian.metadata.records import RegisterBrokerRecord
from artesian.metadata.store import open_store
from artesian.operator.operator import Operator
from artesian.operator.runtime import LocalProcessRuntime
from artesian.operator.spec import ClusterSpec
from tests.broker_process import claim_port, ephemeral_low
from tests.consuming import read_range
from tests.security.broker_pairs import create_once_all_are_known

pytestmark = pytest.mark.slow

FAST = {
    "broker.heartbeat.interval.ms": 200,
    "broker.session.timeout.ms": 1500,
    "replica.lag.time.max.ms": 3000,
    "replica.fetch.backoff.ms": 100,
    "replica.fetch.wait.max.ms": 200,
    "artesian.balancer.interval.ms": 300,
    "artesian.balancer.load.sample.interval.ms": 300,
    "group.initial.rebalance.delay.ms": 0,
    "default.replication.factor": 3,
    "offsets.topic.replication.factor": 3,
    "min.insync.replicas": 2,
}


def _free_block(size: int) -> int:
    """A first port whose broker, metrics and client listener ports (first..first+size-1, and
    +1000 and +2000) are free. Below the kernel's ephemeral range: a broker started long
    after the block is chosen (a scale-out, a restart) must not find its port taken by some
    client's outgoing connection."""
    for _ in range(200):
        first = random.randint(10_000, max(10_001, ephemeral_low() - 2000 - size - 1))
        ports = [first + offset + i for offset in (0, 1000, 2000) for i in range(size)]
        try:
            for p in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        if all(claim_port(p) for p in ports):  # and no other test of this run has them
            return first
    raise RuntimeError("no free block of ports")


class _SpecFile:
    def __init__(self, root: Path) -> None:
        self.path = root / "cluster.toml"
        self.first_port = _free_block(5)
        self.root = root

    def write(self, brokers: int, version: str = "1", **extra: Any) -> None:
        settings = {**FAST, **{k.replace("_", "."): v for k, v in extra.items()}}
        config = "\n".join(f'"{k}" = {json.dumps(v)}' for k, v in settings.items())
        self.path.write_text(
            f'brokers = {brokers}\nfirst_port = {self.first_port}\ndata_dir = "data"\n'
            f'version = "{version}"\n[config]\n{config}\n'
        )

    def load(self) -> ClusterSpec:
        return ClusterSpec.load(self.path)


@pytest.fixture
def spec_file(tmp_path: Path) -> Iterator[_SpecFile]:
    f = _SpecFile(tmp_path)
    f.write(3)
    yield f


def _events(spec: ClusterSpec) -> list[dict[str, Any]]:
    path = spec.data_dir / "operator-events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _status(spec: ClusterSpec) -> dict[str, Any]:
    return json.loads((spec.data_dir / "operator-status.json").read_text())


def _until(op: Operator, cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op.reconcile_once()
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; status: {_status(op.spec)}")


def _ready(op: Operator) -> bool:
    return op.last_plan is not None and op.last_plan.phase == "Ready"


def test_the_operator_scales_out_rolls_and_scales_in_without_losing_a_record(
    spec_file: _SpecFile,
) -> None:
    op = Operator(spec_file.load)
    try:
        _until(op, lambda: _ready(op), 60, "three brokers")
        spec = op.spec
        status = _status(spec)
        assert [(b["id"], b["running"], b["live"]) for b in status["brokers"]] == [
            (1, True, True),
            (2, True, True),
            (3, True, True),
        ]
        bootstrap = spec.bootstrap()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        # The broker that takes it may not have read the others' registrations yet.
        create_once_all_are_known(admin, NewTopic("ops", 6, 3))
        # Every broker knows the topic before the writer starts (see the session notes: once,
        # records produced within ~0.1 s of creation were acknowledged yet absent).
        for node in (1, 2, 3):
            deadline = time.monotonic() + 15
            while True:
                md = AdminClient({"bootstrap.servers": spec.bootstrap([node])}).list_topics(
                    "ops", timeout=5
                )
                t = md.topics.get("ops")
                if t is not None and t.error is None and len(t.partitions) == 6:
                    break
                assert time.monotonic() < deadline, f"broker {node} does not know ops"
                time.sleep(0.1)
        # The status says how few brokers the topics need (what bounds the autoscaler).
        op.reconcile_once()
        assert _status(op.spec)["replication_factor"] == 3
        written: dict[int, list[bytes]] = {i: [] for i in range(6)}
        errors: list[KafkaError] = []
        stop = threading.Event()

        def produce() -> None:
            p = Producer(
                {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
            )
            n = 0
            while not stop.is_set():
                for i in range(6):
                    value = f"v{n}-{i}".encode()
                    written[i].append(value)
                    p.produce(
                        "ops", value, partition=i, on_delivery=lambda e, m: e and errors.append(e)
                    )
                n += 1
                p.poll(0)
                time.sleep(0.02)
            assert p.flush(120) == 0

        writer = threading.Thread(target=produce)
        writer.start()

        # Scale out: broker 4 starts, and the self-balancer gives it replicas on its own.
        spec_file.write(4)
        _until(op, lambda: _ready(op) and len(_status(op.spec)["brokers"]) == 4, 60, "broker 4")
        _until(
            op,
            lambda: (_status(op.spec)["rebalance"]["task"] or {}).get("state") == "COMPLETED",
            120,
            "the rebalance onto broker 4",
        )
        assert any(e == {"action": "start", "broker": 4} for e in _slim(_events(op.spec)))

        # Upgrade: a new version rolls every broker, one at a time, the controller last.
        controller = _status(op.spec)["controller"]
        mark = len(_events(op.spec))
        spec_file.write(4, version="2")
        _until(
            op,
            lambda: _ready(op) and all(b["up_to_date"] for b in _status(op.spec)["brokers"]),
            240,
            "the roll",
        )
        restarts = [e["broker"] for e in _events(op.spec)[mark:] if e["action"] == "restart"]
        assert sorted(restarts) == [1, 2, 3, 4] and restarts[-1] == controller

        # Scale in: broker 4 is drained first, then stopped, then leaves the cluster.
        spec_file.write(3, version="2")
        _until(
            op,
            lambda: _ready(op) and [b["id"] for b in _status(op.spec)["brokers"]] == [1, 2, 3],
            180,
            "scale in",
        )
        tail = [e for e in _slim(_events(op.spec)) if e["broker"] == 4][-2:]
        assert tail == [{"action": "remove", "broker": 4}, {"action": "stop", "broker": 4}]

        stop.set()
        writer.join(180)
        assert errors == []
        for i, values in written.items():
            got = read_range(bootstrap, "ops", 0, len(values), partition=i)
            assert got == list(enumerate(values)), f"ops-{i}"
    finally:
        op.stop_all()


def _slim(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"action": e["action"], "broker": e["broker"]} for e in events]


def test_a_broker_that_keeps_crashing_backs_off_and_says_why(spec_file: _SpecFile) -> None:
    """Its port is taken: the broker exits at once, every time. The operator restarts it at
    once, then after 1 s, 2 s, ... and reports the cluster Degraded from the third crash, with
    the broker's last words; once the port is free, it starts and the cluster is Ready."""
    spec_file.write(1)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", spec_file.first_port))
    blocker.listen()
    op = Operator(spec_file.load, crash_backoff=(1.0, 2.0))
    try:
        _until(
            op,
            lambda: op.last_plan is not None and op.last_plan.phase == "Degraded",
            60,
            "the crash loop to be reported",
        )
        status = _status(op.spec)
        (b,) = status["brokers"]
        assert b["running"] is False and b["crashes"] >= 3
        assert b["last_exit"].startswith("exit code 1: cannot start the broker: ")
        assert "address already in use" in b["last_exit"].lower()
        assert status["waiting_for"].startswith("broker 1 to be started again in ")
        crashes = [e for e in _events(op.spec) if e["action"] == "crashed"]
        starts = [e for e in _events(op.spec) if e["action"] == "start"]
        assert len(crashes) >= 3 and len(starts) == len(crashes)
        # Backed off: the third start came at least 1 s after the second crash.
        assert starts[2]["time_ms"] - crashes[1]["time_ms"] >= 1000
        # It never registered: the port is bound before, so no broker looks live unreachable.
        store = open_store(op.spec.store_url)
        try:
            registered = [r for _, r in store.read() if isinstance(r, RegisterBrokerRecord)]
        finally:
            store.close()
        assert registered == []
        blocker.close()
        _until(op, lambda: _ready(op), 60, "the broker to start once its port is free")
    finally:
        blocker.close()
        op.stop_all()


def test_the_newest_metadata_version_is_finalized_once_every_broker_supports_it(
    spec_file: _SpecFile,
) -> None:
    """A cluster at an older artesian.metadata.version (here: started at level 1) is moved
    to the newest once every broker runs the declared revision and is live. A log from
    before feature levels reads as level 1 (tests/metadata/test_feature_levels.py), so a
    cluster rolled from an older release takes the same path."""
    spec_file.write(1, artesian_metadata_version_bootstrap=1)
    op = Operator(spec_file.load)
    try:
        _until(
            op,
            lambda: _ready(op) and _status(op.spec)["metadata_version"] == LATEST,
            60,
            "the metadata version to be finalized",
        )
        assert ("finalize", 1) in [(e["action"], e["broker"]) for e in _events(op.spec)]
    finally:
        op.stop_all()


def test_a_broker_started_but_never_recorded_is_adopted_and_rolled(
    spec_file: _SpecFile,
) -> None:
    """An operator stopped between starting a broker and writing its runtime.json, which
    still names the broker's previous (dead) process: the next one finds the new process by
    its command line instead of starting a second broker on its port, then restarts it on
    the declared revision."""
    spec_file.write(1)
    spec = spec_file.load()
    runtime = LocalProcessRuntime(spec)
    spec.broker_dir(1).mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (spec.broker_dir(1) / "runtime.json").write_text(
        json.dumps({"pid": gone.pid, "revision": "an-old-one", "port": spec.port(1)})
    )
    orphan = subprocess.Popen(
        runtime.command(1),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    op = Operator(spec_file.load)
    try:
        # Found, with no revision (polled: on a loaded machine the new process may not show
        # in /proc with its command line at once).
        deadline = time.monotonic() + 10
        while runtime.running() != {1: None} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.running() == {1: None}, f"orphan exit code {orphan.poll()}"
        _until(op, lambda: _ready(op), 90, "the adopted broker to be rolled")
        assert orphan.wait(30) == 0  # stopped cleanly by the roll
        actions = [(e["action"], e["broker"]) for e in _events(op.spec)]
        assert actions == [("restart", 1)]
        (b,) = _status(op.spec)["brokers"]
        assert (b["running"], b["live"], b["up_to_date"], b["crashes"]) == (True, True, True, 0)
    finally:
        op.stop_all()
        if orphan.poll() is None:
            orphan.kill()
