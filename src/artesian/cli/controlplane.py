"""``artesian controlplane run`` and ``artesian dataplane run``: the serverless control plane's
REST API and autoscaler, and the agent that runs one cell's clusters. They share nothing but a
Kafka cluster, on which desired and observed state travel."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from artesian.cli.common import (
    BootstrapOpt,
    JsonOpt,
    fail,
    make_app,
    out,
    parse_kv,
    print_json,
    reporting,
    table,
)

controlplane_app = make_app(
    "The control plane: a REST API to create, resize, upgrade and delete clusters, and the "
    "autoscaler. It writes desired state to Kafka and reads what the data planes report."
)
log = logging.getLogger("artesian.controlplane")
dataplane_app = make_app(
    "A data plane: runs the clusters of one cell as local broker processes, through the "
    "operator, and reports their phase and load to Kafka."
)


def _logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


# Where `controlplane run` keeps the admin's token unless told otherwise, and where the API's
# client commands look for it when given none: on the control plane's own machine, the admin's
# commands need no flag.
DEFAULT_ADMIN_TOKEN_FILE = Path("~/.artesian/admin.token")


@controlplane_app.command("run")
def run_control_plane(
    bootstrap: BootstrapOpt = "127.0.0.1:9092",
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.", min=1, max=65535)] = 8080,
    cooldown: Annotated[
        float, typer.Option(help="Seconds the autoscaler leaves a cluster alone after a change.")
    ] = 60.0,
    admin_token_file: Annotated[
        Path,
        typer.Option(
            help="The admin's API token, made (readable by you only) if missing. Tenants get "
            "tokens of their own from the admin (`artesian tenants create`)."
        ),
    ] = DEFAULT_ADMIN_TOKEN_FILE,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="Serve HTTPS with this certificate chain (PEM); tokens cross the wire."),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="The private key of --ssl-certfile (PEM).")
    ] = None,
) -> None:
    """Serve the control plane's API (see /docs there) until Ctrl-C. BOOTSTRAP is the Kafka
    cluster that carries the state topics; `artesian up` gives one."""
    _logging()
    import uvicorn

    from artesian.controlplane.api import create_app
    from artesian.controlplane.autoscaler import AutoscalePolicy
    from artesian.controlplane.control_plane import ControlPlane
    from artesian.security.secret_file import EmptySecretFile, read_or_create_secret

    if (ssl_certfile is None) != (ssl_keyfile is None):
        fail("--ssl-certfile and --ssl-keyfile go together", code=2)
    if ssl_certfile is None and not _loopback(host):
        log.warning(
            "the API listens on %s without TLS: tokens cross the network in the clear "
            "(give --ssl-certfile and --ssl-keyfile)",
            host,
        )
    token_file = admin_token_file.expanduser()
    try:
        admin_token = read_or_create_secret(token_file)
    except EmptySecretFile as e:
        fail(f"--admin-token-file: {e}", "Remove it to have a new token made.", code=2)
    except OSError as e:
        fail(f"--admin-token-file {token_file}: {e.strerror or e}", code=2)
    if len(admin_token) < 16:
        fail(f"--admin-token-file {token_file}: the token needs at least 16 characters", code=2)
    servers: list[uvicorn.Server] = []

    def stop_serving() -> None:  # fenced by a newer control plane
        for server in servers:
            server.should_exit = True

    with reporting(bootstrap):
        control_plane = ControlPlane(
            bootstrap,
            admin_token,
            AutoscalePolicy(cooldown_ms=int(cooldown * 1000)),
            on_replaced=stop_serving,
        ).start()
    scheme = "http" if ssl_certfile is None else "https"
    out.print(
        f"Control plane API on {scheme}://{host}:{port} (state on {bootstrap}); the admin's "
        f"token is in {token_file}. Stop with Ctrl-C."
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(control_plane),
            host=host,
            port=port,
            log_level="warning",
            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        )
    )
    servers.append(server)
    if control_plane.replaced.is_set():  # fenced before serving
        server.should_exit = True
    try:
        server.run()
    finally:
        control_plane.stop()
    if control_plane.replaced.is_set():
        fail(
            "another control plane started on these state topics and took over",
            "Send requests to the new one; run only one control plane per Kafka cluster.",
        )


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
    client_protocol: Annotated[
        str,
        typer.Option(
            help="The protocol clients use: PLAINTEXT (no login), or SASL_PLAINTEXT or "
            "SASL_SSL, logging in with the clusters' API keys (SCRAM-SHA-256/512)."
        ),
    ] = "PLAINTEXT",
    client_config: Annotated[
        Path | None,
        typer.Option(
            help="A properties file of the client listener's settings, e.g. "
            "ssl.keystore.location for SASL_SSL (PEM)."
        ),
    ] = None,
    connections_max_reauth_ms: Annotated[
        int,
        typer.Option(
            help="How long a client's login lasts on the client listener before it must log "
            "in again (KIP-368): a revoked API key loses its open connections within this. "
            "Clients without re-authentication (kafka-python, older Java) are reconnected.",
            min=1000,
        ),
    ] = 900_000,
    metering_interval: Annotated[
        float,
        typer.Option(help="Seconds each usage record covers (the usage ledger's grain).", min=0.1),
    ] = 60.0,
) -> None:
    """Run the clusters the control plane assigns to CELL until Ctrl-C. Brokers outlive the
    agent unless --stop-on-exit; a restarted agent adopts them from ROOT."""
    _logging()
    from artesian.config.broker import load_properties
    from artesian.controlplane.data_plane import AgentBusy, DataPlaneAgent

    listener_config: dict[str, str] = {}
    if client_config is not None:
        try:
            listener_config = load_properties(client_config)
        except (OSError, ValueError) as e:
            fail(f"--client-config {client_config}: {getattr(e, 'strerror', None) or e}", code=2)
    with reporting(bootstrap):
        try:
            agent = DataPlaneAgent(
                bootstrap,
                root,
                cell,
                first_port,
                client_protocol=client_protocol.upper(),
                client_config=listener_config,
                metering_interval_ms=int(metering_interval * 1000),
                client_session_ms=connections_max_reauth_ms,
            )
        except ValueError as e:
            fail(
                str(e),
                "--client-protocol is PLAINTEXT, SASL_PLAINTEXT or SASL_SSL; --client-config "
                "goes with the SASL ones.",
                code=2,
            )
        try:
            agent.start()
        except AgentBusy as e:
            agent.stop()
            fail(
                str(e),
                "This agent has fenced it, so it can write nothing more; stop it (or wait for "
                "its next pass) and start this one again.",
            )
    out.print(f"Data plane of cell {cell!r} in {root} (state on {bootstrap}). Stop with Ctrl-C.")
    try:
        agent.run(interval)
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop(stop_brokers=stop_on_exit)
    if agent.replaced:
        fail(
            f"another data plane agent of cell {cell!r} took over; this one stopped",
            "One agent runs a cell at a time: stop the other first to run this one again.",
        )


# --- the API's client: `artesian clusters ...` ---------------------------------------------

clusters_app = make_app(
    "Clusters on the control plane: create, list, describe, resize, upgrade, delete. Talks to "
    "the API of `artesian controlplane run`."
)
ApiOpt = Annotated[
    str,
    typer.Option(
        "--api", envvar="ARTESIAN_API", help="The control plane's URL (env ARTESIAN_API)."
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="ARTESIAN_TOKEN",
        help="Your API token (env ARTESIAN_TOKEN); default: the admin's, from "
        f"{DEFAULT_ADMIN_TOKEN_FILE} if it is there.",
        show_default=False,
    ),
]
ClusterArg = Annotated[str, typer.Argument(help="The cluster's id (lkc-...).")]
ConfigOpt = Annotated[
    list[str] | None,
    typer.Option("--config", help="A broker property as key=value, Kafka's names. Repeatable."),
]


QuotaOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--quota",
        help="The admin's: a logical cluster's quota as key=rate (producer_byte_rate, "
        "consumer_byte_rate, request_percentage, controller_mutation_rate), shared by its "
        "clients on each broker. Repeatable.",
    ),
]


def _quotas(values: list[str]) -> dict[str, float]:
    quotas = {}
    for key, value in parse_kv(values, "--quota").items():
        try:
            quotas[key] = float(value)
        except ValueError:
            fail(f"--quota {key}={value}: the rate is not a number")
    return quotas


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _token(given: str | None, api: str) -> str | None:
    """The token given, else the admin's from its default file, for a control plane on this
    machine only: the admin's token never leaves it for a URL someone mistyped."""
    if given:
        return given
    if not _loopback(urllib.parse.urlsplit(api).hostname or ""):
        return None
    try:
        return DEFAULT_ADMIN_TOKEN_FILE.expanduser().read_text().strip() or None
    except OSError:
        return None


