"""The control plane's state and duties, apart from HTTP: the tenants and their quotas and
tokens, the clusters users asked for (written to the desired-state topic), what the data planes
report (read from the observed-state topic), the autoscaler's decisions, and forgetting
clusters once their data plane reports them gone.

Every operation takes the ``Caller``: a tenant reaches only its own clusters and tenant, and
another's answer NotFound, so that ids cannot be probed."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from artesian.config.topic import TOPIC_CONFIG_SYNONYMS
from artesian.controlplane.api_keys import mint_api_key
from artesian.controlplane.autoscaler import AutoscalePolicy, decide, reports_load_now
from artesian.controlplane.documents import (
    DESIRED_TOPIC,
    MAX_API_KEYS,
    MAX_TOKEN_DAYS,
    MAX_TOKENS,
    OBSERVED_TOPIC,
    TENANTS_TOPIC,
    USAGE_TOPIC,
    ApiKey,
    ApiToken,
    Autoscale,
    ClusterDesire,
    ClusterReport,
    DocumentError,
    Tenant,
    UsageRecord,
)
from artesian.controlplane.metering import HourlyUsage, UsageLedger
from artesian.controlplane.state_topics import Fenced, StateTable, StateWriter, ensure_state_topics
from artesian.controlplane.tenants import ADMIN, Caller, TokenIndex, authenticate, mint_token

log = logging.getLogger("artesian.controlplane")

# What a tenant may set on its cluster: the defaults of its topics, as a Kafka user sets them
# per topic anyway. Threads, sockets, replication and the rest are the platform's.
TENANT_CONFIG = frozenset(
    {s.name for synonyms in TOPIC_CONFIG_SYNONYMS.values() for s in synonyms}
    # Also the broker's own flusher period: a tenant could make it spin.
    - {"log.flush.scheduler.interval.ms"}
    | {
        "num.partitions",
        "default.replication.factor",
        "auto.create.topics.enable",
        "transaction.max.timeout.ms",
        "group.max.session.timeout.ms",
        "offsets.retention.minutes",
    }
)


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class Unavailable(RuntimeError):
    """Not yet: try again shortly."""


class Forbidden(PermissionError):
    """The admin's alone."""


