"""``artesian users``: SCRAM credentials of SASL users (like kafka-configs --entity-type
users), through Kafka's own admin API (KIP-554), so it works against Apache Kafka too."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    CliError,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    fail,
    from_kafka_error,
    make_app,
    out,
    print_json,
    reporting,
    result,
    table,
)

users_app = make_app("Create, list and delete the SCRAM credentials SASL clients log in with.")

_MECHANISMS = {
    "SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
    "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512,
}
MechanismOpt = Annotated[
    str,
    typer.Option("--mechanism", "-m", help="SCRAM-SHA-256 or SCRAM-SHA-512.", case_sensitive=False),
]


def _mechanism(name: str) -> Any:
    try:
        return _MECHANISMS[name.upper()]
    except KeyError:
        raise CliError(
            f"unknown mechanism {name!r}", "Use SCRAM-SHA-256 or SCRAM-SHA-512."
        ) from None


def _each(futures: dict[str, Any], opts: Any, verb: str) -> None:
    for user, future in futures.items():
        result(future, opts.timeout, opts.bootstrap, f"{verb} {user!r}: ")


@users_app.command("set")
def set_(
    user: Annotated[str, typer.Argument(help="User name.")],
    password: Annotated[
        str | None,
        typer.Option(
            help="The password; asked for (twice) on a terminal when not given, else read as "
            "one line from standard input.",
        ),
    ] = None,
    mechanism: MechanismOpt = "SCRAM-SHA-512",
    iterations: Annotated[int, typer.Option(help="PBKDF2 iterations, 4096 to 16384.")] = 8192,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Create or replace a user's SCRAM credential. The password is salted on this machine;
    the broker never sees it."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        if not user:
            fail("the user name is empty", "Example: artesian users set alice", code=2)
        if password is None:
            if sys.stdin.isatty():
                password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
            else:
                password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("the password is empty", "Give --password, or type or pipe it.", code=2)
        info = ScramCredentialInfo(_mechanism(mechanism), iterations)
        admin = opts.admin()
        upsertion = UserScramCredentialUpsertion(user, info, password.encode())
        _each(admin.alter_user_scram_credentials([upsertion]), opts, "setting")
    out.print(f"Set the {mechanism.upper()} credential of {user}.")


@users_app.command()
def delete(
    user: Annotated[str, typer.Argument(help="User name.")],
    mechanism: MechanismOpt = "SCRAM-SHA-512",
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Delete a user's SCRAM credential for one mechanism."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        admin = opts.admin()
        deletion = UserScramCredentialDeletion(user, _mechanism(mechanism))
        _each(admin.alter_user_scram_credentials([deletion]), opts, "deleting")
    out.print(f"Deleted the {mechanism.upper()} credential of {user}.")


@users_app.command("list")
def list_(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Users with SCRAM credentials, their mechanisms and iterations (never secrets)."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        admin = opts.admin()
        try:
            described = admin.describe_user_scram_credentials().result(opts.timeout)
        except KafkaException as e:
            error = e.args[0] if e.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.RESOURCE_NOT_FOUND:
                described = {}
            else:
                raise from_kafka_error(e, opts.bootstrap, "listing users: ") from e
    rows = sorted(
        (user, info.mechanism.name.replace("_", "-"), info.iterations)
        for user, description in described.items()
        for info in description.scram_credential_infos
    )
    if as_json:
        print_json([{"user": u, "mechanism": m, "iterations": i} for u, m, i in rows])
    elif rows:
        out.print(table(None, ["USER", "MECHANISM", "ITERATIONS"], rows))
    else:
        out.print("No SCRAM users.")
