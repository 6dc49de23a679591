"""Kafka's Throttler: holds a stream of work (the log cleaner's I/O) to a rate, by sleeping
once per check interval for as long as the bytes seen in it were ahead of the rate.

Sans-I/O: ``charge`` says how long to sleep and the caller sleeps (the cleaner, on its stop
event, so that a shutdown does not wait out a nap, and no longer once the rate changes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CHECK_INTERVAL_MS = 300  # Kafka's LogCleaner throttler checks every 300 ms


class Throttler:
    def __init__(
        self,
        rate_per_sec: float,
        *,
        check_interval_ms: int = CHECK_INTERVAL_MS,
        clock: Callable[[], float] = time.monotonic,
        on_charged: Callable[[int], object] = lambda n: None,
        on_throttled: Callable[[float], object] = lambda s: None,
    ) -> None:
        self._rate = rate_per_sec
        self._interval_s = check_interval_ms / 1000
        self._clock = clock
        self._on_charged = on_charged
        self._on_throttled = on_throttled
        self._lock = threading.Lock()  # cleaner threads share one throttle, as in Kafka
        self._period_start = clock()
        self._observed = 0
        self.generation = 0  # bumped by each new rate, so a nap planned at the old one ends

    def record_throttled(self, seconds: float) -> None:
        """The caller slept this long for the throttle (the metric counts it as it goes)."""
        self._on_throttled(seconds)

    @property
    def rate_per_sec(self) -> float:
        return self._rate

    @rate_per_sec.setter
    def rate_per_sec(self, rate: float) -> None:
        with self._lock:
            if rate == self._rate:
                return
            self._rate = rate
            self._period_start = self._clock()
            self._observed = 0
            self.generation += 1

    def charge(self, nbytes: int) -> tuple[float, int]:
        """Count ``nbytes`` of work; the seconds to sleep now (0 when within the rate), and
        the rate's generation it was planned at (a nap ends when that changes)."""
        self._on_charged(nbytes)
        with self._lock:
            generation = self.generation
            self._observed += nbytes
            now = self._clock()
            elapsed = now - self._period_start
            # A period ends after the check interval, as in Kafka, or (ours) once it has seen
            # more than the interval's worth of bytes: a burst shorter than the interval
            # would otherwise pass unthrottled.
            if self._observed <= 0 or (
                elapsed <= self._interval_s and self._observed <= self._rate * self._interval_s
            ):
                return 0.0, generation
            # The time the bytes of this period should have taken, less the time they did.
            nap = max(0.0, self._observed / self._rate - elapsed)
            self._period_start = now + nap
            self._observed = 0
        return nap, generation