class Replaced(RuntimeError):
    """Another control plane started on the same state topics and fenced this one."""


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
        admin_token: str,
        policy: AutoscalePolicy = AutoscalePolicy(),
        write_timeout: float = 15.0,
        transactional_id: str = "artesian-control-plane",
        on_replaced: Callable[[], None] | None = None,
    ) -> None:
        """``transactional_id``: the writers' transactional.id prefix. Starting a control
        plane fences any other writing the same state topics under it (Kafka's zombie
        fencing), before it reads them: one writes at a time, and generations never race.
        ``on_replaced`` is called once this one is fenced (its process should stop)."""
        if len(admin_token) < 16:
            raise ValueError("the admin token needs at least 16 characters")
        ensure_state_topics(bootstrap, (DESIRED_TOPIC, OBSERVED_TOPIC, TENANTS_TOPIC, USAGE_TOPIC))
        self.bootstrap = bootstrap
        self.policy = policy
        self.write_timeout = write_timeout
        self._admin_token = admin_token
        self.desired = StateTable(bootstrap, DESIRED_TOPIC, ClusterDesire.decode)
        self.observed = StateTable(bootstrap, OBSERVED_TOPIC, ClusterReport.decode)
        self.tenants = StateTable(bootstrap, TENANTS_TOPIC, Tenant.decode)
        self._tokens = TokenIndex()
        self.tenants.listeners.append(self._tokens.tenant_changed)
        self.ledger = UsageLedger()
        self.usage_records = StateTable(bootstrap, USAGE_TOPIC, UsageRecord.decode)
        self.usage_records.listeners.append(self.ledger.add)
        self._ledger_read = threading.Event()
        self.replaced = threading.Event()
        self._on_replaced = on_replaced
        # One transactional id for both topics: two control planes starting together cannot
        # end up owning one each.
        self._writer = StateWriter(bootstrap, DESIRED_TOPIC, write_timeout, transactional_id)
        # Only to forget a deleted cluster's last report; the data planes write the rest.
        self._report_eraser = StateWriter(bootstrap, OBSERVED_TOPIC, write_timeout)
        # One read-modify-write of the desired state or the tenants at a time: a quota check
        # reads both.
        self._lock = threading.Lock()
        self._last_change_ms: dict[str, int] = {}
        self._shapes: dict[str, object] = {}
        self.desired.listeners.append(self._desire_changed)
        self._stop = threading.Event()
        self._duties = threading.Thread(target=self._run_duties, name="control-plane", daemon=True)

    def start(self, ready_timeout: float = 30.0) -> ControlPlane:
        tables = (self.desired, self.observed, self.tenants)
        for table in (*tables, self.usage_records):
            table.start()
        # Serve, and act, once the tables hold what the topics held when we started. The
        # ledger only answers usage questions, and grows without bound: it is read behind.
        for table in tables:
            table.catch_up(ready_timeout)
        threading.Thread(target=self._read_ledger, name="usage-ledger", daemon=True).start()
        self._duties.start()
        return self

    def _read_ledger(self) -> None:
        while not self._stop.is_set():
            try:
                self.usage_records.catch_up(60.0)
            except Exception as e:
                log.warning("the usage ledger is not read yet (%s); still reading", e)
                self._stop.wait(1.0)
                continue
            self._ledger_read.set()
            log.info("usage ledger read")
            return

    def stop(self) -> None:
        self._stop.set()
        if self._duties.is_alive():
            self._duties.join(10)
        for table in (self.desired, self.observed, self.tenants, self.usage_records):
            table.stop()
        self._writer.close()
        self._report_eraser.close()

    # --- the API's operations ---------------------------------------------------------------

    def healthy(self) -> bool:
        """The tables still follow their topics, and the duties still run."""
        tables = (self.desired, self.observed, self.tenants, self.usage_records)
        return (
            all(t.alive() for t in tables)
            and self._duties.is_alive()
            and not self.replaced.is_set()
        )

    def authenticate(self, presented: str) -> Caller | None:
        """The caller a bearer token stands for: the admin, a tenant, or None."""
        return authenticate(presented, self._admin_token, self._tokens, int(time.time() * 1000))

    def clusters(self, *, caller: Caller) -> list[ClusterView]:
        """The caller's clusters by id, those being deleted last."""
        reports = self.observed.snapshot()
        desires = sorted(
            (d for d in self.desired.snapshot().values() if caller.owns(d.tenant)),
            key=lambda d: (d.deleted, d.id),
        )
        return [ClusterView(d, _from_its_cell(d, reports.get(d.id))) for d in desires]

    def cluster(self, cluster_id: str, *, caller: Caller) -> ClusterView:
        desire = self._current(cluster_id, caller)
        return ClusterView(desire, _from_its_cell(desire, self.observed.get(cluster_id)))

    def create(
        self,
        name: str,
        brokers: int,
        cell: str = "local",
        config: dict[str, str] | None = None,
        autoscale: Autoscale | None = None,
        tenant: str | None = None,
        *,
        logical: bool = False,
        shared: bool = False,
        quotas: dict[str, float] | None = None,
        caller: Caller,
    ) -> ClusterView:
        """A new cluster, the caller's (the admin may name the tenant it is for). A
        ``logical`` one is placed on a shared cluster of its cell (no brokers of its own); a
        ``shared`` one is the platform's, and takes logical clusters."""
        if tenant is not None and not caller.is_admin and tenant != caller.tenant:
            raise Forbidden("a tenant creates clusters for itself only")
        if shared and (not caller.is_admin or tenant):
            raise Forbidden(
                "a shared cluster is the platform's: the admin creates it, for no tenant"
            )
        if quotas and not caller.is_admin:
            raise Forbidden("a logical cluster's quotas are the platform's to set")
        _tenant_may_set(caller, config or {})
        owner = caller.tenant if caller.tenant is not None else (tenant or "")
        with self._lock:
            taken = self.desired.snapshot()
            if any(d.name == name and d.tenant == owner and not d.deleted for d in taken.values()):
                raise Conflict(f"a cluster named {name!r} exists")
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
                tenant=owner,
                host=_placement(
                    taken.values(),
                    self.observed.snapshot(),
                    cell,
                    int(time.time() * 1000),
                    self.policy.max_report_age_ms,
                )
                if logical
                else "",
                shared=shared,
                quotas=dict(quotas or {}),
            ).validate()
            self._within_quota(desire, None)
            self._write(desire.id, desire)
        log.info(
            "cluster %s (%s): %s in cell %s, tenant %s",
            desire.id,
            name,
            f"logical, on {desire.host}" if logical else f"{brokers} broker(s)",
            cell,
            owner or "(platform)",
        )
        return ClusterView(desire, None)

    def update(
        self,
        cluster_id: str,
        *,
        caller: Caller,
        expected_generation: int | None = None,
        **changes: Any,
    ) -> ClusterView:
        with self._lock:
            current = self._current(cluster_id, caller)
            if expected_generation is not None and current.generation != expected_generation:
                raise Conflict(
                    f"cluster {cluster_id} is at generation {current.generation}, "
                    f"not {expected_generation}"
                )
            if current.deleted:
                raise Conflict(f"cluster {cluster_id} is being deleted")
            if "quotas" in changes and not caller.is_admin:
                raise Forbidden("a logical cluster's quotas are the platform's to set")
            if changes.get("config") is not None:
                _tenant_may_set(caller, changes["config"])
                if not caller.is_admin:
                    # A tenant's config replaces its own keys, never the platform's.
                    kept = {k: v for k, v in current.config.items() if k not in TENANT_CONFIG}
                    changes = {**changes, "config": {**kept, **changes["config"]}}
            # None leaves a field as it is, except autoscale, where it switches autoscaling off.
            wanted = {k: v for k, v in changes.items() if v is not None or k == "autoscale"}
            if all(getattr(current, k) == v for k, v in wanted.items()):
                return ClusterView(current, _from_its_cell(current, self.observed.get(cluster_id)))
            desire = current.changed(**wanted)
            self._within_quota(desire, current)
            self._write(desire.id, desire)
        log.info("cluster %s: generation %d (%s)", cluster_id, desire.generation, wanted)
        return ClusterView(desire, _from_its_cell(desire, self.observed.get(cluster_id)))

    def delete(self, cluster_id: str, *, caller: Caller) -> ClusterView:
        with self._lock:
            current = self._current(cluster_id, caller)
            guests = sorted(
                d.id
                for d in self.desired.snapshot().values()
                if d.host == cluster_id and not d.deleted
            )
            if guests:  # those being deleted go with it, if they have not gone yet
                raise Conflict(
                    f"cluster {cluster_id} carries logical clusters {guests}: delete them first"
                )
            desire = current if current.deleted else current.changed(deleted=True)
            if desire is not current:
                self._write(desire.id, desire)
        log.info("cluster %s: deletion requested", cluster_id)
        return ClusterView(desire, _from_its_cell(desire, self.observed.get(cluster_id)))

    def create_api_key(
        self,
        cluster_id: str,
        resource_prefix: str | None = None,
        description: str = "",
        *,
        caller: Caller,
    ) -> tuple[ApiKey, str, ClusterDesire]:
        """A new API key for the cluster and its secret, which is not kept anywhere: the
        caller shows it once. The key works once the cluster reports this generation."""
        # Checked before the SCRAM derivations, which cost CPU, and again under the lock.
        self._may_add_api_key(cluster_id, caller)
        api_key, secret = mint_api_key(resource_prefix, description, int(time.time() * 1000))
        with self._lock:
            current = self._may_add_api_key(cluster_id, caller)
            desire = current.changed(api_keys=(*current.api_keys, api_key))
            self._write(desire.id, desire)
        log.info(
            "cluster %s: API key %s created (generation %d)",
            cluster_id,
            api_key.key,
            desire.generation,
        )
        return api_key, secret, desire

    def delete_api_key(self, cluster_id: str, key: str, *, caller: Caller) -> ClusterDesire:
        """Revoke a key: new logins with it fail once the cluster reports this generation
        and its open connections at their next re-authentication (KIP-368)."""
        with self._lock:
            current = self._live(cluster_id, caller)
            kept = tuple(k for k in current.api_keys if k.key != key)
            if len(kept) == len(current.api_keys):
                raise NotFound(f"cluster {cluster_id} has no API key {key}")
            desire = current.changed(api_keys=kept)
            self._write(desire.id, desire)
        log.info(
            "cluster %s: API key %s deleted (generation %d)", cluster_id, key, desire.generation
        )
        return desire

    # --- tenants ----------------------------------------------------------------------------

    def create_tenant(
        self, name: str, max_clusters: int, max_brokers: int, *, caller: Caller
    ) -> tuple[Tenant, str]:
        """A new tenant and its first API token's text, which is kept nowhere."""
        _admin_only(caller, "create tenants")
        now = int(time.time() * 1000)
        token, text = mint_token("first token", now)
        with self._lock:
            taken = self.tenants.snapshot()
            if any(t.name == name for t in taken.values()):
                raise Conflict(f"a tenant named {name!r} exists")
            tenant_id = f"t-{secrets.token_hex(8)}"
            while tenant_id in taken:
                tenant_id = f"t-{secrets.token_hex(8)}"
            tenant = Tenant(tenant_id, name, max_clusters, max_brokers, (token,), now).validate()
            self._write_tenant(tenant.id, tenant)
        log.info("tenant %s (%s) created", tenant.id, name)
        return tenant, text

    def list_tenants(self, *, caller: Caller) -> list[Tenant]:
        return sorted(
            (t for t in self.tenants.snapshot().values() if caller.owns(t.id)), key=lambda t: t.id
        )

    def tenant(self, tenant_id: str, *, caller: Caller) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None or not caller.owns(tenant_id):
            raise NotFound(f"no tenant {tenant_id}")
        return tenant

    def update_tenant(self, tenant_id: str, *, caller: Caller, **quotas: int) -> Tenant:
        """New quotas. Lowering one below what the tenant has leaves its clusters running and
        refuses what would add to them."""
        _admin_only(caller, "change quotas")
        with self._lock:
            current = self.tenant(tenant_id, caller=caller)
            if all(getattr(current, k) == v for k, v in quotas.items()):
                return current
            tenant = current.changed(**quotas)
            self._write_tenant(tenant_id, tenant)
        log.info("tenant %s: quotas %s", tenant_id, quotas)
        return tenant

    def delete_tenant(self, tenant_id: str, *, caller: Caller) -> None:
        """Forget a tenant and its tokens, once it has no cluster left (deleting ones count)."""
        _admin_only(caller, "delete tenants")
        with self._lock:
            self.tenant(tenant_id, caller=caller)
            owned = sorted(d.id for d in self.desired.snapshot().values() if d.tenant == tenant_id)
            if owned:
                raise Conflict(f"tenant {tenant_id} still has clusters: delete {owned} first")
            if self.desired.unreadable:
                # Whose they are cannot be told: one may be this tenant's.
                raise Conflict(
                    f"the desired state of {sorted(self.desired.unreadable)} cannot be read; "
                    "no tenant is deleted until it can"
                )
            self._write_tenant(tenant_id, None)
        log.info("tenant %s deleted", tenant_id)

    def create_token(
        self,
        tenant_id: str,
        description: str = "",
        expires_in_days: int | None = None,
        *,
        caller: Caller,
    ) -> tuple[ApiToken, str]:
        """``expires_in_days``: how long the token works (None: until deleted). A caller whose
        own token expires makes tokens that expire no later: a leaked token must not buy
        itself a lasting one. Expired tokens are dropped as a new one is added."""
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
            raise DocumentError(f"expires_in_days must be 1 to {MAX_TOKEN_DAYS}")
        now = int(time.time() * 1000)
        expires = now + expires_in_days * 86_400_000 if expires_in_days else 0
        if caller.expires_ms and not 0 < expires <= caller.expires_ms:
            raise Forbidden(
                "a token that expires may only make tokens that expire no later than itself; "
                "give expires_in_days, or use a token that does not expire"
            )
        token, text = mint_token(description, now, expires)
        with self._lock:
            current = self.tenant(tenant_id, caller=caller)
            live = tuple(t for t in current.tokens if not t.expired(now))
            if len(live) >= MAX_TOKENS:
                raise Conflict(f"tenant {tenant_id} already has {MAX_TOKENS} tokens")
            tenant = current.changed(tokens=(*live, token))
            self._write_tenant(tenant_id, tenant)
        log.info("tenant %s: token %s created", tenant_id, token.id)
        return token, text

    def delete_token(self, tenant_id: str, token_id: str, *, caller: Caller) -> None:
        with self._lock:
            current = self.tenant(tenant_id, caller=caller)
            kept = tuple(t for t in current.tokens if t.id != token_id)
            if len(kept) == len(current.tokens):
                raise NotFound(f"tenant {tenant_id} has no token {token_id}")
            self._write_tenant(tenant_id, current.changed(tokens=kept))
        log.info("tenant %s: token %s deleted", tenant_id, token_id)

    def usage(
        self,
        *,
        caller: Caller,
        tenant: str | None = None,
        cluster: str | None = None,
        start_ms: int = 0,
        end_ms: int | None = None,
    ) -> list[HourlyUsage]:
        """Hourly usage from the ledger: the admin's of anyone, a tenant's of its own only
        (deleted clusters included: what they used is still the tenant's)."""
        if not caller.is_admin:
            if tenant is not None and tenant != caller.tenant:
                raise NotFound(f"no tenant {tenant}")
            tenant = caller.tenant
        if not self._ledger_read.is_set():
            raise Unavailable(
                "the usage ledger is still being read since the control plane started"
            )
        return self.ledger.hours(tenant, cluster, start_ms, end_ms)

    def _may_add_api_key(self, cluster_id: str, caller: Caller) -> ClusterDesire:
        current = self._live(cluster_id, caller)
        report = _from_its_cell(current, self.observed.get(cluster_id))
        if report is not None and report.client_protocol == "PLAINTEXT":
            raise Conflict(
                f"cluster {cluster_id}'s cell takes clients on PLAINTEXT, without a login: "
                "an API key would not be checked (run its data plane with "
                "--client-protocol SASL_SSL)"
            )
        if len(current.api_keys) >= MAX_API_KEYS:
            raise Conflict(f"cluster {cluster_id} already has {MAX_API_KEYS} API keys")
        return current

    def _within_quota(self, desire: ClusterDesire, current: ClusterDesire | None) -> None:
        """Refuse a cluster, or a change, that takes its tenant past a quota; what does not
        grow passes, so that a tenant over a lowered quota can still come down. Clusters
        being deleted count until their data plane has removed them: they still run."""
        grows = current is None or desire.most_brokers() > current.most_brokers()
        if not desire.tenant or not grows:
            return
        tenant = self.tenants.get(desire.tenant)
        if tenant is None:
            raise DocumentError(f"no tenant {desire.tenant}")
        others = [
            d
            for d in self.desired.snapshot().values()
            if d.tenant == desire.tenant and d.id != desire.id
        ]
        if current is None and len(others) + 1 > tenant.max_clusters:
            raise Conflict(
                f"tenant {tenant.id} has {len(others)} cluster(s), its quota is "
                f"{tenant.max_clusters} (max_clusters; a cluster being deleted counts until "
                "it is gone)"
            )
        brokers = sum(d.most_brokers() for d in others) + desire.most_brokers()
        if brokers > tenant.max_brokers:
            raise Conflict(
                f"tenant {tenant.id} would have up to {brokers} brokers, its quota is "
                f"{tenant.max_brokers} (max_brokers; an autoscaled cluster counts its maximum)"
            )

    def _put(self, topic: str, key: str, value: bytes | None) -> int:
        try:
            return self._writer.put(key, value, topic)
        except Fenced as e:
            if not self.replaced.is_set():
                self.replaced.set()
                log.error(
                    "another control plane started on these state topics and took over, or "
                    "this one's writer failed for good (%s): this one stops; send requests "
                    "to the new one",
                    e,
                )
                if self._on_replaced is not None:
                    self._on_replaced()
            raise Replaced(
                "this control plane was replaced by another one on the same state topics; "
                "send requests to that one"
            ) from e

    def _write_tenant(self, tenant_id: str, tenant: Tenant | None) -> None:
        encoded = None if tenant is None else tenant.encode()
        offset = self._put(TENANTS_TOPIC, tenant_id, encoded)
        if not self.tenants.wait_for(offset, self.write_timeout):
            raise TimeoutError(f"{TENANTS_TOPIC} did not show offset {offset}")

    def _live(self, cluster_id: str, caller: Caller) -> ClusterDesire:
        current = self._current(cluster_id, caller)
        if current.deleted:
            raise Conflict(f"cluster {cluster_id} is being deleted")
        return current

    def _current(self, cluster_id: str, caller: Caller) -> ClusterDesire:
        desire = self.desired.get(cluster_id)
        if desire is None or not caller.owns(desire.tenant):
            raise NotFound(f"no cluster {cluster_id}")
        return desire

    def _write(self, cluster_id: str, desire: ClusterDesire | None) -> None:
        """Store a desire (None: forget the cluster) and wait until the table shows it."""
        offset = self._put(DESIRED_TOPIC, cluster_id, None if desire is None else desire.encode())
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
            except Replaced:
                return  # another control plane does them now
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
                self.update(
                    cluster_id,
                    caller=ADMIN,
                    expected_generation=desire.generation,
                    brokers=decision.brokers,
                )
            except (Conflict, NotFound, DocumentError) as e:
                log.warning("autoscaling %s skipped: %s", cluster_id, e)
                continue
            log.info(
                "autoscaler: cluster %s to %d broker(s): %s",
                cluster_id,
                decision.brokers,
                decision.reason,
            )


