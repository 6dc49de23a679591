"""Where brokers run. ``Runtime`` is the seam; ``LocalProcessRuntime`` is the embedded default.

The local runtime runs each broker as a child process, ``artesian broker``, with its data in
``<data_dir>/broker-<id>/``, its output in ``broker.log`` there, and a ``runtime.json`` file
that records its pid and revision. An operator that restarts finds its brokers again through
those files, as a Kubernetes operator finds its pods: brokers outlive the operator.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from artesian.operator.spec import ClusterSpec

log = logging.getLogger("artesian.operator")


class Runtime(Protocol):
    def running(self) -> dict[int, str | None]:
        """Node ids of running brokers, with the revision each was started with."""

    def start(self, node: int) -> None: ...

    def stop(self, node: int) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL past the grace period."""

    def last_exit(self, node: int) -> str | None:
        """How a broker that is no longer running ended, for people: its exit code and the
        last line it logged (None when unknown)."""


class LocalProcessRuntime:
    def __init__(self, spec: ClusterSpec, grace_seconds: float = 30.0) -> None:
        self.spec = spec
        self.grace_seconds = grace_seconds
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def _state_file(self, node: int) -> Path:
        return self.spec.broker_dir(node) / "runtime.json"

    def _state(self, node: int) -> dict[str, object] | None:
        try:
            state = json.loads(self._state_file(node).read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _alive(self, node: int, pid: int) -> bool:
        child = self._children.get(node)
        if child is not None and child.pid == pid:
            return child.poll() is None
        # A broker started by an earlier operator: its command line names its data dir.
        return self._runs_broker(pid, str(self.spec.broker_dir(node)).encode())

    @staticmethod
    def _runs_broker(pid: int, data_dir: bytes) -> bool:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return _data_dir_arg(args) == data_dir

    def _unrecorded_brokers(self) -> dict[str, int]:
        """Data dir -> pid of this user's ``artesian broker`` processes, by their command
        lines, for brokers an operator started but did not record (it stopped between
        starting one and writing its runtime.json). Empty without /proc."""
        found: dict[str, int] = {}
        uid = os.getuid()
        try:
            entries = [e for e in os.scandir("/proc") if e.name.isdigit()]
        except OSError:
            return found
        for entry in entries:
            try:
                if entry.stat().st_uid != uid:
                    continue
                args = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # As command() writes it: python -m artesian.cli.main broker ... --data-dir DIR
            data_dir = _data_dir_arg(args)
            if args[1:4] == [b"-m", b"artesian.cli.main", b"broker"] and data_dir is not None:
                found[data_dir.decode(errors="replace")] = int(entry.name)
        return found

    def _adopt(self, node: int, pid: int) -> None:
        """Record an unrecorded broker, with no revision, so the next pass rolls it onto the
        declared one instead of starting a second broker on its port."""
        self._write_state(node, {"pid": pid, "revision": None, "port": self.spec.port(node)})
        log.warning(
            "adopted broker %d (pid %d): it ran without being recorded (an operator stopped "
            "while starting it); it will be restarted on the declared revision",
            node,
            pid,
        )

    def _write_state(self, node: int, state: dict[str, object]) -> None:
        tmp = self._state_file(node).with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._state_file(node))

    def running(self) -> dict[int, str | None]:
        found: dict[int, str | None] = {}
        if not self.spec.data_dir.is_dir():
            return found
        orphans: dict[str, int] | None = None  # read from /proc once, if needed
        for d in self.spec.data_dir.glob("broker-*"):
            try:
                node = int(d.name.removeprefix("broker-"))
            except ValueError:
                continue
            state = self._state(node)
            if state and isinstance(state.get("pid"), int) and self._alive(node, state["pid"]):  # type: ignore[arg-type]
                revision = state.get("revision")
                found[node] = revision if isinstance(revision, str) else None
            elif node not in self._children or self._children[node].poll() is not None:
                if orphans is None:
                    orphans = self._unrecorded_brokers()
                pid = orphans.get(str(self.spec.broker_dir(node)))
                if pid is not None:
                    self._adopt(node, pid)
                    found[node] = None  # no revision: the reconciler rolls it
        return found

    def command(self, node: int) -> list[str]:
        """The command line that runs broker ``node`` as declared."""
        spec = self.spec
        command = [sys.executable, "-m", "artesian.cli.main", "broker"]
        if not spec.has_client_listener:  # else its listeners are in its properties
            command += ["--listen", f"{spec.host}:{spec.port(node)}"]
        command += ["--data-dir", str(spec.broker_dir(node))]
        if spec.secret_properties():
            command += ["--config", str(self._secrets_file(node))]
        for key, value in spec.properties(node).items():
            command += ["--set", f"{key}={value}"]
        return command

    def _secrets_file(self, node: int) -> Path:
        return self.spec.broker_dir(node) / "secret.properties"

    def _write_secrets(self, node: int) -> None:
        """The broker's secret properties, readable by its owner only (a command line is
        readable by anyone on the machine)."""
        secret = self.spec.secret_properties()
        if not secret:
            return
        path = self._secrets_file(node)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover temporary file keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as f:
            # .properties escaping: a backslash, and nothing else the values hold.
            f.writelines(f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in secret.items())
        os.replace(tmp, path)

    def start(self, node: int) -> None:
        spec = self.spec
        directory = spec.broker_dir(node)
        directory.mkdir(parents=True, exist_ok=True)
        self._write_secrets(node)
        with open(directory / "broker.log", "ab") as output:
            child = subprocess.Popen(
                self.command(node),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C at the operator's terminal is the operator's
            )
        self._children[node] = child
        self._write_state(
            node, {"pid": child.pid, "revision": spec.revision(node), "port": spec.port(node)}
        )
        log.info("started broker %d (pid %d) on %s:%d", node, child.pid, spec.host, spec.port(node))

    def last_exit(self, node: int) -> str | None:
        parts = []
        child = self._children.get(node)
        code = child.poll() if child is not None else None
        if code is not None:
            parts.append(f"exit code {code}" if code >= 0 else f"killed by signal {-code}")
        line = _last_line(self.spec.broker_dir(node) / "broker.log")
        if line:
            parts.append(line)
        return ": ".join(parts) or None

    def stop(self, node: int) -> None:
        state = self._state(node)
        pid = state.get("pid") if state else None
        if not isinstance(pid, int) or not self._alive(node, pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline and self._alive(node, pid):
            time.sleep(0.1)
        if self._alive(node, pid):
            log.warning(
                "broker %d did not stop within %.0f s of SIGTERM; killing it",
                node,
                self.grace_seconds,
            )
            os.kill(pid, signal.SIGKILL)
            while self._alive(node, pid):
                time.sleep(0.05)
        child = self._children.pop(node, None)
        if child is not None:
            child.wait()
        log.info("stopped broker %d", node)


def _last_line(path: Path, window: int = 4096) -> str | None:
    """The last non-empty line of a log (its end only: logs grow)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - window))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:300]
    return None


def _data_dir_arg(args: list[bytes]) -> bytes | None:
    """The value of ``--data-dir`` in a command line split at NULs."""
    return next((b for a, b in itertools.pairwise(args) if a == b"--data-dir"), None)
