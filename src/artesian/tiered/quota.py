"""ByteRateQuota: a bytes-per-second limit on tiered storage traffic (Kafka's KIP-956
remote.log.manager.copy.max.bytes.per.second and ...fetch.max.bytes.per.second).

A token bucket holding at most one second of the rate (more if asked: the client quotas'
KIP-599 mutation rate saves up its windows' worth): a caller takes what it moves and is
told how long to wait when the bucket is in debt. Kafka measures the rate over sampled windows
(``remote.log.manager.*.quota.window.num``); the bucket gives the same long-run rate with
one number of state and no windows to configure.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["UNLIMITED", "ByteRateQuota"]

UNLIMITED = 2**63 - 1  # Kafka's Long.MAX_VALUE default: no quota


class ByteRateQuota:
    """``burst_seconds``: how much of the rate the bucket holds (one second unless a caller,
    as KIP-599's mutation quota, saves up more)."""

    def __init__(
        self,
        bytes_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        burst_seconds: float = 1.0,
    ):
        self.rate = bytes_per_second
        self.burst_seconds = burst_seconds
        self._clock = clock
        self._tokens = self._capacity
        self._at = clock()

    @property
    def _capacity(self) -> float:
        return float(self.rate) * self.burst_seconds

    @property
    def unlimited(self) -> bool:
        return self.rate >= UNLIMITED

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def throttle_seconds(self) -> float:
        """How long to wait before moving more bytes (0: go ahead)."""
        if self.unlimited:
            return 0.0
        self._refill()
        return 0.0 if self._tokens > 0 else -self._tokens / self.rate

    def set_rate(self, bytes_per_second: float) -> None:
        """A new rate from now on (a dynamic config changed): debt carries over, credit is
        capped at what the bucket holds of the new rate."""
        if not self.unlimited:
            self._refill()
        else:
            self._at = self._clock()
        self.rate = bytes_per_second
        self._tokens = min(self._tokens, self._capacity)

    def cap_debt(self, seconds: float) -> None:
        """Forget debt older than ``seconds`` of the rate (a sampled window would have)."""
        if not self.unlimited:
            self._refill()
            self._tokens = max(self._tokens, -seconds * self.rate)

    def wait_seconds(self, nbytes: int) -> float:
        """How long until ``nbytes`` can move without going into debt (0: now). More than
        the bucket holds waits for a full bucket, so that it can always move in the end."""
        if self.unlimited:
            return 0.0
        self._refill()
        need = min(float(nbytes), self._capacity)
        return 0.0 if self._tokens >= need else (need - self._tokens) / self.rate

    def record(self, nbytes: float) -> None:
        """Bytes moved: they may put the bucket in debt, which later callers wait out."""
        if self.unlimited:
            return
        self._refill()
        self._tokens -= nbytes
