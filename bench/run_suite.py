#!/usr/bin/env python3
"""The standard benchmark suite: workloads A, B and C through ../shared/bench/compare.py,
Artesian against the peer broker (Tansu by default), in one run each, with ratios.

    python bench/run_suite.py [--rounds 2] [--only A,B] [--peer tansu]

Writes bench/results/<timestamp>.json and prints a Markdown table of medians and ratios
(the README's performance section is this table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPARE = ROOT.parent / "shared" / "bench" / "compare.py"
RESULTS = ROOT / "bench" / "results"

WORKLOADS = {
    "A": ["--messages", "500000", "--size", "1024", "--acks", "all", "--partitions", "1"],
    "B": ["--messages", "500000", "--size", "1024", "--acks", "all", "--partitions", "6"],
    "C": ["--messages", "2000000", "--size", "100", "--acks", "all", "--partitions", "1"],
}

FIGURES = [
    ("produce_MB_per_s", "produce MB/s"),
    ("consume_MB_per_s", "consume MB/s"),
    ("latency_p50_ms", "e2e latency p50 ms"),
    ("latency_p99_ms", "e2e latency p99 ms"),
    ("produce_broker_cpu_s", "broker CPU s, produce"),
    ("consume_broker_cpu_s", "broker CPU s, consume"),
]


def artesian_command() -> str:
    exe = Path(sys.executable).with_name("artesian")
    return f"{exe} broker --listen 127.0.0.1:{{port}} --data-dir {{dir}} --log-level warning"


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    return f"{platform.machine()}, {cpus} cores{mem}, Python {platform.python_version()}"


def run(name: str, rounds: int, peer: str) -> dict[str, object]:
    cmd = [
        sys.executable,
        str(COMPARE),
        "--rounds",
        str(rounds),
        "--peer",
        peer,
        "--candidate-cmd",
        artesian_command(),
        "--",
        *WORKLOADS[name],
    ]
    print(f"workload {name}: {' '.join(WORKLOADS[name])}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    runs = [json.loads(x) for x in out.stderr.splitlines() if x.startswith("{")]
    summary = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    rss = {
        kind: max((r.get("broker_peak_rss_mb") or 0) for r in runs if r.get("kind") == kind)
        if any(r.get("kind") == kind for r in runs)
        else None
        for kind in ("candidate", "peer")
    }
    return {"workload": name, "args": WORKLOADS[name], "summary": summary, "runs": runs, "rss": rss}


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| workload | figure | Artesian | Tansu | ratio |",
        "|---|---|---|---|---|",
    ]
    for res in results:
        summary = res["summary"]
        assert isinstance(summary, dict)
        cand, peer, ratio = (summary.get(k, {}) for k in ("candidate", "peer", "ratio"))
        for key, label in FIGURES:
            lines.append(
                f"| {res['workload']} | {label} | {cand.get(key)} | {peer.get(key)} | "
                f"{ratio.get(key)} |"
            )
        rss = res["rss"]
        assert isinstance(rss, dict)
        c, p = rss.get("candidate"), rss.get("peer")
        r = round(c / p, 3) if c and p else None
        lines.append(f"| {res['workload']} | broker peak RSS MB | {c} | {p} | {r} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="A,B,C", help="comma-separated workloads")
    ap.add_argument("--peer", default="tansu")
    a = ap.parse_args()
    results = [run(name, a.rounds, a.peer) for name in a.only.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps({"machine": machine(), "results": results}, indent=1))
    print(f"machine: {machine()}\n")
    print(table(results))
    print(f"\nraw results: {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
