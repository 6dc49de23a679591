"""Client quotas (Kafka's ClientQuotaManager, KIP-13/KIP-55): byte rates per user and
client id, for produce and fetch.

A quota is set on an entity: a user, a client id, both, or their defaults. A request takes
its rate from the most specific entity that has a quota for its kind, in Kafka's order:
user+client, user+default client, user, default user+client, default user+default client,
default user, client, default client. As in Kafka, the rate is then counted per client
name, not per entity: under a default every user (or client id) has a rate of its own,
while a quota on user U is shared by all of U's client ids. When a client goes over, its
response carries ``throttle_time_ms`` and the broker reads nothing more from that connection
until the time is up (KIP-219). A Produce is counted when it arrives; a Fetch is capped at
what a full bucket holds, and the response that does not fit in the bucket now is withheld:
the fetch is answered empty with the time to wait (Kafka's record, then unrecord).

The rate is a token bucket holding one second of the quota (``ByteRateQuota``), where Kafka
samples windows (``quota.window.num`` x ``quota.window.size.seconds``, 11 s by default); the
long-run rate is the same, and debt older than those 11 s is forgotten, as Kafka's windows
forget it.

``controller_mutation_rate`` (KIP-599) limits the partitions a client creates or deletes
(CreateTopics, CreatePartitions, DeleteTopics) with Kafka's own token bucket: it fills at the
rate up to a burst of the 11 windows' worth, a mutation of N partitions is admitted while the
bucket is not in debt and takes N from it, and the throttle time is the debt over the rate.
Newer request versions are refused with THROTTLING_QUOTA_EXCEEDED while in debt (strict);
older ones are admitted and throttled (permissive).

``request_percentage`` (KIP-124) limits the time a client's requests take to handle, as a
percentage of one thread: 50 is half a second a second. Kafka counts its request handler and
network threads' time; here the event loop's time for the request is counted (decoding it,
each step of its handler, and encoding its response), so time spent waiting (a fetch's max
wait, replication) is not. The bucket holds one quota window, and a throttle lasts at most
one window (1 s), as in Kafka. Broker-to-broker requests (a follower's fetches, transaction
markers, share state) are exempt and counted apart.

``connection_creation_rate`` (KIP-612) is set on an ``ip`` entity, or on the default ip: the
connections an address may open a second. A bucket holds one second of them; a connection
over the rate is not served, and is closed once the bucket could have taken it (Kafka delays
the close the same way, so that a client does not reconnect at once).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Mapping

from artesian.tiered.quota import ByteRateQuota

__all__ = [
    "LOGICAL_CLUSTER_QUOTA_KEYS",
    "QUOTA_KEYS",
    "ClientQuotaManager",
    "Entity",
    "is_address",
    "normal_address",
    "rate_problem",
]

# (entity type, name): name None is the type's default entity. Sorted by type.
Entity = tuple[tuple[str, str | None], ...]

USER, CLIENT_ID, IP = "user", "client-id", "ip"
# The quota keys Artesian enforces, by the request kind they limit.
QUOTA_KEYS = {
    "producer_byte_rate": "produce",
    "consumer_byte_rate": "fetch",
    "controller_mutation_rate": "mutation",
    "request_percentage": "request",
    "connection_creation_rate": "connection",
}
# Kafka's default quota windows: 11 of 1 s. Throttles and debt never exceed them.
WINDOW_SECONDS = 11
MAX_THROTTLE_MS = WINDOW_SECONDS * 1000
MAX_REQUEST_THROTTLE_MS = 1000  # one quota window (Kafka's quota.window.size.seconds)
_TINIEST_RATE = 1e-300  # a percentage so small it would divide by zero as seconds
_IDLE_SECONDS = 3600  # a client's rate is forgotten after an idle hour, as in Kafka
_SWEEP_EVERY = 10_000  # new buckets between sweeps for idle ones
_MAX_RESOLVED = 100_000  # cached (kind, user, client id) resolutions


# Quotas that may be fractions, with what they count; the others are whole bytes a second.
_FRACTIONAL = {
    "controller_mutation_rate": "number of partition mutations per second",  # KIP-599
    "request_percentage": "percentage of one thread's time",  # KIP-124
}


# What a logical cluster's clients may share (connection_creation_rate is an address's).
LOGICAL_CLUSTER_QUOTA_KEYS = frozenset(QUOTA_KEYS) - {"connection_creation_rate"}


def rate_problem(key: str, value: float) -> str | None:
    """Why ``value`` is no valid rate for quota ``key`` (Kafka's messages), None if it is.
    connection_creation_rate is the ip entity's and is checked apart."""
    if key in _FRACTIONAL:
        if not math.isfinite(value) or value <= 0:
            return f"Configuration {key} must be a positive {_FRACTIONAL[key]}"
        return None
    if not math.isfinite(value) or value <= 0 or value != int(value) or value >= 2**63:
        return f"Configuration {key} must be a positive whole number of bytes per second"
    return None


def normal_address(address: str) -> str:
    """An address as connections are counted under it: IPv6 compressed and without its
    scope, an IPv4-mapped address as IPv4 (what is not an address is left as it is)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _levels(user: str, client_id: str) -> list[tuple[Entity, tuple[str, str]]]:
    """(entity to look up, the client names its rate is counted under), Kafka's order."""
    both, user_only, client_only = (user, client_id), (user, ""), ("", client_id)
    return [
        (((CLIENT_ID, client_id), (USER, user)), both),
        (((CLIENT_ID, None), (USER, user)), both),
        (((USER, user),), user_only),
        (((CLIENT_ID, client_id), (USER, None)), both),
        (((CLIENT_ID, None), (USER, None)), both),
        (((USER, None),), user_only),
        (((CLIENT_ID, client_id),), client_only),
        (((CLIENT_ID, None),), client_only),
    ]


class _Usage:
    __slots__ = ("bucket", "used")

    def __init__(self, kind: str, rate: float) -> None:
        # KIP-599's bucket saves up the quota windows' worth of mutations; byte rates, one
        # second of the rate.
        burst = WINDOW_SECONDS if kind == "mutation" else 1.0
        self.bucket = ByteRateQuota(rate, burst_seconds=burst)
        self.used = time.monotonic()


def _mutation_throttle_ms(bucket: ByteRateQuota) -> int:
    # Kafka rounds; capped as a float first (a tiny rate makes the quotient infinite).
    return round(min(bucket.throttle_seconds() * 1000, 2**31 - 1))


class ClientQuotaManager:
    def __init__(self) -> None:
        self._quotas: dict[Entity, Mapping[str, float]] = {}
        # Principals of a logical cluster with quotas: (its id, its quotas).
        self._confined: dict[str, tuple[str, Mapping[str, float]]] = {}
        self._kinds: frozenset[str] = frozenset()
        # connection_creation_rate by address (None: the default ip entity's).
        self._ip_rates: dict[str | None, float] = {}
        # (kind, user, client id) -> (rate, counted-under names) resolved from the quotas.
        self._resolved: dict[tuple[str, str, str], tuple[float, tuple[str, str]] | None] = {}
        self._usage: dict[tuple[str, ...], _Usage] = {}
        self._created = 0

    def active(self, kind: str) -> bool:
        """Some quota of ``kind`` ("produce" or "fetch") is set: requests must be counted."""
        return kind in self._kinds

    def update(
        self,
        quotas: Mapping[Entity, Mapping[str, float]],
        bindings: Mapping[str, str] | None = None,
        logical_clusters: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        """Replace every quota (from the metadata image); clients keep their debt. A
        logical cluster's quota (``logical_clusters``, by id) is shared by its principals
        (``bindings``, principal to id), and replaces their user and client-id quotas of
        that kind."""
        self._quotas = {e: dict(v) for e, v in quotas.items() if v}
        lkc_quotas = {lkc: dict(v) for lkc, v in (logical_clusters or {}).items() if v}
        self._confined = {
            principal: (lkc, lkc_quotas[lkc])
            for principal, lkc in (bindings or {}).items()
            if lkc in lkc_quotas
        }
        self._kinds = frozenset(
            QUOTA_KEYS[k]
            for v in (*self._quotas.values(), *lkc_quotas.values())
            for k in v
            if k in QUOTA_KEYS
        )
        self._ip_rates = {}
        for entity, values in self._quotas.items():
            if len(entity) == 1 and entity[0][0] == IP and "connection_creation_rate" in values:
                address = entity[0][1]
                key = None if address is None else normal_address(address)
                self._ip_rates[key] = float(values["connection_creation_rate"])
        self._resolved.clear()

    def _rate(self, entity: Entity, kind: str) -> float | None:
        return self._rate_of(self._quotas.get(entity, {}), kind)

    @staticmethod
    def _rate_of(quotas: Mapping[str, float], kind: str) -> float | None:
        for key, value in quotas.items():
            if QUOTA_KEYS.get(key) == kind:
                if not math.isfinite(value):
                    return None  # refused by every check that stores one: no limit
                if kind == "request":  # a percentage of one thread: seconds a second
                    return max(float(value) / 100, _TINIEST_RATE)
                # Byte rates are whole bytes; a mutation rate may be a fraction (KIP-599).
                return float(value) if kind == "mutation" else max(1, int(value))
        return None

    def _resolve(
        self, kind: str, user: str, client_id: str
    ) -> tuple[float, tuple[str, str]] | None:
        key = (kind, user, client_id)
        if key not in self._resolved:
            if len(self._resolved) >= _MAX_RESOLVED:
                self._resolved.clear()  # clients cycling through names: start afresh
            found = None
            for entity, names in _levels(user, client_id):
                rate = self._rate(entity, kind)
                if rate is not None:
                    found = (rate, names)
                    break
            self._resolved[key] = found
        return self._resolved[key]

    def _usage_of(self, kind: str, principal: str, client_id: str | None) -> _Usage | None:
        confined = self._confined.get(principal) if self._confined else None
        if confined is not None:
            lkc, quotas = confined
            rate = self._rate_of(quotas, kind)
            if rate is not None:  # one bucket for all of the logical cluster's clients
                return self._usage_at((kind, lkc), rate)  # a client's key has three parts
        user = principal.partition(":")[2] or principal
        resolved = self._resolve(kind, user, client_id or "")
        if resolved is None:
            return None
        rate, names = resolved
        return self._usage_at((kind, *names), rate)

    def _usage_at(self, key: tuple[str, ...], rate: float, renew_on_raise: bool = False) -> _Usage:
        """The bucket counted under ``key`` (kind, then the client's user and client id, or
        a logical cluster's id), at ``rate``: made, or given the new rate
        (``renew_on_raise``: a raised rate starts a full bucket)."""
        usage = self._usage.get(key)
        if usage is None or (renew_on_raise and usage.bucket.rate < rate):
            usage = self._usage[key] = _Usage(key[0], rate)
            self._created += 1
            if self._created % _SWEEP_EVERY == 0:
                self._forget_idle()
        elif usage.bucket.rate != rate:
            usage.bucket.set_rate(rate)
        usage.used = time.monotonic()
        return usage

    def _bucket(self, kind: str, principal: str, client_id: str | None) -> ByteRateQuota | None:
        usage = self._usage_of(kind, principal, client_id)
        return None if usage is None else usage.bucket

    def admit_mutations(
        self, principal: str, client_id: str | None, partitions: int, strict: bool
    ) -> tuple[bool, int]:
        """A topic mutation of ``partitions`` under controller_mutation_rate: (admitted,
        throttle ms), as Kafka's Strict and PermissiveControllerMutationQuota decide. Strict
        (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+): refused while the
        client's bucket is in debt, with the time until it is not; else admitted and counted,
        unthrottled. Permissive (older versions): always admitted, throttled by the debt."""
        bucket = self._bucket("mutation", principal, client_id)
        if bucket is None:
            return True, 0
        if strict:
            if bucket.throttle_seconds() > 0:  # in debt
                return False, _mutation_throttle_ms(bucket)
            bucket.record(partitions)
            return True, 0
        bucket.record(partitions)
        return True, _mutation_throttle_ms(bucket)

    def admit_connection(self, address: str) -> int:
        """A new connection from ``address`` under connection_creation_rate: 0 when it may be
        served (it is counted), else the ms to hold it before closing it (not counted)."""
        if not self._ip_rates:
            return 0
        rate = self._ip_rates.get(address, self._ip_rates.get(None))
        if rate is None:
            return 0
        if rate <= 0:
            return MAX_REQUEST_THROTTLE_MS  # no connection at all: one window between tries
        # A raised rate takes effect at once, as Kafka's windowed rate (now well under the
        # new quota) lets the address connect; refused connections left no debt to keep.
        usage = self._usage_at(("connection", address, ""), rate, renew_on_raise=True)
        wait = usage.bucket.wait_seconds(1)
        if wait > 0:
            return min(MAX_THROTTLE_MS, max(1, math.ceil(wait * 1000)))
        usage.bucket.record(1)
        return 0

    def _forget_idle(self) -> None:
        horizon = time.monotonic() - _IDLE_SECONDS
        for key in [k for k, u in self._usage.items() if u.used < horizon]:
            del self._usage[key]

    @staticmethod
    def _throttle_ms(bucket: ByteRateQuota) -> int:
        bucket.cap_debt(WINDOW_SECONDS)
        return min(MAX_THROTTLE_MS, math.ceil(bucket.throttle_seconds() * 1000))

    def record(self, kind: str, principal: str, client_id: str | None, nbytes: int) -> int:
        """Count ``nbytes`` of ``kind`` ("produce" or "fetch"); the throttle time in ms."""
        bucket = self._bucket(kind, principal, client_id)
        if bucket is None:
            return 0
        bucket.record(nbytes)
        return self._throttle_ms(bucket)

    def max_bytes(self, kind: str, principal: str, client_id: str | None) -> int | None:
        """The most one response of ``kind`` should carry: what a full bucket holds, one
        second of the client's rate (Kafka caps a fetch at getMaxValueInQuotaWindow, what
        its windows allow when nothing was recorded). None when no quota applies."""
        bucket = self._bucket(kind, principal, client_id)
        return None if bucket is None else int(bucket.rate)

    def record_within(self, kind: str, principal: str, client_id: str | None, nbytes: int) -> int:
        """A response that may still be withheld: ``nbytes`` are counted when the quota
        allows them now, and 0 is returned; else nothing is counted (Kafka records, then
        unrecords) and the result is the throttle time in ms, after which they would be
        allowed. A response larger than a full bucket (a first batch bigger than the cap,
        or a capped response with its headers) is allowed once the bucket is full, and its
        debt throttles the next one."""
        bucket = self._bucket(kind, principal, client_id)
        if bucket is None:
            return 0
        bucket.cap_debt(WINDOW_SECONDS)
        wait = bucket.wait_seconds(nbytes)
        if wait <= 0:
            bucket.record(nbytes)
            return 0
        return min(MAX_THROTTLE_MS, max(1, math.ceil(wait * 1000)))

    def record_request_time(self, principal: str, client_id: str | None, seconds: float) -> int:
        """Count ``seconds`` of a request's handling under request_percentage; the throttle
        time in ms (at most one quota window)."""
        bucket = self._bucket("request", principal, client_id)
        if bucket is None:
            return 0
        bucket.record(seconds)
        bucket.cap_debt(WINDOW_SECONDS)
        return min(MAX_REQUEST_THROTTLE_MS, math.ceil(bucket.throttle_seconds() * 1000))

    def debt_ms(self, kind: str, principal: str, client_id: str | None) -> int:
        """How long this client must wait before its next ``kind`` is served (0: now)."""
        bucket = self._bucket(kind, principal, client_id)
        return 0 if bucket is None else self._throttle_ms(bucket)
