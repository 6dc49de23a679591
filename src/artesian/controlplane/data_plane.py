"""The data-plane agent of one cell: runs the clusters the desired-state topic assigns to its
cell, each through the operator (local processes), reports each cluster's phase, brokers and
load to the observed-state topic, and meters their usage into the usage ledger (metering.py).

It never calls the control plane: it reads desires from Kafka and writes reports to Kafka.
Its own state is the directory ``root``: one folder per cluster (the operator's data) and the
ports each cluster was given (``allocations.json``), so a restarted agent adopts its brokers.

One agent runs a cell at a time. Its reports and usage records are written in transactions
of the cell's transactional id, so an agent that starts fences the one before it (Kafka's
zombie fencing) before it reads where metering stopped: the old one can neither report nor
meter any more, so no usage is counted twice, and it stops at its next write, leaving the
brokers running for the new one. The new one then waits for the old one's lock on ``root``
(``.agent.lock``) before it touches the brokers or the port allocations, and leaves its pid
in ``.agent.takeover`` for an old one with nothing to write (no refused write would tell it).

With ``client_protocol`` SASL_PLAINTEXT or SASL_SSL, clients reach each cluster on a listener
of that protocol and log in with the cluster's API keys, which the agent keeps in the
cluster's metadata log (api_keys.py); the operator and the brokers themselves use an internal
PLAINTEXT listener, on the cell's own network, whose anonymous principal is the super user.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artesian.cli.wire import WireClient
from artesian.controlplane.api_keys import ClusterAccess
from artesian.controlplane.documents import (
    DESIRED_TOPIC,
    MAX_BROKERS,
    OBSERVED_TOPIC,
    USAGE_TOPIC,
    BrokerReport,
    ClusterDesire,
    ClusterReport,
    UsageRecord,
)
from artesian.controlplane.metering import BrokerSample, UsageMeter
from artesian.controlplane.state_topics import (
    Fenced,
    StateTable,
    StateWriter,
    ensure_state_topics,
    latest_by_key,
)
from artesian.operator.operator import Operator, internal_login
from artesian.operator.spec import CLIENT_LISTENER, CLIENT_PORT_OFFSET, ClusterSpec
from artesian.tenancy import logical_cluster_id_of

log = logging.getLogger("artesian.dataplane")
BYTES_IN = "kafka_server_broker_topic_bytes_in_total"
BYTES_OUT = "kafka_server_broker_topic_bytes_out_total"
METADATA_OFFSET = "kafka_server_broker_metadata_metrics_last_applied_record_offset"
STARTED = "process_start_time_seconds"
STORAGE = "artesian_log_leader_size_bytes"
LOGICAL_CLUSTER_STORAGE = "artesian_logical_cluster_leader_size_bytes"
_SWEEP_SECONDS = 60.0
CLIENT_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
# What a cell with API keys sets on each of its clusters.
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
API_KEY_MECHANISMS = "SCRAM-SHA-256,SCRAM-SHA-512"
# How long a client's login lasts before it must log in again on its connection (KIP-368): a
# revoked API key loses its open connections within this, not only its new logins.
CLIENT_SESSION_MS = 900_000


class PortAllocator:
    """Each cluster gets a block of MAX_BROKERS listener ports (metrics ports 1000 above and
    client listener ports 2000 above, the operator's rules), kept in ``allocations.json``."""

    def __init__(self, path: Path, first_port: int) -> None:
        self.path = path
        self.first_port = first_port
        try:
            self.blocks: dict[str, int] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.blocks = {}

    def port_for(self, cluster_id: str) -> int:
        if cluster_id in self.blocks:
            return self.blocks[cluster_id]
        used = {p for first in self.blocks.values() for p in _block(first)}
        port = self.first_port
        while (
            port + CLIENT_PORT_OFFSET + MAX_BROKERS > 65535
            or used.intersection(_block(port))
            or not _free(port)
        ):
            port += MAX_BROKERS
            if port + CLIENT_PORT_OFFSET + MAX_BROKERS > 65535:
                raise RuntimeError("no free block of ports left for another cluster")
        self.blocks[cluster_id] = port
        self._save()
        return port

    def release(self, cluster_id: str) -> None:
        if self.blocks.pop(cluster_id, None) is not None:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.blocks, indent=2, sort_keys=True))
        os.replace(tmp, self.path)


