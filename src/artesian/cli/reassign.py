"""``artesian topic reassign`` and ``artesian topic reassignments``: move partitions between
brokers and watch the moves (what kafka-reassign-partitions.sh does)."""

from __future__ import annotations

import datetime
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    CliError,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    fail,
    out,
    print_json,
    reporting,
    table,
)
from artesian.cli.wire import WireClient

ALTER, LIST = 45, 46


def _ongoing(
    client: WireClient, topic: str | None, partitions: set[int] | None = None
) -> list[dict[str, Any]]:
    """Moves in progress: of ``partitions`` of ``topic`` if given, else of every partition
    (the topic filtered here: the request names partitions, not topics)."""
    from kio.schema.list_partition_reassignments.v0.request import (
        ListPartitionReassignmentsTopics,
    )
    from kio.schema.types import TopicName
    from kio.static.primitive import i32

    topics = None
    if topic is not None and partitions is not None:
        indexes = tuple(i32(p) for p in sorted(partitions))
        topics = (
            ListPartitionReassignmentsTopics(name=TopicName(topic), partition_indexes=indexes),
        )
    resp = client.request(LIST, 0, timeout=datetime.timedelta(seconds=30), topics=topics)
    if resp.error_code:
        raise CliError(f"cannot list reassignments: {resp.error_code.name} {resp.error_message}")
    return [
        {
            "topic": t.name,
            "partition": int(p.partition_index),
            "replicas": [int(r) for r in p.replicas],
            "adding": [int(r) for r in p.adding_replicas],
            "removing": [int(r) for r in p.removing_replicas],
        }
        for t in resp.topics
        for p in t.partitions
        if topic is None or t.name == topic
    ]


def reassign(
    topic: Annotated[str, typer.Argument(help="Topic name.")],
    partition: Annotated[
        list[int], typer.Option("--partition", "-p", help="Partition to move. Repeatable.")
    ],
    replicas: Annotated[
        str | None,
        typer.Option("--replicas", "-r", help="Target broker ids, leader first: e.g. 2,3,4."),
    ] = None,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Cancel the moves in progress instead.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the moves finish.")
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Move partitions to other brokers (KIP-455): the new replicas copy the log, then the old
    ones are dropped. Clients carry on meanwhile."""
    # The schemas load slowly: only in the commands that send them.
    from kio.schema.alter_partition_reassignments.v0.request import (
        ReassignablePartition,
        ReassignableTopic,
    )
    from kio.schema.types import BrokerId, TopicName
    from kio.static.primitive import i32

    if cancel == (replicas is not None):
        fail("give either --replicas or --cancel", "e.g. --replicas 2,3", code=2)
    target: tuple[BrokerId, ...] | None = None
    if replicas is not None:
        try:
            target = tuple(BrokerId(int(r)) for r in replicas.split(","))
        except ValueError:
            fail(f"--replicas {replicas!r} is not a list of broker ids", "e.g. 2,3,4", code=2)
    with (
        reporting(bootstrap),
        WireClient.for_options(client_options(bootstrap, command_config, props, timeout)) as client,
    ):
        resp = client.request(
            ALTER,
            0,
            timeout=datetime.timedelta(seconds=timeout),
            topics=(
                ReassignableTopic(
                    name=TopicName(topic),
                    partitions=tuple(
                        ReassignablePartition(partition_index=i32(p), replicas=target)
                        for p in partition
                    ),
                ),
            ),
        )
        errors = {
            int(p.partition_index): f"{p.error_code.name}: {p.error_message or ''}".strip(": ")
            for t in resp.responses
            for p in t.partitions
            if p.error_code
        }
        if resp.error_code or errors:
            detail = resp.error_message or "; ".join(f"{p}: {m}" for p, m in errors.items())
            fail(
                f"cannot move {topic}: {detail}",
                f"`artesian topic describe {topic}` shows its replicas; targets must be registered brokers.",
            )
        if wait:
            _wait_for(client, topic, set(partition), as_json)
        if as_json:
            print_json({"topic": topic, "partitions": partition, "replicas": target})
        else:
            what = "Cancelled the moves of" if cancel else f"Moving to {replicas}:"
            out.print(f"{what} {topic} partition(s) {', '.join(map(str, partition))}.")


def _wait_for(client: WireClient, topic: str, partitions: set[int], quiet: bool) -> None:
    columns = (TextColumn("moving {task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=out, disable=quiet) as progress:
        task = progress.add_task(topic, total=len(partitions))
        while True:
            moving = {r["partition"] for r in _ongoing(client, topic, partitions)}
            progress.update(task, completed=len(partitions) - len(moving))
            if not moving:
                return
            time.sleep(0.5)


def reassignments(
    topic: Annotated[str | None, typer.Argument(help="Only this topic.")] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Moves in progress: each partition's replicas, those joining and those leaving."""
    with (
        reporting(bootstrap),
        WireClient.for_options(client_options(bootstrap, command_config, props, timeout)) as client,
    ):
        rows = _ongoing(client, topic)
        if as_json:
            print_json(rows)
        elif not rows:
            out.print("No reassignments in progress.")
        else:
            out.print(
                table(
                    None,
                    ["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"],
                    [
                        (
                            r["topic"],
                            r["partition"],
                            ",".join(map(str, r["replicas"])),
                            ",".join(map(str, r["adding"])),
                            ",".join(map(str, r["removing"])),
                        )
                        for r in rows
                    ],
                )
            )
