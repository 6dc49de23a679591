"""Kafka's Throttler on a clock the test moves: exact naps, no sleeping; and the cleaner's
naps, which a new rate or a stop ends."""

from __future__ import annotations

import threading

import pytest

from artesian.storage.log_cleaner import Cleaner, CleanerConfig, LogCleaningAbortedError
from artesian.storage.throttler import Throttler


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _nap(t: Throttler, nbytes: int) -> float:
    return t.charge(nbytes)[0]


def test_naps_for_what_a_period_was_ahead_of_the_rate() -> None:
    clock = Clock()
    charged: list[int] = []
    t = Throttler(1000, clock=clock, on_charged=charged.append)
    assert _nap(t, 200) == 0.0  # within the first 300 ms and its 300 B: not judged yet
    clock.now += 0.4
    # 1,000 bytes in 0.4 s at 1,000 B/s should have taken 1 s: nap the other 0.6 s.
    assert _nap(t, 800) == pytest.approx(0.6)
    # The next period starts when the nap ends; being within the rate costs nothing.
    clock.now += 0.6 + 0.5
    assert _nap(t, 200) == 0.0
    clock.now += 0.31
    assert _nap(t, 100) == 0.0  # a fresh period: 100 B in 0.31 s is under the rate
    # More than the interval's worth (300 B) ends a period early: a burst pays at once.
    clock.now += 0.01
    assert _nap(t, 250) == 0.0  # 250 B: still within it
    assert _nap(t, 150) == pytest.approx(0.4 - 0.01)  # 400 B took 0.01 s of 0.4 s
    assert charged == [200, 800, 200, 100, 250, 150]


def test_work_charged_during_a_nap_waits_for_its_end_and_its_own_share() -> None:
    clock = Clock()
    t = Throttler(1000, clock=clock)
    assert _nap(t, 1000) == pytest.approx(1.0)  # the period now starts when the nap ends
    clock.now += 0.1  # another thread, while the first naps
    assert _nap(t, 100) == 0.0
    # 1,100 B from the nap's end: 0.9 s until then, plus 1.1 s of its own.
    assert _nap(t, 1000) == pytest.approx(0.9 + 1.1)


def test_a_new_rate_applies_to_the_next_period() -> None:
    clock = Clock()
    t = Throttler(1.7976931348623157e308, clock=clock)  # Kafka's default: no throttle
    clock.now += 1
    assert t.charge(10**12) == (0.0, 0)
    t.rate_per_sec = 2000
    clock.now += 0.5
    nap, generation = t.charge(3000)
    assert (nap, generation) == (pytest.approx(1.0), 1)  # 1.5 s worth in 0.5 s
    # A new rate starts a new period at once, even in the middle of a planned nap.
    t.rate_per_sec = 1.7976931348623157e308
    assert t.generation == 2
    clock.now += 0.4
    assert t.charge(10**9) == (0.0, 2)
    t.rate_per_sec = 1.7976931348623157e308  # the same rate: nothing changes
    assert t.generation == 2


def _napping(cleaner: Cleaner, outcome: list[object]) -> threading.Thread:
    def run() -> None:
        try:
            cleaner._throttle(10_000)  # 10,000 s at 1 B/s
            outcome.append("woke")
        except LogCleaningAbortedError as e:
            outcome.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_cleaners_nap_ends_at_a_new_rate_or_a_stop() -> None:
    slept: list[float] = []
    throttler = Throttler(1, on_throttled=slept.append)
    stop = threading.Event()
    cleaner = Cleaner(CleanerConfig(), stop, throttler)
    outcome: list[object] = []
    thread = _napping(cleaner, outcome)
    while not slept:  # napping, and the metric counts it as it goes
        thread.join(0.05)
    throttler.rate_per_sec = 1e12
    thread.join(30)
    assert not thread.is_alive() and outcome == ["woke"]

    throttler.rate_per_sec = 1
    outcome.clear()
    thread = _napping(cleaner, outcome)
    thread.join(0.3)
    assert thread.is_alive()
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert [type(o) for o in outcome] == [LogCleaningAbortedError]
