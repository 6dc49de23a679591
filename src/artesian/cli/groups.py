"""``artesian groups``: list, describe, reset offsets of and delete consumer groups
(like kafka-consumer-groups), and set a group's own configs (like kafka-configs
--entity-type groups)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from rich.markup import escape

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
    fail,
    from_kafka_error,
    make_app,
    out,
    parse_kv,
    print_json,
    reporting,
    result,
    table,
)
from artesian.cli.wire import WireClient, coordinator_of

groups_app = make_app("List, describe, reset the offsets of, and delete consumer groups.")

# States in which no consumer holds partitions, so offsets may be changed safely.
INACTIVE = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)


# Kafka's names (GroupState), as kafka-consumer-groups prints them: librdkafka's enum
# spells them its own way (PREPARING_REBALANCING, EMPTY).
_KAFKA_STATE = {
    "UNKNOWN": "Unknown",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "STABLE": "Stable",
    "DEAD": "Dead",
    "EMPTY": "Empty",
}


def _state(state: Any) -> str:
    name = state.name if isinstance(state, ConsumerGroupState) else str(state)
    return _KAFKA_STATE.get(name, name)


def _protocol(desc: Any) -> str | None:
    """classic, or consumer (KIP-848: the broker assigns); None if the client cannot tell."""
    kind = getattr(desc, "type", None)
    name = getattr(kind, "name", None)
    return name.lower() if name in ("CLASSIC", "CONSUMER") else None


def _consumer_protocol_state(opts: ClientOptions, group: str) -> str | None:
    """librdkafka knows only the classic protocol's states and calls a KIP-848 group's
    Assigning or Reconciling UNKNOWN; ConsumerGroupDescribe names them."""
    from kio.schema.errors import ErrorCode  # here: the schemas are slow to import

    with WireClient.for_options(opts, coordinator_of(opts, 0, group)) as client:
        resp = client.request(69, 0, group_ids=(group,), include_authorized_operations=False)
    (g,) = resp.groups
    if g.error_code != ErrorCode.none:
        return None
    return str(g.group_state)  # Kafka's own: Assigning, Reconciling, ...


def _named_state(opts: ClientOptions, group: str, state: Any) -> str:
    if state is ConsumerGroupState.UNKNOWN:
        try:
            return _consumer_protocol_state(opts, group) or _state(state)
        except CliError:  # no coordinator answer: the state stays unnamed, the rest is shown
            return _state(state)
    return _state(state)


def _no_group(group: str) -> CliError:
    return CliError(
        f"consumer group {group!r} does not exist",
        "List the groups with `artesian groups list`.",
    )


@groups_app.command("list")
def list_(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """List consumer groups and their states."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        # Keep the client referenced until its futures resolve: destroying it cancels them.
        admin = opts.admin()
        res = result(
            admin.list_consumer_groups(request_timeout=opts.timeout),
            opts.timeout,
            opts.bootstrap,
        )
        for e in res.errors:
            raise from_kafka_error(e, opts.bootstrap, "listing groups: ")
        groups = sorted((g.group_id, _named_state(opts, g.group_id, g.state)) for g in res.valid)
        if as_json:
            print_json([{"group": g, "state": s} for g, s in groups])
        elif groups:
            out.print(table(None, ["GROUP", "STATE"], groups))
        else:
            out.print("No consumer groups.")


def _describe_group(admin: Any, opts: ClientOptions, group: str) -> Any:
    (future,) = admin.describe_consumer_groups([group], request_timeout=opts.timeout).values()
    try:
        return future.result(opts.timeout)
    except KafkaException as e:
        ke = e.args[0] if e.args else None
        if isinstance(ke, KafkaError) and ke.code() == KafkaError.GROUP_ID_NOT_FOUND:
            raise _no_group(group) from e
        raise from_kafka_error(e, opts.bootstrap, f"group {group!r}: ") from e


def _committed(admin: Any, opts: ClientOptions, group: str) -> dict[tuple[str, int], int]:
    (future,) = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=opts.timeout
    ).values()
    res = result(future, opts.timeout, opts.bootstrap, f"group {group!r}: ")
    committed: dict[tuple[str, int], int] = {}
    for tp in res.topic_partitions:
        if tp.error is not None:
            raise from_kafka_error(tp.error, opts.bootstrap, f"{tp.topic}[{tp.partition}]: ")
        if tp.offset >= 0:
            committed[(tp.topic, tp.partition)] = tp.offset
    return committed


