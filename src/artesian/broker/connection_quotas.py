"""Kafka's ConnectionQuotas: how many connections a broker takes, per client address, per
listener and in all (``max.connections.per.ip``, ``max.connections.per.ip.overrides``,
``listener.name.<listener>.max.connections``, ``max.connections``).

A connection over a limit is closed as soon as it is accepted, with a log line naming the
limit. One over its address's ``connection_creation_rate`` quota (KIP-612, kept by the
client quota manager) is held unserved for the time the rate asks, then closed. Kafka does
the same for an address over its limit; at ``max.connections`` Kafka stops accepting until a
connection closes instead, leaving the newcomers in the listen backlog. Connections on the
inter-broker listener are never refused for ``max.connections`` when the broker has other
listeners, as in Kafka, so a broker at its limit still replicates. The limits are dynamic
broker configs, read at each accept.

New connections beyond ``max.connection.creation.rate`` (the broker's, and a listener's
own ``listener.name.<listener>.max.connection.creation.rate``) are held unserved until the
rate allows them, then served, where Kafka's acceptor waits before taking them.

A logical cluster's principals share ``artesian.logical.cluster.max.connections`` on each
broker, counted once the principal is known (a login, or a TLS client's certificate): one
over it is answered, then closed after ``connection.failed.authentication.delay.ms``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from artesian.broker.quota_manager import is_address, normal_address
from artesian.config.broker import parse_connection_overrides
from artesian.tiered.quota import ByteRateQuota

if TYPE_CHECKING:
    from artesian.broker.quota_manager import ClientQuotaManager
    from artesian.config.broker import BrokerConfig

__all__ = ["ConnectionQuotas", "Refusal"]

log = logging.getLogger("artesian.connection")

PER_IP = "max.connections.per.ip"
OVERRIDES = "max.connections.per.ip.overrides"
TOTAL = "max.connections"
LOGICAL_CLUSTER = "artesian.logical.cluster.max.connections"
CREATION_RATE = "max.connection.creation.rate"
_NO_RATE = 2_147_483_647  # the default, Int.MAX: no limit
_MAX_HOLD_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # the limit, for the log line
    kind: str  # the metric's label: per_ip, listener, total or rate
    close_after_ms: int = 0  # 0: close at once


class ConnectionQuotas:
    def __init__(
        self,
        config: BrokerConfig,
        inter_broker_listener: str | None,
        client_quotas: ClientQuotaManager,
    ) -> None:
        self._config = config
        self._client_quotas = client_quotas
        self._inter_broker_listener = inter_broker_listener
        self._per_address: collections.Counter[str] = collections.Counter()
        self._per_listener: collections.Counter[str] = collections.Counter()
        self._per_logical_cluster: collections.Counter[str] = collections.Counter()
        # max.connection.creation.rate's buckets: the broker's (None) and each listener's.
        self._creation_rates: dict[str | None, ByteRateQuota] = {}
        self._total = 0
        self._overrides_raw = ""
        self._overrides: dict[str, int] = {}  # by address
        self._resolving: asyncio.Task[None] | None = None

    def _limit_for(self, address: str) -> tuple[int, bool]:
        """(the limit for ``address``, whether an override set it)."""
        raw = str(self._config.get(OVERRIDES) or "")
        if raw != self._overrides_raw:
            self._read_overrides(raw)
        limit = self._overrides.get(address)
        if limit is None:
            return self._config.get_int(PER_IP), False
        return limit, True

    def _read_overrides(self, raw: str) -> None:
        """Addresses apply at once; host names once resolved, in the background (Kafka
        resolves them when the config is set; a resolver must not stall connections)."""
        self._overrides_raw = raw
        try:
            written = parse_connection_overrides(raw)
        except ValueError:
            written = {}  # refused when set; one written by another version is left out
        self._overrides = {}
        names: dict[str, int] = {}
        for host, limit in written.items():
            if is_address(host):
                self._overrides[normal_address(host)] = limit
            else:
                names[host] = limit
        if names:
            self._resolving = asyncio.get_running_loop().create_task(self._resolve(raw, names))

    async def _resolve(self, raw: str, names: dict[str, int]) -> None:
        loop = asyncio.get_running_loop()
        for name, limit in names.items():
            try:
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except OSError as e:
                log.warning(
                    "%s: cannot resolve %s (%s); its limit applies once it resolves, at the "
                    "next change of the setting",
                    OVERRIDES,
                    name,
                    e,
                )
                continue
            if raw != self._overrides_raw:
                return  # the setting changed meanwhile
            for info in infos:
                self._overrides.setdefault(normal_address(str(info[4][0])), limit)

    def accept_throttle_ms(self, listener: str) -> int:
        """KIP-612's ``max.connection.creation.rate``, the broker's and ``listener``'s: how
        long to hold a connection just admitted before serving it (0: serve it now). It is
        counted now, so the connections after it wait their turn, as those behind Kafka's
        throttled acceptor do; no hold passes ``_MAX_HOLD_SECONDS`` (Kafka's backlog bounds
        its queue). The inter-broker listener beside others is held by its own rate alone."""
        wait = 0.0
        for bucket in self._creation_buckets(listener):
            if bucket is None:  # a rate of 0: no new connection at all, one a second
                wait = max(wait, 1.0)
                continue
            bucket.cap_debt(_MAX_HOLD_SECONDS)
            wait = max(wait, bucket.wait_seconds(1))
            bucket.record(1)
        return math.ceil(wait * 1000)

    def refund_creation(self, listener: str) -> None:
        """A held connection closed before its turn: the ones after it need not wait for it."""
        for bucket in self._creation_buckets(listener):
            if bucket is not None:
                bucket.record(-1)

    def _creation_buckets(self, listener: str) -> list[ByteRateQuota | None]:
        """The listener's bucket and, but for the protected inter-broker listener, the
        broker's (None for a rate of 0; none for an unlimited one)."""
        rates: list[tuple[str | None, int]] = [
            (listener, int(str(self._config.for_listener(listener, CREATION_RATE))))
        ]
        if listener != self._inter_broker_listener:
            rates.append((None, self._config.get_int(CREATION_RATE)))
        buckets: list[ByteRateQuota | None] = []
        for key, rate in rates:
            if rate >= _NO_RATE:
                continue
            if rate <= 0:
                buckets.append(None)
                continue
            bucket = self._creation_rates.get(key)
            if bucket is None:
                bucket = self._creation_rates[key] = ByteRateQuota(rate)
            elif bucket.rate != rate:
                bucket.set_rate(rate)
            buckets.append(bucket)
        return buckets

    def admit(self, peer_host: str, listener: str) -> Refusal | None:
        """Count a new connection from ``peer_host`` on ``listener``; None when it may stay,
        else why it may not (it is not counted then). Kafka's order: the broker's limit,
        the address's rate, then its count."""
        protected = listener == self._inter_broker_listener
        total = self._config.get_int(TOTAL)
        if self._total >= total and not protected:
            return Refusal(
                f"the broker already has the configured maximum of {total} connections "
                f"({TOTAL}); raise it, or spread the clients over more brokers",
                "total",
            )
        own = int(str(self._config.for_listener(listener, TOTAL)))  # max.connections if unset
        if self._per_listener[listener] >= own:
            return Refusal(
                f"listener {listener} already has the configured maximum of {own} connections "
                f"(listener.name.{listener.lower()}.{TOTAL}); raise it, or spread the clients "
                "over more brokers",
                "listener",
            )
        address = normal_address(peer_host)
        if not protected:  # the inter-broker listener beside others: brokers' own traffic
            wait_ms = self._client_quotas.admit_connection(address)
            if wait_ms > 0:
                return Refusal(
                    f"{address} opens connections faster than its connection_creation_rate "
                    f"quota; closing it in {wait_ms} ms",
                    "rate",
                    wait_ms,
                )
        limit, overridden = self._limit_for(address)
        if self._per_address[address] >= limit:
            return Refusal(
                f"{address} already has the configured maximum of {limit} connections "
                f"({OVERRIDES if overridden else PER_IP}); raise it if "
                "this client needs more, or have it share its connections",
                "per_ip",
            )
        self._per_address[address] += 1
        self._per_listener[listener] += 1
        self._total += 1
        return None

    def admit_logical_cluster(self, lkc: str) -> Refusal | None:
        """Count a connection whose principal works in logical cluster ``lkc``, once it is
        known; None when it may stay, else why not (it is not counted then). One tenant
        must not take the connections its neighbours need."""
        limit = self._config.get_int(LOGICAL_CLUSTER)
        if self._per_logical_cluster[lkc] >= limit:
            return Refusal(
                f"logical cluster {lkc} already has the configured maximum of {limit} "
                f"connections to this broker ({LOGICAL_CLUSTER}); its clients should share "
                "their connections",
                "logical_cluster",
            )
        self._per_logical_cluster[lkc] += 1
        return None

    def logical_cluster_connections(self) -> dict[str, int]:
        """Connections counted by logical cluster (a copy, taken in one step: scrapes read
        it from their own thread)."""
        return dict(list(self._per_logical_cluster.items()))

    def release_logical_cluster(self, lkc: str) -> None:
        left = self._per_logical_cluster[lkc] - 1
        if left > 0:
            self._per_logical_cluster[lkc] = left
        else:
            del self._per_logical_cluster[lkc]

    def release(self, peer_host: str, listener: str) -> None:
        """A connection ``admit`` took has closed."""
        address = normal_address(peer_host)
        self._total -= 1
        self._per_listener[listener] -= 1
        left = self._per_address[address] - 1
        if left > 0:
            self._per_address[address] = left
        else:
            del self._per_address[address]
