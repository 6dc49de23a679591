"""The byte-rate quota behind remote.log.manager.copy/fetch.max.bytes.per.second, on a clock
the test moves by hand."""

from __future__ import annotations

import pytest

from artesian.tiered.quota import UNLIMITED, ByteRateQuota


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_second_of_the_rate_goes_at_once_then_callers_wait_out_the_debt() -> None:
    clock = Clock()
    q = ByteRateQuota(1000, clock)
    assert q.throttle_seconds() == 0
    q.record(600)
    assert q.throttle_seconds() == 0  # 400 bytes of the first second left
    q.record(900)  # 500 bytes in debt
    assert q.throttle_seconds() == 0.5
    clock.now += 0.25
    assert q.throttle_seconds() == 0.25
    clock.now += 0.25
    assert q.throttle_seconds() == 0  # debt paid: exactly 1500 bytes in 0.5 s + the burst
    clock.now += 10
    q.record(1000)  # the bucket refilled to one second's worth, no more
    assert q.throttle_seconds() == 0
    q.record(1)
    assert q.throttle_seconds() == 0.001


def test_the_default_is_unlimited() -> None:
    q = ByteRateQuota(UNLIMITED, Clock())
    q.record(10**15)
    assert q.unlimited and q.throttle_seconds() == 0


def test_waiting_for_room_before_moving() -> None:
    clock = Clock()
    q = ByteRateQuota(1000, clock)
    assert q.wait_seconds(1000) == 0  # a full bucket holds a second of the rate
    q.record(700)
    assert q.wait_seconds(300) == 0
    assert q.wait_seconds(500) == pytest.approx(0.2)  # nothing is taken by asking
    clock.now += 0.2
    assert q.wait_seconds(500) == 0
    # More than the bucket holds waits for a full bucket, not for ever.
    assert q.wait_seconds(5000) == pytest.approx(0.5)
    clock.now += 0.5
    assert q.wait_seconds(5000) == 0
    q.record(5000)  # then moves, and the debt makes later callers wait
    assert q.wait_seconds(1) == pytest.approx(4.001)
