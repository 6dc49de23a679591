"""``artesian share-groups``: list and describe share groups (KIP-932), and reset or delete
their offsets (like kafka-share-groups). librdkafka's admin API has no share group calls, so
these speak the protocol through ``wire.WireClient``; `artesian groups delete` deletes a
share group as any other."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    ClientOptions,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    fail,
    make_app,
    out,
    print_json,
    reporting,
    table,
)
from artesian.cli.groups import (
    ByDurationOpt,
    ExecuteOpt,
    ResetTarget,
    ToDatetimeOpt,
    ToEarliestOpt,
    ToLatestOpt,
    ToOffsetOpt,
    show_reset_plan,
    topic_partitions_of,
)
from artesian.cli.wire import WireClient, broker_addresses, coordinator_of

share_groups_app = make_app(
    "List and describe share groups, and reset or delete their offsets (like kafka-share-groups)."
)

_LIST_GROUPS, _SHARE_GROUP_DESCRIBE = 16, 77
_DESCRIBE_OFFSETS, _ALTER_OFFSETS, _DELETE_OFFSETS = 90, 91, 92
_GROUP_KEY = 0


def _error(code: Any, message: str | None, what: str) -> None:
    from kio.schema.errors import ErrorCode

    if code == ErrorCode.none:
        return
    hints = {
        ErrorCode.non_empty_group: "Stop the group's consumers, then run this again.",
        ErrorCode.group_id_not_found: "List the share groups with `artesian share-groups list`.",
        ErrorCode.unsupported_version: "Start the brokers with group.share.enable=true.",
    }
    fail(f"{what}: {message or code.name}", hints.get(code, ""))


def _share_coordinator(opts: ClientOptions, group: str) -> str:
    """The group's coordinator, once the broker says it has share groups: without
    group.share.enable the broker closes a connection that sends their APIs, which read as
    an unreachable broker."""
    from artesian.cli.wire import api_versions

    with WireClient.for_options(opts) as client:
        keys = {int(k.api_key) for k in api_versions(client, "artesian-cli").api_keys}
    if _SHARE_GROUP_DESCRIBE not in keys:
        fail(
            f"share groups are off on {opts.bootstrap}",
            "Start the brokers with --set group.share.enable=true.",
        )
    return coordinator_of(opts, _GROUP_KEY, group)


@share_groups_app.command("list")
def list_(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Share groups and their states, from every broker (each lists those it coordinates)."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        rows = []
        for broker, address in broker_addresses(opts).items():
            with WireClient.for_options(opts, address) as client:
                resp = client.request(_LIST_GROUPS, 5, states_filter=(), types_filter=("share",))
            _error(resp.error_code, None, f"ListGroups at broker {broker}")
            rows += [(g.group_id, g.group_state) for g in resp.groups]
        rows.sort()
        if as_json:
            print_json([{"group": g, "state": s} for g, s in rows])
        elif rows:
            out.print(table(None, ["GROUP", "STATE"], rows))
        else:
            out.print("No share groups.")


def _offsets(opts: ClientOptions, coordinator: str, group: str) -> list[dict[str, Any]]:
    from kio.schema.describe_share_group_offsets.v1 import request as dso
    from kio.schema.types import GroupId

    with WireClient.for_options(opts, coordinator) as client:
        resp = client.request(
            _DESCRIBE_OFFSETS,
            1,
            groups=(
                dso.DescribeShareGroupOffsetsRequestGroup(group_id=GroupId(group), topics=None),
            ),
        )
    (g,) = resp.groups
    _error(g.error_code, g.error_message, f"group {group!r}")
    rows = []
    for t in g.topics:
        for p in t.partitions:
            _error(p.error_code, p.error_message, f"{t.topic_name}[{p.partition_index}]")
            rows.append(
                {
                    "topic": t.topic_name,
                    "partition": int(p.partition_index),
                    "start_offset": int(p.start_offset),
                    "lag": int(p.lag) if p.lag >= 0 else None,
                }
            )
    return sorted(rows, key=lambda r: (r["topic"], r["partition"]))


def _members(opts: ClientOptions, coordinator: str, group: str) -> tuple[str, list[Any]]:
    """The group's state and members; ("Dead", []) when the coordinator does not know it."""
    from kio.schema.errors import ErrorCode

    with WireClient.for_options(opts, coordinator) as client:
        resp = client.request(
            _SHARE_GROUP_DESCRIBE, 1, group_ids=(group,), include_authorized_operations=False
        )
    (d,) = resp.groups
    if d.error_code == ErrorCode.group_id_not_found:
        return "Dead", []
    _error(d.error_code, d.error_message, f"group {group!r}")
    return d.group_state, list(d.members)


