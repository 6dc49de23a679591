"""``artesian cluster describe``: the brokers, the controller, and how replicated the
partitions are (what an operator checks before touching a broker). ``artesian cluster
config``: dynamic broker configs, as ``kafka-configs --entity-type brokers`` shows and sets
them. ``artesian cluster elect-leaders``: kafka-leader-election's preferred and unclean
elections. ``artesian cluster unregister-broker``: kafka-cluster.sh unregister.
``artesian cluster features``: kafka-features.sh describe and upgrade."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    CliError,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    make_app,
    out,
    parse_kv,
    print_json,
    reporting,
    result,
    table,
)
from artesian.cli.rebalance import cancel_removal, remove_broker

cluster_app = make_app("Look at the cluster: brokers, controller, replication health.")


@cluster_app.command()
def describe(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Live brokers with the partitions each leads and holds, the controller, and the
    partitions whose ISR is short (under-replicated) or that have no leader (offline)."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        md = opts.admin().list_topics(timeout=opts.timeout)
        brokers: dict[int, dict[str, Any]] = {
            b.id: {"id": b.id, "host": b.host, "port": b.port, "leaders": 0, "replicas": 0}
            for b in md.brokers.values()
        }
        under: list[str] = []
        offline: list[str] = []
        for name, t in sorted(md.topics.items()):
            for p in t.partitions.values():
                where = f"{name}-{p.id}"
                if p.leader < 0:
                    offline.append(where)
                elif len(p.isrs) < len(p.replicas):
                    under.append(where)
                if p.leader in brokers:
                    brokers[p.leader]["leaders"] += 1
                for r in p.replicas:
                    if r in brokers:
                        brokers[r]["replicas"] += 1
        d = {
            "cluster_id": md.cluster_id,
            "controller": md.controller_id,
            "brokers": [brokers[i] for i in sorted(brokers)],
            "under_replicated": under,
            "offline": offline,
        }
        if as_json:
            print_json(d)
            return
        out.print(f"cluster [bold]{md.cluster_id}[/bold], controller: broker {md.controller_id}")
        rows = [
            (b["id"], f"{b['host']}:{b['port']}", b["leaders"], b["replicas"]) for b in d["brokers"]
        ]
        out.print(table(None, ["BROKER", "ADDRESS", "LEADERS", "REPLICAS"], rows))
        out.print(
            f"under-replicated partitions: {len(under)}"
            + (f" ({', '.join(under[:10])}{', ...' if len(under) > 10 else ''})" if under else "")
        )
        out.print(
            f"offline partitions: {len(offline)}"
            + (
                f" ({', '.join(offline[:10])}{', ...' if len(offline) > 10 else ''})"
                if offline
                else ""
            )
        )


@cluster_app.command("elect-leaders")
def elect_leaders(
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="Only this topic's partitions.")
    ] = None,
    partition: Annotated[
        list[int] | None,
        typer.Option("--partition", "-p", help="Only this partition (repeatable); needs --topic."),
    ] = None,
    unclean: Annotated[
        bool,
        typer.Option(
            "--unclean",
            help="Give partitions without a live leader one from outside the ISR: records "
            "only the ISR had are LOST. Default: preferred elections.",
        ),
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Elect leaders, as kafka-leader-election does: by default move leadership back to each
    partition's preferred (first) replica; with --unclean bring offline partitions back."""
    from confluent_kafka import ElectionType, TopicPartition

    opts = client_options(bootstrap, command_config, props, timeout)
    kind = ElectionType.UNCLEAN if unclean else ElectionType.PREFERRED
    with reporting(opts.bootstrap):
        if partition and not topic:
            raise CliError("--partition needs --topic", "Name the topic with --topic.", code=2)
        admin = opts.admin()
        wanted = None
        if topic:
            indexes = partition
            if not indexes:
                # Every topic, not this one: asking for one by name may create it.
                described = admin.list_topics(timeout=opts.timeout).topics.get(topic)
                if described is None or described.error is not None:
                    raise CliError(
                        f"topic {topic} does not exist", "List them with `artesian topic list`."
                    )
                indexes = sorted(described.partitions)
            wanted = [TopicPartition(topic, i) for i in indexes]
        results = result(
            admin.elect_leaders(kind, wanted), opts.timeout, opts.bootstrap, "electing leaders: "
        )
    rows = [
        {
            "topic": tp.topic,
            "partition": tp.partition,
            "result": "elected" if err is None else err.name(),
        }
        for tp, err in sorted(results.items(), key=lambda kv: (kv[0].topic, kv[0].partition))
    ]
    # As kafka-leader-election: a partition that could not have its election fails the run.
    failed = [r for r in rows if r["result"] not in ("elected", "ELECTION_NOT_NEEDED")]
    if as_json:
        print_json(rows)
    elif not rows:
        out.print("No partition needed an election.")
    else:
        out.print(table(None, ["TOPIC", "PARTITION", "RESULT"], [tuple(r.values()) for r in rows]))
    if failed:
        raise typer.Exit(1)


