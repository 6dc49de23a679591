"""Shared pieces of the client commands (topic, produce, consume, groups).

They talk to a broker through confluent-kafka (librdkafka), like any other client would: the
CLI exercises the same wire paths as users' applications, and works against Apache Kafka too.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from confluent_kafka import KafkaError, KafkaException
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ENV_BOOTSTRAP = "ARTESIAN_BOOTSTRAP"

# Seconds to wait for a broker's answer; the user can raise it with --request-timeout.
DEFAULT_TIMEOUT = 15.0

BootstrapOpt = Annotated[
    str,
    typer.Option(
        "--bootstrap-server",
        "-b",
        envvar=ENV_BOOTSTRAP,
        help=f"Broker HOST:PORT list (env {ENV_BOOTSTRAP}).",
        show_envvar=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
CommandConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--command-config",
        help="A .properties file of client settings (security.protocol, sasl.*, ...).",
    ),
]
PropsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-X",
        "--property",
        help="Client setting as key=value, librdkafka names (e.g. -X client.id=me). Repeatable.",
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option("--request-timeout", help="Seconds to wait for the broker.")
]


class CliError(Exception):
    """A failure to report as one line (plus a hint saying what to do next), then exit."""

    def __init__(self, message: str, hint: str = "", code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def make_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


# Tables and JSON go to stdout; messages, progress and errors to stderr so pipes stay clean.
# Piped (grep, a file), tables are as wide as their values, as Kafka's tools print them:
# Rich would lay them out for 80 columns and cut values to "…".
out = Console(
    highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 1000
)
err = Console(
    stderr=True,
    highlight=False,
    soft_wrap=True,
    emoji=False,
    width=None if sys.stderr.isatty() else 1000,
)


def fail(message: str, hint: str = "", code: int = 1) -> NoReturn:
    raise CliError(message, hint, code)


def print_error(e: CliError) -> None:
    # Messages quote configs and lists ("[config]", "['a']"): text, never markup.
    err.print(f"[red]error:[/red] {escape(e.message)}", markup=True, highlight=False)
    if e.hint:
        err.print(e.hint, markup=False)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (kill, docker stop, systemd) ends the block as Ctrl-C does: a consumer commits
    and leaves its group, a cluster's brokers are stopped, rather than the process dying."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def reporting(bootstrap: str) -> Iterator[None]:
    """Turn CliError and client exceptions into a message and a non-zero exit code."""
    _REFUSALS.clear()  # what earlier commands of this process met is not this one's
    _CLIENTS.clear()
    try:
        yield
    except CliError as e:
        print_error(e)
        raise typer.Exit(e.code) from e
    except KafkaException as e:
        ce = from_kafka_error(e, bootstrap)
        print_error(ce)
        raise typer.Exit(ce.code) from e
    except TimeoutError as e:  # an admin future that did not resolve in time
        print_error(
            login_refused(bootstrap)
            or CliError(
                f"no answer from {bootstrap} in time", "Retry with a larger --request-timeout."
            )
        )
        raise typer.Exit(1) from e


# The last login or TLS failure librdkafka reported (its error callback): a request that then
# times out was refused, not unanswered.
_REFUSALS: list[KafkaError] = []
_CLIENTS: list[Any] = []  # librdkafka clients serve their error callbacks only when polled


def track_client(client: Any) -> Any:
    """Keep a client to poll for a refused login when a request fails (see login_refused)."""
    _CLIENTS.append(client)
    return client


_REFUSAL_CODES = (
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._SSL,
)


def _note_refusal(err: KafkaError) -> None:
    if err.code() in _REFUSAL_CODES:
        _REFUSALS[:] = [err]


def login_refused(bootstrap: str) -> CliError | None:
    """Why the broker refused this client, if librdkafka said so."""
    for client in _CLIENTS:
        with contextlib.suppress(Exception):  # a consumer closed on the way out
            client.poll(0)
    if not _REFUSALS:
        return None
    err = _REFUSALS[-1]
    if err.code() == KafkaError._SSL:
        return CliError(
            f"TLS with {bootstrap} failed: {err.str()}",
            "Check ssl.ca.location (and the client certificate, when the listener asks for "
            "one) in --command-config or -X.",
        )
    return CliError(
        f"{bootstrap} refused the login: {err.str()}",
        "Check sasl.mechanism, sasl.username and sasl.password (--command-config or -X).",
    )


def unreachable(bootstrap: str) -> CliError:
    return CliError(
        f"cannot reach {bootstrap}: is a broker running?",
        "Start one with `artesian up`, or point at yours with --bootstrap-server HOST:PORT "
        f"(or {ENV_BOOTSTRAP}).",
    )


def from_kafka_error(e: KafkaException | KafkaError, bootstrap: str, what: str = "") -> CliError:
    ke = e.args[0] if isinstance(e, KafkaException) and e.args else e
    if not isinstance(ke, KafkaError):
        return CliError(f"{what}{e}")
    code = ke.code()
    refused = login_refused(bootstrap)
    if refused is not None and code in (
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        *_REFUSAL_CODES,
    ):
        return refused
    if code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
        return unreachable(bootstrap)
    if code == KafkaError._TIMED_OUT:
        return CliError(
            f"{what}no answer from {bootstrap} in time",
            "Is the broker overloaded or unreachable? Retry with a larger --request-timeout.",
        )
    hint = _HINTS.get(code, "")
    return CliError(f"{what}{ke.name()}: {ke.str()}", hint)


_HINTS: dict[int, str] = {
    KafkaError.UNKNOWN_TOPIC_OR_PART: "List the topics with `artesian topic list`.",
    KafkaError.TOPIC_ALREADY_EXISTS: "Use --if-not-exists to ignore this.",
    KafkaError.INVALID_CONFIG: "See `artesian topic describe NAME` for the current settings.",
    KafkaError.GROUP_ID_NOT_FOUND: "List the groups with `artesian groups list`.",
    KafkaError.NON_EMPTY_GROUP: "Stop the group's consumers first.",
}


def parse_kv(items: Iterable[str], option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{option} {item!r}: expected key=value", f"Example: {option} retention.ms=60000")
        result[key.strip()] = value
    return result


def read_properties(path: Path) -> dict[str, str]:
    """Java .properties subset: key=value or key: value lines, # and ! comments."""
    try:
        text = path.read_text()
    except OSError as e:
        fail(f"--command-config {path}: {e.strerror or e}")
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if sep < 0:
            fail(f"--command-config {path}: cannot parse {raw!r}", "Expected key=value lines.")
        props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props


