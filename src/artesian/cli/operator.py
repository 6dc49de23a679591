"""``artesian operator``: run the operator on a declared cluster (local processes), and read
its status."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from artesian.cli.common import (
    JsonOpt,
    fail,
    make_app,
    out,
    print_json,
    reporting,
    sigterm_as_ctrl_c,
    table,
)

if TYPE_CHECKING:
    from artesian.operator.spec import ClusterSpec

operator_app = make_app(
    "The operator: keeps a declared cluster of local brokers running, rolls upgrades one "
    "broker at a time, and drains brokers before removing them."
)

SpecArg = Annotated[Path, typer.Argument(help="The cluster spec (TOML): brokers, ports, config.")]


def _load(path: Path) -> ClusterSpec:
    # Here, not at the top: most commands never run the operator.
    from artesian.operator.spec import ClusterSpec, SpecError

    try:
        return ClusterSpec.load(path)
    except SpecError as e:
        fail(str(e), "See `artesian operator run --help` for the spec's fields.", code=2)


def _checked(path: Path) -> ClusterSpec:
    """The spec, or the error printed as one line and exit code 2."""
    with reporting(""):
        return _load(path)


@operator_app.command()
def run(
    spec: SpecArg,
    interval: Annotated[float, typer.Option(help="Seconds between reconcile passes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    stop_on_exit: Annotated[
        bool,
        typer.Option("--stop-on-exit", help="Stop every broker when the operator stops."),
    ] = False,
    crash_backoff: Annotated[
        float,
        typer.Option(
            help="Seconds before restarting a broker that crashed twice in a row; doubles "
            "with each crash after that (CrashLoopBackOff)."
        ),
    ] = 10.0,
    crash_backoff_max: Annotated[
        float, typer.Option(help="The longest wait between restarts of a crashing broker.")
    ] = 300.0,
) -> None:
    """Reconcile the cluster with SPEC until stopped. Edit SPEC while it runs: more brokers
    are started and get their share of the data; fewer are drained, then stopped; a new
    version or config restarts the brokers one at a time, each only once no partition is
    under-replicated. A broker that keeps crashing is restarted after a growing delay, and the
    status says how it ended. Brokers keep running when the operator stops, unless
    --stop-on-exit.

    SPEC fields: brokers, host, first_port, data_dir, version, racks, and a \\[config] table of
    broker properties."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    from artesian.operator.operator import Operator
    from artesian.operator.spec import ClusterSpec

    declared = _checked(spec)
    _hold_lock(declared)
    # While it runs, a spec that does not read is logged and the last good one kept.
    operator = Operator(
        lambda: ClusterSpec.load(spec),
        crash_backoff=(crash_backoff, crash_backoff_max),
        settle=True,
    )
    if once:
        plan = operator.reconcile_once()
        out.print(
            f"phase {plan.phase}"
            + (f", waiting for {plan.waiting_for}" if plan.waiting_for else "")
        )
        return
    out.print(
        f"Operating the cluster in {spec} (bootstrap {operator.spec.client_bootstrap()}). Stop with Ctrl-C."
    )
    try:
        with sigterm_as_ctrl_c():
            operator.run(interval)
    except KeyboardInterrupt:
        if stop_on_exit:
            operator.stop_all()


def _hold_lock(spec: ClusterSpec) -> None:
    """One operator per cluster: two would restart the same broker at once during a roll.
    The lock is the data directory's ``.operator.lock``, held for the process's life."""
    import fcntl
    import os

    spec.data_dir.mkdir(parents=True, exist_ok=True)
    path = spec.data_dir / ".operator.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text().strip() or "?"
        os.close(fd)
        with reporting(""):
            fail(
                f"another operator (pid {holder}) already runs the cluster in {spec.data_dir}",
                "Stop it first, or look at it with `artesian operator status`.",
            )
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _LOCKS.append(fd)  # open until the process ends


_LOCKS: list[int] = []


@operator_app.command()
def status(spec: SpecArg, as_json: JsonOpt = False) -> None:
    """The operator's last report: phase, brokers, and the self-balancer's state."""
    from artesian.operator.operator import status_path

    path = status_path(_checked(spec))
    with reporting(""):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            fail(
                f"no operator status in {path}",
                f"Start the operator: `artesian operator run {spec}`.",
            )
    if as_json:
        print_json(doc)
        return
    out.print(
        f"phase [bold]{doc['phase']}[/bold]"
        + (f", waiting for {doc['waiting_for']}" if doc["waiting_for"] else "")
    )
    age = (int(time.time() * 1000) - int(doc.get("time_ms", 0))) // 1000
    if age > 10:  # the operator writes it every pass, each second by default
        out.print(
            f"[yellow]this report is {age} s old: is the operator running?[/yellow] "
            f"(`artesian operator run {spec}`)"
        )
    out.print(
        table(
            None,
            ["BROKER", "RUNNING", "LIVE", "UP TO DATE", "UNDER-REPLICATED", "REMOVAL"],
            [
                (
                    b["id"],
                    b["running"],
                    b["live"],
                    b["up_to_date"],
                    "-"
                    if b["under_replicated_partitions"] is None
                    else b["under_replicated_partitions"],
                    b["removal"] or "-",
                )
                for b in doc["brokers"]
            ],
        )
    )
    r = doc["rebalance"]
    task = r.get("task") or {}
    out.print(
        f"self-balancer: {r.get('state')}, moves in flight: {r.get('moves_in_flight')}"
        + (f", last rebalance {task.get('id')}: {task.get('state')}" if task else "")
    )