@share_groups_app.command()
def describe(
    group: Annotated[str, typer.Argument(help="Share group id.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """A share group's state, members, start offsets and lag.

    Below a partition's start offset every record is done with; its lag counts the records
    from there on not yet acknowledged (those in flight too)."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        coordinator = _share_coordinator(opts, group)
        state, members = _members(opts, coordinator, group)
        offsets = _offsets(opts, coordinator, group)
        if state == "Dead" and not offsets:
            fail(
                f"share group {group!r} does not exist",
                "List the share groups with `artesian share-groups list`.",
            )
        described = [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "assignment": sorted(
                    f"{t.topic_name}[{p}]"
                    for t in m.assignment.topic_partitions
                    for p in t.partitions
                ),
            }
            for m in members
        ]
        if as_json:
            print_json({"group": group, "state": state, "members": described, "offsets": offsets})
            return
        out.print(f"Share group {group}: {state}, {len(members)} member(s).")
        if described:
            out.print(
                table(
                    "Members",
                    ["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"],
                    [
                        (m["member_id"], m["client_id"], m["host"], ", ".join(m["assignment"]))
                        for m in described
                    ],
                )
            )
        out.print(
            table(
                "Offsets",
                ["TOPIC", "PARTITION", "START-OFFSET", "LAG"],
                [
                    (
                        r["topic"],
                        r["partition"],
                        r["start_offset"],
                        "-" if r["lag"] is None else r["lag"],
                    )
                    for r in offsets
                ],
            )
        )


@share_groups_app.command("reset-offsets")
def reset_offsets(
    group: Annotated[str, typer.Argument(help="Share group id.")],
    topic: Annotated[
        list[str],
        typer.Option(
            "--topic",
            "-t",
            help="Topic whose offsets to reset, or TOPIC:P,P for some partitions. Repeatable.",
        ),
    ],
    to_earliest: ToEarliestOpt = False,
    to_latest: ToLatestOpt = False,
    to_offset: ToOffsetOpt = None,
    to_datetime: ToDatetimeOpt = None,
    by_duration: ByDurationOpt = None,
    execute: ExecuteOpt = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Move a share group's start offsets. A dry run unless --execute; no members allowed.

    Every record from the new start offset on is delivered again, none before it."""
    from kio.schema.alter_share_group_offsets.v0 import request as aso
    from kio.schema.types import TopicName
    from kio.static.primitive import i32, i64

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        target = ResetTarget.chosen(
            to_earliest, to_latest, to_offset, to_datetime, can_shift=False, by_duration=by_duration
        )
        coordinator = _share_coordinator(opts, group)
        state, members = _members(opts, coordinator, group)
        if members:
            fail(
                f"share group {group!r} is active ({state}, {len(members)} members): offsets can "
                "only be reset while no consumer is running",
                "Stop the group's consumers, then run this again.",
            )
        admin = opts.admin()
        tps = topic_partitions_of(admin, opts, topic)
        current = {
            (r["topic"], r["partition"]): r["start_offset"]
            for r in _offsets(opts, coordinator, group)
        }
        plan = target.plan(admin, opts, tps, current)
        if execute:
            by_topic: dict[str, list[Any]] = {}
            for r in plan:
                by_topic.setdefault(r["topic"], []).append(
                    aso.AlterShareGroupOffsetsRequestPartition(
                        partition_index=i32(r["partition"]), start_offset=i64(r["new_offset"])
                    )
                )
            with WireClient.for_options(opts, coordinator) as client:
                resp = client.request(
                    _ALTER_OFFSETS,
                    0,
                    group_id=group,
                    topics=tuple(
                        aso.AlterShareGroupOffsetsRequestTopic(
                            topic_name=TopicName(t), partitions=tuple(ps)
                        )
                        for t, ps in by_topic.items()
                    ),
                )
            _error(resp.error_code, resp.error_message, f"group {group!r}")
            for t in resp.responses:
                for p in t.partitions:
                    _error(p.error_code, p.error_message, f"{t.topic_name}[{p.partition_index}]")
        show_reset_plan(f"share group {group}", group, plan, execute, as_json, "START-OFFSET")


@share_groups_app.command("delete-offsets")
def delete_offsets(
    group: Annotated[str, typer.Argument(help="Share group id.")],
    topic: Annotated[
        list[str],
        typer.Option("--topic", "-t", help="Topic whose offsets to delete. Repeatable."),
    ],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Forget what a share group consumed of these topics. No members allowed.

    The next consumer starts where the group's share.auto.offset.reset says."""
    from kio.schema.delete_share_group_offsets.v0 import request as dso
    from kio.schema.types import TopicName

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        coordinator = _share_coordinator(opts, group)
        with WireClient.for_options(opts, coordinator) as client:
            resp = client.request(
                _DELETE_OFFSETS,
                0,
                group_id=group,
                topics=tuple(
                    dso.DeleteShareGroupOffsetsRequestTopic(topic_name=TopicName(t)) for t in topic
                ),
            )
        _error(resp.error_code, resp.error_message, f"group {group!r}")
        for t in resp.responses:
            _error(t.error_code, t.error_message, f"topic {t.topic_name!r}")
        if as_json:
            print_json({"group": group, "deleted": [t.topic_name for t in resp.responses]})
        else:
            out.print(f"Deleted the offsets of share group {group} for {', '.join(topic)}.")
