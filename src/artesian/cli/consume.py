"""``artesian consume``: print a topic's messages (like kafka-console-consumer).

Without --group the consumer assign()s the partitions itself and commits nothing; with --group
it joins the group (subscribe) and commits its position on exit.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import typer
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from rich.status import Status

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    ClientOptions,
    CommandConfigOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    err,
    fail,
    from_kafka_error,
    reporting,
    sigterm_as_ctrl_c,
    track_client,
)

FIELDS = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")


def _text(b: bytes | None) -> str | None:
    # Non-UTF-8 bytes are shown escaped rather than failing the whole run.
    return None if b is None else b.decode("utf-8", "backslashreplace")


def _unescape(fmt: str) -> str:
    """Shell users type '{key}\\t{value}' literally; honour \\t, \\n and \\\\."""
    return fmt.replace("\\\\", "\0").replace("\\t", "\t").replace("\\n", "\n").replace("\0", "\\")


def _json_bytes(b: bytes | None) -> str | dict[str, str] | None:
    """Text as it is; other bytes as {"base64": ...}, since an escaped form could not be told
    from text that looks the same."""
    if b is None:
        return None
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(b).decode("ascii")}


def _record(msg: Message, show: Callable[[bytes | None], Any] = _text) -> dict[str, Any]:
    ts_type, ts = msg.timestamp()
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": ts if ts_type else None,
        "key": show(msg.key()),
        "value": show(msg.value()),
        "headers": [[k, show(v)] for k, v in (msg.headers() or [])],
    }


class _Formatter:
    def __init__(
        self,
        fmt: str | None,
        as_json: bool,
        print_key: bool,
        print_headers: bool,
        print_offset: bool,
        print_timestamp: bool,
    ) -> None:
        self.fmt = None if fmt is None else _unescape(fmt)
        self.as_json = as_json
        self.flags = (print_timestamp, print_offset, print_headers, print_key)
        if self.fmt is not None:
            try:
                self.fmt.format_map(dict.fromkeys(FIELDS, ""))
            except (KeyError, IndexError, ValueError) as e:
                fail(
                    f"--format {fmt!r}: {e}",
                    "Fields: " + ", ".join("{" + f + "}" for f in FIELDS),
                    code=2,
                )

    def __call__(self, msg: Message) -> str:
        if self.as_json:
            return json.dumps(_record(msg, _json_bytes))
        rec = _record(msg)
        if self.fmt is not None:
            rec["headers"] = ",".join(f"{k}={v}" for k, v in rec["headers"])
            return self.fmt.format_map({k: "" if v is None else v for k, v in rec.items()})
        # The layout of kafka-console-consumer's print.* properties.
        print_timestamp, print_offset, print_headers, print_key = self.flags
        parts: list[str] = []
        if print_timestamp:
            parts.append(f"CreateTime:{rec['timestamp']}")
        if print_offset:
            parts.append(f"Partition:{rec['partition']}\tOffset:{rec['offset']}")
        if print_headers:
            hs = ",".join(f"{k}:{v}" for k, v in rec["headers"])
            parts.append(hs or "NO_HEADERS")
        if print_key:
            parts.append("null" if rec["key"] is None else rec["key"])
        parts.append("null" if rec["value"] is None else rec["value"])
        return "\t".join(parts)


def _partitions(consumer: Consumer, opts: ClientOptions, topic: str) -> list[int]:
    md = consumer.list_topics(topic, timeout=opts.timeout)
    t = md.topics.get(topic)
    if t is None or (t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        fail(
            f"topic {topic!r} does not exist",
            "List the topics with `artesian topic list`.",
        )
    if t.error is not None:
        raise from_kafka_error(t.error, opts.bootstrap, f"topic {topic!r}: ")
    return sorted(t.partitions)


def consume(
    topic: Annotated[str, typer.Argument(help="Topic to read.")],
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning",
            help="Start at the earliest offset (with --group: when it has no committed offset).",
        ),
    ] = False,
    offset: Annotated[
        int | None, typer.Option("--offset", "-o", help="Start at this offset (no --group).")
    ] = None,
    partition: Annotated[
        int | None, typer.Option("--partition", "-p", help="Read only this partition.")
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", help="Consume as this group; commits offsets on exit."),
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", "-n", help="Stop after N messages.")
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option("--timeout", "-t", help="Stop after S seconds without a message."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Output template, e.g. '{key}\\t{value}'. Fields: "
            + ", ".join("{" + f + "}" for f in FIELDS)
            + ".",
        ),
    ] = None,
    print_key: Annotated[bool, typer.Option("--print-key", help="Print the key.")] = False,
    print_headers: Annotated[bool, typer.Option("--print-headers", help="Print headers.")] = False,
    print_offset: Annotated[
        bool, typer.Option("--print-offset", help="Print partition and offset.")
    ] = False,
    print_timestamp: Annotated[
        bool, typer.Option("--print-timestamp", help="Print the timestamp.")
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='One JSON object per message (JSON Lines); bytes that are not UTF-8 as {"base64": '
            "...}.",
        ),
    ] = False,
) -> None:
    """Print messages from a topic until --max-messages, --timeout idle seconds, or Ctrl-C."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        if from_beginning and offset is not None:
            fail("--from-beginning and --offset exclude each other", code=2)
        if group is not None and (offset is not None or partition is not None):
            fail(
                "--offset and --partition are for reading without a group",
                "Drop --group, or move a group with `artesian groups reset-offsets`.",
                code=2,
            )
        formatter = _Formatter(
            fmt, as_json, print_key, print_headers, print_offset, print_timestamp
        )
        opts.check_reachable()
        own_group_id = f"artesian-cli-{uuid.uuid4().hex[:12]}"
        conf = opts.config(
            **{
                # librdkafka needs a group.id even for assign(); this one never commits.
                "group.id": group or own_group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.partition.eof": False,
            }
        )
        consumer = track_client(Consumer(conf))
        try:
            parts = _partitions(consumer, opts, topic)
            if partition is not None and partition not in parts:
                fail(
                    f"topic {topic!r} has no partition {partition}",
                    f"It has partitions {parts[0]}-{parts[-1]}." if parts else "",
                )
            if group is None:
                start = (
                    OFFSET_BEGINNING if from_beginning else OFFSET_END if offset is None else offset
                )
                chosen = parts if partition is None else [partition]
                consumer.assign([TopicPartition(topic, p, start) for p in chosen])
            else:
                consumer.subscribe([topic])
            # The group is the CLI's own unless -X or --command-config named one.
            own_group = conf["group.id"] == own_group_id
            with sigterm_as_ctrl_c():
                count = _loop(consumer, formatter, max_messages, idle_timeout, own_group=own_group)
            if group is not None and count:
                # Commit what was printed; the stored offsets follow each poll()ed message.
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as e:
                    raise from_kafka_error(e, opts.bootstrap, "commit on exit failed: ") from e
        finally:
            consumer.close()
        err.print(f"Processed a total of {count} messages")


