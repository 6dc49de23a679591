"""Clients beyond the Python ones: kcat (librdkafka's CLI) and kafkajs (Node.js).

CI installs both (.ci/run); on a machine without them these tests skip, except under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).parent / "js"


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    """One broker for the module (its tests use topics and groups of their own), where a
    consumer group is assigned at once instead of after the 3 s wait for more members."""
    return module_broker_factory({"group.initial.rebalance.delay.ms": "0"})


def require(available: bool, what: str) -> None:
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing: .ci/run should have installed it")
        pytest.skip(f"{what} is not installed")


def kcat(broker: Any, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        ["kcat", "-b", broker.bootstrap, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def test_kcat_produces_and_consumes_exact_messages(broker: Any) -> None:
    require(shutil.which("kcat") is not None, "kcat")
    lines = [f"k{i}:value-{i}" for i in range(50)]
    kcat(broker, "-P", "-t", "kc", "-K", ":", "-p", "0", stdin="\n".join(lines) + "\n")
    out = kcat(broker, "-C", "-t", "kc", "-o", "beginning", "-e", "-f", "%o %k %s\n")
    assert out.splitlines() == [f"{i} k{i} value-{i}" for i in range(50)]
    meta = json.loads(kcat(broker, "-L", "-J"))
    assert [t["topic"] for t in meta["topics"] if t["topic"] == "kc"] == ["kc"]
    assert meta["brokers"][0]["id"] == 1


def test_kafkajs_admin_idempotent_produce_and_group_consume(broker: Any) -> None:
    require(
        shutil.which("node") is not None and (JS / "node_modules" / "kafkajs").exists(), "kafkajs"
    )
    out = subprocess.run(
        ["node", str(JS / "roundtrip.js"), broker.bootstrap, "js-topic", "30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "js-topic" in result["listed"]
    assert all(a["errorCode"] == 0 for a in result["acks"])
    got = sorted(result["got"], key=lambda m: int(m["key"][1:]))
    assert [(m["key"], m["value"], m["header"], m["partition"]) for m in got] == [
        (f"k{i}", f"v{i}", f"x{i}", i % 3) for i in range(30)
    ]
    # Offsets per partition are exactly 0..9, in order.
    for p in range(3):
        assert [m["offset"] for m in got if m["partition"] == p] == list(range(10))


def test_kafkajs_transactions_are_read_committed(broker: Any) -> None:
    require(
        shutil.which("node") is not None and (JS / "node_modules" / "kafkajs").exists(), "kafkajs"
    )
    out = subprocess.run(
        ["node", str(JS / "transactions.js"), broker.bootstrap, "js-txn"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # a0, a1 at 0, 1 and COMMIT at 2; b0 at 3 and ABORT at 4; c0 at 5 and COMMIT at 6.
    assert result["got"] == [[0, "a0"], [1, "a1"], [5, "c0"]]
