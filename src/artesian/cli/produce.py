"""``artesian produce``: send lines from stdin or a file as messages (like kafka-console-producer)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from confluent_kafka import KafkaError, Producer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    ClientOptions,
    CliError,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    err,
    fail,
    from_kafka_error,
    parse_kv,
    print_json,
    reporting,
    track_client,
)

ACKS = {"0": "0", "1": "1", "all": "all", "-1": "all"}
COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")
MAX_ERRORS_SHOWN = 10


@dataclass(slots=True)
class _Stats:
    sent: int = 0
    delivered: int = 0
    bytes: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append(message)
            err.print(f"[red]error:[/red] {message}")


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(bytes consumed, line without its line ending)."""
    for raw in stream:
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if line.endswith(b"\r"):
            line = line[:-1]
        yield len(raw), line


def _check_topic(
    producer: Producer, opts: ClientOptions, topic: str, partition: int | None
) -> None:
    md = producer.list_topics(topic, timeout=opts.timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        code = None if t is None or t.error is None else t.error.code()
        if code in (None, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE):
            # LEADER_NOT_AVAILABLE is the answer while an auto-created topic is being made.
            if code == KafkaError.LEADER_NOT_AVAILABLE:
                return
            fail(
                f"topic {topic!r} does not exist",
                f"Create it with `artesian topic create {topic}` (auto.create.topics.enable "
                "is off on this broker).",
            )
        assert t is not None and t.error is not None
        raise from_kafka_error(t.error, opts.bootstrap, f"topic {topic!r}: ")
    if partition is not None and partition not in t.partitions:
        fail(
            f"topic {topic!r} has no partition {partition}",
            f"It has partitions 0-{len(t.partitions) - 1}; add more with "
            f"`artesian topic alter {topic} --partitions N`.",
        )


def produce(
    topic: Annotated[str, typer.Argument(help="Topic to write to.")],
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read lines from this file, not stdin.")
    ] = None,
    key_separator: Annotated[
        str | None,
        typer.Option(
            "--key-separator", "-K", help="Each line is KEY<SEP>VALUE (split at the first SEP)."
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="Header k=v added to every message. Repeatable."),
    ] = None,
    partition: Annotated[
        int | None,
        typer.Option("--partition", "-p", help="Write to this partition (default: by key)."),
    ] = None,
    acks: Annotated[str, typer.Option("--acks", help="0, 1 or all.")] = "all",
    compression: Annotated[
        str, typer.Option("--compression", help="none, gzip, snappy, lz4 or zstd.")
    ] = "none",
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Send each line of stdin (or --file) as one message; print a summary."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        if acks not in ACKS:
            fail(f"--acks {acks!r}: expected 0, 1 or all", code=2)
        if compression not in COMPRESSION:
            fail(f"--compression {compression!r}: expected one of {', '.join(COMPRESSION)}", code=2)
        if key_separator == "":
            fail("--key-separator must not be empty", "Example: --key-separator :", code=2)
        headers = [(k, v.encode()) for k, v in parse_kv(header or [], "--header").items()]
        sep = None if key_separator is None else key_separator.encode()
        opts.check_reachable()
        producer = track_client(
            Producer(
                opts.config(
                    **{
                        "acks": ACKS[acks],
                        "compression.type": compression,
                        "linger.ms": 5,
                        # A message that cannot be delivered in time is reported, not retried forever.
                        "message.timeout.ms": int(opts.timeout * 1000),
                    }
                )
            )
        )
        _check_topic(producer, opts, topic, partition)
        stats = _Stats()
        started = time.monotonic()
        if file is None:
            _send_all(producer, topic, partition, sep, headers, sys.stdin.buffer, stats, None)
        else:
            try:
                stream = file.open("rb")
            except OSError as e:
                fail(f"--file {file}: {e.strerror or e}")
            with stream, _progress(file) as progress:
                task = progress.add_task("producing", total=file.stat().st_size)
                _send_all(
                    producer,
                    topic,
                    partition,
                    sep,
                    headers,
                    stream,
                    stats,
                    lambda n: progress.advance(task, n),
                )
        _report(stats, topic, time.monotonic() - started, as_json)


def _progress(file: Path) -> Progress:
    return Progress(
        TextColumn(f"[bold]{file.name}[/bold]"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def _send_all(
    producer: Producer,
    topic: str,
    partition: int | None,
    sep: bytes | None,
    headers: list[tuple[str, bytes]],
    stream: BinaryIO,
    stats: _Stats,
    advance: Callable[[int], None] | None,
) -> None:
    def on_delivery(lineno: int) -> Callable[[KafkaError | None, Any], None]:
        def cb(e: KafkaError | None, _msg: Any) -> None:
            if e is not None:
                stats.error(f"line {lineno}: {e.name()}: {e.str()}")
            else:
                stats.delivered += 1

        return cb

    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    if headers:
        extra["headers"] = headers
    try:
        for lineno, (size, line) in enumerate(_lines(stream), start=1):
            if advance is not None:
                advance(size)
            key: bytes | None = None
            value = line
            if sep is not None:
                key, found, value = line.partition(sep)
                if not found:
                    stats.error(f"line {lineno}: no key separator {sep.decode()!r}; skipped")
                    continue
            while True:
                try:
                    producer.produce(
                        topic, value=value, key=key, on_delivery=on_delivery(lineno), **extra
                    )
                    break
                except BufferError:
                    # The client's queue is full: let deliveries drain, then retry this line.
                    producer.poll(0.1)
            stats.sent += 1
            stats.bytes += len(value) + (0 if key is None else len(key))
            producer.poll(0)
    except KeyboardInterrupt:
        err.print("interrupted: waiting for the messages already sent")
    remaining = producer.flush(60)
    if remaining:
        stats.failed += remaining
        err.print(f"[red]error:[/red] {remaining} messages not delivered before exit")


def _report(stats: _Stats, topic: str, elapsed: float, as_json: bool) -> None:
    elapsed = max(elapsed, 1e-6)
    rate = stats.delivered / elapsed
    if as_json:
        print_json(
            {
                "topic": topic,
                "messages": stats.delivered,
                "bytes": stats.bytes,
                "failed": stats.failed,
                "seconds": round(elapsed, 3),
                "rate": round(rate, 1),
            }
        )
    else:
        err.print(
            f"Produced {stats.delivered} messages ({stats.bytes} bytes) to {topic} in "
            f"{elapsed:.2f}s ({rate:,.0f} msg/s)"
            + (f", [red]{stats.failed} failed[/red]" if stats.failed else "")
        )
    if stats.failed:
        raise CliError(
            f"{stats.failed} message{'s' if stats.failed != 1 else ''} failed",
            "See the errors above.",
        )
