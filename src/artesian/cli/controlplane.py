"""``artesian controlplane run`` and ``artesian dataplane run``: the serverless control plane's
REST API and autoscaler, and the agent that runs one cell's clusters. They share nothing but a
Kafka cluster, on which desired and observed state travel."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from artesian.cli.common import BootstrapOpt, make_app, out, reporting

controlplane_app = make_app(
    "The control plane: a REST API to create, resize, upgrade and delete clusters, and the "
    "autoscaler. It writes desired state to Kafka and reads what the data planes report."
)
dataplane_app = make_app(
    "A data plane: runs the clusters of one cell as local broker processes, through the "
    "operator, and reports their phase and load to Kafka."
)


def _logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


@controlplane_app.command("run")
def run_control_plane(
    bootstrap: BootstrapOpt = "127.0.0.1:9092",
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.", min=1, max=65535)] = 8080,
    cooldown: Annotated[
        float, typer.Option(help="Seconds the autoscaler leaves a cluster alone after a change.")
    ] = 60.0,
) -> None:
    """Serve the control plane's API (see /docs there) until Ctrl-C. BOOTSTRAP is the Kafka
    cluster that carries the state topics; `artesian up` gives one."""
    _logging()
    import uvicorn

    from artesian.controlplane.api import create_app
    from artesian.controlplane.autoscaler import AutoscalePolicy
    from artesian.controlplane.control_plane import ControlPlane

    with reporting(bootstrap):
        control_plane = ControlPlane(
            bootstrap, AutoscalePolicy(cooldown_ms=int(cooldown * 1000))
        ).start()
    out.print(
        f"Control plane API on http://{host}:{port} (state on {bootstrap}). Stop with Ctrl-C."
    )
    try:
        uvicorn.run(create_app(control_plane), host=host, port=port, log_level="warning")
    finally:
        control_plane.stop()


@dataplane_app.command("run")
def run_data_plane(
    root: Annotated[Path, typer.Argument(help="Directory for the cell's clusters and state.")],
    bootstrap: BootstrapOpt = "127.0.0.1:9092",
    cell: Annotated[str, typer.Option(help="The cell whose clusters this agent runs.")] = "local",
    first_port: Annotated[
        int, typer.Option(help="First listener port; each cluster gets a block of 20.")
    ] = 19092,
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 1.0,
    stop_on_exit: Annotated[
        bool, typer.Option("--stop-on-exit", help="Stop every broker when the agent stops.")
    ] = False,
) -> None:
    """Run the clusters the control plane assigns to CELL until Ctrl-C. Brokers outlive the
    agent unless --stop-on-exit; a restarted agent adopts them from ROOT."""
    _logging()
    from artesian.controlplane.data_plane import DataPlaneAgent

    with reporting(bootstrap):
        agent = DataPlaneAgent(bootstrap, root, cell, first_port).start()
    out.print(f"Data plane of cell {cell!r} in {root} (state on {bootstrap}). Stop with Ctrl-C.")
    try:
        agent.run(interval)
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop(stop_brokers=stop_on_exit)
