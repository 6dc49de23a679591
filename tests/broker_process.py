"""A real broker process on 127.0.0.1, on a free port, with its data in a temporary directory."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_handed_out: set[int] = set()


# pytest-xdist workers are separate processes: they claim ports in a directory of this run.
def claims_dir(run: str) -> Path:
    return Path(tempfile.gettempdir(), f"artesian-test-ports-{run}")


_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
_CLAIMS = claims_dir(_RUN) if _RUN else None


def claim_port(port: int) -> bool:
    """Reserve ``port`` for this test run: False if this process or another worker of the run
    already has. The OS may offer a port again at once, and two brokers then clash."""
    if port in _handed_out:
        return False
    if _CLAIMS is not None:
        _CLAIMS.mkdir(exist_ok=True)
        try:
            os.close(os.open(_CLAIMS / str(port), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
    _handed_out.add(port)
    return True


def ephemeral_low() -> int:
    """The lowest port the kernel hands out for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port no process listens on, and never one this test run handed out before. Below
    the kernel's ephemeral range: a broker that binds it later (a restart after a kill -9)
    must not find it taken by some client's outgoing connection."""
    high = max(10_001, ephemeral_low() - 1)
    for _ in range(1000):
        port = random.randint(10_000, high)
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        if claim_port(port):
            return port
    raise RuntimeError("no free port below the ephemeral range")


class BrokerProcess:
    def __init__(
        self,
        data_dir: Path,
        settings: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.settings = dict(settings or {})
        self.env = dict(env or {})  # merged into os.environ for the broker process
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._terminating = False  # SIGTERM sent by terminate()
        self.log_path = data_dir.parent / f"{data_dir.name}-broker.log"
        self._log_file = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        return self.launch().wait_listening(timeout)

    def launch(self) -> BrokerProcess:
        """Start the process without waiting for it (see wait_listening)."""
        self._terminating = False
        cmd = [
            sys.executable,
            "-m",
            "artesian.cli.main",
            "broker",
            "--data-dir",
            str(self.data_dir),
        ]
        if "listeners" not in self.settings:  # else the settings name self.port themselves
            cmd += ["--listen", self.bootstrap]
        for k, v in self.settings.items():
            cmd += ["--set", f"{k}={v}"]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env} if self.env else None,
        )
        return self

    def wait_listening(self, timeout: float = 30.0) -> BrokerProcess:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"broker did not listen in {timeout}s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM without waiting; a later stop() waits for the exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self._terminating = True

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: a clean shutdown. Returns the exit code."""
        code = 0
        if self.proc is not None and self.proc.poll() is None:
            if not self._terminating:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        elif self.proc is not None:
            code = self.proc.returncode
        self._close_log()
        return code

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def restart(self) -> BrokerProcess:
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_mark(self) -> int:
        """Where the log ends now: log_tail(since=mark) leaves out what came before."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_tail(self, lines: int = 60, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no broker log)"
        return "\n".join(text.splitlines()[-lines:])
