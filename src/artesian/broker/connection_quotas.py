"""Kafka's ConnectionQuotas: how many connections a broker takes, per client address and in
all (``max.connections.per.ip``, ``max.connections.per.ip.overrides``, ``max.connections``).

A connection over a limit is closed as soon as it is accepted, with a log line naming the
limit. One over its address's ``connection_creation_rate`` quota (KIP-612, kept by the
client quota manager) is held unserved for the time the rate asks, then closed. Kafka does the same for an address over its limit; at ``max.connections`` Kafka stops
accepting until a connection closes instead, leaving the newcomers in the listen backlog.
Connections on the inter-broker listener are never refused for ``max.connections`` when the
broker has other listeners, as in Kafka, so a broker at its limit still replicates. The limits are dynamic broker configs, read
at each accept.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

from artesian.broker.quota_manager import normal_address
from artesian.config.broker import parse_connection_overrides

if TYPE_CHECKING:
    from artesian.broker.quota_manager import ClientQuotaManager
    from artesian.config.broker import BrokerConfig

__all__ = ["ConnectionQuotas", "Refusal"]

PER_IP = "max.connections.per.ip"
OVERRIDES = "max.connections.per.ip.overrides"
TOTAL = "max.connections"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # the limit, for the log line
    kind: str  # the metric's label: per_ip, total or rate
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
        self._total = 0
        self._overrides: tuple[str, dict[str, int]] = ("", {})

    def _limit_for(self, address: str) -> int:
        raw = str(self._config.get(OVERRIDES) or "")
        if raw != self._overrides[0]:
            try:
                self._overrides = (raw, parse_connection_overrides(raw))
            except ValueError:
                self._overrides = (raw, {})  # refused when set; kept from older versions
        return self._overrides[1].get(address, self._config.get_int(PER_IP))

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
        address = normal_address(peer_host)
        if not protected:
            wait_ms = self._client_quotas.admit_connection(address)
            if wait_ms > 0:
                return Refusal(
                    f"{address} opens connections faster than its connection_creation_rate "
                    f"quota; closing it in {wait_ms} ms",
                    "rate",
                    wait_ms,
                )
        limit = self._limit_for(address)
        if self._per_address[address] >= limit:
            return Refusal(
                f"{address} already has the configured maximum of {limit} connections "
                f"({OVERRIDES if address in self._overrides[1] else PER_IP}); raise it if "
                "this client needs more, or have it share its connections",
                "per_ip",
            )
        self._per_address[address] += 1
        self._total += 1
        return None

    def release(self, peer_host: str) -> None:
        """A connection ``admit`` took has closed."""
        address = normal_address(peer_host)
        self._total -= 1
        left = self._per_address[address] - 1
        if left > 0:
            self._per_address[address] = left
        else:
            del self._per_address[address]
