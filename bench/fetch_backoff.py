#!/usr/bin/env python3
"""What sets the consume figures of workloads A, B and C: the same log read with kbench's
consumer loop, first with librdkafka's defaults, then with fetch.queue.backoff.ms=20, against
fresh Artesian and Tansu brokers in turn.

    python bench/fetch_backoff.py [--rounds 2] [--workloads A,B,C]

With the defaults, librdkafka stops fetching for fetch.queue.backoff.ms (1 s) whenever more
than queued.min.messages (100,000) records or queued.max.messages.kbytes (64 MiB) wait in its
queue. A broker that delivers faster than the application drains that queue fills it and the
consumer then idles for up to a second; a slower broker never fills it. Records per Fetch
request are shown too: Artesian honours max.partition.fetch.bytes (1 MiB) as Kafka does.
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
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(SHARED))

from compare import free_port, peer_command, wait_port  # noqa: E402

CONFIGS = {"librdkafka defaults": {}, "fetch.queue.backoff.ms=20": {"fetch.queue.backoff.ms": 20}}
WORKLOADS = {  # as bench/run_suite.py, acks=all
    "A": {"messages": 500_000, "size": 1024, "partitions": 1},
    "B": {"messages": 500_000, "size": 1024, "partitions": 6},
    "C": {"messages": 2_000_000, "size": 100, "partitions": 1},
}


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
            # Rare, so the statistics do not slow the loop they measure.
            "statistics.interval.ms": 1000,
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
    stats.clear()
    for _ in range(15):  # wait for the next statistics callback
        if stats:
            break
        c.poll(0.2)
    fetches = sum(b["req"].get("Fetch", 0) for b in stats.get("brokers", {}).values())
    c.close()
    return {
        "records": n,
        "MB_per_s": round(nbytes / seconds / 1e6, 2),
        "fetch_requests": fetches,
        "records_per_fetch": round(n / fetches) if fetches else None,
    }


def run_broker(kind: str, cmd: str, workload: dict[str, int]) -> dict[str, dict[str, Any]]:
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
        load = [f"--{k}={v}" for k, v in workload.items()] + ["--acks", "all"]
        kbench = [sys.executable, str(SHARED / "kbench.py"), "--bootstrap", bootstrap]
        subprocess.run(
            [*kbench, "--topic", "c", *load, "--skip-latency", "--skip-consume"],
            check=True,
            capture_output=True,
        )
        return {
            name: consume(bootstrap, "c", workload["messages"], extra)
            for name, extra in CONFIGS.items()
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workloads", default="A,B,C")
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("artesian")
    brokers = {
        "Artesian": f"{exe} broker --listen 127.0.0.1:{{port}} --data-dir {{dir}} --log-level warning",
        "Tansu": peer_command("tansu"),
    }
    names = args.workloads.split(",")
    runs: dict[tuple[str, str], list[dict[str, dict[str, Any]]]] = {}
    for _ in range(args.rounds):
        for name in names:
            for kind, cmd in brokers.items():
                result = run_broker(kind, cmd, WORKLOADS[name])
                runs.setdefault((name, kind), []).append(result)
                print(name, kind, json.dumps(result), file=sys.stderr, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / time.strftime("%Y%m%dT%H%M%SZ-fetch-backoff.json", time.gmtime())
    rows = [{"workload": w, "broker": k, "runs": rs} for (w, k), rs in runs.items()]
    out.write_text(json.dumps(rows, indent=1))
    print(
        "| workload | consumer config | records per Fetch, Artesian / Tansu "
        "| consume MB/s, Artesian / Tansu | ratio |"
    )
    print("|---|---|---|---|---|")
    for name in names:
        for config in CONFIGS:
            per = {}
            mbs = {}
            for kind in brokers:
                rs = runs[(name, kind)]
                per[kind] = statistics.median(r[config]["records_per_fetch"] or 0 for r in rs)
                mbs[kind] = statistics.median(r[config]["MB_per_s"] for r in rs)
            print(
                f"| {name} | {config} | {per['Artesian']:,.0f} / {per['Tansu']:,.0f} "
                f"| {mbs['Artesian']:.1f} / {mbs['Tansu']:.1f} "
                f"| **{mbs['Artesian'] / mbs['Tansu']:.2f}** |"
            )
    print(f"\nraw results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