def _placement(
    desires: Iterable[ClusterDesire],
    reports: dict[str, ClusterReport],
    cell: str,
    now_ms: int,
    max_report_age_ms: int,
) -> str:
    """The shared cluster of ``cell`` a new logical cluster goes to, by load as Kora places
    tenants: its share of the busiest host's traffic per broker plus its share of the most
    tenants per broker, the lowest sum winning. Traffic counts from a Ready host's fresh
    report; a host without one comes after those with one (it may be down or just made).
    Tenants per broker keep a new, idle host from taking every newcomer."""
    desires = list(desires)
    hosts = [d for d in desires if d.shared and d.cell == cell and not d.deleted]
    if not hosts:
        raise Conflict(
            f"cell {cell} has no shared cluster to place a logical cluster on (the admin "
            "creates one: artesian clusters create NAME --shared)"
        )
    seen = [r for h in hosts if (r := _from_its_cell(h, reports.get(h.id))) is not None]
    if seen and all(r.client_protocol == "PLAINTEXT" for r in seen):
        raise Conflict(
            f"cell {cell} takes clients on PLAINTEXT, without a login: a logical cluster's "
            "clients must log in (its data plane runs with --client-protocol SASL_SSL)"
        )
    traffic: dict[str, float] = {}
    for h in hosts:
        report = _from_its_cell(h, reports.get(h.id))
        if report is None or not reports_load_now(report, now_ms, max_report_age_ms):
            continue
        live = sum(b.live for b in report.brokers) or max(1, h.brokers)
        traffic[h.id] = (report.bytes_in_per_second + report.bytes_out_per_second) / live
    candidates = [h for h in hosts if h.id in traffic] or hosts
    tenants = {
        h.id: sum(d.host == h.id and not d.deleted for d in desires) / max(1, h.brokers)
        for h in candidates
    }
    most_traffic = max((traffic.get(h.id, 0.0) for h in candidates), default=0.0) or 1.0
    most_tenants = max(tenants.values()) or 1.0

    def load(h: ClusterDesire) -> tuple[float, str]:
        share = traffic.get(h.id, 0.0) / most_traffic + tenants[h.id] / most_tenants
        return share, h.id

    return min(candidates, key=load).id


def _tenant_may_set(caller: Caller, config: dict[str, str]) -> None:
    refused = sorted(k for k in config if k not in TENANT_CONFIG)
    if refused and not caller.is_admin:
        raise DocumentError(
            f"{refused} are the platform's; a tenant sets its topics' defaults only "
            "(log.retention.ms, num.partitions, min.insync.replicas, ...)"
        )


def _admin_only(caller: Caller, what: str) -> None:
    if not caller.is_admin:
        raise Forbidden(f"only the platform's admin may {what}")


def _from_its_cell(desire: ClusterDesire, report: ClusterReport | None) -> ClusterReport | None:
    """A report counts only from the cell the cluster is assigned to: another cell's agent
    (misconfigured, or one the cluster left) says nothing about it."""
    return report if report is not None and report.cell == desire.cell else None
