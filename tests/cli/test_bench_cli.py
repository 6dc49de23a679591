"""`artesian bench`: produce, consume and e2e run against a real broker and report figures."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

BENCH = [sys.executable, "-m", "artesian.cli.main", "bench"]


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    """One broker for the module (its tests use topics of their own), where a consumer group
    is assigned at once instead of after the 3 s wait for more members."""
    return module_broker_factory({"group.initial.rebalance.delay.ms": "0"})


def bench(broker: Any, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "artesian.cli.main",
            "bench",
            *args,
            "-b",
            broker.bootstrap,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bench_produce_consume_and_e2e_report_every_record(broker: Any) -> None:
    produced = bench(broker, "produce", "--topic", "pt", "-n", "3000", "-s", "200", "--acks", "1")
    assert produced["bench"] == "produce"
    assert produced["records"] == 3000
    assert {"MB_per_s", "records_per_s", "p50_ms", "p95_ms", "p99_ms", "p99.9_ms", "max_ms"} <= set(
        produced
    )
    assert produced["p50_ms"] <= produced["p99_ms"] <= produced["max_ms"]

    consumed = bench(broker, "consume", "--topic", "pt", "-n", "3000")
    assert (consumed["bench"], consumed["records"]) == ("consume", 3000)

    e2e = bench(broker, "e2e", "--topic", "lat", "-n", "200", "--throughput", "400")
    assert (e2e["bench"], e2e["records"]) == ("e2e", 200)
    assert 0 <= e2e["p50_ms"] <= e2e["max_ms"]


def test_bench_client_properties(broker: Any) -> None:
    bench(broker, "produce", "--topic", "props", "-n", "500", "-s", "100", "-X", "linger.ms=0")
    # A 1 KiB partition fetch limit still reads everything, batch by batch.
    consumed = bench(
        broker, "consume", "--topic", "props", "-n", "500", "-X", "max.partition.fetch.bytes=1024"
    )
    assert consumed["records"] == 500

    for bad, message in (
        ("nonsense", "error: -X 'nonsense': expected key=value"),
        ("no.such.property=1", 'No such configuration property: "no.such.property"'),
    ):
        proc = subprocess.run(
            [*BENCH, "consume", "-b", broker.bootstrap, "--topic", "props", "-X", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1
        assert message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_bench_produce_in_transactions(broker: Any) -> None:
    from confluent_kafka import Consumer, TopicPartition

    produced = bench(
        broker,
        "produce",
        "--topic",
        "txn-bench",
        "-n",
        "3000",
        "-s",
        "100",
        "--transaction-duration-ms",
        "20",
    )
    assert produced["records"] == 3000
    transactions = produced["transactions"]
    assert transactions >= 1
    # Every transaction that wrote records ended with a COMMIT marker after them.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "txn-bench-check"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition("txn-bench", 0), timeout=30)
    finally:
        c.close()
    assert low == 0 and 1 <= high - 3000 <= transactions
    # A read_committed consumer (librdkafka's default) reads all of them.
    consumed = bench(broker, "consume", "--topic", "txn-bench", "-n", "3000")
    assert consumed["records"] == 3000


def test_ctrl_c_ends_a_bench_with_its_summary(broker: Any) -> None:
    """Ctrl-C mid-run stops sending, waits for what is in flight and reports it: no
    traceback (raised inside librdkafka's callbacks, it was a SystemError)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "artesian.cli.main",
            "bench",
            "produce",
            "-b",
            broker.bootstrap,
            "-n",
            "100000000",
            "-s",
            "100",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr and "interrupted after" in stderr, stderr
    summary = json.loads(stdout)
    assert 0 < summary["records"] < 100_000_000