def offsets_at(
    admin: Any, opts: ClientOptions, tps: list[tuple[str, int]], spec: OffsetSpec
) -> dict[tuple[str, int], int]:
    if not tps:
        return {}
    futures = admin.list_offsets(
        {TopicPartition(t, p): spec for t, p in tps}, request_timeout=opts.timeout
    )
    return {
        (tp.topic, tp.partition): int(
            result(f, opts.timeout, opts.bootstrap, f"{tp.topic}[{tp.partition}]: ").offset
        )
        for tp, f in futures.items()
    }


@groups_app.command()
def describe(
    group: Annotated[str, typer.Argument(help="Group id.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """State, members, and per partition the committed offset, log end offset and lag."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        admin = opts.admin()
        desc = _describe_group(admin, opts, group)
        committed = _committed(admin, opts, group)
        # Kafka answers DescribeGroups for an unknown group with state Dead and no members.
        if desc.state in (ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN) and not (
            desc.members or committed
        ):
            raise _no_group(group)
        owner: dict[tuple[str, int], Any] = {}
        for m in desc.members:
            for tp in m.assignment.topic_partitions if m.assignment else []:
                owner[(tp.topic, tp.partition)] = m
        tps = sorted(set(committed) | set(owner))
        end = offsets_at(admin, opts, tps, OffsetSpec.latest())
        partitions = []
        for t, p in tps:
            cur = committed.get((t, p))
            leo = end.get((t, p))
            m = owner.get((t, p))
            partitions.append(
                {
                    "topic": t,
                    "partition": p,
                    "committed_offset": cur,
                    "log_end_offset": leo,
                    "lag": None if cur is None or leo is None else max(leo - cur, 0),
                    "member_id": None if m is None else m.member_id,
                    "client_id": None if m is None else m.client_id,
                    "host": None if m is None else m.host,
                }
            )
        members = [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "partitions": sorted(
                    [tp.topic, tp.partition]
                    for tp in (m.assignment.topic_partitions if m.assignment else [])
                ),
            }
            for m in desc.members
        ]
        d = {
            "group": group,
            "state": _named_state(opts, group, desc.state),
            "protocol": _protocol(desc),
            "assignor": desc.partition_assignor or None,
            "coordinator": None if desc.coordinator is None else desc.coordinator.id,
            "members": members,
            "partitions": partitions,
        }
        if as_json:
            print_json(d)
            return
        out.print(
            f"[bold]{escape(group)}[/bold]  state: {d['state']}  members: {len(members)}"
            + (f"  protocol: {d['protocol']}" if d["protocol"] else "")
            + (f"  assignor: {d['assignor']}" if d["assignor"] else "")
        )
        if members:
            out.print(
                table(
                    "Members",
                    ["MEMBER-ID", "CLIENT-ID", "HOST", "PARTITIONS"],
                    [
                        (
                            m["member_id"],
                            m["client_id"],
                            m["host"],
                            ", ".join(f"{t}[{p}]" for t, p in m["partitions"]) or "-",
                        )
                        for m in members
                    ],
                )
            )
        if partitions:
            out.print(
                table(
                    "Offsets",
                    ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER"],
                    [
                        (
                            r["topic"],
                            r["partition"],
                            "-" if r["committed_offset"] is None else r["committed_offset"],
                            "-" if r["log_end_offset"] is None else r["log_end_offset"],
                            "-" if r["lag"] is None else r["lag"],
                            r["client_id"] or "-",
                        )
                        for r in partitions
                    ],
                )
            )
        else:
            out.print("No committed offsets and no assigned partitions.")


def parse_datetime(value: str) -> int:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"--to-datetime {value!r}: not an ISO 8601 date-time",
            "Example: --to-datetime 2024-05-01T12:00:00Z (local time when no zone is given).",
            code=2,
        )
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time, as kafka-consumer-groups does
    return int(dt.astimezone(UTC).timestamp() * 1000)


def topic_partitions(spec: str) -> tuple[str, set[int] | None]:
    """`topic` or `topic:0,2` (a ':' cannot occur in a Kafka topic name)."""
    name, sep, parts = spec.partition(":")
    if not sep:
        return name, None
    try:
        return name, {int(p) for p in parts.split(",")}
    except ValueError:
        fail(f"bad --topic {spec!r}", "Use TOPIC or TOPIC:P,P, e.g. --topic orders:0,2.", code=2)


# reset-offsets' options, for consumer and share groups alike.
ToEarliestOpt = Annotated[bool, typer.Option("--to-earliest", help="Earliest offset.")]
ToLatestOpt = Annotated[bool, typer.Option("--to-latest", help="Log end offset.")]
ToOffsetOpt = Annotated[
    int | None, typer.Option("--to-offset", help="This offset (clamped to the log).")
]
ToDatetimeOpt = Annotated[
    str | None,
    typer.Option("--to-datetime", help="First offset at or after this ISO 8601 time."),
]
ByDurationOpt = Annotated[
    str | None,
    typer.Option(
        "--by-duration",
        help="First offset at or after this long ago, an ISO 8601 duration (PT1H, P1DT12H).",
    ),
]
ExecuteOpt = Annotated[
    bool, typer.Option("--execute", help="Apply the change (default: only show the plan).")
]


def topic_partitions_of(admin: Any, opts: ClientOptions, specs: list[str]) -> list[tuple[str, int]]:
    """The partitions ``--topic`` options name (TOPIC or TOPIC:P,P), which must exist."""
    md = admin.list_topics(timeout=opts.timeout)
    tps: list[tuple[str, int]] = []
    for spec in specs:
        t, wanted = topic_partitions(spec)
        tm = md.topics.get(t)
        if tm is None or tm.error is not None:
            fail(f"topic {t!r} does not exist", "List the topics with `artesian topic list`.")
        missing = sorted(set(wanted or ()) - set(tm.partitions))
        if missing:
            fail(
                f"topic {t!r} has no partition {', '.join(map(str, missing))}",
                f"It has partitions 0-{len(tm.partitions) - 1}.",
            )
        tps += [(t, p) for p in sorted(tm.partitions) if wanted is None or p in wanted]
    return tps


_DURATION = re.compile(
    r"(?P<sign>[-+]?)P(?:(?P<d>[-+]?\d+)D)?"
    r"(?:T(?:(?P<h>[-+]?\d+)H)?(?:(?P<m>[-+]?\d+)M)?(?:(?P<s>[-+]?\d+(?:[.,]\d{1,9})?)S)?)?",
    re.IGNORECASE,
)


def parse_duration_ms(value: str) -> int:
    """An ISO 8601 duration as Java's Duration.parse reads it (PnDTnHnMn.nS), in ms."""
    m = _DURATION.fullmatch(value.strip())
    if m is None or not any(m.group(k) for k in "dhms") or value.strip().upper().endswith("T"):
        fail(
            f"--by-duration {value!r}: not an ISO 8601 duration",
            "Examples: --by-duration PT1H (an hour ago), P1DT12H, PT30M, PT0.5S.",
            code=2,
        )
    seconds = (
        int(m.group("d") or 0) * 86_400
        + int(m.group("h") or 0) * 3_600
        + int(m.group("m") or 0) * 60
        + float((m.group("s") or "0").replace(",", "."))
    )
    return round(seconds * 1000) * (-1 if m.group("sign") == "-" else 1)


@dataclass(frozen=True)
class ResetTarget:
    """Where reset-offsets moves a group: exactly one of its options (kafka-consumer-groups'
    --to-earliest, --to-latest, --to-current, --to-offset, --to-datetime, --by-duration,
    --shift-by)."""

    to_earliest: bool
    to_latest: bool
    to_offset: int | None
    to_datetime_ms: int | None
    shift_by: int | None
    to_current: bool = False

    @classmethod
    def chosen(
        cls,
        to_earliest: bool,
        to_latest: bool,
        to_offset: int | None,
        to_datetime: str | None,
        shift_by: int | None = None,
        can_shift: bool = True,
        by_duration: str | None = None,
        to_current: bool = False,
    ) -> ResetTarget:
        options = [
            ("--to-earliest", to_earliest),
            ("--to-latest", to_latest),
            *([("--to-current", to_current)] if can_shift else []),
            ("--to-offset N", to_offset is not None),
            *([("--shift-by N", shift_by is not None)] if can_shift else []),
            ("--to-datetime ISO", to_datetime is not None),
            ("--by-duration ISO", by_duration is not None),
        ]
        chosen = [name.split()[0] for name, on in options if on]
        if len(chosen) != 1:
            fail(
                f"give exactly one of {', '.join(name for name, _ in options)}"
                + (f" (got {', '.join(chosen)})" if chosen else ""),
                code=2,
            )
        ts = None if to_datetime is None else parse_datetime(to_datetime)
        if by_duration is not None:
            ts = int(time.time() * 1000) - parse_duration_ms(by_duration)
        return cls(to_earliest, to_latest, to_offset, ts, shift_by, to_current)

    def plan(
        self,
        admin: Any,
        opts: ClientOptions,
        tps: list[tuple[str, int]],
        current: dict[tuple[str, int], int],
    ) -> list[dict[str, Any]]:
        """Each partition's current and new offset, clamped to the log."""
        earliest = offsets_at(admin, opts, tps, OffsetSpec.earliest())
        latest = offsets_at(admin, opts, tps, OffsetSpec.latest())
        ts = self.to_datetime_ms
        at_time = {} if ts is None else offsets_at(admin, opts, tps, OffsetSpec.for_timestamp(ts))
        if self.shift_by is not None and (missing := [tp for tp in tps if tp not in current]):
            # As kafka-consumer-groups: a shift needs an offset to shift from.
            fail(
                "cannot shift the offset of "
                + ", ".join(f"{t}[{p}]" for t, p in missing)
                + ": the group has no committed offset there",
                "Reset those partitions with --to-earliest, --to-latest or --to-offset first, "
                "or leave them out with --topic TOPIC:P,P.",
            )
        plan = []
        for tp in tps:
            lo, hi = earliest[tp], latest[tp]
            if self.to_earliest:
                new = lo
            elif self.to_latest:
                new = hi
            elif self.to_current:
                # A partition with no committed offset goes to the log end, as Kafka's does.
                new = current.get(tp, hi)
            elif self.to_offset is not None:
                new = self.to_offset
            elif self.shift_by is not None:
                new = current[tp] + self.shift_by
            else:
                # No message at or after the time: the log end, as Kafka does.
                new = at_time[tp] if at_time[tp] >= 0 else hi
            plan.append(
                {
                    "topic": tp[0],
                    "partition": tp[1],
                    "current_offset": current.get(tp),
                    "new_offset": min(max(new, lo), hi),
                }
            )
        return plan


def show_reset_plan(
    what: str, group: str, plan: list[dict[str, Any]], execute: bool, as_json: bool, column: str
) -> None:
    if as_json:
        print_json({"group": group, "executed": execute, "partitions": plan})
        return
    out.print(
        table(
            None,
            ["TOPIC", "PARTITION", f"CURRENT-{column}", f"NEW-{column}"],
            [
                (
                    r["topic"],
                    r["partition"],
                    "-" if r["current_offset"] is None else r["current_offset"],
                    r["new_offset"],
                )
                for r in plan
            ],
        )
    )
    if execute:
        out.print(f"Reset the offsets of {what}.")
    else:
        out.print("Dry run: nothing changed. Add --execute to apply.")


@groups_app.command("reset-offsets")
def reset_offsets(
    group: Annotated[str, typer.Argument(help="Group id.")],
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            "-t",
            help="Topic whose offsets to reset, or TOPIC:P,P for some partitions "
            "(as kafka-consumer-groups). Repeatable.",
        ),
    ] = None,
    all_topics: Annotated[
        bool,
        typer.Option("--all-topics", help="Every partition the group has committed offsets for."),
    ] = False,
    to_earliest: ToEarliestOpt = False,
    to_latest: ToLatestOpt = False,
    to_current: Annotated[
        bool,
        typer.Option(
            "--to-current",
            help="The committed offset (clamped to the log); the log end where there is none.",
        ),
    ] = False,
    to_offset: ToOffsetOpt = None,
    shift_by: Annotated[
        int | None, typer.Option("--shift-by", help="Move the committed offset by N (+/-).")
    ] = None,
    to_datetime: ToDatetimeOpt = None,
    by_duration: ByDurationOpt = None,
    execute: ExecuteOpt = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Move a group's committed offsets. A dry run unless --execute; the group must be inactive."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        if bool(topic) == all_topics:
            fail("give --topic (repeatable) or --all-topics", code=2)
        target = ResetTarget.chosen(
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            shift_by,
            by_duration=by_duration,
            to_current=to_current,
        )
        admin = opts.admin()
        desc = _describe_group(admin, opts, group)
        if desc.state not in INACTIVE:
            fail(
                f"group {group!r} is active ({_named_state(opts, group, desc.state)}, "
                f"{len(desc.members)} members): "
                "offsets can only be reset while no consumer is running",
                "Stop the group's consumers, then run this again.",
            )
        committed = _committed(admin, opts, group)
        tps = sorted(committed) if all_topics else topic_partitions_of(admin, opts, topic or [])
        if not tps:
            fail(
                f"group {group!r} has no committed offsets to reset",
                "Name the partitions with --topic TOPIC or --topic TOPIC:P,P.",
            )
        plan = target.plan(admin, opts, tps, committed)
        if execute:
            (future,) = admin.alter_consumer_group_offsets(
                [
                    ConsumerGroupTopicPartitions(
                        group,
                        [TopicPartition(r["topic"], r["partition"], r["new_offset"]) for r in plan],
                    )
                ],
                request_timeout=opts.timeout,
            ).values()
            res = result(future, opts.timeout, opts.bootstrap, f"group {group!r}: ")
            for tp in res.topic_partitions:
                if tp.error is not None:
                    raise from_kafka_error(
                        tp.error, opts.bootstrap, f"{tp.topic}[{tp.partition}]: "
                    )
        show_reset_plan(f"group {group}", group, plan, execute, as_json, "OFFSET")


