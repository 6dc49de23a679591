#!/usr/bin/env python3
"""Scale: does a broker with many partitions and idle connections stay fast and quiet?

    python bench/scale.py [--rounds 2] [--topics 100] [--partitions 10] [--idle-conns 100]

1. Workload B's produce phase (500,000 x 1 KiB, acks=all, 6 partitions) on a fresh broker, and
   on a broker that also holds TOPICS x PARTITIONS partitions and IDLE open connections,
   alternating, ROUNDS each: ratio loaded / fresh.
2. CPU of the loaded broker while idle, over 20 s: percent of one core.
3. Metadata for every topic (the 1,000 partitions): round-trip time, first (uncached, and
   paying for the response schema's compile), uncached once warm (after a new topic), and
   median of 200.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KBENCH = ROOT.parent / "shared" / "bench" / "kbench.py"
WORKLOAD_B = ["--messages", "500000", "--size", "1024", "--acks", "all", "--partitions", "6"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="artesian-scale-")
        self.port = free_port()
        exe = Path(sys.executable).with_name("artesian")
        sets = [arg for k, v in (settings or {}).items() for arg in ("--set", f"{k}={v}")]
        self.proc = subprocess.Popen(
            [
                str(exe),
                "broker",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                self.dir,
                "--log-level",
                "warning",
                *sets,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("broker did not start")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def produce_mb_s(broker: Broker, topic: str) -> float:
    out = subprocess.run(
        [
            sys.executable,
            str(KBENCH),
            "--bootstrap",
            broker.bootstrap,
            "--topic",
            topic,
            *WORKLOAD_B,
            "--skip-latency",
            "--skip-consume",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["produce"]["MB_per_s"])


def load(broker: Broker, topics: int, partitions: int, idle: int) -> list[socket.socket]:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic(f"scale-{i}", partitions, 1) for i in range(topics)])
    for f in futures.values():
        f.result(60)
    conns = []
    for i in range(idle):
        s = socket.create_connection(("127.0.0.1", broker.port))
        s.sendall(api_versions_v0(i))
        read_frame(s)
        conns.append(s)
    return conns


def api_versions_v0(correlation: int) -> bytes:
    body = struct.pack(">hhih", 18, 0, correlation, -1)
    return struct.pack(">i", len(body)) + body


def metadata_all_v12(correlation: int) -> bytes:
    client = b"scale"
    body = struct.pack(">hhih", 3, 12, correlation, len(client)) + client + b"\x00"
    body += b"\x00" + b"\x00" + b"\x00" + b"\x00"  # topics null, auto-create, authz op, tags
    return struct.pack(">i", len(body)) + body


def read_frame(s: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return bytes(buf)

    (size,) = struct.unpack(">i", exact(4))
    return exact(size)


def metadata_times(broker: Broker, n: int = 200) -> tuple[float, float, int]:
    s = socket.create_connection(("127.0.0.1", broker.port))
    times = []
    size = 0
    for i in range(n):
        start = time.perf_counter()
        s.sendall(metadata_all_v12(i))
        size = len(read_frame(s))
        times.append((time.perf_counter() - start) * 1000)
    s.close()
    return times[0], statistics.median(times[1:]), size


def metadata_uncached_ms(broker: Broker, rounds: int = 5) -> float:
    """Median time of an all-topics Metadata right after the image changed (a new topic), so
    the answer is built afresh, with the code already warm (the very first request also pays
    for compiling the response schema)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    s = socket.create_connection(("127.0.0.1", broker.port))
    times = []
    for i in range(rounds):
        admin.create_topics([NewTopic(f"scale-bump-{i}", 1, 1)])[f"scale-bump-{i}"].result(30)
        time.sleep(0.5)  # the broker has applied the new topic
        start = time.perf_counter()
        s.sendall(metadata_all_v12(10_000 + i))
        read_frame(s)
        times.append((time.perf_counter() - start) * 1000)
    s.close()
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--idle-conns", type=int, default=100)
    a = ap.parse_args()
    fresh: list[float] = []
    loaded: list[float] = []
    result: dict[str, object] = {}
    for r in range(a.rounds):
        b = Broker()
        try:
            fresh.append(produce_mb_s(b, f"fresh-{r}"))
        finally:
            b.stop()
        b = Broker()
        try:
            conns = load(b, a.topics, a.partitions, a.idle_conns)
            loaded.append(produce_mb_s(b, f"loaded-{r}"))
            if r == a.rounds - 1:
                time.sleep(5)
                cpu0, t0 = b.cpu_seconds(), time.monotonic()
                time.sleep(20)
                idle_pct = (b.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
                first, median, size = metadata_times(b)
                uncached = metadata_uncached_ms(b)
                result.update(
                    idle_cpu_percent_of_core=round(idle_pct, 2),
                    metadata_all_first_ms=round(first, 2),
                    metadata_all_uncached_ms=round(uncached, 2),
                    metadata_all_median_ms=round(median, 3),
                    metadata_response_bytes=size,
                )
            for c in conns:
                c.close()
        finally:
            b.stop()
    result.update(
        partitions=a.topics * a.partitions,
        idle_connections=a.idle_conns,
        produce_MB_per_s_fresh=round(statistics.median(fresh), 1),
        produce_MB_per_s_loaded=round(statistics.median(loaded), 1),
        ratio=round(statistics.median(loaded) / statistics.median(fresh), 3),
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
