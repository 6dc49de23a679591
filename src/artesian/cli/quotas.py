"""``artesian quotas``: client quotas (like kafka-configs --entity-type users/clients),
through Kafka's DescribeClientQuotas and AlterClientQuotas (KIP-546), which librdkafka's
admin API does not offer."""

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
    print_json,
    reporting,
    table,
)

quotas_app = make_app(
    "Set, list and remove client quotas (byte rates, topic mutation rates and request time "
    "per user or client id; connection rates per address)."
)

_DESCRIBE, _ALTER = 48, 49
_FRACTIONAL = ("controller_mutation_rate", "request_percentage")  # the others: whole numbers
_DEFAULT = "<default>"
UserOpt = Annotated[
    str | None, typer.Option("--user", help=f"A user name, or {_DEFAULT} for every user.")
]
ClientOpt = Annotated[
    str | None,
    typer.Option("--client-id", help=f"A client id, or {_DEFAULT} for every client."),
]
IpOpt = Annotated[
    str | None,
    typer.Option(
        "--ip",
        help=f"A client address, or {_DEFAULT} for every address (connection quotas only).",
    ),
]


def _entity(
    user: str | None, client_id: str | None, ip: str | None = None
) -> list[tuple[str, str | None]]:
    entity = [
        (kind, None if name == _DEFAULT else name)
        for kind, name in (("user", user), ("client-id", client_id), ("ip", ip))
        if name is not None
    ]
    if not entity:
        raise CliError("name --user, --client-id, both, or --ip", "Example: --user alice", code=2)
    return entity


def _alter(
    opts: Any, entity: list[tuple[str, str | None]], ops: list[tuple[str, float | None]]
) -> None:
    from kio.schema.alter_client_quotas.v1 import request as aq
    from kio.static.primitive import f64

    from artesian.cli.wire import WireClient

    entry = aq.EntryData(
        entity=tuple(aq.EntityData(entity_type=t, entity_name=n) for t, n in entity),
        ops=tuple(aq.OpData(key=k, value=f64(v or 0.0), remove=v is None) for k, v in ops),
    )
    with WireClient.for_options(opts) as client:
        response = client.request(_ALTER, 1, entries=(entry,), validate_only=False)
    (result,) = response.entries
    if result.error_code != 0:
        raise CliError(f"{result.error_code.name.upper()}: {result.error_message}")


def _show(name: str | None) -> str:
    return _DEFAULT if name is None else name


@quotas_app.command("set")
def set_(
    user: UserOpt = None,
    client_id: ClientOpt = None,
    ip: IpOpt = None,
    producer_byte_rate: Annotated[
        int | None, typer.Option(help="Bytes per second the entity may produce.")
    ] = None,
    consumer_byte_rate: Annotated[
        int | None, typer.Option(help="Bytes per second the entity may fetch.")
    ] = None,
    controller_mutation_rate: Annotated[
        float | None,
        typer.Option(
            help="Partitions a second the entity may create or delete (CreateTopics, "
            "CreatePartitions, DeleteTopics; KIP-599), with 11 seconds' worth at once."
        ),
    ] = None,
    request_percentage: Annotated[
        float | None,
        typer.Option(
            help="The share of the broker's time the entity's requests may take, as a "
            "percentage of one thread (KIP-124): 50 is half a second a second."
        ),
    ] = None,
    connection_creation_rate: Annotated[
        int | None,
        typer.Option(
            help="Connections a second the --ip address may open (KIP-612); faster ones are "
            "closed unserved."
        ),
    ] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Set quotas. Clients over them are throttled (their responses say how long); a topic
    mutation over the rate is refused with THROTTLING_QUOTA_EXCEEDED."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        ops: list[tuple[str, float | None]] = [
            (key, float(value))
            for key, value in (
                ("producer_byte_rate", producer_byte_rate),
                ("consumer_byte_rate", consumer_byte_rate),
                ("controller_mutation_rate", controller_mutation_rate),
                ("request_percentage", request_percentage),
                ("connection_creation_rate", connection_creation_rate),
            )
            if value is not None
        ]
        if not ops:
            raise CliError(
                "give --producer-byte-rate, --consumer-byte-rate, --controller-mutation-rate, "
                "--request-percentage or --connection-creation-rate",
                "Example: artesian quotas set --user alice --producer-byte-rate 1048576",
                code=2,
            )
        _alter(opts, _entity(user, client_id, ip), ops)
    out.print("Set.")


@quotas_app.command()
def remove(
    user: UserOpt = None,
    client_id: ClientOpt = None,
    ip: IpOpt = None,
    producer_byte_rate: Annotated[
        bool, typer.Option("--producer-byte-rate", help="Remove the produce quota.")
    ] = False,
    consumer_byte_rate: Annotated[
        bool, typer.Option("--consumer-byte-rate", help="Remove the fetch quota.")
    ] = False,
    controller_mutation_rate: Annotated[
        bool,
        typer.Option("--controller-mutation-rate", help="Remove the topic mutation quota."),
    ] = False,
    request_percentage: Annotated[
        bool, typer.Option("--request-percentage", help="Remove the request time quota.")
    ] = False,
    connection_creation_rate: Annotated[
        bool,
        typer.Option("--connection-creation-rate", help="Remove the connection rate quota."),
    ] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Remove quotas of an entity (every kind unless some are named)."""
    opts = client_options(bootstrap, command_config, props, timeout)
    chosen = {
        "producer_byte_rate": producer_byte_rate,
        "consumer_byte_rate": consumer_byte_rate,
        "controller_mutation_rate": controller_mutation_rate,
        "request_percentage": request_percentage,
        "connection_creation_rate": connection_creation_rate,
    }
    every = not any(chosen.values())
    entity = _entity(user, client_id, ip)
    with reporting(opts.bootstrap):
        # Every kind its entity takes: an ip takes the connection rate only, as in Kafka.
        on_ip = entity[0][0] == "ip"
        keys = [
            key
            for key, named in chosen.items()
            if named or (every and (key == "connection_creation_rate") == on_ip)
        ]
        _alter(opts, entity, [(k, None) for k in keys])
    out.print("Removed.")


@quotas_app.command("list")
def list_(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Every client quota set in the cluster."""
    from artesian.cli.wire import WireClient

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        with WireClient.for_options(opts) as client:
            response = client.request(_DESCRIBE, 1, components=(), strict=False)
        if response.error_code != 0:
            raise CliError(f"{response.error_code.name.upper()}: {response.error_message}")
    rows = sorted(
        (
            _show(names.get("user")) if "user" in names else "",
            _show(names.get("client-id")) if "client-id" in names else "",
            _show(names.get("ip")) if "ip" in names else "",
            v.key,
            v.value if v.key in _FRACTIONAL else int(v.value),
        )
        for entry in response.entries or ()
        for names in [{e.entity_type: e.entity_name for e in entry.entity}]
        for v in entry.values
    )
    if as_json:
        print_json(
            [{"user": u, "client_id": c, "ip": ip, "key": k, "value": v} for u, c, ip, k, v in rows]
        )
    elif rows:
        out.print(table(None, ["USER", "CLIENT ID", "IP", "QUOTA", "VALUE"], rows))
    else:
        out.print("No client quotas.")
