"""The control plane's REST API (FastAPI): clusters are created, resized, upgraded and deleted
here, and read back with what their data plane last reported.

    POST   /v1/clusters         {"name", "brokers", "cell", "config", "autoscale"}  -> 201
    GET    /v1/clusters
    GET    /v1/clusters/{id}
    PATCH  /v1/clusters/{id}    {"brokers", "version", "config", "autoscale"}
    DELETE /v1/clusters/{id}                                                        -> 202
    POST   /v1/clusters/{id}/api-keys        {"resource_prefix", "description"}     -> 201
    GET    /v1/clusters/{id}/api-keys
    DELETE /v1/clusters/{id}/api-keys/{key}
    GET    /healthz, /metrics

An API key's secret is in the answer to its POST and nowhere else.

A write returns once the desired-state topic holds it; the data plane acts on it from there.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from artesian.controlplane.control_plane import Conflict, ControlPlane, NotFound
from artesian.controlplane.documents import MAX_BROKERS, Autoscale, DocumentError
from artesian.controlplane.state_topics import StateTopicError


class AutoscaleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_brokers: int = Field(ge=1, le=MAX_BROKERS)
    max_brokers: int = Field(ge=1, le=MAX_BROKERS)
    broker_bytes_per_second: int = Field(ge=1)

    def document(self) -> Autoscale:
        return Autoscale(self.min_brokers, self.max_brokers, self.broker_bytes_per_second)


class CreateCluster(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    brokers: int = Field(default=1, ge=1, le=MAX_BROKERS)
    cell: str = "local"
    config: dict[str, str] = Field(default_factory=dict)
    autoscale: AutoscaleBody | None = None


class UpdateCluster(BaseModel):
    model_config = ConfigDict(extra="forbid")
    brokers: int | None = Field(default=None, ge=1, le=MAX_BROKERS)
    version: str | None = None
    config: dict[str, str] | None = None
    autoscale: AutoscaleBody | None = None


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resource_prefix: str | None = None
    description: str = ""


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

    def _errors(call: Any) -> Any:
        try:
            return call()
        except NotFound as e:
            raise HTTPException(404, str(e)) from e
        except Conflict as e:
            raise HTTPException(409, str(e)) from e
        except DocumentError as e:
            raise HTTPException(422, str(e)) from e
        except (TimeoutError, StateTopicError) as e:
            raise HTTPException(503, f"{e}; is the control plane's Kafka up?") from e

    @app.post("/v1/clusters", status_code=201)
    def create(body: CreateCluster) -> dict[str, Any]:
        view = _errors(
            lambda: control_plane.create(
                body.name,
                body.brokers,
                body.cell,
                body.config,
                body.autoscale.document() if body.autoscale else None,
            )
        )
        return view.as_json()  # type: ignore[no-any-return]

    @app.get("/v1/clusters")
    def clusters() -> dict[str, Any]:
        return {"clusters": [v.as_json() for v in control_plane.clusters()]}

    @app.get("/v1/clusters/{cluster_id}")
    def cluster(cluster_id: str) -> dict[str, Any]:
        return _errors(lambda: control_plane.cluster(cluster_id)).as_json()  # type: ignore[no-any-return]

    @app.patch("/v1/clusters/{cluster_id}")
    def update(cluster_id: str, body: UpdateCluster) -> dict[str, Any]:
        changes: dict[str, Any] = {
            k: getattr(body, k)
            for k in ("brokers", "version", "config")
            if k in body.model_fields_set
        }
        if "autoscale" in body.model_fields_set:  # null: autoscaling off
            changes["autoscale"] = body.autoscale.document() if body.autoscale else None
        if any(changes.get(k, "") is None for k in ("brokers", "version", "config")):
            raise HTTPException(422, "only autoscale may be null")
        view = _errors(lambda: control_plane.update(cluster_id, **changes))
        return view.as_json()  # type: ignore[no-any-return]

    @app.delete("/v1/clusters/{cluster_id}", status_code=202)
    def delete(cluster_id: str) -> dict[str, Any]:
        return _errors(lambda: control_plane.delete(cluster_id)).as_json()  # type: ignore[no-any-return]

    @app.post("/v1/clusters/{cluster_id}/api-keys", status_code=201)
    def create_api_key(cluster_id: str, body: CreateApiKey) -> dict[str, Any]:
        api_key, secret, desire = _errors(
            lambda: control_plane.create_api_key(cluster_id, body.resource_prefix, body.description)
        )
        return {
            **api_key.public(),
            "secret": secret,
            "cluster": cluster_id,
            "generation": desire.generation,
            "sasl_mechanisms": ["SCRAM-SHA-512", "SCRAM-SHA-256"],
        }

    @app.get("/v1/clusters/{cluster_id}/api-keys")
    def api_keys(cluster_id: str) -> dict[str, Any]:
        view = _errors(lambda: control_plane.cluster(cluster_id))
        return {"api_keys": [k.public() for k in view.desire.api_keys]}

    @app.delete("/v1/clusters/{cluster_id}/api-keys/{key}")
    def delete_api_key(cluster_id: str, key: str) -> dict[str, Any]:
        desire = _errors(lambda: control_plane.delete_api_key(cluster_id, key))
        return {"deleted": key, "cluster": cluster_id, "generation": desire.generation}

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        ok = control_plane.healthy()
        if not ok:
            response.status_code = 503
        return {"ok": ok, "clusters": len(control_plane.clusters())}

    @app.get("/metrics")
    def metrics() -> Response:
        counts: dict[str, int] = {}
        for view in control_plane.clusters():
            phase = view.report.phase if view.report is not None else "Unknown"
            counts[phase] = counts.get(phase, 0) + 1
        clusters_gauge.clear()
        for phase, n in counts.items():
            clusters_gauge.labels(phase).set(n)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
