"""The operator's loop: observe the cluster, reconcile, act, report.

The report is ``operator-status.json`` in the cluster's data directory: the phase, each
broker, what the operator waits for, and the self-balancer's status. A Kubernetes operator
writes the same to its custom resource's status. Every step the operator takes is also
appended to ``operator-events.jsonl``, as Kubernetes events are.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artesian.cli.common import CliError
from artesian.cli.wire import WireClient, api_versions, update_features
from artesian.metadata.features import METADATA_VERSION
from artesian.operator.reconciler import Action, Observation, Plan, reconcile
from artesian.operator.runtime import LocalProcessRuntime, Runtime
from artesian.operator.spec import INTERNAL_USER, ClusterSpec, SpecError
from artesian.protocol.balancer_admin import (
    ALTER_BALANCER_KEY,
    DESCRIBE_BALANCER_KEY,
    decode_response_body,
    encode_request_body,
)

log = logging.getLogger("artesian.operator")

URP_METRIC = "kafka_server_replica_manager_under_replicated_partitions"
METADATA_KEY = 3


@dataclass(slots=True)
class CrashRecord:
    """A broker's recent exits on its own (what kubelet keeps for CrashLoopBackOff)."""

    count: int
    """In a row, each soon after its start."""
    at: float
    """When the last one was seen (monotonic)."""
    revision: str
    """The revision it ran: a new one (a fixed spec) starts afresh."""
    last_exit: str | None


def crash_backoff(count: int, first: float, longest: float) -> float:
    """Seconds to wait before starting a broker that crashed ``count`` times in a row: none
    after the first crash, then ``first``, doubling up to ``longest`` (Kubernetes: 10 s to
    5 min)."""
    if count <= 1:
        return 0.0
    return float(min(first * 2 ** (count - 2), longest))


