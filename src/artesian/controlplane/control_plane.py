"""The control plane's state and duties, apart from HTTP: the clusters users asked for (written
to the desired-state topic), what the data planes report (read from the observed-state topic),
the autoscaler's decisions, and forgetting clusters once their data plane reports them gone."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from artesian.controlplane.api_keys import mint_api_key
from artesian.controlplane.autoscaler import AutoscalePolicy, decide
from artesian.controlplane.documents import (
    DESIRED_TOPIC,
    MAX_API_KEYS,
    OBSERVED_TOPIC,
    ApiKey,
    Autoscale,
    ClusterDesire,
    ClusterReport,
    DocumentError,
)
from artesian.controlplane.state_topics import StateTable, StateWriter, ensure_state_topics

log = logging.getLogger("artesian.controlplane")


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ClusterView:
    desire: ClusterDesire
    report: ClusterReport | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.desire.id,
            "spec": self.desire.public(),
            "status": None if self.report is None else self.report.as_json(),
        }


class ControlPlane:
    def __init__(
        self,
        bootstrap: str,
        policy: AutoscalePolicy = AutoscalePolicy(),
        write_timeout: float = 15.0,
    ) -> None:
        ensure_state_topics(bootstrap)
        self.bootstrap = bootstrap
        self.policy = policy
        self.write_timeout = write_timeout
        self.desired = StateTable(bootstrap, DESIRED_TOPIC, ClusterDesire.decode)
        self.observed = StateTable(bootstrap, OBSERVED_TOPIC, ClusterReport.decode)
        self._writer = StateWriter(bootstrap, DESIRED_TOPIC, write_timeout)
        # Only to forget a deleted cluster's last report; the data planes write the rest.
        self._report_eraser = StateWriter(bootstrap, OBSERVED_TOPIC, write_timeout)
        self._lock = threading.Lock()  # one read-modify-write of the desired state at a time
        self._last_change_ms: dict[str, int] = {}
        self._shapes: dict[str, object] = {}
        self.desired.listeners.append(self._desire_changed)
        self._stop = threading.Event()
        self._duties = threading.Thread(target=self._run_duties, name="control-plane", daemon=True)

    def start(self, ready_timeout: float = 30.0) -> ControlPlane:
        self.desired.start()
        self.observed.start()
        # Serve, and act, once both tables hold what the topics held when we started.
        self.desired.catch_up(ready_timeout)
        self.observed.catch_up(ready_timeout)
        self._duties.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._duties.is_alive():
            self._duties.join(10)
        self.desired.stop()
        self.observed.stop()
        self._writer.close()
        self._report_eraser.close()

    # --- the API's operations ---------------------------------------------------------------

    def healthy(self) -> bool:
        """Both tables still follow their topics, and the duties still run."""
        return self.desired.alive() and self.observed.alive() and self._duties.is_alive()

    def clusters(self) -> list[ClusterView]:
        """By id, clusters being deleted last."""
        reports = self.observed.snapshot()
        desires = sorted(self.desired.snapshot().values(), key=lambda d: (d.deleted, d.id))
        return [ClusterView(d, _from_its_cell(d, reports.get(d.id))) for d in desires]

    def cluster(self, cluster_id: str) -> ClusterView:
        desire = self.desired.get(cluster_id)
        if desire is None:
            raise NotFound(f"no cluster {cluster_id}")
        return ClusterView(desire, _from_its_cell(desire, self.observed.get(cluster_id)))

    def create(
        self,
        name: str,
        brokers: int,
        cell: str = "local",
        config: dict[str, str] | None = None,
        autoscale: Autoscale | None = None,
    ) -> ClusterView:
        with self._lock:
            if any(d.name == name and not d.deleted for d in self.desired.snapshot().values()):
                raise Conflict(f"a cluster named {name!r} exists")
            taken = self.desired.snapshot()
            cluster_id = f"lkc-{secrets.token_hex(8)}"
            while cluster_id in taken:
                cluster_id = f"lkc-{secrets.token_hex(8)}"
            desire = ClusterDesire(
                id=cluster_id,
                name=name,
                brokers=brokers,
                cell=cell,
                config=dict(config or {}),
                autoscale=autoscale,
            ).validate()
            self._write(desire.id, desire)
        log.info("cluster %s (%s): %d broker(s) in cell %s", desire.id, name, brokers, cell)
        return ClusterView(desire, None)

    def update(
        self, cluster_id: str, expected_generation: int | None = None, **changes: Any
    ) -> ClusterView:
        with self._lock:
            current = self._current(cluster_id)
            if expected_generation is not None and current.generation != expected_generation:
                raise Conflict(
                    f"cluster {cluster_id} is at generation {current.generation}, "
                    f"not {expected_generation}"
                )
            current = self._live(cluster_id)
            # None leaves a field as it is, except autoscale, where it switches autoscaling off.
            wanted = {k: v for k, v in changes.items() if v is not None or k == "autoscale"}
            if all(getattr(current, k) == v for k, v in wanted.items()):
                return ClusterView(current, _from_its_cell(current, self.observed.get(cluster_id)))
            desire = current.changed(**wanted)
            self._write(desire.id, desire)
        log.info("cluster %s: generation %d (%s)", cluster_id, desire.generation, wanted)
        return ClusterView(desire, _from_its_cell(desire, self.observed.get(cluster_id)))

    def delete(self, cluster_id: str) -> ClusterView:
        with self._lock:
            current = self._current(cluster_id)
            desire = current if current.deleted else current.changed(deleted=True)
            if desire is not current:
                self._write(desire.id, desire)
        log.info("cluster %s: deletion requested", cluster_id)
        return ClusterView(desire, _from_its_cell(desire, self.observed.get(cluster_id)))

    def create_api_key(
        self, cluster_id: str, resource_prefix: str | None = None, description: str = ""
    ) -> tuple[ApiKey, str, ClusterDesire]:
        """A new API key for the cluster and its secret, which is not kept anywhere: the
        caller shows it once. The key works once the cluster reports this generation."""
        api_key, secret = mint_api_key(resource_prefix, description, int(time.time() * 1000))
        with self._lock:
            current = self._live(cluster_id)
            report = _from_its_cell(current, self.observed.get(cluster_id))
            if report is not None and report.client_protocol == "PLAINTEXT":
                raise Conflict(
                    f"cluster {cluster_id}'s cell takes clients on PLAINTEXT, without a login: "
                    "an API key would not be checked (run its data plane with "
                    "--client-protocol SASL_SSL)"
                )
            if len(current.api_keys) >= MAX_API_KEYS:
                raise Conflict(f"cluster {cluster_id} already has {MAX_API_KEYS} API keys")
            desire = current.changed(api_keys=(*current.api_keys, api_key))
            self._write(desire.id, desire)
        log.info(
            "cluster %s: API key %s created (generation %d)",
            cluster_id,
            api_key.key,
            desire.generation,
        )
        return api_key, secret, desire

    def delete_api_key(self, cluster_id: str, key: str) -> ClusterDesire:
        """Revoke a key: new logins with it fail once the cluster reports this generation
        (connections already logged in stay, as in Kafka without KIP-368)."""
        with self._lock:
            current = self._live(cluster_id)
            kept = tuple(k for k in current.api_keys if k.key != key)
            if len(kept) == len(current.api_keys):
                raise NotFound(f"cluster {cluster_id} has no API key {key}")
            desire = current.changed(api_keys=kept)
            self._write(desire.id, desire)
        log.info(
            "cluster %s: API key %s deleted (generation %d)", cluster_id, key, desire.generation
        )
        return desire

    def _live(self, cluster_id: str) -> ClusterDesire:
        current = self._current(cluster_id)
        if current.deleted:
            raise Conflict(f"cluster {cluster_id} is being deleted")
        return current

    def _current(self, cluster_id: str) -> ClusterDesire:
        desire = self.desired.get(cluster_id)
        if desire is None:
            raise NotFound(f"no cluster {cluster_id}")
        return desire

    def _write(self, cluster_id: str, desire: ClusterDesire | None) -> None:
        """Store a desire (None: forget the cluster) and wait until the table shows it."""
        offset = self._writer.put(cluster_id, None if desire is None else desire.encode())
        # The next read (and the next read-modify-write) sees this write.
        if not self.desired.wait_for(offset, self.write_timeout):
            raise TimeoutError(f"{DESIRED_TOPIC} did not show offset {offset}")

    # --- duties: autoscaling and forgetting deleted clusters ---------------------------------

    def _desire_changed(self, cluster_id: str, desire: ClusterDesire | None) -> None:
        """The autoscaler's cooldown starts at a change of what runs (brokers, version,
        config), not at an API key's."""
        shape = None if desire is None else (desire.brokers, desire.version, desire.config)
        if self._shapes.get(cluster_id, ()) != shape:
            self._shapes[cluster_id] = shape
            self._last_change_ms[cluster_id] = int(time.time() * 1000)

    def _run_duties(self, interval: float = 1.0) -> None:
        while not self._stop.wait(interval):
            try:
                self.run_duties_once()
            except Exception:
                log.exception("control plane duties failed; retrying in %s s", interval)

    def run_duties_once(self) -> None:
        now = int(time.time() * 1000)
        reports = self.observed.snapshot()
        for cluster_id, desire in self.desired.snapshot().items():
            report = _from_its_cell(desire, reports.get(cluster_id))
            if desire.deleted:
                if report is None or (
                    report.phase == "Deleted" and report.observed_generation == desire.generation
                ):
                    with self._lock:
                        self._write(cluster_id, None)
                    self._report_eraser.put(cluster_id, None)
                    log.info("cluster %s deleted: forgotten", cluster_id)
                continue
            decision = decide(
                desire, report, now, self._last_change_ms.get(cluster_id, 0), self.policy
            )
            if decision is None:
                continue
            try:
                # Decided on this generation: a user's change meanwhile wins.
                self.update(cluster_id, desire.generation, brokers=decision.brokers)
            except (Conflict, NotFound, DocumentError) as e:
                log.warning("autoscaling %s skipped: %s", cluster_id, e)
                continue
            log.info(
                "autoscaler: cluster %s to %d broker(s): %s",
                cluster_id,
                decision.brokers,
                decision.reason,
            )


def _from_its_cell(desire: ClusterDesire, report: ClusterReport | None) -> ClusterReport | None:
    """A report counts only from the cell the cluster is assigned to: another cell's agent
    (misconfigured, or one the cluster left) says nothing about it."""
    return report if report is not None and report.cell == desire.cell else None
