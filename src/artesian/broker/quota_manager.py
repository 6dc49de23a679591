"""Client quotas (Kafka's ClientQuotaManager, KIP-13/KIP-55): byte rates per user and
client id, for produce and fetch.

A quota is set on an entity: a user, a client id, both, or their defaults. A request
counts against the most specific entity that has a quota for its kind, in Kafka's order:
user+client, user+default client, user, default user+client, default user+default client,
default user, client, default client. Every client matching the same entity shares its
rate. When a client goes over, its response carries ``throttle_time_ms`` and the broker
reads nothing more from that connection until the time is up (KIP-219).

The rate is a token bucket holding one second of the quota (``ByteRateQuota``), where Kafka
samples windows (``quota.window.num`` x ``quota.window.size.seconds``); the long-run rate
is the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from artesian.tiered.quota import ByteRateQuota

__all__ = ["QUOTA_KEYS", "ClientQuotaManager", "Entity"]

# (entity type, name): name None is the type's default entity. Sorted by type.
Entity = tuple[tuple[str, str | None], ...]

USER, CLIENT_ID = "user", "client-id"
# The quota keys Artesian enforces, by the request kind they limit.
QUOTA_KEYS = {"producer_byte_rate": "produce", "consumer_byte_rate": "fetch"}
# A throttle never exceeds what Kafka's defaults allow: 11 windows of 1 s.
MAX_THROTTLE_MS = 11_000


def _precedence(user: str, client_id: str) -> list[Entity]:
    return [
        ((CLIENT_ID, client_id), (USER, user)),
        ((CLIENT_ID, None), (USER, user)),
        ((USER, user),),
        ((CLIENT_ID, client_id), (USER, None)),
        ((CLIENT_ID, None), (USER, None)),
        ((USER, None),),
        ((CLIENT_ID, client_id),),
        ((CLIENT_ID, None),),
    ]


class ClientQuotaManager:
    def __init__(self) -> None:
        self._quotas: dict[Entity, Mapping[str, float]] = {}
        self._buckets: dict[tuple[str, Entity], ByteRateQuota] = {}

    @property
    def active(self) -> bool:
        """Some quota is set: requests must be counted."""
        return bool(self._quotas)

    def update(self, quotas: Mapping[Entity, Mapping[str, float]]) -> None:
        """Replace every quota (from the metadata image); buckets keep their debt."""
        self._quotas = {e: dict(v) for e, v in quotas.items() if v}
        for (kind, entity), bucket in list(self._buckets.items()):
            rate = self._rate(entity, kind)
            if rate is None:
                del self._buckets[(kind, entity)]
            elif rate != bucket.rate:
                bucket.set_rate(rate)

    def _rate(self, entity: Entity, kind: str) -> int | None:
        for key, value in self._quotas.get(entity, {}).items():
            if QUOTA_KEYS.get(key) == kind:
                return max(1, int(value))
        return None

    def _bucket(self, kind: str, principal: str, client_id: str | None) -> ByteRateQuota | None:
        user = principal.partition(":")[2] or principal
        for entity in _precedence(user, client_id or ""):
            rate = self._rate(entity, kind)
            if rate is not None:
                bucket = self._buckets.get((kind, entity))
                if bucket is None:
                    bucket = self._buckets[(kind, entity)] = ByteRateQuota(rate)
                return bucket
        return None

    def record(self, kind: str, principal: str, client_id: str | None, nbytes: int) -> int:
        """Count ``nbytes`` of ``kind`` ("produce" or "fetch"); the throttle time in ms."""
        bucket = self._bucket(kind, principal, client_id)
        if bucket is None:
            return 0
        bucket.record(nbytes)
        return min(MAX_THROTTLE_MS, math.ceil(bucket.throttle_seconds() * 1000))

    def debt_ms(self, kind: str, principal: str, client_id: str | None) -> int:
        """How long this client must wait before its next ``kind`` is served (0: now)."""
        bucket = self._bucket(kind, principal, client_id)
        if bucket is None:
            return 0
        return min(MAX_THROTTLE_MS, math.ceil(bucket.throttle_seconds() * 1000))
