"""Tenants on a real control plane (its own process, its state on a real Artesian broker):
every call needs a token, a tenant reaches only its own clusters, quotas hold, tokens are
revoked, and all of it outlives a restart because it lives in a Kafka topic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from artesian.controlplane.documents import TENANTS_TOPIC, Tenant
from artesian.controlplane.state_topics import StateWriter
from artesian.controlplane.tenants import mint_token
from tests.controlplane.platform import Platform

pytestmark = pytest.mark.slow
DAY_MS = 86_400_000


def _as(platform: Platform, token: str | None) -> httpx.Client:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.Client(base_url=str(platform.api.base_url), headers=headers, timeout=30)


def _tenant(platform: Platform, name: str, **quotas: int) -> dict[str, Any]:
    r = platform.api.post("/v1/tenants", json={"name": name, **quotas})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_every_call_needs_a_valid_token(platform: Platform) -> None:
    with _as(platform, None) as anonymous:
        r = anonymous.get("/v1/clusters")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert anonymous.post("/v1/clusters", json={"name": "x"}).status_code == 401
        assert anonymous.post("/v1/tenants", json={"name": "x"}).status_code == 401
        # Health, metrics and the API's docs stay open: probes and scrapers carry no token.
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200
    admin = platform.admin_token()
    tenant = _tenant(platform, "acme")
    for wrong in (
        admin + "x",
        admin[:-1],
        "art_" + tenant["tokens"][0]["id"] + "_" + "A" * 43,  # a real id, a made-up secret
        tenant["token"].replace("art_", "art_x", 1),
        "not-a-token",
    ):
        with _as(platform, wrong) as caller:
            assert caller.get("/v1/clusters").status_code == 401, wrong
    # The right secret under another scheme is no bearer token.
    basic = {"authorization": f"Basic {admin}"}
    assert platform.api.get("/v1/clusters", headers=basic).status_code == 401
    assert platform.api.get("/v1/whoami").json() == {"admin": True, "tenant": None}
    with _as(platform, tenant["token"]) as acme:
        assert acme.get("/v1/whoami").json() == {"admin": False, "tenant": tenant["id"]}


def test_a_tenant_reaches_only_its_own_clusters(platform: Platform) -> None:
    acme, globex = _tenant(platform, "acme"), _tenant(platform, "globex")
    assert acme["id"].startswith("t-") and acme["token"].startswith("art_")
    with _as(platform, acme["token"]) as a, _as(platform, globex["token"]) as g:
        mine = a.post("/v1/clusters", json={"name": "orders"})
        assert mine.status_code == 201, mine.text
        mine_id = mine.json()["id"]
        assert mine.json()["spec"]["tenant"] == acme["id"]
        # Names are per tenant: globex has an "orders" of its own.
        theirs = g.post("/v1/clusters", json={"name": "orders"})
        assert theirs.status_code == 201, theirs.text
        theirs_id = theirs.json()["id"]
        assert a.post("/v1/clusters", json={"name": "orders"}).status_code == 409

        assert [c["id"] for c in a.get("/v1/clusters").json()["clusters"]] == [mine_id]
        assert [c["id"] for c in g.get("/v1/clusters").json()["clusters"]] == [theirs_id]
        everything = {c["id"] for c in platform.api.get("/v1/clusters").json()["clusters"]}
        assert everything == {mine_id, theirs_id}

        # Another's cluster does not exist, whatever the verb.
        for method, path, body in (
            ("GET", f"/v1/clusters/{theirs_id}", None),
            ("PATCH", f"/v1/clusters/{theirs_id}", {"brokers": 2}),
            ("DELETE", f"/v1/clusters/{theirs_id}", None),
            ("GET", f"/v1/clusters/{theirs_id}/api-keys", None),
            ("POST", f"/v1/clusters/{theirs_id}/api-keys", {}),
            ("DELETE", f"/v1/clusters/{theirs_id}/api-keys/AAAAAAAAAAAAAAAA", None),
        ):
            r = a.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
        assert platform.cluster(theirs_id)["spec"]["brokers"] == 1  # untouched
        assert platform.cluster(theirs_id)["spec"]["deleted"] is False

        # Nor may a tenant make a cluster for another, or touch tenants.
        r = a.post("/v1/clusters", json={"name": "sneaky", "tenant": globex["id"]})
        assert r.status_code == 403
        assert a.post("/v1/tenants", json={"name": "mine"}).status_code == 403
        assert a.patch(f"/v1/tenants/{acme['id']}", json={"max_clusters": 99}).status_code == 403
        assert a.delete(f"/v1/tenants/{acme['id']}").status_code == 403
        assert a.get(f"/v1/tenants/{globex['id']}").status_code == 404
        # Nor another's tokens: no way to mint, list or revoke one.
        theirs_token = globex["tokens"][0]["id"]
        assert a.post(f"/v1/tenants/{globex['id']}/tokens", json={}).status_code == 404
        assert a.get(f"/v1/tenants/{globex['id']}/tokens").status_code == 404
        r = a.delete(f"/v1/tenants/{globex['id']}/tokens/{theirs_token}")
        assert r.status_code == 404
        assert g.get("/v1/clusters").status_code == 200  # globex's token still works
        assert [t["id"] for t in a.get("/v1/tenants").json()["tenants"]] == [acme["id"]]
        shown = a.get(f"/v1/tenants/{acme['id']}").json()
        assert "secret_sha256" not in json.dumps(shown)

    # The admin makes clusters for a tenant, or for the platform itself.
    r = platform.api.post("/v1/clusters", json={"name": "billing", "tenant": globex["id"]})
    assert r.status_code == 201 and r.json()["spec"]["tenant"] == globex["id"]
    r = platform.api.post("/v1/clusters", json={"name": "ops"})
    assert r.status_code == 201 and r.json()["spec"]["tenant"] == ""
    r = platform.api.post("/v1/clusters", json={"name": "x", "tenant": "t-nosuch00"})
    assert r.status_code == 422 and "no tenant" in r.json()["detail"]


def test_a_tenant_sets_its_topics_defaults_only(platform: Platform) -> None:
    acme = _tenant(platform, "acme")
    with _as(platform, acme["token"]) as a:
        ok = {"log.retention.ms": "3600000", "num.partitions": "3", "min.insync.replicas": "1"}
        r = a.post("/v1/clusters", json={"name": "orders", "config": ok})
        assert r.status_code == 201, r.text
        cluster_id = r.json()["id"]
        r = a.post("/v1/clusters", json={"name": "x", "config": {"num.io.threads": "64"}})
        assert r.status_code == 422 and "num.io.threads" in r.json()["detail"]
        r = a.patch(f"/v1/clusters/{cluster_id}", json={"config": {"num.network.threads": "9"}})
        assert r.status_code == 422
        assert platform.cluster(cluster_id)["spec"]["config"] == ok
    # The platform's admin sets what it likes; a tenant's change keeps it.
    r = platform.api.patch(f"/v1/clusters/{cluster_id}", json={"config": {"num.io.threads": "4"}})
    assert r.status_code == 200, r.text
    with _as(platform, acme["token"]) as a:
        r = a.patch(f"/v1/clusters/{cluster_id}", json={"config": {"log.retention.ms": "1000"}})
        assert r.status_code == 200, r.text
        assert r.json()["spec"]["config"] == {"num.io.threads": "4", "log.retention.ms": "1000"}
        flusher = {"log.flush.scheduler.interval.ms": "0"}
        assert a.patch(f"/v1/clusters/{cluster_id}", json={"config": flusher}).status_code == 422


def test_quotas_hold_and_a_tenant_over_a_lowered_one_can_still_shrink(platform: Platform) -> None:
    acme = _tenant(platform, "acme", max_clusters=2, max_brokers=4)
    with _as(platform, acme["token"]) as a:
        first = a.post("/v1/clusters", json={"name": "one", "brokers": 2}).json()["id"]
        # An autoscaled cluster counts its maximum: 2 + 3 > 4.
        auto = {"min_brokers": 1, "max_brokers": 3, "broker_bytes_per_second": 1000}
        r = a.post("/v1/clusters", json={"name": "two", "autoscale": auto})
        assert r.status_code == 409 and "max_brokers" in r.json()["detail"]
        second = a.post("/v1/clusters", json={"name": "two", "brokers": 2})
        assert second.status_code == 201, second.text
        r = a.post("/v1/clusters", json={"name": "three", "brokers": 1})
        assert r.status_code == 409 and "max_clusters" in r.json()["detail"]
        r = a.patch(f"/v1/clusters/{first}", json={"brokers": 3})
        assert r.status_code == 409 and "max_brokers" in r.json()["detail"]
        wider = {"min_brokers": 1, "max_brokers": 3, "broker_bytes_per_second": 1000}
        r = a.patch(f"/v1/clusters/{first}", json={"autoscale": wider})
        assert r.status_code == 409 and "max_brokers" in r.json()["detail"]
        assert platform.cluster(first)["spec"]["brokers"] == 2
        assert platform.cluster(first)["spec"]["autoscale"] is None
        # The admin making a cluster for acme is held to acme's quota too.
        r = platform.api.post(
            "/v1/clusters", json={"name": "admins", "tenant": acme["id"], "brokers": 3}
        )
        assert r.status_code == 409 and "quota" in r.json()["detail"]

        # The admin lowers the quota below what acme has: nothing stops, growth is refused,
        # shrinking passes.
        r = platform.api.patch(f"/v1/tenants/{acme['id']}", json={"max_brokers": 2})
        assert r.status_code == 200 and r.json()["max_brokers"] == 2
        assert a.patch(f"/v1/clusters/{first}", json={"brokers": 3}).status_code == 409
        r = a.patch(f"/v1/clusters/{first}", json={"brokers": 1})
        assert r.status_code == 200 and r.json()["spec"]["brokers"] == 1

        # A cluster being deleted still runs: it frees its place once forgotten (no data
        # plane runs here, so the control plane forgets it at once).
        assert a.delete(f"/v1/clusters/{second.json()['id']}").status_code == 202
        assert platform.cluster(second.json()["id"])["spec"]["deleted"] is True
        r = a.post("/v1/clusters", json={"name": "two", "brokers": 1})
        assert r.status_code == 409 and "being deleted counts" in r.json()["detail"]
        platform.until(lambda: len(a.get("/v1/clusters").json()["clusters"]) == 1, 30, "forgot")
        assert a.post("/v1/clusters", json={"name": "two", "brokers": 1}).status_code == 201


def test_tokens_are_made_listed_and_revoked(platform: Platform) -> None:
    acme = _tenant(platform, "acme")
    first_id = acme["tokens"][0]["id"]
    with _as(platform, acme["token"]) as a:
        r = a.post(f"/v1/tenants/{acme['id']}/tokens", json={"description": "ci"})
        assert r.status_code == 201, r.text
        second = r.json()
        assert second["token"] != acme["token"] and second["description"] == "ci"
        listed = a.get(f"/v1/tenants/{acme['id']}/tokens").json()["tokens"]
        assert [t["id"] for t in listed] == [first_id, second["id"]]
        assert acme["token"] not in json.dumps(listed) and "sha256" not in json.dumps(listed)
        assert a.delete(f"/v1/tenants/{acme['id']}/tokens/{first_id}").status_code == 200
        assert a.get("/v1/clusters").status_code == 401  # the token just revoked
    with _as(platform, second["token"]) as a2:
        assert a2.get("/v1/clusters").status_code == 200
        assert a2.delete(f"/v1/tenants/{acme['id']}/tokens/{first_id}").status_code == 404
        for n in range(19):  # 20 in all
            assert a2.post(f"/v1/tenants/{acme['id']}/tokens", json={}).status_code == 201, n
        r = a2.post(f"/v1/tenants/{acme['id']}/tokens", json={})
        assert r.status_code == 409 and "20 tokens" in r.json()["detail"]


def test_a_token_with_an_expiry_stops_working_then(platform: Platform) -> None:
    acme = _tenant(platform, "acme")
    with _as(platform, acme["token"]) as a:
        for bad in (0, -1, 3651, "soon"):
            r = a.post(f"/v1/tenants/{acme['id']}/tokens", json={"expires_in_days": bad})
            assert r.status_code == 422, bad
        before = int(time.time() * 1000)
        r = a.post(f"/v1/tenants/{acme['id']}/tokens", json={"expires_in_days": 30})
        after = int(time.time() * 1000)
        assert r.status_code == 201, r.text
        expiring = r.json()
        assert before + 30 * DAY_MS <= expiring["expires_ms"] <= after + 30 * DAY_MS
        tokens = a.get(f"/v1/tenants/{acme['id']}/tokens").json()["tokens"]
        listed = {t["id"]: t["expires_ms"] for t in tokens}
        assert listed == {acme["tokens"][0]["id"]: 0, expiring["id"]: expiring["expires_ms"]}
    with _as(platform, expiring["token"]) as a:
        assert a.get("/v1/whoami").status_code == 200
        # A token that expires cannot make one that outlives it.
        for body in ({}, {"expires_in_days": 31}):
            r = a.post(f"/v1/tenants/{acme['id']}/tokens", json=body)
            assert r.status_code == 403 and "no later" in r.json()["detail"], body
        r = a.post(f"/v1/tenants/{acme['id']}/tokens", json={"expires_in_days": 29})
        assert r.status_code == 201, r.text

    # A tenant whose token is past its time, written to the tenants topic as the control
    # plane writes it: 401 saying so, to its holder only.
    token, text = mint_token("old", 1, expires_ms=int(time.time() * 1000) - 60_000)
    globex = Tenant("t-0123456789abcdef", "globex", tokens=(token,)).validate()
    StateWriter(platform.kafka.bootstrap, TENANTS_TOPIC).put(globex.id, globex.encode())
    platform.until(
        lambda: platform.api.get(f"/v1/tenants/{globex.id}").status_code == 200,
        timeout=30,
        what="the control plane reads the tenant",
    )
    with _as(platform, text) as g:
        r = g.get("/v1/whoami")
        assert r.status_code == 401 and "expired" in r.json()["detail"], r.text
        assert "invalid_token" in r.headers["www-authenticate"]
        assert "expired" in r.headers["www-authenticate"]
    wrong = text[:-1] + ("y" if text.endswith("x") else "x")
    with _as(platform, wrong) as g:
        r = g.get("/v1/whoami")
        assert r.status_code == 401 and "expired" not in r.json()["detail"], r.text
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    # A new token for globex drops the expired one.
    r = platform.api.post(f"/v1/tenants/{globex.id}/tokens", json={})
    assert r.status_code == 201, r.text
    tokens = platform.api.get(f"/v1/tenants/{globex.id}/tokens").json()["tokens"]
    assert [t["id"] for t in tokens] == [r.json()["id"]]


def test_tenants_outlive_a_restart_and_leave_only_once_empty(platform: Platform) -> None:
    acme = _tenant(platform, "acme", max_clusters=3)
    assert platform.api.post("/v1/tenants", json={"name": "acme"}).status_code == 409
    assert platform.api.post("/v1/tenants", json={"name": "bad/name"}).status_code == 422
    with _as(platform, acme["token"]) as a:
        cluster_id = a.post("/v1/clusters", json={"name": "orders"}).json()["id"]

    assert platform.control_plane is not None
    platform.control_plane.stop()
    platform.start_control_plane()  # same token file, same Kafka
    with _as(platform, acme["token"]) as a:
        assert [c["id"] for c in a.get("/v1/clusters").json()["clusters"]] == [cluster_id]
        assert a.get(f"/v1/tenants/{acme['id']}").json()["max_clusters"] == 3

    r = platform.api.delete(f"/v1/tenants/{acme['id']}")
    assert r.status_code == 409 and cluster_id in r.json()["detail"]
    assert platform.api.delete(f"/v1/clusters/{cluster_id}").status_code == 202
    platform.until(
        lambda: platform.api.delete(f"/v1/tenants/{acme['id']}").status_code == 200,
        30,
        "the tenant's deletion, once its cluster is forgotten",
    )
    with _as(platform, acme["token"]) as a:
        assert a.get("/v1/clusters").status_code == 401
    assert platform.api.get(f"/v1/tenants/{acme['id']}").status_code == 404


def test_the_tenants_command(platform: Platform) -> None:
    def cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "artesian.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=platform.cli_env(token),
        )

    made = cli("tenants", "create", "acme", "--max-clusters", "1", "--json")
    assert made.returncode == 0, made.stderr
    acme = json.loads(made.stdout)
    shown = cli("tenants", "create", "globex")
    assert shown.returncode == 0 and "cannot be shown again" in shown.stdout
    listed = cli("tenants", "list")
    assert acme["id"] in listed.stdout and "globex" in listed.stdout

    created = cli("clusters", "create", "orders", token=acme["token"])
    assert created.returncode == 0, created.stderr
    over = cli("clusters", "create", "more", token=acme["token"])
    assert over.returncode == 1 and "409" in over.stderr and "max_clusters" in over.stderr
    assert "orders" in cli("clusters", "list", token=acme["token"]).stdout
    assert cli("tenants", "update", acme["id"], "--max-clusters", "2").returncode == 0
    assert cli("clusters", "create", "more", token=acme["token"]).returncode == 0

    token = json.loads(cli("tenants", "tokens", "create", acme["id"], "--json").stdout)
    weekly = cli("tenants", "tokens", "create", acme["id"], "--expires-in-days", "7")
    assert weekly.returncode == 0 and "It works until 20" in weekly.stdout, weekly.stdout
    ids = cli("tenants", "tokens", "list", acme["id"], token=token["token"])
    assert ids.returncode == 0 and token["id"] in ids.stdout and token["token"] not in ids.stdout
    assert "never" in ids.stdout and " UTC" in ids.stdout
    me = cli("tenants", "whoami", token=token["token"])
    assert me.returncode == 0 and acme["id"] in me.stdout
    assert cli("tenants", "tokens", "delete", acme["id"], token["id"]).returncode == 0
    revoked = cli("clusters", "list", token=token["token"])
    assert revoked.returncode == 1 and "401" in revoked.stderr
    biggest = cli("tenants", "create", "big", "--max-brokers", "20000", "--max-clusters", "0")
    assert biggest.returncode == 0, biggest.stderr
    too_big = cli("tenants", "create", "huge", "--max-brokers", "20001")
    assert too_big.returncode == 2 and "20000" in too_big.stderr

    refused = cli("tenants", "list", token="art_" + "a" * 16 + "_nope")
    assert refused.returncode == 1 and "401" in refused.stderr and "--token" in refused.stderr
    forbidden = cli("tenants", "create", "mine", token=acme["token"])
    assert forbidden.returncode == 1 and "403" in forbidden.stderr
    for args in (["tenants", "--help"], ["tenants", "tokens", "create", "--help"]):
        assert cli(*args).returncode == 0

    # The admin on the control plane's machine needs no flag: the CLI reads the token file
    # (from its default place, here under HOME).
    home_token = platform.root / ".artesian" / "admin.token"
    home_token.parent.mkdir()
    home_token.write_text(platform.admin_token())
    env = {k: v for k, v in platform.cli_env().items() if k != "ARTESIAN_TOKEN"}
    listed = subprocess.run(
        [sys.executable, "-m", "artesian.cli.main", "tenants", "whoami"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert listed.returncode == 0 and "the admin" in listed.stdout, listed.stderr
