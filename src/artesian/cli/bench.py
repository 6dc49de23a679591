"""``artesian bench``: produce, consume and end-to-end latency benchmarks, shaped like
kafka-producer-perf-test and kafka-consumer-perf-test, through librdkafka."""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from artesian.cli.common import ENV_BOOTSTRAP, PropsOpt, from_java_jaas, parse_kv, reporting

bench_app = typer.Typer(
    help="Benchmarks against any Kafka-compatible broker.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=True, soft_wrap=True, emoji=False)
T = TypeVar("T")

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap-server",
        "-b",
        envvar=ENV_BOOTSTRAP,
        show_envvar=False,
        help=f"HOST:PORT of a broker (env {ENV_BOOTSTRAP}).",
    ),
]
Topic = Annotated[str, typer.Option(help="Topic to use (created if missing).")]
Count = Annotated[int, typer.Option("--num-records", "-n", min=1, help="Records to send or read.")]
Size = Annotated[int, typer.Option("--record-size", "-s", min=1, help="Bytes per record value.")]
Partitions = Annotated[int, typer.Option(help="Partitions when the topic is created.")]
Acks = Annotated[str, typer.Option(help="acks: 0, 1 or all.")]
Compression = Annotated[str, typer.Option(help="none, gzip, snappy, lz4 or zstd.")]
Rate = Annotated[
    float,
    typer.Option("--throughput", min=0, help="Max records/s (0 = as fast as possible)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def _client(
    cls: Callable[[dict[str, object]], T], defaults: dict[str, object], props: list[str] | None
) -> T:
    """A librdkafka client from the bench's defaults and -X overrides; a refused property
    ends the command with librdkafka's message, as in the other commands."""
    with reporting(str(defaults["bootstrap.servers"])):
        conf = {**defaults, **parse_kv(props or (), "-X")}
        from_java_jaas(conf)
        return cls(conf)


@dataclass(slots=True)
class Summary:
    records: int
    bytes: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    transactions: int = 0  # committed, with --transaction-duration-ms

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            "records": self.records,
            "MB_per_s": round(self.bytes / 1e6 / self.seconds, 2) if self.seconds else 0.0,
            "records_per_s": round(self.records / self.seconds, 1) if self.seconds else 0.0,
            "seconds": round(self.seconds, 3),
        }
        if self.transactions:
            out["transactions"] = self.transactions
        lat = sorted(self.latencies_ms)
        if lat:
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999)):
                out[f"{name}_ms"] = round(lat[min(len(lat) - 1, int(q * len(lat)))], 3)
            out["max_ms"] = round(lat[-1], 3)
        return out


# The -X properties an admin client takes too: how to reach and log in to the brokers.
_CONNECTION_PREFIXES = (
    "security.",
    "sasl.",
    "ssl.",
    "socket.",
    "client.",
    "enable.ssl.",
    "enable.sasl.",
    "broker.address.",
)


def _ensure_topic(bootstrap: str, topic: str, partitions: int, props: list[str] | None) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    connection = {
        k: v for k, v in parse_kv(props or (), "-X").items() if k.startswith(_CONNECTION_PREFIXES)
    }
    admin = _client(AdminClient, {"bootstrap.servers": bootstrap, **connection}, None)
    with reporting(bootstrap):  # an unreachable broker or a refusal: a message, not a trace
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise


def _payloads(size: int) -> list[bytes]:
    # Incompressible and varied, so compression and caching cannot flatter the result.
    pool = os.urandom(max(size * 256, 1 << 20))
    return [pool[i : i + size] for i in range(0, len(pool) - size, max(size, 1))][:256]


def _report(kind: str, summary: Summary, as_json: bool) -> None:
    data = summary.as_dict()
    if as_json:
        print(json.dumps({"bench": kind, **data}))
        return
    parts = [f"{k}={v}" for k, v in data.items()]
    console.print(f"[bold]{kind}[/bold]: " + "  ".join(parts))


