"""Kill a cleaning round in the middle of its segment swap, as a process killed there would
stop: the chosen ``os.replace`` raises, and the test then reopens the directory."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from artesian.storage.log import Log
from artesian.storage.log_cleaner import LogCleaner


def clean_and_crash_in_swap(
    log: Log, cleaner: LogCleaner, crash: Callable[[str, int], bool], after_rename: bool = False
) -> None:
    """Run one cleaning round whose swap dies at the first rename for which
    ``crash(destination, n)`` holds (n counts the swap's renames from 1): before that rename,
    or right after it with ``after_rename``."""
    real_replace = os.replace
    calls = 0

    def crashing(src: object, dst: object) -> None:
        nonlocal calls
        calls += 1
        if not crash(str(dst), calls):
            real_replace(src, dst)  # type: ignore[arg-type]
            return
        if after_rename:
            real_replace(src, dst)  # type: ignore[arg-type]
        raise KeyboardInterrupt("simulated crash")

    real_swap = log.replace_segments

    def swap(*args: object, **kw: object) -> bool:
        os.replace = crashing  # type: ignore[assignment]
        try:
            return real_swap(*args, **kw)  # type: ignore[arg-type]
        finally:
            os.replace = real_replace

    log.replace_segments = swap  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        cleaner.clean_once()
