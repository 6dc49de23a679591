"""Tenant documents (validated both ways, never holding a token) and who a bearer token
stands for."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artesian.controlplane.documents import ClusterDesire, DocumentError, Tenant
from artesian.controlplane.tenants import (
    ADMIN,
    Caller,
    ExpiredToken,
    TokenIndex,
    authenticate,
    mint_token,
)

ADMIN_TOKEN = "an-admin-token-of-enough-length"
NOW = 1_800_000_000_000


def token_doc(**overrides: Any) -> dict[str, Any]:
    token, _ = mint_token("ci", 5)
    doc: dict[str, Any] = {
        "id": token.id,
        "secret_sha256": token.secret_sha256,
        "description": "ci",
        "created_ms": 5,
    }
    doc.update(overrides)
    return doc


def tenant_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "t-abc123",
        "name": "acme",
        "max_clusters": 3,
        "max_brokers": 6,
        "tokens": [token_doc()],
        "created_ms": 1,
        "generation": 2,
    }
    doc.update(overrides)
    return doc


def test_a_tenant_round_trips_and_shows_no_digest() -> None:
    tenant = Tenant.decode(json.dumps(tenant_doc()).encode())
    assert Tenant.decode(tenant.encode()) == tenant
    assert tenant.max_clusters == 3 and tenant.tokens[0].description == "ci"
    public = json.dumps(tenant.public())
    assert tenant.tokens[0].secret_sha256 not in public and "secret_sha256" not in public


def test_the_malformed_cases_differ_from_a_valid_tenant_in_one_field_only() -> None:
    """Each case below would fail for its own reason: the same documents with their token
    fields valid decode."""
    Tenant.decode(json.dumps(tenant_doc(tokens=[token_doc(id="a" * 16)])).encode())
    expiring = Tenant.decode(json.dumps(tenant_doc(tokens=[token_doc(expires_ms=9)])).encode())
    assert expiring.tokens[0].expires_ms == 9
    # A token written before expiry existed never expires.
    assert Tenant.decode(json.dumps(tenant_doc()).encode()).tokens[0].expires_ms == 0
    many = [token_doc(id=f"{n:016d}") for n in range(20)]
    assert len(Tenant.decode(json.dumps(tenant_doc(tokens=many)).encode()).tokens) == 20


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": "lkc-abc123"},
        {"id": "t-abc123\n"},
        {"name": "a/b"},
        {"max_clusters": -1},
        {"max_clusters": "3"},
        {"max_brokers": 10**9},
        {"tokens": {}},
        {"tokens": [token_doc(id="short")]},
        {"tokens": [token_doc(id="A" * 16)]},
        {"tokens": [token_doc(secret_sha256="0" * 63)]},
        {"tokens": [token_doc(secret_sha256="G" * 64)]},
        {"tokens": [token_doc(description="x" * 257)]},
        {"tokens": [token_doc(expires_ms=-1)]},
        {"tokens": [token_doc(expires_ms="soon")]},
        {"tokens": [token_doc(expires_ms=253_402_300_800_000)]},  # past year 9999
        {"tokens": [token_doc(id="a" * 16)] * 2},
        {"tokens": [token_doc(id=f"{n:016d}") for n in range(21)]},
        {"generation": 0},
    ],
)
def test_a_malformed_tenant_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(DocumentError):
        Tenant.decode(json.dumps(tenant_doc(**overrides)).encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(tenant_doc())),
        st.none() | st.integers() | st.text(max_size=20) | st.lists(st.integers(), max_size=2),
        max_size=3,
    )
)
def test_a_mutated_tenant_decodes_or_raises_document_error(changes: dict[str, Any]) -> None:
    try:
        result = Tenant.decode(json.dumps(tenant_doc(**changes)).encode())
    except DocumentError:
        return
    assert isinstance(result, Tenant)


def test_a_cluster_names_its_tenant_or_none() -> None:
    base = {"id": "lkc-abc123", "name": "orders", "brokers": 1, "cell": "local", "generation": 1}
    assert ClusterDesire.decode(json.dumps(base).encode()).tenant == ""
    owned = ClusterDesire.decode(json.dumps({**base, "tenant": "t-abc123"}).encode())
    assert owned.tenant == "t-abc123"
    with pytest.raises(DocumentError):
        ClusterDesire.decode(json.dumps({**base, "tenant": "acme"}).encode())


def test_a_token_stands_for_its_tenant_and_nothing_else_does() -> None:
    token, text = mint_token("ci", 1)
    assert text.startswith(f"art_{token.id}_") and token.secret_sha256 not in text
    acme = Tenant("t-abc123", "acme", tokens=(token,)).validate()
    other_token, other_text = mint_token("", 1)
    globex = Tenant("t-def456", "globex", tokens=(other_token,)).validate()
    tenants = TokenIndex()
    tenants.tenant_changed(acme.id, acme)
    tenants.tenant_changed(globex.id, globex)
    assert authenticate(ADMIN_TOKEN, ADMIN_TOKEN, tenants, NOW) == ADMIN
    assert authenticate(text, ADMIN_TOKEN, tenants, NOW) == Caller("t-abc123")
    assert authenticate(other_text, ADMIN_TOKEN, tenants, NOW) == Caller("t-def456")
    secret = text.split("_", 2)[2]
    for wrong in (
        text[:-1],
        text + "x",
        f"art_{other_token.id}_{secret}",  # acme's secret under globex's id
        f"art_{token.id}_{token.secret_sha256}",  # the digest is no secret
        secret,
        ADMIN_TOKEN[:-1],
        "",
        "art__",
    ):
        assert authenticate(wrong, ADMIN_TOKEN, tenants, NOW) is None, wrong
    # A token revoked, or its tenant deleted or unreadable, no longer matches.
    tenants.tenant_changed(acme.id, Tenant("t-abc123", "acme").validate())
    assert authenticate(text, ADMIN_TOKEN, tenants, NOW) is None
    tenants.tenant_changed(globex.id, None)
    assert authenticate(other_text, ADMIN_TOKEN, tenants, NOW) is None


def test_an_expired_token_is_told_so_and_only_with_its_secret() -> None:
    token, text = mint_token("ci", 1, expires_ms=NOW)
    acme = Tenant("t-abc123", "acme", tokens=(token,)).validate()
    tenants = TokenIndex()
    tenants.tenant_changed(acme.id, acme)
    # The caller knows when its token expires: it may make only tokens that expire sooner.
    assert authenticate(text, ADMIN_TOKEN, tenants, NOW - 1) == Caller("t-abc123", NOW)
    with pytest.raises(ExpiredToken) as e:
        authenticate(text, ADMIN_TOKEN, tenants, NOW)
    assert e.value.token.id == token.id
    # A wrong secret learns nothing about the token's expiry.
    wrong = text[:-1] + ("y" if text.endswith("x") else "x")
    assert authenticate(wrong, ADMIN_TOKEN, tenants, NOW + 1) is None


def test_the_caller_owns_its_own() -> None:
    assert ADMIN.is_admin and ADMIN.owns("") and ADMIN.owns("t-abc123")
    acme = Caller("t-abc123")
    assert not acme.is_admin and acme.owns("t-abc123")
    assert not acme.owns("") and not acme.owns("t-def456")


def test_every_v1_route_needs_a_caller() -> None:
    """A route that forgot the bearer dependency would act for anyone."""
    from fastapi.routing import APIRoute

    from artesian.controlplane.api import create_app

    app = create_app(object())  # type: ignore[arg-type]  # routes only, never called
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path.startswith("/v1")]
    assert len(routes) >= 17
    for route in routes:
        calls = [d.call for d in route.dependant.dependencies]
        assert any(getattr(c, "__name__", "") == "caller" for c in calls), route.path


def test_the_admin_token_file_is_read_for_this_machine_only(tmp_path: Any) -> None:
    from artesian.cli import controlplane as cli

    token_file = tmp_path / "admin.token"
    token_file.write_text("the-admins-token-of-enough-length\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "DEFAULT_ADMIN_TOKEN_FILE", token_file)
        assert cli._token(None, "http://127.0.0.1:8080") == "the-admins-token-of-enough-length"
        assert cli._token(None, "http://localhost:8080") == "the-admins-token-of-enough-length"
        assert cli._token(None, "https://[::1]:8080") == "the-admins-token-of-enough-length"
        assert cli._token(None, "http://controlplane.example.com:8080") is None
        assert cli._token(None, "http://10.0.0.5:8080") is None
        assert cli._token("given", "http://10.0.0.5:8080") == "given"
