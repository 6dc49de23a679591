"""``artesian delegation-tokens``: create, renew, expire and describe delegation tokens (like
kafka-delegation-tokens.sh).

librdkafka's admin API has no delegation token calls, so these speak the protocol through
``wire.WireClient``. Tokens are handed out only to a principal that logged in some other
way, so the command's client properties must give a SASL login (or a TLS client
certificate): ``--command-config`` or ``-X sasl.username=...``."""

from __future__ import annotations

import base64
import binascii
import datetime
import sys
from typing import Annotated, Any

import typer

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    fail,
    make_app,
    out,
    print_json,
    reporting,
    table,
)
from artesian.cli.wire import WireClient, check_answer

delegation_tokens_app = make_app(
    "Create, renew, expire and describe delegation tokens (like kafka-delegation-tokens.sh)."
)

_CREATE, _RENEW, _EXPIRE, _DESCRIBE = 38, 39, 40, 41

# What to do next, by the broker's error (Kafka's codes by name).
_HINTS = {
    "delegation_token_request_not_allowed": "Tokens are handed out only over a SASL login (or "
    "a TLS client certificate), never to a connection that logged in with a token: give "
    "sasl.* properties with --command-config or -X.",
    "delegation_token_auth_disabled": "Set delegation.token.secret.key, the same on every "
    "broker, and restart them.",
    "delegation_token_not_found": "Check the HMAC; `artesian delegation-tokens describe` "
    "lists the tokens you may see.",
    "delegation_token_owner_mismatch": "Only the token's owner and its renewers may renew or "
    "expire it.",
    "delegation_token_expired": "Create a new token.",
    "delegation_token_authorization_failed": "Creating a token for another principal needs "
    "an ACL allowing CreateTokens on that principal's USER resource.",
    "unsupported_version": "The cluster's metadata version predates tokens: "
    "`artesian cluster features --upgrade`.",
    "cluster_authorization_failed": "A logical cluster's principals cannot have tokens; ask "
    "the shared cluster's operator.",
    "invalid_principal_type": "Renewers must be users (User:<name>).",
}

HmacOpt = Annotated[
    str,
    typer.Option(
        "--hmac",
        help="The token's HMAC, base64 as `create` prints it; - reads it from stdin (keeps it "
        "out of ps and the shell's history).",
    ),
]


def _hmac(text: str) -> bytes:
    if text == "-":
        text = sys.stdin.readline().strip()
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        fail("--hmac is not base64", "Give the HMAC as `create` or `describe` printed it.")


def _principal(text: str, option: str) -> tuple[str, str]:
    kind, sep, name = text.partition(":")
    if not sep or not kind or not name:
        fail(f"{option} {text!r} is not a principal", "Write it as User:<name>.")
    return kind, name


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


def _ms(value: datetime.datetime | int) -> int:
    return value if isinstance(value, int) else round(value.timestamp() * 1000)


