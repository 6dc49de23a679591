"""How a request's share of the event loop is measured for request_percentage: the steps
of its handler count, the time it waits between them does not, and the handler's result,
exceptions and cancellation pass through untouched."""

from __future__ import annotations

import asyncio
import time

import pytest

from artesian.broker.connection import LoopTimed


def _hold_the_loop(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def _handler(cleaned: list[str]) -> str:
    try:
        _hold_the_loop(0.02)
        await asyncio.sleep(1.0)
        _hold_the_loop(0.02)
        return "answered"
    except BaseException as e:
        cleaned.append(type(e).__name__)
        raise
    finally:
        cleaned.append("finally")


def test_only_the_steps_of_a_handler_count() -> None:
    async def main() -> None:
        cleaned: list[str] = []
        timed = LoopTimed(_handler(cleaned), 0.005)  # the decode's 5 ms come first
        assert await timed == "answered"
        # 5 + 20 + 20 ms held; the second asleep is not counted.
        assert 0.045 <= timed.seconds < 0.9, timed.seconds
        assert cleaned == ["finally"]

    asyncio.run(main())


def test_errors_and_cancellation_reach_the_handler_and_its_caller() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        _hold_the_loop(0.01)
        raise ValueError("bad partition")

    async def main() -> None:
        timed = LoopTimed(failing(), 0.0)
        with pytest.raises(ValueError, match="bad partition"):
            await timed
        assert timed.seconds >= 0.01  # the step that raised is counted

        cleaned: list[str] = []
        task = asyncio.ensure_future(_await(LoopTimed(_handler(cleaned), 0.0)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The handler itself was cancelled (not closed), as it would be without the timing.
        assert cleaned == ["CancelledError", "finally"]

    asyncio.run(main())


async def _await(timed: LoopTimed) -> object:
    return await timed