@groups_app.command()
def delete(
    group: Annotated[str, typer.Argument(help="Group id.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Delete an inactive group and its committed offsets."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        admin = opts.admin()
        (future,) = admin.delete_consumer_groups([group], request_timeout=opts.timeout).values()
        try:
            future.result(opts.timeout)
        except KafkaException as e:
            ke = e.args[0] if e.args else None
            if isinstance(ke, KafkaError) and ke.code() == KafkaError.GROUP_ID_NOT_FOUND:
                raise _no_group(group) from e
            if isinstance(ke, KafkaError) and ke.code() == KafkaError.NON_EMPTY_GROUP:
                raise CliError(
                    f"group {group!r} has active members",
                    "Stop the group's consumers, then delete it.",
                ) from e
            raise from_kafka_error(e, opts.bootstrap, f"cannot delete group {group!r}: ") from e
        if as_json:
            print_json({"group": group, "deleted": True})
        else:
            out.print(f"Deleted consumer group {group}.")


@groups_app.command("config")
def config(
    group: Annotated[str, typer.Argument(help="The consumer group.")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Set one of the group's configs, key=value (consumer.session.timeout.ms, "
            "consumer.heartbeat.interval.ms; for a share group share.session.timeout.ms, "
            "share.heartbeat.interval.ms, share.record.lock.duration.ms, "
            "share.auto.offset.reset). Repeatable.",
        ),
    ] = None,
    delete_config: Annotated[
        list[str] | None,
        typer.Option("--delete-config", help="Back to the broker's value. Repeatable."),
    ] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Show or change a group's own configs (like kafka-configs --entity-type groups): its
    session timeout and heartbeat interval under the consumer group protocol (KIP-848) or as
    a share group (KIP-932), a share group's lock duration and where it starts reading,
    instead of the broker's group.consumer.* and group.share.* settings.
    Example: artesian groups config orders --set consumer.session.timeout.ms=60000"""
    from artesian.cli.wire import WireClient, alter_configs, describe_configs
    from artesian.metadata.image import GROUP_RESOURCE

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        changes = parse_kv(set_ or [], "--set")
        if changes or delete_config:
            alter_configs(
                client,
                GROUP_RESOURCE,
                group,
                changes,
                delete_config or [],
                "Each must lie within the broker's group.consumer.min/max.* or "
                "group.share.min/max.* bounds, and a session timeout above its heartbeat "
                "interval.",
            )
            if not as_json:
                out.print(f"Altered the configs of group {escape(group)}.")
        entries = describe_configs(client, GROUP_RESOURCE, group)
    if as_json:
        print_json({"group": group, "configs": entries})
        return
    rows = [(e["name"], e["value"], e["source"]) for e in entries]
    out.print(table(f"Configs of group {escape(group)}", ["NAME", "VALUE", "SOURCE"], rows))