def _block(first: int) -> list[int]:
    """A cluster's listener ports, its metrics ports 1000 above and its client listener ports
    2000 above (ClusterSpec's rules)."""
    return [
        p
        for offset in (0, 1000, CLIENT_PORT_OFFSET)
        for p in range(first + offset, first + offset + MAX_BROKERS)
    ]


def _free(first: int) -> bool:
    for port in _block(first):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


TAKEOVER_FILE = ".agent.takeover"  # a new agent's pid, while it waits for the old one


class AgentBusy(RuntimeError):
    """Another agent holds the root's lock and did not let go."""


class DataPlaneAgent:
    def __init__(
        self,
        bootstrap: str,
        root: Path,
        cell: str = "local",
        first_port: int = 19092,
        host: str = "127.0.0.1",
        client_protocol: str = "PLAINTEXT",
        client_config: dict[str, str] | None = None,
        metering_interval_ms: int = 60_000,
        client_session_ms: int = CLIENT_SESSION_MS,
    ) -> None:
        if client_protocol not in CLIENT_PROTOCOLS:
            # SSL alone would make every client the internal listener's anonymous super user.
            raise ValueError(
                f"client protocol {client_protocol!r} is not one of {CLIENT_PROTOCOLS}"
            )
        if client_config and client_protocol == "PLAINTEXT":
            raise ValueError("client listener settings need a client protocol other than PLAINTEXT")
        ensure_state_topics(bootstrap, (DESIRED_TOPIC, OBSERVED_TOPIC, USAGE_TOPIC))
        self.bootstrap = bootstrap
        self.client_protocol = client_protocol
        self.client_config = dict(client_config or {})
        self.client_session_ms = client_session_ms
        self.cell = cell
        self.host = host
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.ports = PortAllocator(self.root / "allocations.json", first_port)
        self.desired = StateTable(bootstrap, DESIRED_TOPIC, ClusterDesire.decode)
        # Reports and usage through one transactional writer: making it fences the agent
        # that ran this cell before.
        self.writer = StateWriter(
            bootstrap, OBSERVED_TOPIC, transactional_id=f"artesian-data-plane-{cell}"
        )
        self.replaced = False
        """Another agent of this cell took over: this one stops, its brokers stay."""
        self.meter = UsageMeter(cell, metering_interval_ms)
        self.operators: dict[str, Operator] = {}
        self.access: dict[str, ClusterAccess] = {}
        self._hosts: dict[str, _Host] = {}  # this pass's physical clusters, for their guests
        self._host_bootstraps: dict[str, str] = {}  # their clients' bootstrap, kept
        self._swept: dict[
            str, float
        ] = {}  # host -> when its orphan namespaces were last looked for
        # cluster id -> broker -> (when, bytes in, bytes out): the counters read last
        self._load: dict[str, dict[int, tuple[float, float, float]]] = {}
        self._stop = threading.Event()
        self._lock_fd: int | None = None

    def start(self, ready_timeout: float = 30.0) -> DataPlaneAgent:
        try:
            self._start(ready_timeout)
        except Exception as e:
            log.error(
                "cell %s: this agent fenced the one before it but cannot start (%s); the "
                "cell's brokers run unmanaged until an agent of the cell starts",
                self.cell,
                e,
            )
            raise
        return self

    def _start(self, ready_timeout: float) -> None:
        # Fenced already (the writer above): the agent that ran here stops at its next
        # write and lets go of the root; until then it may still be operating the brokers.
        self._lock_root(ready_timeout)
        self.ports = PortAllocator(self.root / "allocations.json", self.ports.first_port)
        self.desired.start()
        # A cluster not read yet must not look deleted: that would stop and erase it.
        self.desired.catch_up(ready_timeout)
        # Metering goes on from each cluster's last record: nothing counted twice or lost.
        ours = {i for i, d in self.desired.snapshot().items() if d.cell == self.cell}
        last = latest_by_key(
            self.bootstrap,
            USAGE_TOPIC,
            UsageRecord.decode,
            ours | set(self.ports.blocks),
            ready_timeout,
        )
        for record in last.values():
            if record.cell == self.cell:
                self.meter.resume(record)

    def stop(self, stop_brokers: bool = False) -> None:
        self._stop.set()
        if self._lock_fd is not None and self._takeover_asked():
            self._replaced("it is waiting for this one to let go of the cell's root")
        if stop_brokers and not self.replaced and self._lock_fd is not None:
            desires = self.desired.snapshot()
            for cluster_id in list(self.ports.blocks):
                op = self._operator_of(cluster_id)
                desire = desires.get(cluster_id)
                if desire is not None and not self._final_usage(desire, op.spec):
                    log.warning("cluster %s: its last usage is not metered", cluster_id)
                if self.replaced:
                    # Fenced: another agent runs these brokers (it waits for this one's lock
                    # before it touches them, so none was stopped under it).
                    break
                try:
                    op.stop_all()
                except Exception:
                    log.exception("cluster %s: stopping its brokers failed", cluster_id)
        if stop_brokers and self.replaced:
            log.warning(
                "the brokers of cell %s keep running for the agent that took over", self.cell
            )
        for access in self.access.values():
            access.close()
        self.access.clear()
        self.desired.stop()
        self.writer.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # lets the next agent in
            self._lock_fd = None

    def _lock_root(self, timeout: float) -> None:
        """Hold ``root/.agent.lock`` for this agent's life: one agent per root, even when
        a new one starts before the old one has noticed that it was fenced. A new agent that
        finds the lock held leaves its pid in ``.agent.takeover``: the old one, which may
        have nothing to write that would tell it it was fenced, stops at its next pass."""
        path = self.root / ".agent.lock"
        takeover = self.root / TAKEOVER_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(timeout, 120.0)
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = path.read_text().strip() or "?"
                if time.monotonic() > deadline:
                    os.close(fd)
                    if _pid_in(takeover) == os.getpid():
                        takeover.unlink(missing_ok=True)
                    raise AgentBusy(
                        f"another data plane agent (pid {holder}) still runs in {self.root}"
                    ) from None
                if not waited:
                    takeover.write_text(f"{os.getpid()}\n")
                    log.info(
                        "waiting for the agent this one replaced (pid %s) to stop and let go of %s",
                        holder,
                        path,
                    )
                    waited = True
                time.sleep(0.2)
        with contextlib.suppress(FileNotFoundError):
            takeover.unlink()
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _takeover_asked(self) -> bool:
        """Another agent of this root fenced this one and waits for its lock (one that
        died waiting asks nothing)."""
        pid = _pid_in(self.root / TAKEOVER_FILE)
        if pid in (0, os.getpid()):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, another user's
        return True

    def run(self, interval: float = 1.0) -> None:
        while not self._stop.is_set():
            if self._takeover_asked():
                self._replaced("it is waiting for this one to let go of the cell's root")
                break
            try:
                self.reconcile_once()
            except Exception:
                log.exception("data plane pass failed; retrying in %s s", interval)
            self._stop.wait(interval)

    # --- one pass ---------------------------------------------------------------------------

    def reconcile_once(self) -> None:
        desires = {i: d for i, d in self.desired.snapshot().items() if d.cell == self.cell}
        guests: dict[str, list[ClusterDesire]] = {}  # being deleted too: their quotas go
        for d in desires.values():
            if d.logical:
                guests.setdefault(d.host, []).append(d)
        self._hosts.clear()
        # Physical clusters first: a logical cluster reports what its host's pass found.
        for cluster_id, desire in sorted(desires.items(), key=lambda kv: kv[1].logical):
            if self.replaced:
                return
            # One cluster's failure must not hold up the others.
            try:
                if desire.logical:
                    self._reconcile_logical(desire, desires.get(desire.host))
                elif desire.deleted:
                    self._deprovision(cluster_id, desire.generation, desire)
                else:
                    self._reconcile(desire, guests.get(cluster_id, []))
            except Exception as e:
                log.exception("cluster %s: pass failed", cluster_id)
                self._report_phase(
                    cluster_id,
                    desire.generation,
                    "Failed",
                    message=f"{type(e).__name__}: {e}"[:1000],
                )
        # Clusters of this cell that no desire names any more (deleted while this agent was
        # away): their brokers go too, and their report is forgotten.
        for cluster_id in sorted(set(self.ports.blocks) - set(desires)):
            if self.replaced:
                return
            if cluster_id in self.desired.unreadable:
                # Its desire is there but unreadable (written by a newer or broken control
                # plane): that is no reason to delete its data.
                log.warning(
                    "cluster %s: its desired state is unreadable; left as it is", cluster_id
                )
                continue
            try:
                self._deprovision(cluster_id, generation=None)
            except Exception:
                log.exception("cluster %s: removing it failed", cluster_id)

    def spec_for(self, desire: ClusterDesire) -> ClusterSpec:
        config = dict(desire.config)
        client_config = {}
        if self.client_protocol != "PLAINTEXT":
            # The operator makes its INTERNAL user a super user; API keys are the others.
            config["authorizer.class.name"] = AUTHORIZER
            reauth = f"listener.name.{CLIENT_LISTENER.lower()}.connections.max.reauth.ms"
            config[reauth] = str(self.client_session_ms)
            client_config = {"sasl.enabled.mechanisms": API_KEY_MECHANISMS, **self.client_config}
        return ClusterSpec(
            brokers=desire.brokers,
            data_dir=self.root / desire.id,
            host=self.host,
            first_port=self.ports.port_for(desire.id),
            version=desire.version,
            config=config,
            client_protocol=self.client_protocol,
            client_config=client_config,
        )

    def _reconcile(self, desire: ClusterDesire, guests: list[ClusterDesire]) -> None:
        def load_spec(d: ClusterDesire = desire) -> ClusterSpec:
            return self.spec_for(d)

        op = self.operators.get(desire.id)
        if op is None:
            op = self.operators[desire.id] = Operator(load_spec)
            log.info(
                "cluster %s (%s): operating %d broker(s)", desire.id, desire.name, desire.brokers
            )
        op.load_spec = load_spec
        plan = op.reconcile_once()
        spec = op.spec
        status = op.last_status or {"brokers": []}
        samples = {
            b["id"]: _scrape(f"http://{spec.host}:{spec.metrics_port(b['id'])}/metrics")
            for b in status["brokers"]
        }
        phase, waiting_for = plan.phase, plan.waiting_for
        live = [samples.get(b["id"]) for b in status["brokers"] if b["live"]]
        note = ""
        if self.client_protocol == "PLAINTEXT":
            if desire.api_keys:  # asked for before this cell first reported its protocol
                note = "API keys are not checked: this cell takes clients on PLAINTEXT"
        elif not self._api_keys_applied(desire, spec, live, guests):
            waiting_for = waiting_for or "the brokers to apply the API keys"
            phase = "Reconciling" if phase == "Ready" else phase
        # What the logical clusters placed here report: this pass's state of their host.
        self._hosts[desire.id] = _Host(spec, phase, waiting_for, samples)
        self._host_bootstraps[desire.id] = spec.client_bootstrap()
        if desire.shared and phase == "Ready" and not waiting_for:
            self._sweep_orphans(desire, spec)
        bytes_in, bytes_out = self._rates(desire.id, samples)
        self._meter(desire, samples, sum(b["running"] for b in status["brokers"]))
        self._report_phase(
            desire.id,
            desire.generation,
            phase,
            bootstrap=spec.client_bootstrap(),
            brokers=tuple(
                BrokerReport(b["id"], b["running"], b["live"]) for b in status["brokers"]
            ),
            bytes_in_per_second=bytes_in,
            bytes_out_per_second=bytes_out,
            message=f"waiting for {waiting_for}" if waiting_for else note,
            client_protocol=self.client_protocol,
            replication_factor=status.get("replication_factor") or 0,
        )

    def _reconcile_logical(self, desire: ClusterDesire, host: ClusterDesire | None) -> None:
        """A logical cluster has no brokers: its keys are applied by its host's pass (bound
        to it), and it reports its host's state, its own traffic and usage. Deleted, its
        topics and empty groups go from the host before it reports Deleted."""
        found = self._hosts.get(desire.host)
        host_gone = (host is None and desire.host not in self.desired.unreadable) or (
            host is not None and host.deleted
        )
        if desire.deleted:
            self._deprovision_logical(desire, found, host_gone)
            return
        phase, message = "Reconciling", ""
        bootstrap = self._host_bootstraps.get(desire.host, "")
        if host_gone or (host is not None and host.logical):
            phase, message = "Failed", f"its host cluster {desire.host} is gone from {self.cell}"
        elif self.client_protocol == "PLAINTEXT":
            phase = "Failed"
            message = (
                f"cell {self.cell} takes clients on PLAINTEXT, without a login: a logical "
                "cluster's clients must log in (run the cell with --client-protocol SASL_SSL)"
            )
        elif found is None:
            phase = "Degraded" if bootstrap else "Reconciling"
            message = f"its host cluster {desire.host} was not reconciled this pass"
        else:
            phase = found.phase
            if found.waiting_for:
                message = f"waiting for its host cluster {desire.host}: {found.waiting_for}"
        bytes_in = bytes_out = 0.0
        if found is not None:  # else no samples: its baselines wait for the next pass
            bytes_in, bytes_out = self._rates(desire.id, found.samples, logical=True)
            self._meter(desire, found.samples, 0)
        self._report_phase(
            desire.id,
            desire.generation,
            phase,
            bootstrap=bootstrap,
            bytes_in_per_second=bytes_in,
            bytes_out_per_second=bytes_out,
            message=message,
            client_protocol=self.client_protocol,
        )

    def _deprovision_logical(
        self, desire: ClusterDesire, host: _Host | None, host_gone: bool
    ) -> None:
        """Once its keys are gone from the host (this pass's host sync left them out), its
        topics and empty groups are deleted there; its last usage record closes it. A host
        that is gone took them along (its brokers and data are removed with it)."""
        waiting = None
        if host is None and not host_gone:
            waiting = f"its host {desire.host} to be reconciled"
        elif host is not None and (host.phase != "Ready" or host.waiting_for):
            waiting = f"its host {desire.host} to drop its keys ({host.waiting_for or host.phase})"
        elif host is not None and (left := _delete_namespace_of(host.spec, desire.id)):
            waiting = f"{left} of its topics to be deleted"
        else:
            # Without its host's samples, each broker keeps its baseline (no answer).
            samples = (
                host.samples if host is not None else dict.fromkeys(self.meter.nodes(desire.id))
            )
            if not self._meter_last(desire, samples, 0):
                waiting = "its last usage to be written to the ledger"
        if waiting is not None:
            self._report_phase(
                desire.id,
                desire.generation,
                "Reconciling",
                message=f"deleting: waiting for {waiting}",
            )
            return
        self._forget(desire.id)
        log.info("logical cluster %s: keys, topics and groups removed", desire.id)
        self._report_phase(desire.id, desire.generation, "Deleted")

    def _sweep_orphans(self, desire: ClusterDesire, spec: ClusterSpec) -> None:
        """Delete, once a minute at most, the namespaces on a shared cluster whose logical
        cluster no desire names any more (forgotten before it reported Deleted: never
        reported, or deleted while this agent was away); the host's key sync has already
        revoked their keys."""
        now = time.monotonic()
        if now - self._swept.get(desire.id, -_SWEEP_SECONDS) < _SWEEP_SECONDS:
            return
        self._swept[desire.id] = now
        known = set(self.desired.snapshot()) | set(self.desired.unreadable)
        with WireClient(spec.bootstrap(), 15.0, internal_login(spec)) as client:
            names = _names(client)
            found = {lkc for n in (*names[0], *names[1]) if (lkc := logical_cluster_id_of(n))}
            for lkc in sorted(found - known):
                log.warning(
                    "cluster %s: logical cluster %s has no desire any more; deleting its topics",
                    desire.id,
                    lkc,
                )
                _delete_namespace(client, lkc, names)
                self._forget(lkc)

    def _api_keys_applied(
        self,
        desire: ClusterDesire,
        spec: ClusterSpec,
        live: list[dict[str, float] | None],
        guests: list[ClusterDesire],
    ) -> bool:
        """The cluster's log holds exactly the desire's API keys and its guests' (the keys of
        the logical clusters placed on it, each bound to its logical cluster), and every
        live broker (by its metrics) has read that far: a key reported working works on any
        of them."""
        access = self.access.get(desire.id)
        if access is None or access.store_url != spec.store_url:
            if access is not None:
                access.close()
            access = self.access[desire.id] = ClusterAccess(spec.store_url)
        try:
            # Also while no broker runs: a revoked key must not work for the first one back.
            guest_keys = [(g.id, k) for g in guests if not g.deleted for k in g.api_keys]
            quotas = {g.id: {} if g.deleted else g.quotas for g in guests}
            if not access.sync(desire.api_keys, guest_keys, quotas):
                return False
        except Exception as e:  # the store is down or locked: the next pass tries again
            log.warning("cluster %s: cannot apply its API keys yet (%s)", desire.id, e)
            access.close()
            return False
        return bool(live) and all(
            sample is not None and sample.get(METADATA_OFFSET, -1) >= access.applied_offset
            for sample in live
        )

    def _meter(
        self,
        desire: ClusterDesire,
        samples: dict[int, dict[str, float] | None],
        running: int,
        final: bool = False,
    ) -> bool:
        """Account for this pass; True once every record due is in the ledger. A logical
        cluster's usage is its topics' share of its host's counters."""
        lkc = desire.id if desire.logical else None
        records = self.meter.observe(
            desire.id,
            desire.tenant,
            {node: _broker_sample(sample, lkc, desire.shared) for node, sample in samples.items()},
            running,
            int(time.time() * 1000),
            time.monotonic(),
            final,
            brokers_billed=lkc is None,
        )
        for record in records:  # in order: a later one must not land before an earlier one
            try:
                self._put(record.id, record.encode(), USAGE_TOPIC)
            except Exception as e:
                log.warning("cannot meter cluster %s (%s); the next pass retries", record.id, e)
                return False
            self.meter.written(record)
        return True

    def _deprovision(
        self, cluster_id: str, generation: int | None, desire: ClusterDesire | None = None
    ) -> None:
        op = self._operator_of(cluster_id) if cluster_id in self.ports.blocks else None
        self.operators.pop(cluster_id, None)
        access = self.access.pop(cluster_id, None)
        if access is not None:
            access.close()
        if op is not None:
            if desire is not None and not self._final_usage(desire, op.spec):
                # The brokers' counters go with them: they stop once their usage is written.
                raise RuntimeError("its last usage cannot be written to the ledger yet")
            op.stop_all()
            shutil.rmtree(self.root / cluster_id, ignore_errors=True)
            self.ports.release(cluster_id)
            self._forget(cluster_id)
            log.info("cluster %s: brokers stopped and data removed", cluster_id)
        if generation is None:
            with contextlib.suppress(Exception):
                self._put(cluster_id, None, OBSERVED_TOPIC)
            return
        self._report_phase(cluster_id, generation, "Deleted")

    def _final_usage(self, desire: ClusterDesire, spec: ClusterSpec) -> bool:
        """Meter what the cluster used since its last record before its brokers stop (every
        broker the meter knows of, even if this agent restarted and never operated it)."""
        nodes = self.meter.nodes(desire.id) | set(range(1, desire.brokers + 1))
        samples = {
            node: _scrape(f"http://{spec.host}:{spec.metrics_port(node)}/metrics")
            for node in sorted(nodes)
        }
        running = sum(sample is not None for sample in samples.values())
        return self._meter_last(desire, samples, running)

    def _meter_last(
        self, desire: ClusterDesire, samples: dict[int, dict[str, float] | None], running: int
    ) -> bool:
        """This pass, then the cluster's final record: a record still waiting goes first;
        the final one closes only after it."""
        return self._meter(desire, samples, running) and self._meter(
            desire, samples, running, final=True
        )

    def _forget(self, cluster_id: str) -> None:
        """A cluster gone: its traffic counters and meter state go too."""
        self._load.pop(cluster_id, None)
        self.meter.forget(cluster_id)

    def _operator_of(self, cluster_id: str) -> Operator:
        """The cluster's operator; one adopting its running brokers if this process has none
        yet (after a restart), which is enough to stop them."""
        op = self.operators.get(cluster_id)
        if op is None:
            spec = ClusterSpec(
                brokers=1,
                data_dir=self.root / cluster_id,
                host=self.host,
                first_port=self.ports.blocks[cluster_id],
            )
            op = Operator(lambda: spec)
        return op

    def _report(self, report: ClusterReport) -> None:
        try:
            self._put(report.id, report.encode(), OBSERVED_TOPIC)
        except Exception as e:
            log.warning("cannot report cluster %s (%s); the next pass retries", report.id, e)

    def _report_phase(self, cluster_id: str, generation: int, phase: str, **fields: Any) -> None:
        """Report a cluster's phase at ``generation``, as of now."""
        self._report(
            ClusterReport(
                id=cluster_id,
                cell=self.cell,
                observed_generation=generation,
                phase=phase,
                time_ms=int(time.time() * 1000),
                **fields,
            )
        )

    def _put(self, key: str, value: bytes | None, topic: str) -> None:
        """Write a report or a usage record; once fenced, this agent stops."""
        try:
            self.writer.put(key, value, topic)
        except Fenced as e:
            self._replaced(f"its writer was fenced or failed for good ({e})")
            raise

    def _replaced(self, why: str) -> None:
        if not self.replaced:
            self.replaced = True
            self._stop.set()
            log.error(
                "another data plane agent of cell %s started and took over (%s); this one "
                "stops and leaves the cell's brokers to it",
                self.cell,
                why,
            )

    def _rates(
        self,
        cluster_id: str,
        samples: dict[int, dict[str, float] | None],
        logical: bool = False,
    ) -> tuple[float, float]:
        """Bytes per second in and out of the cluster since the previous pass, from each
        broker's Prometheus counters (a restarted broker's reset counts as no traffic); of
        the logical cluster's topics only, for a ``logical`` one."""
        lkc = cluster_id if logical else None
        now = time.monotonic()
        previous = self._load.get(cluster_id, {})
        current: dict[int, tuple[float, float, float]] = {}
        rate_in = rate_out = 0.0
        for node, sample in samples.items():
            if sample is None:
                continue  # not answering this pass: its traffic counts at the next one
            counters = (
                sample.get(_of(BYTES_IN, lkc), 0.0),
                sample.get(_of(BYTES_OUT, lkc), 0.0),
            )
            current[node] = (now, *counters)
            before = previous.get(node)
            # Only brokers read both times count; a counter that went back was a restart.
            if before is not None and now > before[0] and counters[0] >= before[1]:
                elapsed = now - before[0]
                rate_in += (counters[0] - before[1]) / elapsed
                rate_out += max(0.0, counters[1] - before[2]) / elapsed
        self._load[cluster_id] = {**previous, **current}
        return rate_in, rate_out


