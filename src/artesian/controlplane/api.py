"""The control plane's REST API (FastAPI): tenants, and the clusters they own, are created,
resized, upgraded and deleted here, and read back with what their data plane last reported.

Every /v1 call carries ``Authorization: Bearer <token>``: the admin's token (from the file
``controlplane run`` keeps), or a tenant's API token. Without a valid one: 401. A tenant
reaches its own clusters and tenant only (another's: 404); tenants and quotas are the admin's
(403).

    POST   /v1/tenants          {"name", "max_clusters", "max_brokers"}  -> 201, with a token
    GET    /v1/tenants, /v1/tenants/{id}
    PATCH  /v1/tenants/{id}     {"max_clusters", "max_brokers"}
    DELETE /v1/tenants/{id}                                 (once it has no cluster left)
    POST   /v1/tenants/{id}/tokens          {"description", "expires_in_days"} -> 201
    GET    /v1/tenants/{id}/tokens
    DELETE /v1/tenants/{id}/tokens/{token}
    GET    /v1/whoami
    GET    /v1/usage?tenant=&cluster=&start_ms=&end_ms=   hourly usage from the ledger
    POST   /v1/clusters         {"name", "brokers", "cell", "config", "autoscale", "tenant",
                                 "logical", "shared", "quotas"} -> 201
    GET    /v1/clusters
    GET    /v1/clusters/{id}
    PATCH  /v1/clusters/{id}    {"brokers", "version", "config", "autoscale", "quotas"}
    DELETE /v1/clusters/{id}                                                        -> 202
    POST   /v1/clusters/{id}/api-keys        {"resource_prefix", "description"}     -> 201
    GET    /v1/clusters/{id}/api-keys
    DELETE /v1/clusters/{id}/api-keys/{key}
    GET    /healthz, /metrics
    GET    /console            the web console: a page over this API, with the caller's token

An API key's secret, and a token's, is in the answer to its POST and nowhere else.

A write returns once the desired-state topic holds it; the data plane acts on it from there.
"""

from __future__ import annotations

import datetime
from importlib.resources import files
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from artesian.controlplane.control_plane import (
    Conflict,
    ControlPlane,
    Forbidden,
    NotFound,
    Replaced,
    Unavailable,
)
from artesian.controlplane.documents import (
    MAX_BROKERS,
    MAX_TOKEN_DAYS,
    MAX_VERSION_LENGTH,
    Autoscale,
    DocumentError,
)
from artesian.controlplane.state_topics import StateTopicError
from artesian.controlplane.tenants import ADMIN, Caller, ExpiredToken

# The console's files; only the page's own script and style run, nothing inline, and nothing
# may frame it.
CONSOLE = files("artesian.controlplane") / "console"
CONSOLE_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
CONSOLE_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


class AutoscaleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_brokers: int = Field(ge=1, le=MAX_BROKERS, strict=True)
    max_brokers: int = Field(ge=1, le=MAX_BROKERS, strict=True)
    broker_bytes_per_second: int = Field(ge=1, strict=True)

    def document(self) -> Autoscale:
        return Autoscale(self.min_brokers, self.max_brokers, self.broker_bytes_per_second)


class CreateCluster(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    brokers: int | None = Field(default=None, ge=1, le=MAX_BROKERS, strict=True)  # 1 unless logical
    cell: str = "local"
    config: dict[str, str] = Field(default_factory=dict)
    autoscale: AutoscaleBody | None = None
    tenant: str | None = None  # the admin's choice; a tenant's cluster is its own
    # On a shared cluster of the cell, with no brokers of its own (Kora's logical cluster).
    logical: bool = False
    shared: bool = False  # the admin's: a physical cluster that takes logical ones
    quotas: dict[str, float] = Field(default_factory=dict)  # the admin's, a logical cluster's


class UpdateCluster(BaseModel):
    model_config = ConfigDict(extra="forbid")
    brokers: int | None = Field(default=None, ge=1, le=MAX_BROKERS, strict=True)
    version: str | None = Field(default=None, min_length=1, max_length=MAX_VERSION_LENGTH)
    config: dict[str, str] | None = None
    autoscale: AutoscaleBody | None = None
    quotas: dict[str, float] | None = None  # the admin's: a logical cluster's, {} for none


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resource_prefix: str | None = None
    description: str = ""


class CreateTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    max_clusters: int = Field(default=10, ge=0, le=1000)
    max_brokers: int = Field(default=20, ge=0, le=1000 * MAX_BROKERS)


class UpdateTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_clusters: int | None = Field(default=None, ge=0, le=1000)
    max_brokers: int | None = Field(default=None, ge=0, le=1000 * MAX_BROKERS)


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(default="", max_length=256)
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_TOKEN_DAYS)