class Operator:
    def __init__(
        self,
        load_spec: Callable[[], ClusterSpec],
        runtime_for: Callable[[ClusterSpec], Runtime] = LocalProcessRuntime,
        request_timeout: float = 5.0,
        crash_backoff: tuple[float, float] = (10.0, 300.0),
        crash_reset_after: float = 600.0,
        removal_retry_after: float = 60.0,
        settle: bool = False,
    ) -> None:
        """``crash_backoff``: the first and the longest wait before restarting a broker that
        keeps crashing; ``crash_reset_after``: seconds of running that clear its record;
        ``removal_retry_after``: seconds before asking again to drain a broker whose removal
        failed, doubling with each failure up to 16 times that; ``settle``: take a changed
        spec only once two passes read it alike (a file a person edits)."""
        self.load_spec = load_spec
        self.spec = load_spec()
        self.runtime_for = runtime_for
        self.runtime = runtime_for(self.spec)
        self.request_timeout = request_timeout
        self.balancer: dict[str, Any] | None = None
        self.last_plan: Plan | None = None
        self.last_status: dict[str, Any] | None = None  # what operator-status.json holds
        self.crash_backoff = crash_backoff
        self.crash_reset_after = crash_reset_after
        # Brokers this operator started and has not stopped: (when, revision). One that is
        # no longer running exited on its own.
        self._started: dict[int, tuple[float, str]] = {}
        self.crashes: dict[int, CrashRecord] = {}
        self.removal_retry_after = removal_retry_after
        # node -> (when its removal was last seen to fail anew, None while a retry runs;
        # times asked again since)
        self._removal_failed: dict[int, tuple[float | None, int]] = {}
        self.settle = settle
        self._new_spec: ClusterSpec | None = None  # read once, applied when read again
        self._spec_error: str | None = None

    # --- one pass ------------------------------------------------------------------------

    def reconcile_once(self) -> Plan:
        spec = self._read_spec()
        if spec != self.spec:
            self.spec = spec
            if isinstance(self.runtime, LocalProcessRuntime):
                self.runtime.spec = spec
            else:
                self.runtime = self.runtime_for(spec)
        seen = self.observe()
        plan = reconcile(spec, seen)
        if plan.waiting_for and (
            self.last_plan is None or self.last_plan.waiting_for != plan.waiting_for
        ):
            log.info("waiting for %s", plan.waiting_for)
        for action in plan.actions:
            self._act(action)
        self.last_plan = plan
        self._write_status(seen, plan)
        return plan

    def _read_spec(self) -> ClusterSpec:
        """The spec to reconcile with: the last good one while the spec does not read (a
        mistake is logged once, and fixed in the file); with ``settle``, a changed one once
        it reads the same on two passes in a row (an editor's save is not caught halfway)."""
        try:
            spec = self.load_spec()
        except SpecError as e:
            if str(e) != self._spec_error:
                self._spec_error = str(e)
                log.error("%s; keeping the spec read before until it is fixed", e)
            return self.spec
        if self._spec_error is not None:
            log.info("the cluster spec reads again")
            self._spec_error = None
        if not self.settle or spec == self.spec or spec == self._new_spec:
            self._new_spec = None
            return spec
        self._new_spec = spec  # taken on the next pass if it still reads the same
        return self.spec

    def run(
        self, interval: float = 1.0, until_ready: bool = False, timeout: float | None = None
    ) -> Plan:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            plan = self.reconcile_once()
            if until_ready and plan.phase == "Ready" and not plan.actions:
                return plan
            if deadline is not None and time.monotonic() > deadline:
                return plan
            time.sleep(interval)

    def stop_all(self) -> None:
        for node in sorted(self.runtime.running(), reverse=True):
            self._event("stop", node, "operator shutting the cluster down")
            self._started.pop(node, None)
            self.runtime.stop(node)

    # --- observing ---------------------------------------------------------------------

    def observe(self) -> Observation:
        spec = self.spec
        seen = Observation()
        running = self.runtime.running()
        for node, revision in running.items():
            b = seen.broker(node)
            b.running, b.revision = True, revision
            b.under_replicated = self._under_replicated(node)
        self._observe_crashes(spec, seen, running)
        if running:
            self._observe_cluster(spec, seen, sorted(running))
        self._observe_failed_removals(seen)
        return seen

    def _observe_failed_removals(self, seen: Observation) -> None:
        """A removal that FAILED is due to be asked for again after removal_retry_after,
        doubling with each retry that fails too (up to 16 times)."""
        now = time.monotonic()
        if not seen.reachable or seen.balancer_state is None:
            return  # removal states unknown
        for node, (since, retries) in list(self._removal_failed.items()):
            b = seen.brokers.get(node)
            removal = b.removal if b is not None else None
            if removal not in ("FAILED", "PENDING", "IN_PROGRESS"):
                del self._removal_failed[node]  # drained, cancelled, or gone
            elif removal == "FAILED" and since is None:
                self._removal_failed[node] = (now, retries)  # failed again: wait from now
        for b in seen.brokers.values():
            if b.removal == "FAILED":
                since, retries = self._removal_failed.setdefault(b.node_id, (now, 0))
                wait = self.removal_retry_after * 2 ** min(retries, 4)
                b.removal_retry_due = since is not None and now - since >= wait

    def _observe_crashes(
        self, spec: ClusterSpec, seen: Observation, running: dict[int, str | None]
    ) -> None:
        """Record the brokers that exited on their own since the last pass, and tell the
        reconciler how long each must wait before its next start."""
        now = time.monotonic()
        for node, (started, revision) in list(self._started.items()):
            uptime = now - started
            if node in running:
                if uptime >= self.crash_reset_after:
                    self.crashes.pop(node, None)  # it runs well again
                continue
            del self._started[node]
            last = self.crashes.get(node)
            in_a_row = last is not None and last.revision == revision
            quick = uptime < self.crash_reset_after
            count = last.count + 1 if in_a_row and quick and last is not None else 1
            last_exit = self.runtime.last_exit(node)
            self.crashes[node] = CrashRecord(count, now, revision, last_exit)
            self._event(
                "crashed", node, f"{last_exit or 'exited'} ({uptime:.0f} s after its start)"
            )
        first, longest = self.crash_backoff
        for node in [n for n in self.crashes if n > spec.brokers]:
            del self.crashes[node]  # no longer declared: history, not a member
        for node, crash in self.crashes.items():
            if crash.revision != spec.revision(node):
                continue
            b = seen.broker(node)
            b.crashes, b.last_exit = crash.count, crash.last_exit
            if not b.running:
                wait = crash_backoff(crash.count, first, longest)
                b.restart_in = max(0.0, crash.at + wait - now)

    def _cluster_client(self, running: list[int]) -> WireClient:
        """A connection to the running brokers, on their INTERNAL listener if they have one."""
        spec = self.spec
        return WireClient(spec.bootstrap(running), self.request_timeout, internal_login(spec))

    def _observe_cluster(self, spec: ClusterSpec, seen: Observation, running: list[int]) -> None:
        try:
            with self._cluster_client(running) as client:
                md = client.request(
                    METADATA_KEY,
                    12,
                    topics=None,  # all: the largest replication factor bounds scaling in
                    allow_auto_topic_creation=False,
                    include_topic_authorized_operations=False,
                )
                code, _message, status = decode_response_body(
                    client.request_raw(DESCRIBE_BALANCER_KEY, 0, encode_request_body({}))
                )
                versions = api_versions(client, "artesian-operator")
        except (CliError, OSError, ValueError) as e:
            log.debug("no broker answered: %s", e)
            return
        seen.reachable = True
        for f in versions.supported_features:
            if f.name == METADATA_VERSION:
                seen.metadata_version_supported = int(f.max_version)
        for f in versions.finalized_features:
            if f.name == METADATA_VERSION:
                seen.metadata_version = int(f.max_version_level)
        seen.controller = int(md.controller_id)
        seen.replication_factor = max(
            (len(p.replica_nodes) for t in md.topics for p in t.partitions), default=0
        )
        for b in md.brokers:
            seen.broker(int(b.node_id)).live = True
        if code == 0:
            self.balancer = status
            seen.balancer_state = status.get("state")
            for b in status.get("brokers", []):
                seen.broker(int(b["id"])).registered = True
            for r in status.get("removals", []):
                seen.broker(int(r["broker"])).removal = r["state"]

    def _under_replicated(self, node: int) -> int | None:
        url = f"http://{self.spec.host}:{self.spec.metrics_port(node)}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=self.request_timeout) as r:
                text = r.read().decode()
        except (OSError, ValueError, http.client.HTTPException):
            return None
        for line in text.splitlines():
            if line.startswith(URP_METRIC + " "):
                return int(float(line.split()[-1]))
        return None

    # --- acting ------------------------------------------------------------------------

    def _act(self, action: Action) -> None:
        self._event(action.kind, action.node_id, action.reason)
        node = action.node_id
        if action.kind == "start":
            self._start(node)
        elif action.kind == "stop":
            self._started.pop(node, None)
            self.runtime.stop(node)
        elif action.kind == "restart":
            log.info("rolling broker %d: %s", node, action.reason)
            self._started.pop(node, None)
            self.runtime.stop(node)
            self._start(node)
        elif action.kind in ("remove", "cancel_removal"):
            failed = self._removal_failed.get(node)
            if action.kind == "remove" and failed is not None:
                # The next wait runs from when the balancer reports it FAILED again.
                self._removal_failed[node] = (None, failed[1] + 1)
            command = "remove_brokers" if action.kind == "remove" else "cancel_removals"
            self._balancer_command({command: [node]})
        elif action.kind == "finalize" and action.level is not None:
            self._finalize_metadata_version(action.level)

    def _start(self, node: int) -> None:
        self.runtime.start(node)
        self._started[node] = (time.monotonic(), self.spec.revision(node))

    def _balancer_command(self, command: dict[str, Any]) -> None:
        try:
            with self._cluster_client(sorted(self.runtime.running())) as client:
                code, message, _ = decode_response_body(
                    client.request_raw(ALTER_BALANCER_KEY, 0, encode_request_body(command))
                )
        except (CliError, OSError, ValueError) as e:
            log.warning("could not reach the cluster for %s: %s; retrying", command, e)
            return
        if code:
            log.warning("the cluster refused %s: %s (error %d)", command, message, code)

    def _finalize_metadata_version(self, level: int) -> None:
        """UpdateFeatures to ``level``; the cluster checks that every registered broker
        supports it."""
        try:
            with self._cluster_client(sorted(self.runtime.running())) as client:
                update_features(client, {METADATA_VERSION: level})
        except (CliError, OSError, ValueError) as e:
            log.warning("could not finalize %s %d: %s; retrying", METADATA_VERSION, level, e)

    # --- reporting ---------------------------------------------------------------------

    def _event(self, kind: str, node: int, reason: str) -> None:
        log.info("%s broker %d: %s", kind, node, reason)
        line = json.dumps(
            {"time_ms": int(time.time() * 1000), "action": kind, "broker": node, "reason": reason}
        )
        self.spec.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.spec.data_dir / "operator-events.jsonl", "a") as f:
            f.write(line + "\n")

    def _write_status(self, seen: Observation, plan: Plan) -> None:
        spec = self.spec
        balancer = self.balancer or {}
        status = {
            "phase": plan.phase,
            "waiting_for": plan.waiting_for,
            "declared_brokers": spec.brokers,
            "version": spec.version,
            "controller": seen.controller,
            "metadata_version": seen.metadata_version,
            "replication_factor": seen.replication_factor,
            "brokers": [
                {
                    "id": b.node_id,
                    "running": b.running,
                    "live": b.live,
                    "up_to_date": b.revision == spec.revision(b.node_id),
                    "under_replicated_partitions": b.under_replicated,
                    "removal": b.removal,
                    "crashes": b.crashes,
                    "restart_in_seconds": round(b.restart_in, 1),
                    "last_exit": b.last_exit,
                }
                for b in sorted(seen.brokers.values(), key=lambda b: b.node_id)
                # Brokers gone for good (removal COMPLETE) are history, not members.
                if b.running or b.live or b.node_id <= spec.brokers or b.removal != "COMPLETE"
            ],
            "rebalance": {
                "state": balancer.get("state"),
                "task": balancer.get("task"),
                "moves_in_flight": balancer.get("moves_in_flight"),
                "violated_goals": balancer.get("violated_goals"),
            },
            "time_ms": int(time.time() * 1000),
        }
        self.last_status = status
        path = status_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2))
        os.replace(tmp, path)


def internal_login(spec: ClusterSpec) -> tuple[str, str, str] | None:
    """How the operator logs in to the brokers' INTERNAL listener (None: plain PLAINTEXT)."""
    if not spec.has_client_listener:
        return None
    return ("PLAIN", INTERNAL_USER, spec.internal_password())


def status_path(spec: ClusterSpec) -> Path:
    return spec.data_dir / "operator-status.json"
