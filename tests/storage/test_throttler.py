"""Kafka's Throttler on a clock the test moves: exact naps, no sleeping."""

from __future__ import annotations

import pytest

from artesian.storage.throttler import Throttler


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_naps_for_what_a_period_was_ahead_of_the_rate() -> None:
    clock = Clock()
    charged: list[int] = []
    t = Throttler(1000, clock=clock, on_charged=charged.append)
    assert t.charge(200) == 0.0  # within the first 300 ms and its 300 B: not judged yet
    clock.now += 0.4
    # 1,000 bytes in 0.4 s at 1,000 B/s should have taken 1 s: nap the other 0.6 s.
    assert t.charge(800) == pytest.approx(0.6)
    # The next period starts when the nap ends; being within the rate costs nothing.
    clock.now += 0.6 + 0.5
    assert t.charge(200) == 0.0
    clock.now += 0.31
    assert t.charge(100) == 0.0  # a fresh period: 100 B in 0.31 s is under the rate
    # More than the interval's worth (300 B) ends a period early: a burst pays at once.
    clock.now += 0.01
    assert t.charge(250) == 0.0  # 250 B: still within it
    assert t.charge(150) == pytest.approx(0.4 - 0.01)  # 400 B took 0.01 s of 0.4 s
    assert charged == [200, 800, 200, 100, 250, 150]


def test_a_new_rate_applies_to_the_next_period() -> None:
    clock = Clock()
    t = Throttler(1.7976931348623157e308, clock=clock)  # Kafka's default: no throttle
    clock.now += 1
    assert t.charge(10**12) == 0.0
    t.rate_per_sec = 2000
    assert t.generation == 1
    clock.now += 0.5
    assert t.charge(3000) == pytest.approx(1.0)  # 1.5 s worth in 0.5 s
    # A new rate starts a new period at once, even in the middle of a planned nap.
    t.rate_per_sec = 1.7976931348623157e308
    assert t.generation == 2
    clock.now += 0.4
    assert t.charge(10**9) == 0.0
    t.rate_per_sec = 1.7976931348623157e308  # the same rate: nothing changes
    assert t.generation == 2
