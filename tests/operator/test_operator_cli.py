"""``artesian up --brokers N`` and ``artesian operator``, run as a user runs them: a cluster
that serves records at exact offsets and stops whole on Ctrl-C; a spec with mistakes is
refused with the reason; ``operator run --once`` and ``operator status`` report the phase."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from tests.cli.test_admin_cli import cli, cli_json, fails
from tests.consuming import read_range
from tests.operator.test_local_operator import _free_block
from tests.replication.test_cluster import _produce

pytestmark = pytest.mark.slow


class _Bootstrap:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap


@dataclass(frozen=True)
class BrokerPid:
    """A broker process by pid and data directory: pids are reused (pid_max can be 32768,
    and a test run starts thousands of processes), so a pid alone may name someone else."""

    pid: int
    data_dir: Path


def _broker_pids(data_dir: Path) -> list[BrokerPid]:
    return [
        BrokerPid(json.loads(f.read_text())["pid"], f.parent.resolve())
        for f in data_dir.glob("broker-*/runtime.json")
    ]


def _alive(broker: BrokerPid) -> bool:
    """Running, not a zombie, and still that broker (its --data-dir)."""
    try:
        with open(f"/proc/{broker.pid}/stat") as f:
            if f.read().split(") ")[-1][0] == "Z":
                return False
        with open(f"/proc/{broker.pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    dirs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == b"--data-dir"]
    return any(Path(d.decode()).resolve() == broker.data_dir for d in dirs)


def test_up_with_brokers_runs_a_cluster_until_ctrl_c(tmp_path: Path) -> None:
    port = _free_block(2)
    data = tmp_path / "up"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "artesian.cli.main",
            "up",
            "--brokers",
            "2",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    bootstrap = f"127.0.0.1:{port},127.0.0.1:{port + 1}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
                if len(md.brokers) == 2:
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.5)

        admin = AdminClient({"bootstrap.servers": bootstrap})
        while True:  # until the broker that places it has seen both register
            try:
                admin.create_topics([NewTopic("up-topic", 2, 2)])["up-topic"].result(15)
                break
            except KafkaException as e:
                if e.args[0].code() != KafkaError.INVALID_REPLICATION_FACTOR:
                    raise
                assert time.monotonic() < deadline + 30, e
                time.sleep(0.2)
        sent = {i: [f"r{i}-{n}".encode() for n in range(200)] for i in range(2)}
        _produce(bootstrap, "up-topic", sent)
        for i, values in sent.items():
            assert read_range(bootstrap, "up-topic", 0, 200, partition=i) == list(enumerate(values))
        described = cli_json(_Bootstrap(bootstrap), "topic", "describe", "up-topic")
        assert all(len(p["replicas"]) == 2 for p in described["partitions"])
        pids = _broker_pids(data)
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0].decode()
    assert all(not _alive(p) for p in pids), output
    assert "stopping the brokers" in output


def test_a_spec_with_a_mistake_is_refused_with_its_reason(tmp_path: Path) -> None:
    spec = tmp_path / "cluster.toml"
    spec.write_text('brokers = 2\ndata_dir = "d"\n[config]\n"node.id" = 3\n')
    message = fails(None, "operator", "run", str(spec), "--once")
    assert "['node.id'] are set by the operator; remove them from [config]" in message
    # An empty or half-written file is no cluster of defaults.
    for text, missing in (("", "brokers or data_dir"), ("brokers = 2\n", "data_dir")):
        spec.write_text(text)
        assert f"has no {missing}" in fails(None, "operator", "run", str(spec), "--once")
    spec.write_text('brokers = 2\ndata_dir = "d"\n')
    assert "no operator status" in fails(None, "operator", "status", str(spec))


def test_operator_run_once_starts_the_brokers_and_status_reports_them(tmp_path: Path) -> None:
    spec = tmp_path / "cluster.toml"
    spec.write_text(f'brokers = 1\nfirst_port = {_free_block(1)}\ndata_dir = "d"\n')
    try:
        out = cli(None, "operator", "run", str(spec), "--once").stdout
        assert "phase Reconciling" in out
        deadline = time.monotonic() + 60
        while True:
            out = cli(None, "operator", "run", str(spec), "--once").stdout
            if "phase Ready" in out:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.5)
        # Every pass was a new operator process: each found the broker the first one
        # started (runtime.json), and none started another.
        events = [
            json.loads(line)
            for line in (tmp_path / "d" / "operator-events.jsonl").read_text().splitlines()
        ]
        assert [(e["action"], e["broker"]) for e in events] == [("start", 1)]
        status = cli_json(None, "operator", "status", str(spec))
        assert status["phase"] == "Ready" and status["declared_brokers"] == 1
        assert [(b["id"], b["running"], b["live"], b["up_to_date"]) for b in status["brokers"]] == [
            (1, True, True, True)
        ]
    finally:
        for broker in _broker_pids(tmp_path / "d"):
            if _alive(broker):
                os.kill(broker.pid, signal.SIGTERM)


def test_a_second_operator_on_the_same_cluster_is_refused(tmp_path: Path) -> None:
    """Two operators would both restart a broker during a roll: the second is refused."""
    spec = tmp_path / "cluster.toml"
    spec.write_text(f'brokers = 1\nfirst_port = {_free_block(1)}\ndata_dir = "d"\n')
    first = subprocess.Popen(
        [sys.executable, "-m", "artesian.cli.main", "operator", "run", str(spec), "--stop-on-exit"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lock = tmp_path / "d" / ".operator.lock"
    try:
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert time.monotonic() < deadline, "the first operator did not start"
            time.sleep(0.1)
        message = fails(None, "operator", "run", str(spec), "--once")
        assert f"another operator (pid {first.pid}) already runs the cluster in" in message
    finally:
        first.send_signal(signal.SIGINT)
        output = first.communicate(timeout=60)[0].decode()
    assert "stopped broker 1" in output, output


def test_status_says_when_its_report_is_old(tmp_path: Path) -> None:
    """The operator writes its status every pass: one a minute old means it stopped."""
    spec = tmp_path / "cluster.toml"
    spec.write_text('brokers = 1\ndata_dir = "d"\n')
    doc = {
        "phase": "Ready",
        "waiting_for": None,
        "brokers": [
            {
                "id": 1,
                "running": True,
                "live": True,
                "up_to_date": True,
                "under_replicated_partitions": 0,
                "removal": None,
            }
        ],
        "rebalance": {"state": "IDLE", "task": None, "moves_in_flight": 0},
        "time_ms": int(time.time() * 1000) - 60_000,
    }
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "operator-status.json").write_text(json.dumps(doc))
    shown = cli(None, "operator", "status", str(spec)).stdout
    assert "phase Ready" in shown and "s old: is the operator running?" in shown
    doc["time_ms"] = int(time.time() * 1000)
    (tmp_path / "d" / "operator-status.json").write_text(json.dumps(doc))
    assert "s old" not in cli(None, "operator", "status", str(spec)).stdout