class _Progress:
    """A live progress line, redrawn at most 4 times a second."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.start = time.perf_counter()
        self.last = 0.0
        # A redrawn line only makes sense on a terminal; logs get the summary alone.
        self.live = sys.stderr.isatty()

    def update(self, done: int, nbytes: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        if self.live:
            sys.stderr.write(
                f"\r{self.label}: {done:,}/{self.total:,} records, {done / elapsed:,.0f} rec/s, "
                f"{nbytes / 1e6 / elapsed:,.1f} MB/s   "
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\n")


@bench_app.command("produce")
def produce(
    bootstrap: Bootstrap = "127.0.0.1:9092",
    topic: Topic = "artesian-bench",
    num_records: Count = 500_000,
    record_size: Size = 1024,
    partitions: Partitions = 1,
    acks: Acks = "all",
    compression: Compression = "none",
    throughput: Rate = 0,
    transaction_duration_ms: Annotated[
        int,
        typer.Option(
            "--transaction-duration-ms",
            min=0,
            help="Commit a transaction every this many ms (0: no transactions), as "
            "kafka-producer-perf-test does.",
        ),
    ] = 0,
    transactional_id: Annotated[
        str, typer.Option(help="transactional.id used with --transaction-duration-ms.")
    ] = "artesian-bench-producer",
    props: PropsOpt = None,
    as_json: AsJson = False,
) -> None:
    """Produce records as fast as allowed; report MB/s and per-record latency percentiles."""
    from confluent_kafka import Producer

    _ensure_topic(bootstrap, topic, partitions, props)
    payloads = _payloads(record_size)
    defaults: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "compression.type": compression,
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "queue.buffering.max.kbytes": 1 << 20,
    }
    if transaction_duration_ms:
        defaults["transactional.id"] = transactional_id
    producer = _client(Producer, defaults, props)
    transactions = 0
    if transaction_duration_ms:
        producer.init_transactions(30)
        producer.begin_transaction()
        txn_started = time.perf_counter()
    latencies: list[float] = []
    progress = _Progress("produce", num_records)
    acked = 0
    errors = 0

    def delivery_callback(sent: float) -> Callable[[object, object], None]:
        def on_delivery(err: object, _msg: object) -> None:
            nonlocal acked, errors
            if err is not None:
                errors += 1
                return
            acked += 1
            latencies.append((time.perf_counter() - sent) * 1000)

        return on_delivery

    start = time.perf_counter()
    stop = _stop_flag()  # Ctrl-C ends the run with what was sent, and its summary
    for i in range(num_records):
        if stop.is_set():
            console.print(f"interrupted after {i} records; finishing those in flight")
            break
        if throughput and i / max(time.perf_counter() - start, 1e-9) > throughput:
            time.sleep(1 / throughput)
        sent = time.perf_counter()
        while True:
            try:
                producer.produce(
                    topic,
                    payloads[i % len(payloads)],
                    on_delivery=delivery_callback(sent),
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        progress.update(acked, acked * record_size)
        if transaction_duration_ms and (sent - txn_started) * 1000 >= transaction_duration_ms:
            producer.commit_transaction(120)  # flushes the transaction's records first
            transactions += 1
            producer.begin_transaction()
            txn_started = time.perf_counter()
    if transaction_duration_ms:
        producer.commit_transaction(120)
        transactions += 1
    producer.flush(120)
    elapsed = time.perf_counter() - start
    progress.update(acked, acked * record_size, force=True)
    progress.close()
    if errors:
        console.print(f"[red]{errors} record(s) failed[/red]")
    summary = Summary(acked, acked * record_size, elapsed, latencies, transactions)
    _report("produce", summary, as_json)
    if errors:
        raise typer.Exit(1)


def _stop_flag() -> threading.Event:
    """Set by Ctrl-C or SIGTERM, instead of KeyboardInterrupt: raised inside librdkafka's
    delivery callbacks, the interrupt surfaced as a SystemError traceback."""
    import signal

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


@bench_app.command("consume")
def consume(
    bootstrap: Bootstrap = "127.0.0.1:9092",
    topic: Topic = "artesian-bench",
    num_records: Count = 500_000,
    props: PropsOpt = None,
    as_json: AsJson = False,
    timeout: Annotated[float, typer.Option(help="Give up after this many idle seconds.")] = 30,
) -> None:
    """Read from the beginning with a fresh group; report MB/s. Uses fetch.queue.backoff.ms=20."""
    from confluent_kafka import Consumer

    consumer = _client(
        Consumer,
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"artesian-bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # librdkafka's 1 s default idles a consumer whose broker outpaces it (README,
            # Performance); -X fetch.queue.backoff.ms=1000 measures that default.
            "fetch.queue.backoff.ms": 20,
        },
        props,
    )
    consumer.subscribe([topic])
    progress = _Progress("consume", num_records)
    count = 0
    nbytes = 0
    start: float | None = None
    idle_since = time.perf_counter()
    while count < num_records:
        msgs = consumer.consume(min(10_000, num_records - count), 0.5)
        now = time.perf_counter()
        if not msgs:
            if now - idle_since > timeout:
                break
            continue
        idle_since = now
        if start is None:
            start = now
        for m in msgs:
            if m.error() is None:
                count += 1
                nbytes += len(m.value() or b"")
        progress.update(count, nbytes)
    elapsed = time.perf_counter() - (start or time.perf_counter())
    progress.update(count, nbytes, force=True)
    progress.close()
    consumer.close()
    _report("consume", Summary(count, nbytes, elapsed), as_json)
    if count < num_records:
        console.print(f"[red]only {count} of {num_records} records arrived[/red]")
        raise typer.Exit(1)


_STAMP = struct.Struct(">d")


@bench_app.command("e2e")
def e2e(
    bootstrap: Bootstrap = "127.0.0.1:9092",
    topic: Topic = "artesian-bench-e2e",
    num_records: Count = 2000,
    record_size: Size = 100,
    throughput: Rate = 1000,
    acks: Acks = "all",
    props: PropsOpt = None,
    as_json: AsJson = False,
) -> None:
    """End-to-end latency: produce at a fixed rate, consume in a group, time each record.
    --property applies to both clients."""
    from confluent_kafka import Consumer, Producer

    _ensure_topic(bootstrap, topic, 1, props)
    latencies: list[float] = []
    ready = threading.Event()
    done = threading.Event()

    consumer = _client(
        Consumer,
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"artesian-e2e-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        },
        props,
    )

    def consume_loop() -> None:
        consumer.subscribe([topic], on_assign=lambda _c, _p: ready.set())
        while not done.is_set():
            m = consumer.poll(0.1)
            if m is None or m.error() is not None:
                continue
            value = m.value() or b""
            if len(value) >= 8:
                latencies.append((time.time() - _STAMP.unpack_from(value)[0]) * 1000)
                if len(latencies) >= num_records:
                    done.set()
        consumer.close()

    thread = threading.Thread(target=consume_loop, daemon=True)
    thread.start()
    if not ready.wait(60):
        console.print("[red]the consumer was not assigned the partition within 60 s[/red]")
        raise typer.Exit(1)
    time.sleep(1.0)  # let the consumer's first fetch start waiting
    producer = _client(
        Producer,
        {"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 0},
        props,
    )
    padding = b"\0" * max(0, record_size - 8)
    progress = _Progress("e2e", num_records)
    start = time.perf_counter()
    for i in range(num_records):
        if throughput:
            delay = start + i / throughput - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        producer.produce(topic, _STAMP.pack(time.time()) + padding)
        producer.poll(0)
        progress.update(len(latencies), len(latencies) * record_size)
    producer.flush(30)
    done.wait(30)
    done.set()
    thread.join(5)
    elapsed = time.perf_counter() - start
    progress.close()
    _report(
        "e2e", Summary(len(latencies), len(latencies) * record_size, elapsed, latencies), as_json
    )
