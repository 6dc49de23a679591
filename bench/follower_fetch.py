#!/usr/bin/env python3
"""Fetch from follower (KIP-392): what does reading from the replica in one's rack cost?

    python bench/follower_fetch.py [--rounds 2] [--records 5000] [--rate 1000]

Three brokers sharing one SQLite metadata store, in racks az-a, az-b and az-c, with
RackAwareReplicaSelector; one partition with replicas 1, 2, 3 (broker 1 leads). Then
``artesian bench e2e`` (RECORDS x 100 B at RATE records/s, acks=all, linger.ms=5) with the
consumer's client.rack in the leader's rack (reads from the leader) and in az-b (reads from
broker 2), alternating, ROUNDS each: end-to-end latency percentiles, the bytes each broker
sent to consumers, which shows who served, and the Fetch requests the leader answered per
record (consumers' and followers'). Prints one JSON line.

The producer lingers 5 ms (librdkafka's default) rather than the e2e command's 0: with one
record per request, each acks=all request waits for both followers (about 3 ms on three
brokers sharing two cores) and a connection's requests are answered one at a time, as in
Kafka, so one connection cannot carry 1000 requests/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from scale import Broker, free_port

SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
RACKS = {1: "az-a", 2: "az-b", 3: "az-c"}


def metric(metrics_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def bytes_out(metrics_port: int, topic: str) -> float:
    return metric(metrics_port, f'kafka_server_broker_topic_bytes_out_total{{topic="{topic}"}}')


def fetches(metrics_port: int) -> float:
    return metric(metrics_port, 'kafka_network_requests_total{request="Fetch"}')


def e2e(bootstrap: str, topic: str, records: int, rate: int, rack: str) -> dict[str, float]:
    exe = Path(sys.executable).with_name("artesian")
    out = subprocess.run(
        [
            str(exe),
            "bench",
            "e2e",
            "-b",
            bootstrap,
            "--topic",
            topic,
            "-n",
            str(records),
            "--throughput",
            str(rate),
            "-X",
            f"client.rack={rack}",
            "-X",
            "linger.ms=5",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    summary: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--rate", type=int, default=1000)
    args = ap.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic

    store = tempfile.mkdtemp(prefix="artesian-ffr-")
    metrics = {n: free_port() for n in RACKS}
    brokers = {
        n: Broker(
            {
                "node.id": str(n),
                "broker.rack": rack,
                "replica.selector.class": SELECTOR,
                "artesian.metadata.store.url": f"sqlite:///{store}/metadata.db",
                "artesian.metrics.port": str(metrics[n]),
            }
        )
        for n, rack in RACKS.items()
    }
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    runs: dict[str, list[dict[str, float]]] = {"leader": [], "follower": []}
    served: dict[str, dict[int, float]] = {}
    leader_fetches: dict[str, list[float]] = {"leader": [], "follower": []}
    try:
        time.sleep(3)  # every broker's session in the store
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for i in range(args.rounds):
            for where, rack in (("leader", "az-a"), ("follower", "az-b")):
                topic = f"ffr-{where}-{i}"
                new = NewTopic(topic, 1, replica_assignment=[[1, 2, 3]])
                admin.create_topics([new])[topic].result(30)
                time.sleep(1)
                before = fetches(metrics[1])
                runs[where].append(e2e(bootstrap, topic, args.records, args.rate, rack))
                leader_fetches[where].append((fetches(metrics[1]) - before) / args.records)
                served[topic] = {n: bytes_out(p, topic) for n, p in metrics.items()}
    finally:
        for b in brokers.values():
            b.stop()
        shutil.rmtree(store, ignore_errors=True)
    keys = ("p50_ms", "p99_ms", "max_ms")
    print(
        json.dumps(
            {
                "records": args.records,
                "rate": args.rate,
                "rounds": args.rounds,
                "latency": {
                    w: {k: round(statistics.median(r[k] for r in rs), 2) for k in keys}
                    for w, rs in runs.items()
                },
                "leader_fetches_per_record": {
                    w: round(statistics.median(f), 2) for w, f in leader_fetches.items()
                },
                "bytes_out_by_broker": served,
            }
        )
    )


if __name__ == "__main__":
    main()
