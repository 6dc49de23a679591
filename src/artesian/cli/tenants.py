"""``artesian tenants ...``: the control plane's accounts, their quotas and their API tokens.
Creating tenants and changing quotas is the admin's; a tenant manages its own tokens."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from artesian.cli.common import JsonOpt, fail, make_app, reporting, table
from artesian.cli.controlplane import ApiOpt, TokenOpt, call_and_show, call_api, show_answer

tenants_app = make_app(
    "Tenants on the control plane: accounts that own clusters, with quotas (how many clusters, "
    "how many brokers in all) and the API tokens they call the control plane with."
)
tokens_app = make_app("A tenant's API tokens: create (shown once), list, delete.")
tenants_app.add_typer(tokens_app, name="tokens")

TenantArg = Annotated[str, typer.Argument(help="The tenant's id (t-...).")]
MaxClustersOpt = Annotated[
    int | None, typer.Option(help="How many clusters it may have.", min=0, max=1000)
]
MaxBrokersOpt = Annotated[
    int | None,
    typer.Option(
        help="How many brokers its clusters may have in all (an autoscaled one counts its "
        "maximum).",
        min=0,
        max=20000,
    ),
]
_COLUMNS = ["ID", "NAME", "MAX CLUSTERS", "MAX BROKERS", "TOKENS"]


def _row(t: dict[str, Any]) -> tuple[Any, ...]:
    return (t["id"], t["name"], t["max_clusters"], t["max_brokers"], len(t["tokens"]))


def _token_text(doc: dict[str, Any]) -> str:
    expires = doc.get("expires_ms", 0)
    until = f"It works until {_when(expires)}. " if expires else ""
    return (
        f"API token {doc['token']}\nSave it now: it cannot be shown again. {until}Use it with "
        "--token or ARTESIAN_TOKEN, or as `Authorization: Bearer <token>`."
    )


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@tenants_app.command("create")
def create_tenant(
    name: Annotated[str, typer.Argument(help="The tenant's name, unique.")],
    max_clusters: MaxClustersOpt = 10,
    max_brokers: MaxBrokersOpt = 20,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant (the admin's); its first API token is shown now and never again."""
    body = {"name": name, "max_clusters": max_clusters, "max_brokers": max_brokers}
    call_and_show(
        api,
        token,
        "POST",
        "/v1/tenants",
        body,
        as_json=as_json,
        text=lambda d: f"created tenant {d['id']} ({name})\n" + _token_text(d),
    )


@tenants_app.command("list")
def list_tenants(
    api: ApiOpt = "http://127.0.0.1:8080", token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Every tenant (the admin), or your own (a tenant)."""
    call_and_show(
        api,
        token,
        "GET",
        "/v1/tenants",
        as_json=as_json,
        text=lambda d: table(None, _COLUMNS, [_row(t) for t in d["tenants"]]),
    )


@tenants_app.command("whoami")
def whoami(
    api: ApiOpt = "http://127.0.0.1:8080", token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Who the token stands for: the admin, or a tenant (its id)."""
    call_and_show(
        api,
        token,
        "GET",
        "/v1/whoami",
        as_json=as_json,
        text=lambda d: "the admin" if d["admin"] else f"tenant {d['tenant']}",
    )


@tenants_app.command("update")
def update_tenant(
    tenant: TenantArg,
    max_clusters: MaxClustersOpt = None,
    max_brokers: MaxBrokersOpt = None,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's quotas (the admin's). Clusters already over a lowered quota keep
    running; what would add to them is refused."""
    body = {
        k: v
        for k, v in (("max_clusters", max_clusters), ("max_brokers", max_brokers))
        if v is not None
    }
    if not body:
        with reporting(""):
            fail("nothing to change", "Give --max-clusters or --max-brokers.")
    call_and_show(
        api,
        token,
        "PATCH",
        f"/v1/tenants/{tenant}",
        body,
        as_json=as_json,
        text=lambda d: table(None, _COLUMNS, [_row(d)]),
    )


@tenants_app.command("delete")
def delete_tenant(
    tenant: TenantArg,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a tenant and its tokens (the admin's), once it has no cluster left."""
    call_and_show(
        api,
        token,
        "DELETE",
        f"/v1/tenants/{tenant}",
        as_json=as_json,
        text=lambda d: f"tenant {tenant} deleted",
    )


@tokens_app.command("create")
def create_token(
    tenant: TenantArg,
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    expires_in_days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="Days until it stops working (default: never)."),
    ] = None,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A new API token for the tenant, shown now and never again."""
    call_and_show(
        api,
        token,
        "POST",
        f"/v1/tenants/{tenant}/tokens",
        # Only when given: an older control plane refuses fields it does not know.
        {"description": description}
        | ({"expires_in_days": expires_in_days} if expires_in_days else {}),
        as_json=as_json,
        text=_token_text,
    )


@tokens_app.command("list")
def list_tokens(
    tenant: TenantArg,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The tenant's tokens: ids, descriptions and expiry, never the tokens."""
    call_and_show(
        api,
        token,
        "GET",
        f"/v1/tenants/{tenant}/tokens",
        as_json=as_json,
        text=lambda d: table(
            None,
            ["TOKEN ID", "DESCRIPTION", "EXPIRES"],
            [
                (
                    t["id"],
                    t["description"],
                    _when(t["expires_ms"]) if t.get("expires_ms") else "never",
                )
                for t in d["tokens"]
            ],
        ),
    )


@tokens_app.command("delete")
def delete_token(
    tenant: TenantArg,
    token_id: Annotated[str, typer.Argument(help="The token's id, from `tokens list`.")],
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: calls with it are refused (401) from now on."""
    call_and_show(
        api,
        token,
        "DELETE",
        f"/v1/tenants/{tenant}/tokens/{token_id}",
        as_json=as_json,
        text=lambda d: f"token {token_id} of tenant {tenant} deleted",
    )


def usage(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's clusters (a tenant sees its own).")
    ] = None,
    cluster: Annotated[str | None, typer.Option(help="Only this cluster (lkc-...).")] = None,
    hours: Annotated[int, typer.Option(help="The last this many hours.", min=1)] = 24,
    api: ApiOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hourly usage from the ledger: client bytes in and out, broker-hours and GiB-hours of
    storage, per cluster, as the data planes metered it."""
    since = int(time.time() * 1000) - hours * 3_600_000
    params = {"start_ms": since, "tenant": tenant, "cluster": cluster}
    query = "/v1/usage?" + urlencode({k: v for k, v in params.items() if v})
    with reporting(""):
        doc = call_api(api, token, "GET", query)

    def text(d: dict[str, Any]) -> Any:
        rows = [
            (
                datetime.fromtimestamp(h["hour_start_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:00"),
                h["cluster"],
                h["tenant"] or "-",
                h["bytes_in"],
                h["bytes_out"],
                f"{h['broker_seconds'] / 3600:.3f}",
                f"{h['storage_byte_seconds'] / 3600 / 2**30:.6f}",
            )
            for h in d["hours"]
        ]
        columns = ["HOUR (UTC)", "CLUSTER", "TENANT", "BYTES IN", "BYTES OUT"]
        return table(None, [*columns, "BROKER-HOURS", "STORAGE GIB-HOURS"], rows)

    show_answer(doc, as_json, text)
