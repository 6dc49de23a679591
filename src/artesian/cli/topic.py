"""``artesian topic``: create, list, describe, alter and delete topics (like kafka-topics)."""

from __future__ import annotations

import concurrent.futures
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

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
    table,
)
from artesian.cli.reassign import reassign, reassignments
from artesian.cli.wire import WireClient
from artesian.metadata.image import INTERNAL_TOPICS as _INTERNAL_TOPICS

topic_app = make_app("Create, list, describe, alter and delete topics.")

ConfigOpt = Annotated[
    list[str] | None,
    typer.Option("--config", "-c", help="Topic config as key=value (e.g. retention.ms=60000)."),
]


def _topic_error(e: KafkaException | KafkaError, name: str, opts: ClientOptions) -> Exception:
    ke = e.args[0] if isinstance(e, KafkaException) else e
    if isinstance(ke, KafkaError) and ke.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return CliError(
            f"topic {name!r} does not exist",
            "List the topics with `artesian topic list`, or create it with "
            f"`artesian topic create {name}`.",
        )
    return from_kafka_error(e, opts.bootstrap, f"topic {name!r}: ")


def _wait(future: Any, name: str, opts: ClientOptions) -> Any:
    try:
        return future.result(opts.timeout)
    except KafkaException as e:
        raise _topic_error(e, name, opts) from e


