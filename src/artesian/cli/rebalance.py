"""``artesian rebalance`` (the self-balancer's status, a rebalance on demand) and
``artesian cluster remove-broker`` / ``cancel-removal`` (drain a broker before stopping it).
They speak Artesian's private AlterBalancer and DescribeBalancer APIs to any broker."""

from __future__ import annotations

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
    err,
    make_app,
    out,
    print_json,
    reporting,
    table,
)
from artesian.cli.wire import WireClient
from artesian.protocol.balancer_admin import (
    ALTER_BALANCER_KEY,
    DESCRIBE_BALANCER_KEY,
    decode_response_body,
    encode_request_body,
)

rebalance_app = make_app("The self-balancer: its status, and a rebalance on demand.")

WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Show progress until it is done (Ctrl-C stops watching).")
]


def call_private_api(client: WireClient, api_key: int, document: dict[str, Any]) -> dict[str, Any]:
    """One of Artesian's private APIs (JSON documents); an error answer is a CliError."""
    body = client.request_raw(api_key, 0, encode_request_body(document))
    code, message, answer = decode_response_body(body)
    if code:
        raise CliError(f"{_error_name(code)}: {message or ''}".rstrip(": "))
    return answer


def _error_name(code: int) -> str:
    """Kafka's name for an error code (UNSUPPORTED_VERSION), as its tools print it."""
    from kio.schema.errors import ErrorCode

    try:
        return ErrorCode(code).name.upper()
    except ValueError:
        return f"error {code}"


def _status(client: WireClient) -> dict[str, Any]:
    return call_private_api(client, DESCRIBE_BALANCER_KEY, {})


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@rebalance_app.command()
def status(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """What the self-balancer is doing, each broker's load, and the goals that are off."""
    with (
        reporting(bootstrap),
        WireClient.for_options(client_options(bootstrap, command_config, props, timeout)) as client,
    ):
        doc = _status(client)
    if as_json:
        print_json(doc)
        return
    task = doc["task"]
    out.print(
        f"self-balancer [bold]{doc['state']}[/bold] (trigger {doc['trigger']}, on controller "
        f"{doc['controller']}); moves in flight: {doc['moves_in_flight']}"
    )
    if task:
        reason = f": {task['reason']}" if task["reason"] else ""
        out.print(f"last rebalance {task['id']} ({task['trigger']}): {task['state']}{reason}")
    rows = [
        (
            b["id"],
            b["rack"] or "-",
            ("alive" if b["alive"] else "dead") + (f", {b['removal']}" if b["removal"] else ""),
            b["replicas"],
            b["leaders"],
            _size(b["disk_bytes"]),
            _size(b["network_in_bytes_per_second"]) + "/s",
            _size(b["network_out_bytes_per_second"]) + "/s",
        )
        for b in doc["brokers"]
    ]
    out.print(
        table(
            None,
            ["BROKER", "RACK", "STATE", "REPLICAS", "LEADERS", "DISK", "NET IN", "NET OUT"],
            rows,
        )
    )
    goals = doc["violated_goals"]
    out.print("goals off balance: " + (", ".join(goals) if goals else "none"))


@rebalance_app.command()
def start(
    wait: WaitOpt = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Rebalance now: replicas and leaderships move until every goal is met or nothing more
    can be done, whatever artesian.balancer.heal.uneven.load.trigger says."""
    with (
        reporting(bootstrap),
        WireClient.for_options(client_options(bootstrap, command_config, props, timeout)) as client,
    ):
        task_id = call_private_api(client, ALTER_BALANCER_KEY, {"rebalance": {}})["task"]
        if not wait:
            if as_json:
                print_json({"task": task_id})
            else:
                out.print(f"Rebalance {task_id} requested; `artesian rebalance status` follows it.")
            return
        columns = (TextColumn("rebalance {task.description}"), TextColumn("{task.fields[note]}"))
        with Progress(*columns, TimeElapsedColumn(), console=out, disable=as_json) as progress:
            bar = progress.add_task(task_id, total=None, note="")
            while True:
                doc = _status(client)
                task = doc["task"] or {}
                progress.update(bar, note=f"{task.get('state')}, {doc['moves_in_flight']} moving")
                if task.get("id") == task_id and task.get("state") in ("COMPLETED", "FAILED"):
                    break
                time.sleep(0.5)
    if as_json:
        print_json(task)
    else:
        reason = f": {task['reason']}" if task.get("reason") else ""
        out.print(f"Rebalance {task_id} {task['state'].lower()}{reason}.")
    if task["state"] == "FAILED":
        raise typer.Exit(1)


def remove_broker(
    broker_ids: Annotated[list[int], typer.Argument(help="Broker ids to remove.")],
    wait: WaitOpt = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Drain brokers before stopping them: they get no new replicas, and the self-balancer
    moves theirs to the other brokers. Once a broker is DRAINED, stop it; it is then
    unregistered (COMPLETE)."""
    with (
        reporting(bootstrap),
        WireClient.for_options(client_options(bootstrap, command_config, props, timeout)) as client,
    ):
        call_private_api(client, ALTER_BALANCER_KEY, {"remove_brokers": broker_ids})
        if wait:
            removals = _watch_removals(client, set(broker_ids), as_json)
        else:
            removals = [r for r in _status(client)["removals"] if r["broker"] in broker_ids]
    # Only DRAINED (or COMPLETE) means the brokers may be stopped: a FAILED removal, or one
    # CANCELED meanwhile (an operator declaring the broker cancels it), left replicas there.
    failed = wait and any(r["state"] not in ("DRAINED", "COMPLETE") for r in removals)
    if as_json:
        print_json(removals)
        if failed:
            raise typer.Exit(1)
        return
    for r in removals:
        reason = f": {r['reason']}" if r["reason"] else ""
        out.print(f"broker {r['broker']}: {r['state']}{reason}")
    if not wait:
        out.print("`artesian rebalance status` follows the removal; stop each broker once DRAINED.")
    elif failed:
        if any(r["state"] == "CANCELED" for r in removals):
            err.print(
                "The removal was cancelled and the brokers still hold replicas: do not stop "
                "them. A broker an operator runs is removed by lowering `brokers` in its spec."
            )
        raise typer.Exit(1)
    else:
        out.print("Drained: stop these brokers now; the cluster then unregisters them.")


def _watch_removals(client: WireClient, ids: set[int], quiet: bool) -> list[dict[str, Any]]:
    columns = (TextColumn("draining broker {task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=out, disable=quiet) as progress:
        bars: dict[int, Any] = {}
        while True:
            removals = [r for r in _status(client)["removals"] if r["broker"] in ids]
            for r in removals:
                left = r["replicas_left"]
                if r["broker"] not in bars:
                    bars[r["broker"]] = progress.add_task(str(r["broker"]), total=max(left, 1))
                bar = bars[r["broker"]]
                total = max(progress.tasks[bar].total or 0, left)
                progress.update(bar, total=total, completed=total - left)
            if removals and all(
                r["state"] in ("DRAINED", "COMPLETE", "FAILED", "CANCELED") for r in removals
            ):
                return removals
            time.sleep(0.5)


def cancel_removal(
    broker_ids: Annotated[list[int], typer.Argument(help="Broker ids whose removal to cancel.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Keep brokers after all: they take replicas again (moves already made stay)."""
    with (
        reporting(bootstrap),
        WireClient.for_options(client_options(bootstrap, command_config, props, timeout)) as client,
    ):
        call_private_api(client, ALTER_BALANCER_KEY, {"cancel_removals": broker_ids})
    out.print(f"Removal of broker(s) {', '.join(map(str, broker_ids))} canceled.")