def create_app(control_plane: ControlPlane) -> FastAPI:
    app = FastAPI(
        title="Artesian control plane",
        summary="Provision and scale Kafka clusters; state travels over Kafka topics.",
    )
    registry = CollectorRegistry()
    clusters_gauge = Gauge(
        "artesian_controlplane_clusters",
        "Clusters by the phase their data plane last reported (Unknown: no report yet).",
        ["phase"],
        registry=registry,
    )

    bearer = HTTPBearer(auto_error=False, description="The admin's token or a tenant's.")

    def caller(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> Caller:
        try:
            who = (
                None if credentials is None else control_plane.authenticate(credentials.credentials)
            )
        except ExpiredToken as e:
            raise HTTPException(
                401,
                f"this token expired at {_iso(e.token.expires_ms)}: make a new one with "
                "another of the tenant's tokens (`artesian tenants tokens create`), or ask "
                "the platform's admin",
                headers={
                    "WWW-Authenticate": 'Bearer error="invalid_token", '
                    'error_description="The access token expired"'
                },
            ) from e
        if who is None:
            # RFC 6750: a bare challenge when no token came, invalid_token for one refused.
            challenge = "Bearer" if credentials is None else 'Bearer error="invalid_token"'
            raise HTTPException(
                401,
                "a valid token is needed: Authorization: Bearer <the admin's token from "
                "`controlplane run`'s --admin-token-file, or a tenant's API token>",
                headers={"WWW-Authenticate": challenge},
            )
        return who

    Authenticated = Depends(caller)

    def _errors(call: Any) -> Any:
        try:
            return call()
        except NotFound as e:
            raise HTTPException(404, str(e)) from e
        except Forbidden as e:
            raise HTTPException(403, str(e)) from e
        except Conflict as e:
            raise HTTPException(409, str(e)) from e
        except DocumentError as e:
            raise HTTPException(422, str(e)) from e
        except Unavailable as e:
            raise HTTPException(503, str(e), headers={"Retry-After": "5"}) from e
        except Replaced as e:
            raise HTTPException(503, str(e)) from e
        except (TimeoutError, StateTopicError) as e:
            raise HTTPException(503, f"{e}; is the control plane's Kafka up?") from e

    @app.get("/v1/whoami")
    def whoami(who: Caller = Authenticated) -> dict[str, Any]:
        return {"admin": who.is_admin, "tenant": who.tenant}

    @app.post("/v1/tenants", status_code=201)
    def create_tenant(body: CreateTenant, who: Caller = Authenticated) -> dict[str, Any]:
        tenant, token = _errors(
            lambda: control_plane.create_tenant(
                body.name, body.max_clusters, body.max_brokers, caller=who
            )
        )
        return {**tenant.public(), "token": token}

    @app.get("/v1/tenants")
    def tenants(who: Caller = Authenticated) -> dict[str, Any]:
        return {"tenants": [t.public() for t in control_plane.list_tenants(caller=who)]}

    @app.get("/v1/tenants/{tenant_id}")
    def tenant(tenant_id: str, who: Caller = Authenticated) -> dict[str, Any]:
        return _errors(lambda: control_plane.tenant(tenant_id, caller=who)).public()  # type: ignore[no-any-return]

    @app.patch("/v1/tenants/{tenant_id}")
    def update_tenant(
        tenant_id: str, body: UpdateTenant, who: Caller = Authenticated
    ) -> dict[str, Any]:
        quotas = {k: v for k, v in body.model_dump().items() if v is not None}
        updated = _errors(lambda: control_plane.update_tenant(tenant_id, caller=who, **quotas))
        return updated.public()  # type: ignore[no-any-return]

    @app.delete("/v1/tenants/{tenant_id}")
    def delete_tenant(tenant_id: str, who: Caller = Authenticated) -> dict[str, Any]:
        _errors(lambda: control_plane.delete_tenant(tenant_id, caller=who))
        return {"deleted": tenant_id}

    @app.post("/v1/tenants/{tenant_id}/tokens", status_code=201)
    def create_token(
        tenant_id: str, body: CreateToken, who: Caller = Authenticated
    ) -> dict[str, Any]:
        token, text = _errors(
            lambda: control_plane.create_token(
                tenant_id, body.description, body.expires_in_days, caller=who
            )
        )
        return {**token.public(), "tenant": tenant_id, "token": text}

    @app.get("/v1/tenants/{tenant_id}/tokens")
    def tokens(tenant_id: str, who: Caller = Authenticated) -> dict[str, Any]:
        found = _errors(lambda: control_plane.tenant(tenant_id, caller=who))
        return {"tokens": [t.public() for t in found.tokens]}

    @app.delete("/v1/tenants/{tenant_id}/tokens/{token_id}")
    def delete_token(tenant_id: str, token_id: str, who: Caller = Authenticated) -> dict[str, Any]:
        _errors(lambda: control_plane.delete_token(tenant_id, token_id, caller=who))
        return {"deleted": token_id, "tenant": tenant_id}

    @app.get("/v1/usage")
    def usage(
        tenant: str | None = None,
        cluster: str | None = None,
        start_ms: int = Query(default=0, ge=0),
        end_ms: int | None = Query(default=None, ge=0),
        who: Caller = Authenticated,
    ) -> dict[str, Any]:
        hours = _errors(
            lambda: control_plane.usage(
                caller=who, tenant=tenant, cluster=cluster, start_ms=start_ms, end_ms=end_ms
            )
        )
        rows = [h.as_json() for h in hours]
        total = {
            k: round(sum(r[k] for r in rows), 3)
            for k in ("bytes_in", "bytes_out", "broker_seconds", "storage_byte_seconds")
        }
        return {"hours": rows, "total": total}

    @app.post("/v1/clusters", status_code=201)
    def create(body: CreateCluster, who: Caller = Authenticated) -> dict[str, Any]:
        view = _errors(
            lambda: control_plane.create(
                body.name,
                body.brokers if body.brokers is not None else 0 if body.logical else 1,
                body.cell,
                body.config,
                body.autoscale.document() if body.autoscale else None,
                body.tenant,
                logical=body.logical,
                shared=body.shared,
                quotas=body.quotas,
                caller=who,
            )
        )
        return view.as_json()  # type: ignore[no-any-return]

    @app.get("/v1/clusters")
    def clusters(who: Caller = Authenticated) -> dict[str, Any]:
        return {"clusters": [v.as_json() for v in control_plane.clusters(caller=who)]}

    @app.get("/v1/clusters/{cluster_id}")
    def cluster(cluster_id: str, who: Caller = Authenticated) -> dict[str, Any]:
        return _errors(lambda: control_plane.cluster(cluster_id, caller=who)).as_json()  # type: ignore[no-any-return]

    @app.patch("/v1/clusters/{cluster_id}")
    def update(cluster_id: str, body: UpdateCluster, who: Caller = Authenticated) -> dict[str, Any]:
        changes: dict[str, Any] = {
            k: getattr(body, k)
            for k in ("brokers", "version", "config", "quotas")
            if k in body.model_fields_set
        }
        if "autoscale" in body.model_fields_set:  # null: autoscaling off
            changes["autoscale"] = body.autoscale.document() if body.autoscale else None
        if any(changes.get(k, "") is None for k in ("brokers", "version", "config", "quotas")):
            raise HTTPException(422, "only autoscale may be null")
        view = _errors(lambda: control_plane.update(cluster_id, caller=who, **changes))
        return view.as_json()  # type: ignore[no-any-return]

    @app.delete("/v1/clusters/{cluster_id}", status_code=202)
    def delete(cluster_id: str, who: Caller = Authenticated) -> dict[str, Any]:
        return _errors(lambda: control_plane.delete(cluster_id, caller=who)).as_json()  # type: ignore[no-any-return]

    @app.post("/v1/clusters/{cluster_id}/api-keys", status_code=201)
    def create_api_key(
        cluster_id: str, body: CreateApiKey, who: Caller = Authenticated
    ) -> dict[str, Any]:
        api_key, secret, desire = _errors(
            lambda: control_plane.create_api_key(
                cluster_id, body.resource_prefix, body.description, caller=who
            )
        )
        return {
            **api_key.public(),
            "secret": secret,
            "cluster": cluster_id,
            "generation": desire.generation,
            "sasl_mechanisms": ["SCRAM-SHA-512", "SCRAM-SHA-256"],
        }

    @app.get("/v1/clusters/{cluster_id}/api-keys")
    def api_keys(cluster_id: str, who: Caller = Authenticated) -> dict[str, Any]:
        view = _errors(lambda: control_plane.cluster(cluster_id, caller=who))
        return {"api_keys": [k.public() for k in view.desire.api_keys]}

    @app.delete("/v1/clusters/{cluster_id}/api-keys/{key}")
    def delete_api_key(cluster_id: str, key: str, who: Caller = Authenticated) -> dict[str, Any]:
        desire = _errors(lambda: control_plane.delete_api_key(cluster_id, key, caller=who))
        return {"deleted": key, "cluster": cluster_id, "generation": desire.generation}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console")

    @app.get("/console", include_in_schema=False)
    @app.get("/console/{name}", include_in_schema=False)
    def console(name: str = "index.html") -> Response:
        if name not in CONSOLE_TYPES:
            raise HTTPException(404, f"no {name}")
        return Response(
            (CONSOLE / name).read_bytes(), media_type=CONSOLE_TYPES[name], headers=CONSOLE_HEADERS
        )

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        ok = control_plane.healthy()
        if not ok:
            response.status_code = 503
        return {"ok": ok}

    @app.get("/metrics")
    def metrics() -> Response:
        counts: dict[str, int] = {}
        for view in control_plane.clusters(caller=ADMIN):
            phase = view.report.phase if view.report is not None else "Unknown"
            counts[phase] = counts.get(phase, 0) + 1
        clusters_gauge.clear()
        for phase, n in counts.items():
            clusters_gauge.labels(phase).set(n)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
