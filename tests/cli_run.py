"""Running the `artesian` command in tests, as a user would, from this interpreter."""

from __future__ import annotations

import subprocess
import sys


def artesian(
    *args: str, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artesian.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
