"""``artesian logical-clusters``: put principals into logical clusters, each a Kafka cluster
of its own on the shared brokers (see tenancy/), and list them. Speaks Artesian's private
AlterLogicalClusters and DescribeLogicalClusters APIs to any broker."""

from __future__ import annotations

from typing import Annotated

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
from artesian.cli.rebalance import call_private_api
from artesian.cli.wire import WireClient
from artesian.protocol.balancer_admin import (
    ALTER_LOGICAL_CLUSTERS_KEY,
    DESCRIBE_LOGICAL_CLUSTERS_KEY,
)

logical_clusters_app = make_app(
    "Logical clusters: principals that see a Kafka cluster of their own on the shared brokers."
)

PrincipalsArg = Annotated[
    list[str], typer.Argument(help="Principals, as Kafka names them: User:alice, User:KEY.")
]


@logical_clusters_app.command()
def bind(
    logical_cluster: Annotated[
        str, typer.Argument(help="The logical cluster's id: lkc- and 1-32 of [a-z0-9].")
    ],
    principals: PrincipalsArg,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Put principals into a logical cluster. From their next request on they see only its
    topics, groups and transactional ids, by their names within it; on the brokers these
    live under the prefix "<id>_". Give them SASL credentials (artesian users) and, with an
    authorizer, ACLs on that prefix."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        call_private_api(
            client, ALTER_LOGICAL_CLUSTERS_KEY, {"bind": dict.fromkeys(principals, logical_cluster)}
        )
    out.print(f"bound {', '.join(principals)} to {logical_cluster}")


@logical_clusters_app.command()
def unbind(
    principals: PrincipalsArg,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Take principals out of their logical clusters: they see the whole cluster again (as
    far as their ACLs let them). Their logical cluster's topics stay."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        call_private_api(client, ALTER_LOGICAL_CLUSTERS_KEY, {"unbind": list(principals)})
    out.print(f"unbound {', '.join(principals)}")


RateOpt = Annotated[float | None, typer.Option(min=0.0, help="A rate; 0 removes it.")]


@logical_clusters_app.command("set-quota")
def set_quota(
    logical_cluster: Annotated[str, typer.Argument(help="The logical cluster's id.")],
    producer_byte_rate: RateOpt = None,
    consumer_byte_rate: RateOpt = None,
    request_percentage: RateOpt = None,
    controller_mutation_rate: RateOpt = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Set quotas that all of a logical cluster's principals share, on each broker, as
    Kafka's client quotas do for one user (they replace its principals' user and client-id
    quotas of the same kind). Its clients are throttled past them (throttle_time_ms)."""
    given = {
        "producer_byte_rate": producer_byte_rate,
        "consumer_byte_rate": consumer_byte_rate,
        "request_percentage": request_percentage,
        "controller_mutation_rate": controller_mutation_rate,
    }
    quotas = {k: (v or None) for k, v in given.items() if v is not None}
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        if not quotas:
            raise CliError("give at least one quota, e.g. --producer-byte-rate 1048576")
        with WireClient.for_options(opts) as client:
            call_private_api(
                client, ALTER_LOGICAL_CLUSTERS_KEY, {"quotas": {logical_cluster: quotas}}
            )
    out.print(
        f"{logical_cluster}: "
        + ", ".join(f"{k}={'removed' if v is None else f'{v:g}'}" for k, v in quotas.items())
    )


@logical_clusters_app.command("list")
def list_(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Logical clusters with their principals, topics and partitions."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        doc = call_private_api(client, DESCRIBE_LOGICAL_CLUSTERS_KEY, {})
    if as_json:
        print_json(doc)
        return
    rows = [
        (
            c["id"],
            ", ".join(c["principals"]),
            c["topics"],
            c["partitions"],
            ", ".join(f"{k}={v:g}" for k, v in c.get("quotas", {}).items()) or "-",
        )
        for c in doc["logical_clusters"]
    ]
    out.print(
        table(None, ["LOGICAL CLUSTER", "PRINCIPALS", "TOPICS", "PARTITIONS", "QUOTAS"], rows)
    )