@dataclass(frozen=True, slots=True)
class _Host:
    """What a physical cluster's pass found, for the logical clusters placed on it."""

    spec: ClusterSpec
    phase: str
    waiting_for: str | None
    samples: dict[int, dict[str, float] | None]


def _names(client: WireClient) -> tuple[list[str], list[str]]:
    """A cluster's topics and groups."""
    md = client.request(
        3,
        12,
        topics=None,
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    listed = client.request(16, 4, states_filter=())
    return [t.name for t in md.topics if t.name], [g.group_id for g in listed.groups]


def _delete_namespace_of(spec: ClusterSpec, lkc: str) -> int:
    """Delete a logical cluster's topics and empty groups from its host; the number of its
    topics still there (deletion takes a moment)."""
    with WireClient(spec.bootstrap(), 15.0, internal_login(spec)) as client:
        return _delete_namespace(client, lkc, _names(client))


def _delete_namespace(client: WireClient, lkc: str, names: tuple[list[str], list[str]]) -> int:
    prefix = lkc + "_"
    topics = tuple(t for t in names[0] if t.startswith(prefix))
    if topics:
        answer = client.request(20, 5, topic_names=topics, timeout=datetime.timedelta(seconds=30))
        for r in answer.responses:
            if r.error_code not in (0, 3):  # NONE, UNKNOWN_TOPIC_OR_PARTITION
                log.warning("deleting %s's topic %s: error %s", lkc, r.name, r.error_code)
    groups = tuple(g for g in names[1] if g.startswith(prefix))
    if groups:
        answer = client.request(42, 2, groups_names=groups)
        for g in answer.results:
            if g.error_code == 68:  # NON_EMPTY_GROUP
                log.info(
                    "%s's group %s still has members: its offsets expire with "
                    "offsets.retention.minutes",
                    lkc,
                    g.group_id,
                )
            elif g.error_code not in (0, 69):  # NONE, GROUP_ID_NOT_FOUND
                log.warning("deleting %s's group %s: error %s", lkc, g.group_id, g.error_code)
    return len(topics)


def _pid_in(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _of(name: str, lkc: str | None) -> str:
    """A scraped sample's key: the whole broker's, or one logical cluster's part of it."""
    return name if lkc is None else f"{name}|{lkc}"


def _broker_sample(
    sample: dict[str, float] | None, lkc: str | None = None, net: bool = False
) -> BrokerSample | None:
    """A broker's counters as metering reads them: one logical cluster's part (``lkc``), or
    the whole broker's, less every logical cluster's part for a shared cluster (``net``),
    whose guests are billed theirs: no byte is billed twice."""
    if sample is None or STARTED not in sample:
        return None  # no process start time: a restart could not be told, so not metered
    if lkc is not None:
        return BrokerSample(
            started=sample[STARTED],
            bytes_in=int(sample.get(_of(BYTES_IN, lkc), 0)),
            bytes_out=int(sample.get(_of(BYTES_OUT, lkc), 0)),
            storage_bytes=int(sample.get(_of(LOGICAL_CLUSTER_STORAGE, lkc), 0)),
        )

    def whole(name: str, of_logical_clusters: str) -> int:
        total = sample.get(name, 0.0)
        if net:
            parts = f"{of_logical_clusters}|"
            total -= sum(v for k, v in sample.items() if k.startswith(parts))
        return int(max(0.0, total))

    return BrokerSample(
        started=sample[STARTED],
        bytes_in=whole(BYTES_IN, BYTES_IN),
        bytes_out=whole(BYTES_OUT, BYTES_OUT),
        storage_bytes=whole(STORAGE, LOGICAL_CLUSTER_STORAGE),
    )


_LABEL = re.compile(r'(?:topic|logical_cluster)="([^"]*)"')


def _scrape(url: str) -> dict[str, float] | None:
    """A broker's bytes in and out so far, its metadata offset, process start time and stored
    bytes (Prometheus samples, summed over labels), or None if it did not answer. Bytes and
    storage are also summed per logical cluster (keys "<name>|<lkc>"), by the namespace of
    the topic label."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return None
    return parse_sample(text)


def parse_sample(text: str) -> dict[str, float] | None:
    """_scrape's reading of a Prometheus text exposition; None if it is not one."""
    sample: dict[str, float] = {}
    try:
        for line in text.splitlines():
            for name in (BYTES_IN, BYTES_OUT, METADATA_OFFSET, STARTED, STORAGE):
                if line.startswith(name):
                    sample[name] = sample.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            counted = next(
                (n for n in (BYTES_IN, BYTES_OUT, LOGICAL_CLUSTER_STORAGE) if line.startswith(n)),
                None,
            )
            label = _LABEL.search(line) if counted is not None else None
            if counted is None or label is None:
                continue
            if counted == LOGICAL_CLUSTER_STORAGE:
                lkc = label.group(1)
            else:
                found = logical_cluster_id_of(label.group(1))
                if found is None:
                    continue  # the shared cluster's own topic
                lkc = found
            key = _of(counted, lkc)
            sample[key] = sample.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    except ValueError:
        return None
    return sample
