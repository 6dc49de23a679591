"""The serverless platform as its users run it, for the control-plane tests: a real Artesian
broker carrying the state topics, the control plane and a data plane, each its own
``artesian`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.broker_process import BrokerProcess, free_port
from tests.operator.test_local_operator import _free_block
from tests.operator.test_operator_cli import _alive, _broker_pids


class Service:
    """One ``artesian`` service process, its output in a log file."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "artesian.cli.main", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])


class Platform:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.kafka = BrokerProcess(root / "control-kafka").start()
        self.api_port = free_port()
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=30)
        self.cells = root / "cell-local"
        self.admin_token_file = root / "admin.token"
        self.control_plane: Service | None = None
        self.data_plane: Service | None = None

    def start_control_plane(self) -> None:
        self.control_plane = Service(
            self.root / "control-plane.log",
            *("controlplane", "run", "-b", self.kafka.bootstrap),
            *("--port", str(self.api_port), "--cooldown", "2"),
            *("--admin-token-file", str(self.admin_token_file)),
        )
        self.until(self._api_up, 60, "the control plane's API")
        self.api.headers["authorization"] = f"Bearer {self.admin_token()}"

    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def cli_env(self, token: str | None = None) -> dict[str, str]:
        """The environment of an ``artesian`` command that calls this API, as the admin unless
        given another token."""
        return {
            **os.environ,
            "ARTESIAN_API": f"http://127.0.0.1:{self.api_port}",
            "ARTESIAN_TOKEN": token or self.admin_token(),
            "HOME": str(self.root),  # never the developer's own ~/.artesian
        }

    def start_data_plane(self, *extra: str) -> None:
        self.data_plane = Service(
            self.root / "data-plane.log",
            *("dataplane", "run", str(self.cells), "-b", self.kafka.bootstrap),
            *("--first-port", str(_free_block(20)), "--interval", "0.5", "--stop-on-exit"),
            *extra,
        )

    def _api_up(self) -> bool:
        try:
            return self.api.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def cluster(self, cluster_id: str) -> dict[str, Any]:
        r = self.api.get(f"/v1/clusters/{cluster_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def until(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = cond()
            if value:
                return value
            time.sleep(0.3)
        logs = "\n".join(
            f"--- {s.log_path.name}\n{s.tail()}"
            for s in (self.control_plane, self.data_plane)
            if s is not None
        )
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def ready(self, cluster_id: str, generation: int, brokers: int) -> dict[str, Any] | None:
        doc = self.cluster(cluster_id)
        status = doc["status"]
        if (
            status is not None
            and status["observed_generation"] == generation
            and status["phase"] == "Ready"
            and sum(b["live"] for b in status["brokers"]) == brokers
        ):
            return doc
        return None

    def close(self) -> None:
        for service in (self.data_plane, self.control_plane):
            if service is not None:
                service.stop()
        # Whatever a failed test left running.
        for broker in (b for d in self.cells.glob("lkc-*") for b in _broker_pids(d)):
            if _alive(broker):
                os.kill(broker.pid, signal.SIGKILL)
        self.api.close()
        self.kafka.stop()
