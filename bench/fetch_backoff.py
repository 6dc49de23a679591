#!/usr/bin/env python3
"""Why workload C's consume figure is set by the client: the same 2,000,000 x 100 B log read
with kbench's consumer loop, first with librdkafka's defaults, then with a short
fetch.queue.backoff.ms, against fresh Artesian and Tansu brokers in turn.

    python bench/fetch_backoff.py [--rounds 2] [--messages 2000000] [--size 100]

With the defaults, librdkafka stops fetching for fetch.queue.backoff.ms (1 s) whenever more
than queued.min.messages (100,000) records wait in its queue, so the pace is set by how many
records each fetch brings. Artesian honours max.partition.fetch.bytes (1 MiB) as Kafka does;
a broker that returns more per fetch fills the queue in fewer, larger steps. The table shows
records per Fetch request next to MB/s, so the cause is visible in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(SHARED))

from compare import free_port, peer_command, wait_port  # noqa: E402

CONFIGS = {"librdkafka defaults": {}, "fetch.queue.backoff.ms=20": {"fetch.queue.backoff.ms": 20}}


def consume(bootstrap: str, topic: str, expected: int, extra: dict[str, Any]) -> dict[str, Any]:
    """kbench's consume loop (clock from assignment), plus librdkafka's Fetch request count."""
    from confluent_kafka import Consumer

    stats: dict[str, Any] = {}
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"backoff-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "statistics.interval.ms": 100,
            "stats_cb": lambda s: stats.update(json.loads(s)),
            **extra,
        }
    )
    assigned: list[float] = []
    c.subscribe([topic], on_assign=lambda _c, _p: assigned.append(time.perf_counter()))
    n = nbytes = 0
    deadline = time.perf_counter() + 300
    while n < expected and time.perf_counter() < deadline:
        for m in c.consume(10000, 0.1):
            if m.error() is None:
                n += 1
                nbytes += len(m)
    seconds = time.perf_counter() - assigned[0]
    c.poll(0.3)  # one more statistics callback
    fetches = sum(b["req"].get("Fetch", 0) for b in stats.get("brokers", {}).values())
    c.close()
    return {
        "records": n,
        "MB_per_s": round(nbytes / seconds / 1e6, 2),
        "fetch_requests": fetches,
        "records_per_fetch": round(n / fetches) if fetches else None,
    }


def run_broker(kind: str, cmd: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    port = free_port()
    data = tempfile.mkdtemp(prefix=f"backoff-{kind}-")
    proc = subprocess.Popen(
        cmd.format(port=port, dir=data),
        shell=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port, proc)
        bootstrap = f"127.0.0.1:{port}"
        load = ["--messages", str(args.messages), "--size", str(args.size), "--acks", "all"]
        kbench = [sys.executable, str(SHARED / "kbench.py"), "--bootstrap", bootstrap]
        subprocess.run(
            [*kbench, "--topic", "c", *load, "--skip-latency", "--skip-consume"],
            check=True,
            capture_output=True,
        )
        return {
            name: consume(bootstrap, "c", args.messages, extra) for name, extra in CONFIGS.items()
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--size", type=int, default=100)
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("artesian")
    brokers = {
        "Artesian": f"{exe} broker --listen 127.0.0.1:{{port}} --data-dir {{dir}} --log-level warning",
        "Tansu": peer_command("tansu"),
    }
    runs: dict[str, list[dict[str, dict[str, Any]]]] = {k: [] for k in brokers}
    for _ in range(args.rounds):
        for kind, cmd in brokers.items():
            runs[kind].append(run_broker(kind, cmd, args))
            print(kind, json.dumps(runs[kind][-1]), file=sys.stderr, flush=True)
    print("| consumer config | broker | records per Fetch | consume MB/s |")
    print("|---|---|---|---|")
    for name in CONFIGS:
        mbs = {}
        for kind in brokers:
            per = statistics.median(r[name]["records_per_fetch"] or 0 for r in runs[kind])
            mbs[kind] = statistics.median(r[name]["MB_per_s"] for r in runs[kind])
            print(f"| {name} | {kind} | {per:,.0f} | {mbs[kind]:.1f} |")
        print(f"| {name} | ratio | | **{mbs['Artesian'] / mbs['Tansu']:.2f}** |")


if __name__ == "__main__":
    main()
