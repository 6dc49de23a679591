"""The ``artesian`` command."""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from artesian.cli.acls import acls_app
from artesian.cli.bench import bench_app
from artesian.cli.client_metrics import client_metrics_app
from artesian.cli.cluster import cluster_app
from artesian.cli.common import CliError, print_error, sigterm_as_ctrl_c
from artesian.cli.consume import consume
from artesian.cli.controlplane import (
    api_keys_app,
    clusters_app,
    controlplane_app,
    dataplane_app,
)
from artesian.cli.delegation_tokens import delegation_tokens_app
from artesian.cli.groups import groups_app
from artesian.cli.logical_clusters import logical_clusters_app
from artesian.cli.operator import operator_app
from artesian.cli.produce import produce
from artesian.cli.quotas import quotas_app
from artesian.cli.rebalance import rebalance_app
from artesian.cli.share_groups import share_groups_app
from artesian.cli.tenants import tenants_app, usage
from artesian.cli.topic import topic_app
from artesian.cli.transactions import transactions_app
from artesian.cli.users import users_app
from artesian.config.broker import BrokerConfig
from artesian.config.definitions import ConfigError

app = typer.Typer(
    help="Artesian: a Kafka-compatible event streaming platform.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"artesian {version('artesian')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print Artesian's version and exit.",
            callback=_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Artesian: a Kafka-compatible event streaming platform."""


def _python() -> str:
    """The interpreter Artesian runs in, which has confluent-kafka: "python" may be another
    one, or none."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


# soft_wrap: messages stay on one line in logs and pipes, where they get grepped.
console = Console(stderr=True, soft_wrap=True, emoji=False)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _event_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    # uvloop: roughly twice the request rate of the default loop for small requests.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


_DEFAULT_DATA_DIR = Path(".artesian")
_KAFKA_PARTITION_DIR = re.compile(r".+-\d+")


def _data_dir(given: Path | None, config: BrokerConfig) -> Path:
    """--data-dir, or Kafka's log.dirs (log.dir) when set (a properties file or --set): the
    one directory a broker keeps its logs and metadata in."""
    key = "log.dirs" if config.is_set("log.dirs") else "log.dir" if config.is_set("log.dir") else ""
    if not key:
        return given if given is not None else _DEFAULT_DATA_DIR
    dirs = [d for d in config.log_dirs if d.strip()]
    if not dirs:
        raise ConfigError(f"{key} is empty: give the directory the broker keeps its data in")
    if len(dirs) > 1:
        raise ConfigError(
            f"{key} lists {len(dirs)} directories; an Artesian broker keeps one (JBOD is "
            "not supported): give one, on the disk or volume the broker should use"
        )
    configured = Path(dirs[0].strip())
    if given is not None and given.resolve() != configured.resolve():
        raise ConfigError(
            f"--data-dir {given} and {key} {configured} name different directories: "
            "give one of them"
        )
    if (
        given is None
        and configured.resolve() != _DEFAULT_DATA_DIR.resolve()
        and (_DEFAULT_DATA_DIR / "meta.properties").exists()
    ):
        # Before log.dirs was honoured, this file's broker kept its data in the default.
        raise ConfigError(
            f"{key} is {configured}, but {_DEFAULT_DATA_DIR.resolve()} holds a broker's data "
            f"(earlier versions of Artesian ignored {key}): move that directory to "
            f"{configured}, or "
            f"start with --data-dir {_DEFAULT_DATA_DIR}"
        )
    if (configured / "meta.properties").exists() and not (configured / "logs").is_dir():
        kafka_partitions = [
            p for p in configured.iterdir() if p.is_dir() and _KAFKA_PARTITION_DIR.fullmatch(p.name)
        ]
        if kafka_partitions:
            raise ConfigError(
                f"{key} {configured} is an Apache Kafka data directory (it holds "
                f"{kafka_partitions[0].name}, ...), which Artesian cannot read: give another "
                "directory, and move topics over with a client (MirrorMaker, kcat)"
            )
    return configured


def _run(
    listen: str | None, data_dir: Path | None, props: list[str], config_file: Path | None
) -> None:
    from artesian.broker.server import BrokerStartupError, parse_listener, run_broker

    try:
        host, port = parse_listener(listen or "127.0.0.1:9092")
    except ValueError as e:
        console.print(f"[red]--listen: {e}[/red]. Example: --listen 127.0.0.1:9092")
        raise typer.Exit(2) from e
    try:
        config = BrokerConfig.load(config_file, props)
        directory = _data_dir(data_dir, config)
    except ConfigError as e:
        console.print(f"[red]configuration error:[/red] {e}")
        raise typer.Exit(2) from e
    if listen is not None and config.is_set("listeners"):
        console.print(
            "[red]give either --listen or the listeners config, not both[/red] (--listen "
            "HOST:PORT is short for listeners=PLAINTEXT://HOST:PORT)"
        )
        raise typer.Exit(2)
    _event_loop_policy()
    try:
        asyncio.run(run_broker(config, directory, host, port))
    except BrokerStartupError as e:
        console.print(f"[red]cannot start the broker:[/red] {e}")
        raise typer.Exit(2) from e
    except OSError as e:
        what = e.strerror or str(e)
        if e.filename:
            what += f": {e.filename}"
        if e.errno == errno.EADDRINUSE:
            metrics = config.get("artesian.metrics.port")
            ports = f"{listen or config.get('listeners')}" + (
                f" or metrics port {metrics}" if metrics else ""
            )
            console.print(
                f"[red]cannot start the broker: {escape(what)}[/red] ({escape(ports)}). Is "
                "another broker using one of them? Choose others with --listen or "
                "--set artesian.metrics.port=PORT."
            )
        else:
            console.print(f"[red]cannot start the broker:[/red] {escape(what)}")
        raise typer.Exit(1) from e


@app.command()
def broker(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT to listen on (PLAINTEXT) [default: 127.0.0.1:9092]. For several "
            "listeners, or SSL and SASL, set listeners=NAME://HOST:PORT,... instead."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Directory for logs and metadata (default: log.dirs when set, else .artesian).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Broker config as key=value, Kafka names (e.g. log.retention.hours=24). "
            "Repeatable.",
        ),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="A Java-style .properties file.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run one broker."""
    _setup_logging(log_level)
    _run(listen, data_dir, set_ or [], config_file)


@app.command()
def up(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Directory for logs and metadata.")
    ] = Path(".artesian"),
    port: Annotated[int, typer.Option(help="Port of the (first) broker.")] = 9092,
    brokers: Annotated[
        int,
        typer.Option(
            help="Brokers to run. Above 1, the operator runs them as a cluster on ports PORT, "
            "PORT+1, ... (replication factor 3 where there are 3 or more)."
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run Artesian on its embedded defaults: one broker on 127.0.0.1, data in ./.artesian."""
    _setup_logging(log_level)
    if brokers > 1:
        _up_cluster(data_dir, port, brokers)
        return
    bootstrap = f"127.0.0.1:{port}"
    console.print(f"[bold green]Artesian[/bold green] bootstrap server: [bold]{bootstrap}[/bold]")
    console.print(
        f'Try it:  {_python()} -c "from confluent_kafka import Producer; '
        f"p = Producer({{'bootstrap.servers': '{bootstrap}'}}); "
        "p.produce('hello', b'world'); p.flush()\"",
        soft_wrap=True,  # one line, so it can be copied as it is
        highlight=False,
    )
    console.print(
        f"Data in {data_dir.resolve()}, tiered segments in {(data_dir / 'remote-storage').resolve()}"
        ". Stop with Ctrl-C."
    )
    # Tiered storage is on, so topics created with remote.storage.enable=true keep their
    # history in the (local-directory) object store.
    _run(bootstrap, data_dir, ["remote.log.storage.system.enable=true"], None)


def _up_cluster(data_dir: Path, port: int, brokers: int) -> None:
    """Several brokers, kept running by the operator until Ctrl-C stops them all."""
    from artesian.operator.operator import Operator
    from artesian.operator.spec import ClusterSpec

    rf = min(3, brokers)
    spec = ClusterSpec(
        brokers=brokers,
        data_dir=data_dir.resolve(),
        first_port=port,
        config={  # the operator points every broker at one object store in data_dir
            "remote.log.storage.system.enable": "true",
            "default.replication.factor": str(rf),
            "offsets.topic.replication.factor": str(rf),
            "transaction.state.log.replication.factor": str(rf),
            "min.insync.replicas": str(min(2, rf)),
        },
    )
    operator = Operator(lambda: spec)
    console.print(
        f"[bold green]Artesian[/bold green] cluster of {brokers} brokers, bootstrap servers: "
        f"[bold]{spec.bootstrap()}[/bold]"
    )
    console.print(
        f"Data in {spec.data_dir}; each broker's log in broker-N/broker.log there. "
        "Stop with Ctrl-C."
    )
    try:
        with sigterm_as_ctrl_c():
            operator.run()
    except KeyboardInterrupt:
        console.print("stopping the brokers...")
        operator.stop_all()


# Client commands (what kafka-topics & co. do), one module each.
app.add_typer(topic_app, name="topic")
app.command("produce")(produce)
app.command("consume")(consume)
app.add_typer(groups_app, name="groups")
app.add_typer(bench_app, name="bench")
app.add_typer(share_groups_app, name="share-groups")
app.add_typer(transactions_app, name="transactions")
app.add_typer(cluster_app, name="cluster")
app.add_typer(client_metrics_app, name="client-metrics")
app.add_typer(users_app, name="users")
app.add_typer(acls_app, name="acls")
app.add_typer(delegation_tokens_app, name="delegation-tokens")
app.add_typer(quotas_app, name="quotas")
app.add_typer(logical_clusters_app, name="logical-clusters")
app.add_typer(rebalance_app, name="rebalance")
app.add_typer(operator_app, name="operator")
app.add_typer(controlplane_app, name="controlplane")
app.add_typer(dataplane_app, name="dataplane")
app.add_typer(tenants_app, name="tenants")
app.command("usage")(usage)
app.add_typer(clusters_app, name="clusters")
app.add_typer(api_keys_app, name="api-keys")


def main() -> None:
    """The `artesian` command. A CliError a command raises before its own reporting (a bad
    option value) is still a message and an exit code, never a traceback."""
    try:
        app()
    except CliError as e:
        print_error(e)
        raise SystemExit(e.code) from None


if __name__ == "__main__":
    main()
