"""kcat and kafkajs round trips against a broker, for the tests that check other clients
log in (SCRAM over TLS, OAUTHBEARER): produce, then read back with exact offsets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from tests.clients.test_other_clients import JS, require


def kcat_round_trip(args: list[str], topic: str, count: int) -> None:
    """``count`` keyed records through kcat (``args``: -b and its -X settings), read back
    from the beginning at offsets 0..count-1."""
    require(shutil.which("kcat") is not None, "kcat")
    kcat = ["kcat", *args]
    lines = "".join(f"k{i}:kcat-{i}\n" for i in range(count))
    subprocess.run(
        [*kcat, "-P", "-t", topic, "-K", ":"], input=lines, text=True, check=True, timeout=60
    )
    out = subprocess.run(
        [*kcat, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%o %k %s\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.splitlines() == [f"{i} k{i} kcat-{i}" for i in range(count)]


def kafkajs_round_trip(bootstrap: str, topic: str, count: int, security: dict[str, Any]) -> None:
    """kafkajs creates ``topic`` with 3 partitions, produces ``count`` records round robin
    and reads them back in a group: each partition's offsets from 0. ``security`` is
    roundtrip.js's KAFKAJS_SECURITY."""
    require(
        shutil.which("node") is not None and (JS / "node_modules" / "kafkajs").exists(), "kafkajs"
    )
    ran = subprocess.run(
        ["node", str(JS / "roundtrip.js"), bootstrap, topic, str(count)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KAFKAJS_SECURITY": json.dumps(security)},
    )
    assert ran.returncode == 0, ran.stderr
    got = sorted(
        json.loads(ran.stdout.strip().splitlines()[-1])["got"], key=lambda m: int(m["key"][1:])
    )
    assert [(m["key"], m["value"], m["partition"]) for m in got] == [
        (f"k{i}", f"v{i}", i % 3) for i in range(count)
    ]
    for p in range(3):
        assert [m["offset"] for m in got if m["partition"] == p] == list(range(count // 3))
