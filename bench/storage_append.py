#!/usr/bin/env python3
"""Storage alone: append 1 GiB of 1 MiB batches through the log layer, against the raw
sequential write bandwidth of the same disk, with the same fsync policy, in one run.

    python bench/storage_append.py [--gib 1] [--fsync end|every] [--dir PATH]

Both sides write the same bytes to a fresh file in the same directory; "end" fsyncs once at
the end (Kafka's default: flush.messages unset), "every" after each batch. Prints one JSON
line: MB/s of each side and their ratio (log / raw). Runs alternate raw and log twice and
report the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from artesian.protocol.record_codec import encode_batch  # noqa: E402
from artesian.storage.log import Log  # noqa: E402
from artesian.storage.log_config import LogConfig  # noqa: E402

MIB = 1 << 20


def one_mib_batch() -> bytearray:
    # ~1 MiB of incompressible 1000-byte records, just under max.message.bytes (1048588).
    value = os.urandom(1000)
    now = int(time.time() * 1000)
    return encode_batch([(None, value, now, ()) for _ in range(1035)])


def raw(path: Path, data: bytes, count: int, fsync_every: bool) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    start = time.perf_counter()
    for _ in range(count):
        os.write(fd, data)
        if fsync_every:
            os.fdatasync(fd)
    os.fsync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    return elapsed


def through_log(directory: Path, batch: bytearray, count: int, fsync_every: bool) -> float:
    config = LogConfig(flush_messages=1 if fsync_every else 2**63 - 1)
    now = int(time.time() * 1000)
    log = Log.open(directory, "bench", 0, config, 0, 0, now, clean_shutdown=True)
    start = time.perf_counter()
    for _ in range(count):
        log.append_as_leader(batch, 0, now)
        if fsync_every:
            log.flush()
    log.flush()
    elapsed = time.perf_counter() - start
    log.close()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--fsync", choices=["end", "every"], default="end")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: /tmp)")
    a = ap.parse_args()
    batch = one_mib_batch()
    count = int(a.gib * 1024 * MIB / len(batch))
    total_mb = count * len(batch) / 1e6
    every = a.fsync == "every"
    raw_s: list[float] = []
    log_s: list[float] = []
    for _ in range(2):
        work = Path(tempfile.mkdtemp(prefix="artesian-storage-bench-", dir=a.dir))
        try:
            raw_s.append(raw(work / "raw.bin", bytes(batch), count, every))
            os.unlink(work / "raw.bin")
            log_s.append(through_log(work / "bench-0", batch, count, every))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    raw_mb = total_mb / statistics.median(raw_s)
    log_mb = total_mb / statistics.median(log_s)
    print(
        json.dumps(
            {
                "bytes": count * len(batch),
                "batch_bytes": len(batch),
                "fsync": a.fsync,
                "raw_MB_per_s": round(raw_mb, 1),
                "log_MB_per_s": round(log_mb, 1),
                "ratio": round(log_mb / raw_mb, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