def _loop(
    consumer: Consumer,
    formatter: _Formatter,
    max_messages: int | None,
    idle_timeout: float | None,
    own_group: bool = False,
) -> int:
    """Print until max_messages or idle_timeout. ``own_group``: the group id is the CLI's
    own (assign() without --group): librdkafka still looks its coordinator up, and a principal
    without rights on that group, which it never named nor needs, is not refused for it."""
    count = 0
    started = last = time.monotonic()
    status: Status | None = None
    if err.is_terminal:
        status = Status("waiting for messages", console=err)
        status.start()
    out = sys.stdout
    try:
        while max_messages is None or count < max_messages:
            msg = consumer.poll(0.2)
            now = time.monotonic()
            if msg is None:
                if idle_timeout is not None and now - last >= idle_timeout:
                    break
            elif msg.error() is not None:
                e = msg.error()
                if own_group and e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                    continue
                if e.fatal() or e.code() in (
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError.TOPIC_AUTHORIZATION_FAILED,
                    KafkaError.GROUP_AUTHORIZATION_FAILED,
                ):
                    raise KafkaException(e)
                err.print(f"[yellow]warning:[/yellow] {e.str()}")
            else:
                out.write(formatter(msg) + "\n")
                count += 1
                last = now
            if status is not None:
                rate = count / max(now - started, 1e-6)
                status.update(f"{count} messages ({rate:,.0f} msg/s)")
    except KeyboardInterrupt:
        pass
    finally:
        if status is not None:
            status.stop()
        out.flush()
    return count