@topic_app.command()
def create(
    name: Annotated[str, typer.Argument(help="Topic name.")],
    partitions: Annotated[
        int | None, typer.Option("--partitions", "-p", help="Default: the broker's num.partitions.")
    ] = None,
    replication_factor: Annotated[
        int | None,
        typer.Option("--replication-factor", "-r", help="Default: the broker's setting."),
    ] = None,
    config: ConfigOpt = None,
    if_not_exists: Annotated[
        bool, typer.Option("--if-not-exists", help="Succeed if the topic already exists.")
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Create a topic."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        configs = parse_kv(config or [], "--config")
        admin = opts.admin()
        new = NewTopic(
            name,
            num_partitions=-1 if partitions is None else partitions,
            replication_factor=-1 if replication_factor is None else replication_factor,
            config=configs,
        )
        (future,) = admin.create_topics([new], request_timeout=opts.timeout).values()
        created = True
        try:
            future.result(opts.timeout)
        except KafkaException as e:
            ke = e.args[0]
            exists = isinstance(ke, KafkaError) and ke.code() == KafkaError.TOPIC_ALREADY_EXISTS
            if not (exists and if_not_exists):
                if exists:
                    fail(
                        f"topic {name!r} already exists",
                        "Use --if-not-exists to ignore this, or `artesian topic alter` to "
                        "change it.",
                    )
                raise from_kafka_error(e, opts.bootstrap, f"cannot create {name!r}: ") from e
            created = False
        if as_json:
            print_json({"name": name, "created": created})
        elif created:
            out.print(f"Created topic {name}.")
        else:
            out.print(f"Topic {name} already exists.")


@topic_app.command("list")
def list_(
    internal: Annotated[
        bool, typer.Option("--internal", help="Include internal topics (__consumer_offsets).")
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """List topics."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        md = opts.admin().list_topics(timeout=opts.timeout)
        # Metadata does not say which topics are internal; Kafka's internal topics start with "__".
        topics = sorted(
            (name, len(t.partitions))
            for name, t in md.topics.items()
            if internal or not name.startswith("__")
        )
        if as_json:
            print_json([{"name": n, "partitions": p} for n, p in topics])
        elif topics:
            out.print(table(None, ["TOPIC", "PARTITIONS"], topics))
        else:
            out.print("No topics. Create one with `artesian topic create NAME`.")


# ListOffsets' tiered storage timestamps (KIP-405, KIP-1005); librdkafka refuses to send them.
EARLIEST_LOCAL, LATEST_TIERED = -4, -5


def _list_offsets(
    opts: ClientOptions, name: str, leaders: dict[int, str], timestamp: int
) -> dict[int, int | None]:
    """ListOffsets of a kind librdkafka has no spec for, asked of each partition's leader:
    offset per partition, None where the leader did not answer or answered an error."""
    from kio.schema.errors import ErrorCode
    from kio.schema.list_offsets.v9.request import ListOffsetsPartition, ListOffsetsTopic
    from kio.schema.types import TopicName
    from kio.static.primitive import i32, i64

    by_leader: dict[str, list[int]] = {}
    for partition, leader in leaders.items():
        by_leader.setdefault(leader, []).append(partition)
    found: dict[int, int | None] = dict.fromkeys(leaders)
    for leader, partitions in by_leader.items():
        try:
            with WireClient.for_options(opts, leader) as client:
                resp = client.request(
                    2,
                    9,
                    replica_id=-1,
                    isolation_level=0,
                    topics=(
                        ListOffsetsTopic(
                            name=TopicName(name),
                            partitions=tuple(
                                ListOffsetsPartition(
                                    partition_index=i32(p),
                                    current_leader_epoch=i32(-1),
                                    timestamp=i64(timestamp),
                                )
                                for p in partitions
                            ),
                        ),
                    ),
                )
        except CliError:
            continue  # a leader not fenced yet, gone: its partitions are shown as unknown
        for t in resp.topics:
            for p in t.partitions:
                if p.error_code == ErrorCode.none:
                    found[int(p.partition_index)] = int(p.offset)
    return found


def _describe(opts: ClientOptions, name: str) -> dict[str, Any]:
    admin = opts.admin()
    (future,) = admin.describe_topics(
        TopicCollection([name]), request_timeout=opts.timeout
    ).values()
    desc = _wait(future, name, opts)
    # Offsets only where there is a leader to ask: a partition offline (or whose leader
    # does not answer) is described all the same, with unknown offsets, as kafka-topics
    # shows "Leader: none".
    leaders = {
        p.id: f"{p.leader.host}:{p.leader.port}" for p in desc.partitions if p.leader is not None
    }
    tps = [TopicPartition(name, p) for p in leaders]

    def offsets(spec: OffsetSpec) -> dict[TopicPartition, Any]:
        return (
            admin.list_offsets({tp: spec for tp in tps}, request_timeout=opts.timeout)
            if tps
            else {}
        )

    earliest, latest = offsets(OffsetSpec.earliest()), offsets(OffsetSpec.latest())
    (cfg_future,) = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name)], request_timeout=opts.timeout
    ).values()
    configs = _wait(cfg_future, name, opts)

    def offset(futures: dict[TopicPartition, Any], partition: int) -> int | None:
        future = futures.get(TopicPartition(name, partition))
        if future is None:
            return None
        try:
            return int(future.result(opts.timeout).offset)
        except (KafkaException, concurrent.futures.TimeoutError):
            return None

    partitions = []
    for p in desc.partitions:
        partitions.append(
            {
                "partition": p.id,
                "leader": None if p.leader is None else p.leader.id,
                "replicas": [r.id for r in p.replicas],
                "isr": [r.id for r in p.isr],
                "earliest": offset(earliest, p.id),
                "latest": offset(latest, p.id),
            }
        )
    tiered = configs.get("remote.storage.enable")
    if tiered is not None and str(tiered.value).lower() == "true":
        local_start = _list_offsets(opts, name, leaders, EARLIEST_LOCAL)
        tiered_to = _list_offsets(opts, name, leaders, LATEST_TIERED)
        for p in partitions:
            p["local_start"] = local_start.get(p["partition"])
            p["tiered_to"] = tiered_to.get(p["partition"])
    overrides = {
        k: {"value": c.value, "source": ConfigSource(c.source).name}
        for k, c in sorted(configs.items())
        if c.source != ConfigSource.DEFAULT_CONFIG.value and not c.is_sensitive
    }
    return {
        "name": name,
        "internal": bool(desc.is_internal),
        "partitions": partitions,
        "configs": overrides,
    }


@topic_app.command()
def describe(
    name: Annotated[str, typer.Argument(help="Topic name.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Partitions (leader, replicas, ISR, earliest/latest offsets) and non-default configs."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        d = _describe(opts, name)
        if as_json:
            print_json(d)
            return
        out.print(f"[bold]{name}[/bold]  partitions: {len(d['partitions'])}")
        tiered = any("local_start" in p for p in d["partitions"])

        def shown(value: int | None) -> int | str:
            return "-" if value is None else value

        rows = [
            (
                p["partition"],
                "none" if p["leader"] is None else p["leader"],
                ",".join(map(str, p["replicas"])),
                ",".join(map(str, p["isr"])),
                shown(p["earliest"]),
                *((shown(p["local_start"]), shown(p["tiered_to"])) if tiered else ()),
                shown(p["latest"]),
                "-"
                if p["latest"] is None or p["earliest"] is None
                else p["latest"] - p["earliest"],
            )
            for p in d["partitions"]
        ]
        columns = ["PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST"]
        if tiered:  # where the local log starts, and the last offset in tiered storage
            columns += ["LOCAL START", "TIERED TO"]
        out.print(table(None, [*columns, "LATEST", "MESSAGES"], rows))
        if d["configs"]:
            out.print(
                table(
                    "Configs",
                    ["NAME", "VALUE", "SOURCE"],
                    [(k, c["value"], c["source"]) for k, c in d["configs"].items()],
                )
            )
        else:
            out.print("Configs: all defaults.")


@topic_app.command()
def alter(
    name: Annotated[str, typer.Argument(help="Topic name.")],
    partitions: Annotated[
        int | None, typer.Option("--partitions", "-p", help="New (larger) partition count.")
    ] = None,
    config: ConfigOpt = None,
    delete_config: Annotated[
        list[str] | None,
        typer.Option("--delete-config", help="Config to reset to its default. Repeatable."),
    ] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Add partitions, set or delete configs (IncrementalAlterConfigs: others are kept)."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        configs = parse_kv(config or [], "--config")
        if partitions is None and not configs and not delete_config:
            fail(
                "nothing to change",
                "Give --partitions N, --config key=value or --delete-config key.",
                code=2,
            )
        admin = opts.admin()
        changed: dict[str, Any] = {"name": name}
        if configs or delete_config:
            entries = [
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in configs.items()
            ] + [
                ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE)
                for k in delete_config or []
            ]
            res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
            (future,) = admin.incremental_alter_configs(
                [res], request_timeout=opts.timeout
            ).values()
            _wait(future, name, opts)
            changed["set"] = configs
            changed["deleted"] = list(delete_config or [])
        if partitions is not None:
            (future,) = admin.create_partitions(
                [NewPartitions(name, partitions)], request_timeout=opts.timeout
            ).values()
            _wait(future, name, opts)
            changed["partitions"] = partitions
        if as_json:
            print_json(changed)
        else:
            out.print(f"Altered topic {name}.")


@topic_app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Topic name.")],
    if_exists: Annotated[
        bool, typer.Option("--if-exists", help="Succeed if the topic does not exist.")
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Delete a topic and its data."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        if name in _INTERNAL_TOPICS:
            # As kafka-topics.sh: deleting one would lose every group's offsets or every
            # transaction's state.
            fail(
                f"Topic {name} is a kafka internal topic and is not allowed to be marked for "
                "deletion.",
                "Delete groups with `artesian groups delete`; a coordinator's topic is not a "
                "user's to delete.",
            )
        admin = opts.admin()
        (future,) = admin.delete_topics([name], request_timeout=opts.timeout).values()
        deleted = True
        try:
            future.result(opts.timeout)
        except KafkaException as e:
            ke = e.args[0]
            missing = isinstance(ke, KafkaError) and ke.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if not (missing and if_exists):
                if missing:
                    fail(
                        f"topic {name!r} does not exist",
                        "Use --if-exists to ignore this; `artesian topic list` shows the topics.",
                    )
                raise from_kafka_error(e, opts.bootstrap, f"cannot delete {name!r}: ") from e
            deleted = False
        if as_json:
            print_json({"name": name, "deleted": deleted})
        elif deleted:
            out.print(f"Deleted topic {name}.")
        else:
            out.print(f"Topic {name} does not exist.")


# Moving partitions between brokers (kafka-reassign-partitions.sh), in its own module.
topic_app.command()(reassign)
topic_app.command()(reassignments)