@dataclass(slots=True)
class ClientOptions:
    bootstrap: str
    command_config: Path | None = None
    props: list[str] | None = None
    timeout: float = DEFAULT_TIMEOUT

    def config(self, **extra: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            # librdkafka logs every failed connect to stderr; the CLI reports failures itself.
            "log_level": 0,
            "client.id": "artesian-cli",
            **extra,
        }
        if self.command_config is not None:
            conf.update(read_properties(self.command_config))
        conf.update(parse_kv(self.props or [], "-X"))
        from_java_jaas(conf)
        conf.setdefault("error_cb", _note_refusal)
        return conf

    def check_reachable(self) -> None:
        """Fail fast with a clear message when no bootstrap server accepts a connection.

        librdkafka would retry silently until the request timeout instead.
        """
        last: OSError | None = None
        for hp in self.bootstrap.split(","):
            hp = hp.strip()
            if "://" in hp:
                hp = hp.split("://", 1)[1]
            host, _, port = hp.rpartition(":")
            if not host or not port.isdigit():
                fail(
                    f"--bootstrap-server {hp!r}: expected HOST:PORT",
                    "Example: --bootstrap-server 127.0.0.1:9092",
                    code=2,
                )
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=3.0):
                    return
            except OSError as e:
                last = e
        raise unreachable(self.bootstrap) from last

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        self.check_reachable()
        return track_client(AdminClient(self.config()))


def from_java_jaas(conf: dict[str, Any]) -> None:
    """A Java client's sasl.jaas.config (PLAIN or SCRAM login modules) as librdkafka's
    sasl.username and sasl.password, so Kafka's own client.properties files work here."""
    jaas = conf.pop("sasl.jaas.config", None)
    if not jaas:
        return
    from artesian.security.jaas import parse_jaas_config

    try:
        parsed = parse_jaas_config(str(jaas))
    except ValueError:
        # Its message would quote the text, which may hold the password.
        fail(
            "sasl.jaas.config is not a JAAS config this command can read",
            "Give sasl.username and sasl.password (librdkafka's names) instead.",
        )
    options = parsed.options
    module = parsed.login_module.rsplit(".", 1)[-1]
    if module not in ("PlainLoginModule", "ScramLoginModule"):
        fail(
            f"sasl.jaas.config: {module} is not read here",
            "For OAUTHBEARER give librdkafka's sasl.oauthbearer.* settings; GSSAPI is not "
            "supported.",
        )
    if options.get("tokenauth", "").lower() == "true":
        fail(
            "sasl.jaas.config: delegation token logins (tokenauth) are not supported by the "
            "command-line client",
            "Log in with the token owner's own credentials.",
        )
    if "username" not in options or "password" not in options:
        fail(
            "sasl.jaas.config has no username and password",
            "Give sasl.username and sasl.password (librdkafka's names) instead.",
        )
    conf.setdefault("sasl.username", options["username"])
    conf.setdefault("sasl.password", options["password"])


def client_options(
    bootstrap: str | None,
    command_config: Path | None,
    props: list[str] | None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ClientOptions:
    return ClientOptions(
        bootstrap or os.environ.get(ENV_BOOTSTRAP) or DEFAULT_BOOTSTRAP,
        command_config,
        props,
        timeout,
    )


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: Iterable[Iterable[Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    for i, c in enumerate(columns):
        if i == 0:
            # The first column names the row (a topic, a group, a cluster id): never cut it,
            # however narrow the terminal; the others wrap instead.
            widest = max((len(r[0]) for r in cells if r), default=0)
            t.add_column(c, no_wrap=True, min_width=max(widest, len(c)))
        else:
            t.add_column(c, overflow="fold")  # a narrow terminal wraps values, never cuts them
    for r in cells:
        t.add_row(*(Text(c) for c in r))  # names and descriptions are text, never markup
    return t


def result(future: Any, timeout: float, bootstrap: str, what: str = "") -> Any:
    """Wait for an admin future; client errors become CliError."""
    try:
        return future.result(timeout)
    except KafkaException as e:
        raise from_kafka_error(e, bootstrap, what) from e
    except TimeoutError as e:  # concurrent.futures.TimeoutError is TimeoutError on 3.11+
        raise CliError(
            f"{what}no answer from {bootstrap} in {timeout:g}s",
            "Retry with a larger --request-timeout.",
        ) from e