@cluster_app.command()
def config(
    broker: Annotated[
        int | None,
        typer.Option(
            "--broker", help="One broker's own configs; without it, the cluster-wide defaults."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Set a dynamic config, key=value. Repeatable."),
    ] = None,
    delete_config: Annotated[
        list[str] | None,
        typer.Option("--delete-config", help="Remove a dynamic config. Repeatable."),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option("--all", help="With --broker: every config, not only the dynamic ones."),
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Show or change dynamic broker configs (like kafka-configs --entity-type brokers).

    Without --broker they are the cluster-wide defaults every broker takes
    (--entity-default); with it, that broker's own values, which win over the defaults.
    Both win over what a broker was started with. Changes apply at once and are kept
    across restarts. Example: artesian cluster config --set log.retention.ms=86400000"""
    from artesian.cli.wire import WireClient, alter_configs, describe_configs
    from artesian.metadata.image import BROKER_RESOURCE

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        if all_ and broker is None:
            raise CliError("--all lists one broker's configs", "Add --broker ID.", code=2)
        changes = parse_kv(set_ or [], "--set")
        # A broker's own resource is served by that broker, as Kafka's clients send it.
        address = opts.bootstrap if broker is None else _address_of(opts, broker)
        name = "" if broker is None else str(broker)
        what = "the cluster default" if broker is None else f"broker {broker}"
        with WireClient.for_options(opts, address) as client:
            if changes or delete_config:
                alter_configs(
                    client,
                    BROKER_RESOURCE,
                    name,
                    changes,
                    delete_config or [],
                    "See what may change with `artesian cluster config --broker ID --all` "
                    "(READ-ONLY configs need a restart with --set).",
                )
                if not as_json:
                    out.print(f"Altered the dynamic configs of {what}.")
            entries = describe_configs(client, BROKER_RESOURCE, name)
        if broker is not None and not all_:
            entries = [e for e in entries if e["source"].startswith("DYNAMIC")]
        if as_json:
            print_json({"broker": broker, "configs": entries})  # broker null: cluster default
            return
        if not entries:
            out.print(f"No dynamic configs for {what}.")
            return
        rows = [(e["name"], e["value"], e["source"]) for e in entries]
        out.print(table(f"Configs of {what}", ["NAME", "VALUE", "SOURCE"], rows))


def _address_of(opts: Any, broker: int) -> str:
    """host:port of a live broker."""
    from artesian.cli.wire import broker_addresses

    address = broker_addresses(opts).get(broker)
    if address is None:
        raise CliError(
            f"there is no live broker {broker}",
            "See the brokers with `artesian cluster describe`.",
        )
    return address


@cluster_app.command("log-levels")
def log_levels(
    broker: Annotated[int, typer.Option("--broker", help="The broker whose loggers these are.")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="logger=LEVEL (TRACE, DEBUG, INFO, WARN, ERROR or FATAL). Repeatable.",
        ),
    ] = None,
    reset: Annotated[
        list[str] | None,
        typer.Option("--reset", help="A logger to hand back to its parent's level. Repeatable."),
    ] = None,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Only loggers whose names start with this.")
    ] = "",
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Show or change one broker's log levels, live (like kafka-configs --entity-type
    broker-loggers). Changes last until the broker restarts.
    Example: artesian cluster log-levels --broker 1 --set artesian=DEBUG (every Artesian
    logger), or --set artesian.replica_fetcher=DEBUG"""
    from artesian.cli.wire import WireClient, alter_configs, describe_configs

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        changes = parse_kv(set_ or [], "--set")
        with WireClient.for_options(opts, _address_of(opts, broker)) as client:
            if changes or reset:
                alter_configs(
                    client,
                    _BROKER_LOGGER,
                    str(broker),
                    {k: v.upper() for k, v in changes.items()},
                    reset or [],
                    "See the loggers with `artesian cluster log-levels --broker ID`.",
                )
                if not as_json:
                    out.print(f"Changed the log levels of broker {broker}.")
            entries = describe_configs(client, _BROKER_LOGGER, str(broker))
        levels = {e["name"]: e["value"] for e in entries if e["name"].startswith(prefix)}
        if as_json:
            print_json({"broker": broker, "loggers": levels})
        else:
            out.print(table(f"Loggers of broker {broker}", ["LOGGER", "LEVEL"], levels.items()))


_BROKER_LOGGER = 8  # the config resource type (KIP-412)


# Draining brokers goes through the self-balancer, whose commands live in their own module.
cluster_app.command("remove-broker")(remove_broker)
cluster_app.command("cancel-removal")(cancel_removal)


@cluster_app.command("unregister-broker")
def unregister_broker(
    broker_id: Annotated[int, typer.Argument(help="The id of a stopped broker with no replicas.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Forget a broker that left for good, as kafka-cluster.sh unregister does: it is no
    longer listed and its id may be used again. (remove-broker does this by itself once the
    drained broker stops.)"""
    from artesian.cli.wire import WireClient

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        response = client.request(64, 0, broker_id=broker_id)
    if response.error_code != 0:
        raise CliError(f"{response.error_code.name.upper()}: {response.error_message}")
    out.print(f"Broker {broker_id} unregistered.")


@cluster_app.command()
def features(
    upgrade: Annotated[
        bool,
        typer.Option(
            "--upgrade",
            help="Finalize a newer level (the newest the broker supports, or --level): every "
            "registered broker must support it.",
        ),
    ] = False,
    level: Annotated[
        int | None, typer.Option(help="With --upgrade: the level to finalize.", min=1)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --upgrade: check it, change nothing.")
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Feature levels (kafka-features.sh describe and upgrade): what the broker supports and
    what the cluster has finalized. A rolling upgrade ends with --upgrade, which lets the
    cluster use what the new version brought; the operator does it by itself."""
    from artesian.cli.wire import WireClient, api_versions, update_features

    if not upgrade and (level is not None or dry_run):
        raise CliError("--level and --dry-run go with --upgrade")
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        versions = api_versions(client, "artesian-cli")
        epoch_before = versions.finalized_features_epoch
        supported = {f.name: (f.min_version, f.max_version) for f in versions.supported_features}
        if upgrade:
            targets = {name: level or highest for name, (_, highest) in supported.items()}
            update_features(client, targets, validate_only=dry_run)
            versions = api_versions(client, "artesian-cli")
    finalized = {f.name: int(f.max_version_level) for f in versions.finalized_features}
    rows = [
        {
            "feature": name,
            "supported_min": lo,
            "supported_max": hi,
            "finalized": finalized.get(name),
            "epoch": versions.finalized_features_epoch,
        }
        for name, (lo, hi) in sorted(supported.items())
    ]
    if as_json:
        print_json(rows)
        return
    out.print(
        table(
            None,
            ["feature", "supported", "finalized", "epoch"],
            (
                [
                    r["feature"],
                    f"{r['supported_min']}-{r['supported_max']}",
                    r["finalized"],
                    r["epoch"],
                ]
                for r in rows
            ),
        )
    )
    if upgrade:
        if dry_run:
            out.print("Validated; nothing changed.")
        else:
            changed = versions.finalized_features_epoch != epoch_before
            out.print("Upgraded." if changed else "Already there; nothing changed.")
