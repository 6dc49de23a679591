"""Several real broker processes on 127.0.0.1 sharing one metadata store: a cluster for the
replication tests, with sessions and ISR timings shortened so failures show in seconds."""

from __future__ import annotations

import datetime
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kio.schema.metadata.v12 import request as md

from tests.broker_process import BrokerProcess, free_port
from tests.kafka_wire import WireConn, sample_request
from tests.storage.batches import make_batch

FAST = {
    "broker.heartbeat.interval.ms": "200",
    "broker.session.timeout.ms": "1500",
    "replica.lag.time.max.ms": "3000",
    "replica.fetch.backoff.ms": "100",
    "replica.fetch.wait.max.ms": "200",
    "group.initial.rebalance.delay.ms": "0",
}


@dataclass(frozen=True)
class PartitionState:
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader_epoch: int


class Cluster:
    def __init__(
        self,
        root: Path,
        size: int,
        settings: dict[str, str] | None = None,
        store_url: str | None = None,
        node_settings: dict[int, dict[str, str]] | None = None,
    ) -> None:
        """``node_settings``: one broker's own settings (its broker.rack, say), by node id."""
        self.root = root
        self.store_url = store_url or f"sqlite:///{root}/metadata.db"
        self.settings = settings or {}
        self.metrics_ports: dict[int, int] = {}
        self.brokers: dict[int, BrokerProcess] = {}
        for i in range(1, size + 1):
            self._new_broker(i, **(node_settings or {}).get(i, {}))

    def _new_broker(self, node: int, **extra: str) -> BrokerProcess:
        self.metrics_ports[node] = free_port()
        b = self.brokers[node] = BrokerProcess(
            self.root / f"broker{node}",
            {
                "node.id": str(node),
                "artesian.metadata.store.url": self.store_url,
                "artesian.metrics.port": str(self.metrics_ports[node]),
                **FAST,
                **self.settings,
                **extra,
            },
        )
        return b

    def add_broker(self, **extra: str) -> int:
        """Start one more broker with the next id (``extra``: its own settings); returns it
        once the others list it."""
        node = max(self.brokers) + 1
        self._new_broker(node, **extra).start()
        self.wait_for(
            lambda: all(node in self.live_brokers(i) for i in self.running()),
            what=f"broker {node} live",
        )
        return node

    def start(self, together: bool = True) -> Cluster:
        """Start every broker; ``together`` launches them all before waiting for any (the
        operator does the same), else one after the other, in id order."""
        if together:
            for b in self.brokers.values():
                b.launch()
            for b in self.brokers.values():
                b.wait_listening()
        else:
            for b in self.brokers.values():
                b.start()
        self.wait_for(
            lambda: all(len(self.live_brokers(i)) == len(self.brokers) for i in self.brokers)
        )
        return self

    def stop(self) -> None:
        """SIGTERM to every broker at once, then wait for each (a test's teardown)."""
        for b in self.brokers.values():
            b.terminate()
        for b in self.brokers.values():
            try:
                b.stop()  # signalled already: this waits, and closes its log
            except Exception:
                b.kill9()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def running(self) -> list[int]:
        return [i for i, b in self.brokers.items() if b.alive()]

    def any_running(self) -> int:
        return self.running()[0]

    @staticmethod
    def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except (OSError, TimeoutError, ConnectionError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    # -- raw requests to one broker -------------------------------------------------------

    def conn(self, node: int) -> WireConn:
        return WireConn(self.brokers[node].port)

    def metadata(self, node: int, topics: list[str] | None = None) -> Any:
        req = md.MetadataRequest(
            topics=None
            if topics is None
            else tuple(md.MetadataRequestTopic(topic_id=None, name=t) for t in topics),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
        with self.conn(node) as c:
            return c.request(3, 12, req)

    def live_brokers(self, node: int) -> set[int]:
        return {int(b.node_id) for b in self.metadata(node).brokers}

    def partitions(self, topic: str, node: int | None = None) -> dict[int, PartitionState]:
        resp = self.metadata(node or self.any_running(), [topic])
        (t,) = resp.topics
        if int(t.error_code) != 0:
            raise ConnectionError(f"{topic}: error {t.error_code}")  # wait_for retries
        return {
            int(p.partition_index): PartitionState(
                int(p.leader_id),
                tuple(int(r) for r in p.replica_nodes),
                tuple(int(r) for r in p.isr_nodes),
                int(p.leader_epoch),
            )
            for p in t.partitions
        }

    def produce(
        self, node: int, topic: str, partition: int, values: list[bytes], acks: int = -1
    ) -> tuple[int, int]:
        """(error code, base offset) of one Produce v9 of ``values`` as one batch."""
        from tests.storage.batches import Rec

        now = int(time.time() * 1000)
        batch = make_batch([Rec(None, v, now) for v in values])
        req = sample_request(
            0,
            9,
            topic,
            batch=bytes(batch),
            transactional_id=None,
            acks=acks,
            timeout=datetime.timedelta(seconds=10),
            index=partition,
        )
        with self.conn(node) as c:
            resp = c.request(0, 9, req)
        (t,) = resp.responses
        (p,) = t.partition_responses
        return int(p.error_code), int(p.base_offset)

    def metric(self, node: int, name: str, **labels: str) -> float:
        """A sample's value from the broker's Prometheus endpoint (0 when absent): ``name``
        with ``labels``, or a sample named as the exposition writes it (``name{a="b"}``)."""
        if labels:
            from tests.metrics import scrape

            return scrape(self.metrics_ports[node], name, **labels)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_ports[node]}/metrics") as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
        return 0.0

    def log_bytes(self, node: int, topic: str, partition: int) -> bytes:
        """The partition's segment files on ``node``, concatenated in offset order."""
        d = self.brokers[node].data_dir / "logs" / f"{topic}-{partition}"
        return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))