def call_api(
    api: str, token: str | None, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    """One API request; its JSON answer, or the API's reason as an error and exit code 1."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    token = _token(token, api)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(api.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", e.reason)
        except ValueError:
            detail = e.reason
        if isinstance(detail, list):  # the API's validation errors: where, and what
            detail = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                for d in detail
                if isinstance(d, dict)
            )
        hint = (
            "Give your API token with --token or ARTESIAN_TOKEN (the admin's is in the file "
            "`controlplane run` names)."
            if e.code == 401 and "expired" not in str(detail)
            else ""
        )
        fail(f"{method} {path}: {e.code} {detail}", hint)
    except (urllib.error.URLError, OSError) as e:
        fail(
            f"cannot reach the control plane at {api} ({e})",
            "Start it with `artesian controlplane run`, or point at it with --api URL.",
        )


def show_answer(doc: Any, as_json: bool, text: Callable[[Any], Any]) -> None:
    """--json prints the API's answer as it came; otherwise ``text`` renders it."""
    if as_json:
        print_json(doc)
    else:
        out.print(text(doc))


def call_and_show(
    api: str,
    token: str | None,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    as_json: bool,
    text: Callable[[Any], Any],
) -> None:
    """One API request, and its answer shown (``show_answer``); errors as ``call_api``."""
    with reporting(""):
        doc = call_api(api, token, method, path, body)
    show_answer(doc, as_json, text)


def _row(c: dict[str, Any]) -> tuple[Any, ...]:
    spec, status = c["spec"], c["status"] or {}
    live = sum(b["live"] for b in status.get("brokers", []))
    return (
        c["id"],
        spec.get("tenant") or "-",
        spec["name"],
        spec["cell"],
        "deleting"
        if spec["deleted"]
        else f"on {spec['host']}"
        if spec.get("host")
        else f"{spec['brokers']}, shared"
        if spec.get("shared")
        else spec["brokers"],
        f"{status.get('phase', '-')} (gen {status.get('observed_generation', '-')}/"
        f"{spec['generation']}){_staleness(status)}",
        live,
        status.get("bootstrap") or "-",
    )


_COLUMNS = ["ID", "TENANT", "NAME", "CELL", "BROKERS", "PHASE", "LIVE", "BOOTSTRAP"]
# A report older than this may no longer say how the cluster is: its data plane's agent
# reports every pass (the autoscaler ignores reports as old, AutoscalePolicy).
STALE_REPORT_MS = 30_000


def _report_age_ms(status: dict[str, Any]) -> int | None:
    """How old a cluster's report is; None without one."""
    if not status.get("time_ms"):
        return None
    return int(time.time() * 1000) - int(status["time_ms"])


def _staleness(status: dict[str, Any]) -> str:
    """The PHASE column's ", report 49 s old" for a report too old to go by, else ""."""
    age = _report_age_ms(status)
    return f", report {age // 1000} s old" if age is not None and age > STALE_REPORT_MS else ""


def _described(doc: dict[str, Any]) -> Any:
    """A cluster's row, then its spec's other fields and its report's message and age."""
    from rich.console import Group
    from rich.text import Text

    spec, status = doc["spec"], doc["status"] or {}
    lines = [f"version {spec.get('version', '-')}"]
    if spec.get("config"):
        lines.append("config " + ", ".join(f"{k}={v}" for k, v in sorted(spec["config"].items())))
    auto = spec.get("autoscale")
    if auto:
        lines.append(
            f"autoscale {auto['min_brokers']}..{auto['max_brokers']} brokers, "
            f"{auto['broker_bytes_per_second']} B/s each"
        )
    if status.get("message"):
        lines.append(f"message: {status['message']}")
    age = _report_age_ms(status)
    if age is not None:
        note = " (its data plane may be down)" if age > STALE_REPORT_MS else ""
        lines.append(f"reported {age // 1000} s ago{note}")
    elif not status:
        lines.append(f"no report yet: is a data plane running for cell {spec['cell']}?")
    return Group(table(None, _COLUMNS, [_row(doc)]), *(Text(line) for line in lines))


@clusters_app.command("list")
def list_clusters(
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every cluster with what its data plane last reported."""
    call_and_show(
        api,
        token,
        "GET",
        "/v1/clusters",
        as_json=as_json,
        text=lambda doc: table(None, _COLUMNS, [_row(c) for c in doc["clusters"]]),
    )


@clusters_app.command("describe")
def describe_cluster(
    cluster: ClusterArg,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One cluster: its spec and its last report."""
    call_and_show(
        api,
        token,
        "GET",
        f"/v1/clusters/{cluster}",
        as_json=as_json,
        text=_described,
    )


@clusters_app.command("create")
def create_cluster(
    name: Annotated[str, typer.Argument(help="The cluster's name, unique to its tenant.")],
    brokers: Annotated[
        int | None, typer.Option(help="How many brokers (1; none for --logical).", min=1, max=20)
    ] = None,
    cell: Annotated[str, typer.Option(help="The cell whose data plane runs it.")] = "local",
    logical: Annotated[
        bool,
        typer.Option(
            "--logical",
            help="A logical cluster: placed on a shared cluster of the cell, with no brokers "
            "of its own; its clients see only its topics, groups and transactional ids.",
        ),
    ] = False,
    shared: Annotated[
        bool,
        typer.Option(
            "--shared", help="The admin's: a physical cluster that takes logical clusters."
        ),
    ] = False,
    config: ConfigOpt = None,
    autoscale: Annotated[
        str | None,
        typer.Option(
            help="MIN:MAX:BYTES_PER_SECOND: size the cluster to its load, one broker carrying "
            "BYTES_PER_SECOND of produce plus consume traffic."
        ),
    ] = None,
    quota: QuotaOpt = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="The tenant it is for (the admin's choice; a tenant's is its own)."),
    ] = None,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for a new cluster; the data plane of CELL provisions it."""
    body: dict[str, Any] = {"name": name, "cell": cell}
    if brokers is not None:
        body["brokers"] = brokers
    if logical:
        body["logical"] = True
    if shared:
        body["shared"] = True
    if tenant is not None:
        body["tenant"] = tenant
    with reporting(""):
        body["config"] = parse_kv(config or [], "--config")
        if quota:
            body["quotas"] = _quotas(quota)
        if autoscale is not None:
            body["autoscale"] = _autoscale(autoscale)
        doc = call_api(api, token, "POST", "/v1/clusters", body)
    show_answer(
        doc,
        as_json,
        lambda doc: (
            f"created cluster {doc['id']} ({name}); `artesian clusters describe {doc['id']}`"
        ),
    )


@clusters_app.command("update")
def update_cluster(
    cluster: ClusterArg,
    brokers: Annotated[
        int | None, typer.Option(help="Resize to this many brokers.", min=1, max=20)
    ] = None,
    version: Annotated[str | None, typer.Option(help="Roll every broker to this.")] = None,
    config: ConfigOpt = None,
    autoscale: Annotated[
        str | None, typer.Option(help="MIN:MAX:BYTES_PER_SECOND, or 'off'.")
    ] = None,
    quota: QuotaOpt = None,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a cluster: the next generation of its spec, which its data plane carries out
    (growing adds brokers, shrinking drains them first, a new version rolls them)."""
    body: dict[str, Any] = {}
    with reporting(""):
        if brokers is not None:
            body["brokers"] = brokers
        if version is not None:
            body["version"] = version
        if config:
            body["config"] = parse_kv(config or [], "--config")
        if autoscale is not None:
            body["autoscale"] = None if autoscale == "off" else _autoscale(autoscale)
        if quota:  # the whole set: a key left out, or given 0, is removed
            body["quotas"] = {k: v for k, v in _quotas(quota).items() if v > 0}
        if not body:
            fail(
                "nothing to change",
                "Give --brokers, --version, --config, --autoscale or --quota.",
            )
        doc = call_api(api, token, "PATCH", f"/v1/clusters/{cluster}", body)
    show_answer(
        doc, as_json, lambda doc: f"cluster {cluster} is at generation {doc['spec']['generation']}"
    )


@clusters_app.command("delete")
def delete_cluster(
    cluster: ClusterArg,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a cluster: its data plane stops its brokers and removes its data."""
    call_and_show(
        api,
        token,
        "DELETE",
        f"/v1/clusters/{cluster}",
        as_json=as_json,
        text=lambda doc: f"cluster {cluster} is being deleted",
    )


# --- `artesian api-keys ...` -------------------------------------------------------------

api_keys_app = make_app(
    "API keys of a cluster on the control plane: the SASL (SCRAM) username and secret its "
    "clients log in with, for the whole cluster or for resources under a prefix."
)
KeyArg = Annotated[str, typer.Argument(help="The API key (its SASL username).")]


@api_keys_app.command("create")
def create_api_key(
    cluster: ClusterArg,
    resource_prefix: Annotated[
        str | None,
        typer.Option(
            help="Reach only topics, groups and transactional ids starting with this "
            "(default: everything on the cluster)."
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="What the key is for.")] = "",
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key. Its secret is shown now and never again."""
    body = {"resource_prefix": resource_prefix, "description": description}
    with reporting(""):
        doc = call_api(api, token, "POST", f"/v1/clusters/{cluster}/api-keys", body)
    show_answer(
        doc,
        as_json,
        lambda doc: (
            f"API key [bold]{doc['key']}[/bold], secret [bold]{doc['secret']}[/bold]\n"
            "Save the secret now: it cannot be shown again. Clients log in with "
            "sasl.mechanism=SCRAM-SHA-512, sasl.username=<key>, sasl.password=<secret> once "
            f"`artesian clusters describe {cluster}` shows it Ready at generation "
            f"{doc['generation']} or later."
        ),
    )


@api_keys_app.command("list")
def list_api_keys(
    cluster: ClusterArg,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A cluster's API keys (never their secrets)."""
    with reporting(""):
        doc = call_api(api, token, "GET", f"/v1/clusters/{cluster}/api-keys")
    rows = [(k["key"], k["resource_prefix"] or "(all)", k["description"]) for k in doc["api_keys"]]
    show_answer(
        doc, as_json, lambda doc: table(None, ["KEY", "RESOURCE PREFIX", "DESCRIPTION"], rows)
    )


@api_keys_app.command("delete")
def delete_api_key(
    cluster: ClusterArg,
    key: KeyArg,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key: new logins with it fail once the cluster applies the change."""
    call_and_show(
        api,
        token,
        "DELETE",
        f"/v1/clusters/{cluster}/api-keys/{key}",
        as_json=as_json,
        text=lambda doc: f"API key {key} deleted (generation {doc['generation']})",
    )


def _autoscale(text: str) -> dict[str, int]:
    parts = text.split(":")
    try:
        low, high, rate = (int(p) for p in parts)
    except ValueError:
        fail(f"--autoscale {text!r} is not MIN:MAX:BYTES_PER_SECOND", code=2)
    return {"min_brokers": low, "max_brokers": high, "broker_bytes_per_second": rate}
