"""``artesian client-metrics``: client metrics subscriptions (KIP-714), as
kafka-client-metrics.sh manages them. A subscription tells matching clients which of their
metrics to push and how often; the broker serves them on its Prometheus endpoint (with
``artesian.client.metrics.enable=true``). librdkafka's admin API has no CLIENT_METRICS
resource, so these speak the protocol themselves."""

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

client_metrics_app = make_app(
    "Client metrics subscriptions (KIP-714): which metrics clients push, and how often."
)

_LIST = 74
_HINT = (
    "metrics: prefixes such as org.apache.kafka.producer. (* for all); interval: 100 to "
    "3600000 ms; match: selector=regex with client_id, client_software_name, ..."
)


def _subscriptions(client: Any) -> list[str]:
    response = client.request(_LIST, 0)
    if response.error_code != 0:
        raise CliError(f"{response.error_code.name.upper()}: listing subscriptions")
    return sorted(r.resource_name for r in response.config_resources)


@client_metrics_app.command("list")
def list_(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """The subscriptions with their settings."""
    from artesian.cli.wire import WireClient, describe_configs
    from artesian.metadata.image import CLIENT_METRICS_RESOURCE

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        found = {
            name: {
                e["name"]: e["value"]
                for e in describe_configs(client, CLIENT_METRICS_RESOURCE, name)
            }
            for name in _subscriptions(client)
        }
    if as_json:
        print_json([{"name": n, **c} for n, c in found.items()])
        return
    if not found:
        out.print("No client metrics subscriptions. Add one with `artesian client-metrics set`.")
        return
    rows = [
        (n, c.get("metrics", ""), c.get("interval.ms", "300000"), c.get("match", ""))
        for n, c in found.items()
    ]
    out.print(table(None, ["NAME", "METRICS", "INTERVAL MS", "MATCH"], rows))


@client_metrics_app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="The subscription's name.")],
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="Comma-separated metric name prefixes (* for all)."),
    ] = None,
    interval: Annotated[
        int | None, typer.Option("--interval", help="Push interval in ms (100 to 3600000).")
    ] = None,
    match: Annotated[
        list[str] | None,
        typer.Option(
            "--match",
            help="selector=regex a client must match in full, e.g. client_id=orders-.* "
            "(repeatable; all must match).",
        ),
    ] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Create or change a subscription (kafka-client-metrics --alter). Example:
    artesian client-metrics set producers --metrics org.apache.kafka.producer. --interval 60000
    --match client_id=orders-.*"""
    from artesian.cli.wire import WireClient, alter_configs
    from artesian.metadata.image import CLIENT_METRICS_RESOURCE

    changes = {}
    if metrics is not None:
        changes["metrics"] = metrics
    if interval is not None:
        changes["interval.ms"] = str(interval)
    if match:
        changes["match"] = ",".join(match)
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        if not changes:
            raise CliError(
                "nothing to set", "Give --metrics, --interval or --match (see --help).", code=2
            )
        with WireClient.for_options(opts) as client:
            alter_configs(client, CLIENT_METRICS_RESOURCE, name, changes, [], _HINT)
    out.print(f"Subscription {name} set.")


@client_metrics_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The subscription's name.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Delete a subscription: its clients stop pushing at their next request."""
    from artesian.cli.wire import WireClient, alter_configs, describe_configs
    from artesian.metadata.image import CLIENT_METRICS_RESOURCE

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        names = [e["name"] for e in describe_configs(client, CLIENT_METRICS_RESOURCE, name)]
        if names:
            alter_configs(client, CLIENT_METRICS_RESOURCE, name, {}, names)
    out.print(f"Subscription {name} deleted." if names else f"No subscription {name}.")