@delegation_tokens_app.command()
def create(
    renewer: Annotated[
        list[str] | None,
        typer.Option("--renewer-principal", help="User:<name> who may renew it. Repeatable."),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            "--owner-principal",
            help="User:<name> to create it for (needs CreateTokens on that user); yourself "
            "when not given.",
        ),
    ] = None,
    max_life_time_period: Annotated[
        int,
        typer.Option(
            "--max-life-time-period",
            help="Longest it may live, in ms; -1 for delegation.token.max.lifetime.ms.",
        ),
    ] = -1,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Create a token for yourself or (--owner-principal) for another user.

    Clients log in with it over SCRAM: the token id as user name, the HMAC as password, and
    tokenauth=true (Java: ScramLoginModule's tokenauth option)."""
    from kio.schema.create_delegation_token.v3 import request as schema

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        renewers = tuple(
            schema.CreatableRenewers(principal_type=kind, principal_name=name)
            for kind, name in (_principal(r, "--renewer-principal") for r in renewer or ())
        )
        if any(r.principal_type != "User" for r in renewers):
            fail("--renewer-principal must name users", "Write it as User:<name>.")
        owner_type, owner_name = _principal(owner, "--owner-principal") if owner else (None, None)
        with WireClient.for_options(opts) as client:
            resp = client.request(
                _CREATE,
                3,
                owner_principal_type=owner_type,
                owner_principal_name=owner_name,
                renewers=renewers,
                max_lifetime=datetime.timedelta(milliseconds=max_life_time_period),
            )
        check_answer(resp.error_code, None, "creating the token", _HINTS)
    token = {
        "token_id": resp.token_id,
        "hmac": base64.b64encode(resp.hmac).decode(),
        "owner": f"{resp.principal_type}:{resp.principal_name}",
        "requester": f"{resp.token_requester_principal_type}:{resp.token_requester_principal_name}",
        "renewers": [f"{r.principal_type}:{r.principal_name}" for r in renewers],
        "issue_timestamp": _ms(resp.issue_timestamp),
        "expiry_timestamp": _ms(resp.expiry_timestamp),
        "max_timestamp": _ms(resp.max_timestamp),
    }
    if as_json:
        print_json(token)
        return
    out.print(_table([token]))
    out.print("Keep the HMAC secret: with the token id it logs in as the owner.")


@delegation_tokens_app.command()
def renew(
    hmac: HmacOpt,
    renew_time_period: Annotated[
        int,
        typer.Option(
            "--renew-time-period",
            help="How long from now, in ms (at most delegation.token.expiry.time.ms); -1 for that.",
        ),
    ] = -1,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Move a token's expiry (never past its max lifetime). Its owner and renewers may."""
    expiry = _change(_RENEW, hmac, renew_time_period, bootstrap, command_config, props, timeout)
    if as_json:
        print_json({"expiry_timestamp": expiry})
    else:
        out.print(f"The token now expires at {_iso(expiry)}.")


@delegation_tokens_app.command()
def expire(
    hmac: HmacOpt,
    expiry_time_period: Annotated[
        int,
        typer.Option(
            "--expiry-time-period",
            help="Expire it this many ms from now; -1 removes it at once.",
        ),
    ] = -1,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Expire a token now or sooner than planned. Its owner and renewers may."""
    expiry = _change(_EXPIRE, hmac, expiry_time_period, bootstrap, command_config, props, timeout)
    if as_json:
        print_json({"expiry_timestamp": expiry if expiry >= 0 else None})
    elif expiry < 0:
        out.print("The token is removed; it no longer logs in.")
    else:
        out.print(f"The token now expires at {_iso(expiry)}.")


def _change(
    api_key: int,
    hmac: str,
    period_ms: int,
    bootstrap: str,
    command_config: Any,
    props: Any,
    timeout: float,
) -> int:
    period = datetime.timedelta(milliseconds=period_ms)
    fields = {"renew_period": period} if api_key == _RENEW else {"expiry_time_period": period}
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        token_hmac = _hmac(hmac)
        with WireClient.for_options(opts) as client:
            resp = client.request(api_key, 2, hmac=token_hmac, **fields)
        what = "renewing the token" if api_key == _RENEW else "expiring the token"
        check_answer(resp.error_code, None, what, _HINTS)
    return _ms(resp.expiry_timestamp)


@delegation_tokens_app.command()
def describe(
    owner: Annotated[
        list[str] | None,
        typer.Option(
            "--owner-principal",
            help="Only tokens this User:<name> owns, asked for, or may renew. Repeatable.",
        ),
    ] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Tokens you own, asked for, may renew, or have Describe on (HMACs included)."""
    from kio.schema.describe_delegation_token.v3 import request as schema

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        owners = (
            tuple(
                schema.DescribeDelegationTokenOwner(principal_type=kind, principal_name=name)
                for kind, name in (_principal(o, "--owner-principal") for o in owner)
            )
            if owner
            else None
        )
        with WireClient.for_options(opts) as client:
            resp = client.request(_DESCRIBE, 3, owners=owners)
        check_answer(resp.error_code, None, "describing tokens", _HINTS)
    tokens = [
        {
            "token_id": t.token_id,
            "hmac": base64.b64encode(t.hmac).decode(),
            "owner": f"{t.principal_type}:{t.principal_name}",
            "requester": f"{t.token_requester_principal_type}:{t.token_requester_principal_name}",
            "renewers": [f"{r.principal_type}:{r.principal_name}" for r in t.renewers],
            "issue_timestamp": int(t.issue_timestamp),
            "expiry_timestamp": int(t.expiry_timestamp),
            "max_timestamp": int(t.max_timestamp),
        }
        for t in sorted(resp.tokens, key=lambda t: (t.issue_timestamp, t.token_id))
    ]
    if as_json:
        print_json(tokens)
    elif tokens:
        out.print(_table(tokens))
    else:
        out.print("No delegation tokens you may see.")


def _table(tokens: list[dict[str, Any]]) -> Any:
    return table(
        None,
        ["TOKEN ID", "HMAC", "OWNER", "REQUESTER", "RENEWERS", "ISSUED", "EXPIRES", "MAX"],
        [
            (
                t["token_id"],
                t["hmac"],
                t["owner"],
                t["requester"],
                ",".join(t["renewers"]) or "-",
                _iso(t["issue_timestamp"]),
                _iso(t["expiry_timestamp"]),
                _iso(t["max_timestamp"]),
            )
            for t in tokens
        ],
    )
