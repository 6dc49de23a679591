"""SASL/OAUTHBEARER: the mechanism and its validators without sockets, then real brokers
driven by librdkafka, kafka-python, aiokafka, raw frames and the CLI, with unsigned tokens
(Kafka's default) and with tokens signed by an identity provider (a real HTTP server on
127.0.0.1 issuing RS256 JWTs and publishing its keys)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from artesian.broker.authenticator import SaslAuthenticator, SaslSettings
from artesian.security.oauthbearer.jwks import JwksCache, parse_jwks
from artesian.security.oauthbearer.jwt_validator import JwtValidator
from artesian.security.oauthbearer.login import RefreshingToken, client_initial_response
from artesian.security.oauthbearer.sasl_server import (
    MalformedResponse,
    OAuthBearerServer,
    TokenRejected,
    parse_client_initial_response,
)
from artesian.security.oauthbearer.unsecured import (
    UnsecuredLogin,
    UnsecuredValidator,
    unsecured_jwt,
)
from artesian.security.sasl import AuthenticationFailed
from tests.broker_process import BrokerProcess, free_port
from tests.kafka_wire import (
    WireConn,
    metadata_request,
    request_frame,
    sasl_authenticate,
    sasl_handshake,
)
from tests.metrics import scrape
from tests.security.broker_pairs import replicated_through_a_leader_kill, start_pair
from tests.security.oauth_issuer import Issuer, running_issuer

SECURED = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
SECURED_LOGIN = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler"
INVALID = "Authentication failed during authentication due to invalid credentials with SASL mechanism OAUTHBEARER"


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _unsecured_raw(claims: str) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    return f"{header}.{base64.urlsafe_b64encode(claims.encode()).rstrip(b'=').decode()}."


def unsigned(sub: str | None = "alice", lifetime: float = 3600, **claims: Any) -> str:
    now = time.time_ns() // 1_000_000 / 1000
    body = {"sub": sub, "iat": now, "exp": now + lifetime, **claims}
    return unsecured_jwt({k: v for k, v in body.items() if v is not None})


# --- the mechanism, without sockets ---------------------------------------------------------


def test_the_client_first_message_is_parsed_as_rfc_7628_has_it() -> None:
    message = client_initial_response("abc.def.", {"traceId": "t 1", "tenant": "acme"})
    assert message == b"n,,\x01auth=Bearer abc.def.\x01traceId=t 1\x01tenant=acme\x01\x01"
    parsed = parse_client_initial_response(message)
    assert (parsed.token, parsed.authzid, dict(parsed.extensions)) == (
        "abc.def.",
        "",
        {"traceId": "t 1", "tenant": "acme"},
    )
    with_authzid = parse_client_initial_response(b"n,a=alice,\x01auth=bearer  x-y_z==\x01\x01")
    assert (with_authzid.token, with_authzid.authzid) == ("x-y_z==", "alice")
    cases = {
        b"": "Invalid OAUTHBEARER client first message",
        b"y,,\x01auth=Bearer t\x01\x01": "Invalid OAUTHBEARER client first message",
        b"n,,\x01auth=Bearer t\x01": "Invalid OAUTHBEARER client first message",
        b"n,,\x01\x01": "Invalid OAUTHBEARER client first message: 'auth' not specified",
        b"n,,\x01auth=Bearer\x01\x01": (
            "Invalid OAUTHBEARER client first message: invalid 'auth' format"
        ),
        b"n,,\x01auth=Bearer a b\x01\x01": (
            "Invalid OAUTHBEARER client first message: invalid 'auth' format"
        ),
        b"n,,\x01auth=Basic dXNlcg==\x01\x01": (
            "Invalid scheme in OAUTHBEARER client first message: Basic"
        ),
        b"n,,\x01auth=Bearer t\x01x1=v\x01\x01": "Extension name x1 is invalid",
        b"n,,\x01auth=Bearer t\x01x=\x00\x01\x01": "Extension value (\x00) for extension x is invalid",
        b"n,,\x01auth=Bearer t\x01x=\xff\x01\x01": "Extension value (\xff) for extension x is invalid",
    }
    for message, reason in cases.items():
        with pytest.raises(MalformedResponse) as refused:
            parse_client_initial_response(message)
        assert str(refused.value) == reason, message


def test_unsigned_tokens_are_checked_as_kafka_checks_them() -> None:
    now_ms = 1_800_000_000_000
    validator = UnsecuredValidator(required_scope=("read", "write"), now_ms=lambda: now_ms)

    def token(**claims: Any) -> str:
        body = {"sub": "alice", "iat": now_ms / 1000, "exp": now_ms / 1000 + 60, **claims}
        return unsecured_jwt({k: v for k, v in body.items() if v is not None})

    valid = validator.validate(token(scope=["read", "write", "admin"]))
    assert valid.principal == "alice"
    assert valid.expires_ms == now_ms + 60_000
    assert valid.scope == {"read", "write", "admin"}
    header = base64.urlsafe_b64encode(b'{"alg":"HS256"}').rstrip(b"=").decode()
    body = token(scope="read write").split(".")[1]
    reasons = {
        token(scope="read write") + "sig": "Unsecured JWS must not contain a digital signature",
        f"{header}.{body}.": "Unsecured JWS must have 'none' for an algorithm",
        "a.b": "Unsecured JWS compact serializations must have 3 dot-separated Base64URL-"
        "encoded values",
        "a..": "Malformed compact serialization contains '..'",
        "!!!.e30.": "malformed Base64 URL encoded value",
        token(exp=None, scope=["read", "write"]): "No expiration time in JWT",
        token(sub=None, scope=["read", "write"]): "No principal name in JWT claim: sub",
        token(sub=" ", scope=["read", "write"]): "No principal name in JWT claim: sub",
        token(exp="soon", scope=["read", "write"]): "The 'exp' claim was not of type Number: soon",
        token(exp=float("inf"), scope=["read", "write"]): (
            "The 'exp' claim was not of type Number: inf"
        ),
        _unsecured_raw('{"sub":"a","exp":1e999}'): "The 'exp' claim was not of type Number: inf",
        _unsecured_raw("[" * 100_000 + "]" * 100_000): "malformed JSON",
        token(exp=now_ms / 1000, scope=["read", "write"]): (
            f"The indicated time ({now_ms} ms) minus allowable clock skew (0 ms) was on or after "
            f"the Expiration Time value ({now_ms / 1000:f} seconds)"
        ),
        token(iat=now_ms / 1000 + 1, scope=["read", "write"]): (
            f"The Issued At value ({now_ms / 1000 + 1:f} seconds) was after the indicated time "
            f"({now_ms} ms) plus allowable clock skew (0 ms)"
        ),
    }
    for bad, reason in reasons.items():
        with pytest.raises(TokenRejected) as refused:
            validator.validate(bad)
        assert (str(refused.value), refused.value.json()) == (reason, '{"status":"invalid_token"}')
    with pytest.raises(TokenRejected) as lacking:
        validator.validate(token(scope="read"))
    assert lacking.value.json() == '{"status":"insufficient_scope", "scope":"[read, write]"}'
    assert str(lacking.value) == (
        "The provided scope ([read]) was missing a required scope (write).  All required scope "
        "elements: [read, write]"
    )
    # Clock skew and another principal claim, from the JAAS options.
    lenient = UnsecuredValidator.from_jaas(
        {
            "unsecuredValidatorAllowableClockSkewMs": "5000",
            "unsecuredValidatorPrincipalClaimName": "email",
        }
    )
    late = unsecured_jwt({"email": "a@x", "exp": time.time() - 2})
    assert lenient.validate(late).principal == "a@x"
    with pytest.raises(ValueError, match="Allowable clock skew millis must not be negative: -1"):
        UnsecuredValidator.from_jaas({"unsecuredValidatorAllowableClockSkewMs": "-1"})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with running_issuer() as it:
        yield it


def _loaded(issuer: Issuer) -> JwksCache:
    keys = JwksCache(issuer.jwks_url)
    keys.load(json.dumps(issuer.jwks()).encode())
    return keys


def test_signed_tokens_are_checked_against_the_providers_keys(issuer: Issuer) -> None:
    keys = _loaded(issuer)
    validator = JwtValidator(keys, ("kafka",), issuer.issuer)
    good = validator.validate(issuer.token("svc-orders", scope=["read", "write"]))
    assert (good.principal, good.scope) == ("svc-orders", {"read", "write"})
    # As Kafka's BrokerJwtValidator: a string is one scope, another type none.
    assert validator.validate(issuer.token("svc", scope="read write")).scope == {"read write"}
    assert validator.validate(issuer.token("svc", scope=5)).scope == frozenset()
    assert abs(good.expires_ms - (time.time() + issuer.lifetime_s) * 1000) < 5000
    stranger = Issuer(issuer.issuer)  # the same names, other keys
    stranger.rotate()
    now = int(time.time())
    refusals = {
        "": "Empty JWT provided; expected three sections (header, payload, and signature)",
        "a.b": "Malformed JWT provided; expected three sections (header, payload, and "
        "signature), but 2 sections provided",
        issuer.token("x", aud="billing"): "Could not validate the access token: Audience doesn't "
        "match",
        issuer.token("x", iss="https://evil.test"): "Could not validate the access token: "
        "Invalid issuer",
        issuer.token("x", exp=now - 60, iat=now - 120): "Could not validate the access token: "
        "Signature has expired",
        issuer.token(
            "x", iat=None
        ): 'Could not validate the access token: Token is missing the "iat" claim',
        issuer.token(None): "sub value must be non-null",  # type: ignore[arg-type]
        issuer.token(" "): "sub value must not contain only whitespace",
        issuer.token(
            "x", scope=["a", "a"]
        ): "scope value must not contain duplicates - a already present",
        stranger.token("x"): "Unable to find a suitable verification key for JWS w/ header "
        f"{{alg=RS256, kid=key-2}} from the keys obtained from {issuer.jwks_url}",
        unsigned("x", aud="kafka", iss=issuer.issuer): "Could not validate the access token: "
        "the 'none' algorithm",
    }
    for token, reason in refusals.items():
        with pytest.raises(TokenRejected) as refused:
            validator.validate(token)
        assert (str(refused.value), refused.value.json()) == (reason, '{"status":"invalid_token"}')
    # A forged signature under the right key id; and the HMAC trick: the public key as an
    # HS256 secret must not verify.
    header, body, _ = issuer.token("x").split(".")
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(b'0' * 256).rstrip(b'=').decode()}"
    with pytest.raises(TokenRejected, match="Signature verification failed"):
        validator.validate(forged)
    # The HMAC trick: the public key's PEM as an HS256 secret must not verify.
    public_pem = keys.keys[0].jwk.key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    claims = {"sub": "x", "iat": now, "exp": now + 60, "aud": "kafka", "iss": issuer.issuer}
    signing_input = _b64({"alg": "HS256", "kid": issuer.kid}) + "." + _b64(claims)
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    confused = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(TokenRejected, match="Unable to find a suitable verification key"):
        validator.validate(confused)
    # No audience expected: a token that names one is refused, as jose4j does in Kafka.
    lax = JwtValidator(keys)
    with pytest.raises(TokenRejected, match="Invalid audience"):
        lax.validate(issuer.token("x"))
    assert lax.validate(issuer.token("x", aud=None, iss=None)).principal == "x"
    # Another principal claim.
    by_email = JwtValidator(keys, ("kafka",), sub_claim="email")
    assert by_email.validate(issuer.token("x", email="ops@acme.test")).principal == "ops@acme.test"


def test_a_refused_token_fails_only_once_the_client_acknowledges() -> None:
    server = OAuthBearerServer(UnsecuredValidator())
    challenge = server.step(client_initial_response(unsigned(lifetime=-10)))
    assert challenge == b'{"status":"invalid_token"}' and not server.complete
    # RFC 7628: the client answers a lone ^A, and the exchange fails with the JSON.
    with pytest.raises(AuthenticationFailed) as failed:
        server.step(b"\x01")
    assert str(failed.value) == '{"status":"invalid_token"}'
    # A client that tries another token instead gets it checked.
    retry = OAuthBearerServer(UnsecuredValidator())
    retry.step(client_initial_response(unsigned(lifetime=-10)))
    assert retry.step(client_initial_response(unsigned("bob"))) == b""
    assert (retry.complete, retry.username) == (True, "bob")
    impostor = OAuthBearerServer(UnsecuredValidator())
    with pytest.raises(AuthenticationFailed) as mismatch:
        impostor.step(f"n,a=admin,\x01auth=Bearer {unsigned('bob')}\x01\x01".encode())
    assert str(mismatch.value) == (
        "Authentication failed: Client requested an authorization id (admin) that is "
        "different from the token's principal name (bob)"
    )
    malformed = OAuthBearerServer(UnsecuredValidator())
    with pytest.raises(AuthenticationFailed) as generic:
        malformed.step(b"n,,\x01\x01")
    assert str(generic.value) == INVALID


def test_the_session_ends_when_the_token_does() -> None:
    settings = SaslSettings(("OAUTHBEARER",), {}, oauthbearer=UnsecuredValidator())
    auth = SaslAuthenticator(settings, lambda *_: None)
    auth.handshake("OAUTHBEARER", 1)
    now = time.monotonic_ns()
    auth.authenticate(client_initial_response(unsigned(lifetime=20)), now)
    assert auth.principal == "User:alice"
    # connections.max.reauth.ms=0, yet the session is the token's remaining 20 s.
    assert 19_000 <= auth.session_lifetime_ms <= 20_000
    assert not auth.session_expired(now + 18 * 10**9) and auth.session_expired(now + 21 * 10**9)
    shorter = SaslAuthenticator(
        SaslSettings(
            ("OAUTHBEARER",),
            {},
            max_reauth_ms={"OAUTHBEARER": 5000},
            oauthbearer=UnsecuredValidator(),
        ),
        lambda *_: None,
    )
    shorter.handshake("OAUTHBEARER", 1)
    shorter.authenticate(client_initial_response(unsigned(lifetime=20)), now)
    assert shorter.session_lifetime_ms == 5000
    # A token that claims to last for ages: the session is as long as KIP-368 can say.
    forever = SaslAuthenticator(settings, lambda *_: None)
    forever.handshake("OAUTHBEARER", 1)
    forever.authenticate(client_initial_response(unsigned(lifetime=9e12)), now)
    assert forever.session_lifetime_ms == 9_223_372_036_854
    # One beyond any date is refused, before it reaches arithmetic that could overflow.
    absurd = SaslAuthenticator(settings, lambda *_: None)
    absurd.handshake("OAUTHBEARER", 1)
    refusal = absurd.authenticate(client_initial_response(unsigned(lifetime=1e300)), now)
    assert refusal == b'{"status":"invalid_token"}' and not absurd.complete


def test_keys_without_an_algorithm_verify_only_their_types_algorithms() -> None:
    """The HMAC trick, where the JWKS names no "alg": an RSA key is never an HS256 secret."""
    bare = Issuer()
    bare.publish_alg = False
    keys = _loaded(bare)
    assert [k.algorithm for k in keys.keys] == [None]
    validator = JwtValidator(keys, ("kafka",), bare.issuer)
    assert validator.validate(bare.token("svc")).principal == "svc"
    now = int(time.time())
    public_pem = keys.keys[0].jwk.key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    claims = {"sub": "x", "iat": now, "exp": now + 60, "aud": "kafka", "iss": bare.issuer}
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        signing_input = _b64({"alg": alg, "kid": bare.kid}) + "." + _b64(claims)
        mac = hmac.new(public_pem, signing_input.encode(), digest).digest()
        forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        with pytest.raises(TokenRejected, match="Unable to find a suitable verification key"):
            validator.validate(forged)


def test_keys_the_broker_cannot_use_are_skipped_not_fatal(issuer: Issuer) -> None:
    good = issuer.jwks()["keys"][0]
    document = {
        "keys": [
            {"kty": "OKP", "crv": "Ed448", "x": "AAAA", "kid": "ed448"},
            {"kty": "XYZ", "kid": "unknown-type"},
            {"kid": "no-type"},
            {**good, "n": "!!!", "kid": "bad-modulus"},
            {**good, "use": "enc", "kid": "for-encryption"},
            "not a key",
            good,
        ]
    }
    assert [k.kid for k in parse_jwks(document)] == [good["kid"]]
    with pytest.raises(ValueError, match="not a JWKS document"):
        parse_jwks({"keys": "none"})
    cache = JwksCache("file:///nowhere")
    with pytest.raises(ValueError, match="no signature keys"):
        cache.load(json.dumps({"keys": [document["keys"][0]]}).encode())


def test_the_key_cache_retries_keeps_its_keys_and_stops(issuer: Issuer, tmp_path: Path) -> None:
    """Against the real HTTP endpoint: failures keep the last good keys and are retried with
    backoff; a refresh picks up a rotation; cancelling stops the task."""

    async def scenario() -> None:
        cache = JwksCache(issuer.jwks_url, refresh_ms=300, retry_backoff_ms=0)
        task = asyncio.create_task(cache.run())
        try:
            while not cache.loaded:
                await asyncio.sleep(0.02)
            kids = [k.kid for k in cache.keys]
            issuer.jwks_status = 500
            failed_from = issuer.jwks_requests
            await asyncio.sleep(1.0)
            # Retried (no faster than every 100 ms, although retry.backoff.ms is 0).
            assert 2 <= issuer.jwks_requests - failed_from <= 12
            assert [k.kid for k in cache.keys] == kids
            issuer.jwks_status = 200
            new_kid = issuer.rotate(keep_old=True)
            while new_kid not in [k.kid for k in cache.keys]:
                await asyncio.sleep(0.02)
        finally:
            issuer.jwks_status = 200
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(asyncio.wait_for(scenario(), 30))
    # A file: URL reads the same document.
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    from_file = JwksCache(path.as_uri())
    asyncio.run(from_file.refresh_once())
    assert [k.kid for k in from_file.keys] == [k["kid"] for k in issuer.jwks()["keys"]]


def test_reauthentication_keeps_the_tokens_principal() -> None:
    settings = SaslSettings(("OAUTHBEARER",), {}, oauthbearer=UnsecuredValidator())
    auth = SaslAuthenticator(settings, lambda *_: None)
    now = time.monotonic_ns()
    auth.handshake("OAUTHBEARER", 1)
    # An authorization id naming the token's own principal is fine.
    auth.authenticate(f"n,a=alice,\x01auth=Bearer {unsigned('alice')}\x01\x01".encode(), now)
    assert auth.principal == "User:alice"
    later = now + 2 * 10**9
    assert auth.maybe_begin_reauthentication(later)
    auth.handshake("OAUTHBEARER", 1)
    with pytest.raises(AuthenticationFailed) as changed:
        auth.authenticate(client_initial_response(unsigned("mallory")), later)
    assert str(changed.value) == (
        "Cannot change principals during re-authentication from User.alice: User.mallory"
    )


def test_token_logins_make_tokens_the_validators_accept() -> None:
    login = UnsecuredLogin.from_jaas(
        {
            "unsecuredLoginStringClaim_sub": "broker",
            "unsecuredLoginListClaim_scope": ",kafka,admin",
            "unsecuredLoginLifetimeSeconds": "120",
        }
    )
    token, expires = login.token()
    valid = UnsecuredValidator(required_scope=("kafka",)).validate(token)
    assert (valid.principal, valid.scope) == ("broker", {"kafka", "admin"})
    assert abs(valid.expires_ms / 1000 - expires) < 0.01
    assert 119 <= expires - time.time() <= 120

    class Counting:
        calls = 0

        def token(self) -> tuple[str, float]:
            Counting.calls += 1
            return f"t{Counting.calls}", time.time() + 2

    refreshing = RefreshingToken(Counting())
    assert refreshing.token()[0] == refreshing.token()[0] == "t1"  # reused ...
    time.sleep(1.7)  # ... until 80% of its 2 s
    assert refreshing.token()[0] == "t2"


_EXTREMES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={"sub": _EXTREMES, "exp": _EXTREMES, "iat": _EXTREMES, "scope": _EXTREMES},
    ),
    st.integers(min_value=0, max_value=3000),
)
def test_any_claims_are_refused_or_accepted_never_crash(claims: dict[str, Any], depth: int) -> None:
    """Claims as JSON, extreme numbers and deep nesting included, through both validators."""
    nested = "[" * depth + "]" * depth
    bodies = [
        json.dumps(claims, allow_nan=True),
        json.dumps({**claims, "x": 0})[:-1] + f', "deep": {nested or 0}}}',
    ]
    for body in bodies:
        tokens = [
            (UnsecuredValidator(), _unsecured_raw(body)),
            (_FUZZ_JWT, _signed_raw(body)),
        ]
        for validator, token in tokens:
            for message in (client_initial_response(token),):
                server = OAuthBearerServer(validator)
                try:
                    answer = server.step(message)
                except AuthenticationFailed:
                    continue
                assert answer == b"" or answer.startswith(b'{"status":')
                if answer == b"":
                    assert server.credential_expiry_ms is not None
                    assert abs(server.credential_expiry_ms) < 2**63


def _signed_raw(claims_json: str) -> str:
    """Claims JSON exactly as given, signed by the fuzz issuer's key."""
    import jwt as pyjwt

    kid, key = _FUZZ_ISSUER._keys[-1]
    return pyjwt.api_jws.PyJWS().encode(
        claims_json.encode(), key, algorithm="RS256", headers={"kid": kid}
    )


# --- real brokers -----------------------------------------------------------------------------


@dataclass
class OAuthBroker:
    proc: BrokerProcess
    ports: dict[str, int]
    metrics_port: int
    issuer: Issuer

    def conf(self, listener: str, **extra: str) -> dict[str, str]:
        return {
            "bootstrap.servers": f"127.0.0.1:{self.ports[listener]}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            **extra,
        }

    def unsecured_conf(self, principal: str, **extra: str) -> dict[str, str]:
        return self.conf(
            "UNSECURED",
            **{
                "enable.sasl.oauthbearer.unsecure.jwt": "true",
                "sasl.oauthbearer.config": f"principal={principal}",
                **extra,
            },
        )

    def oidc_conf(self, client_id: str, secret: str, **extra: str) -> dict[str, str]:
        return self.conf(
            "OIDC",
            **{
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.token.endpoint.url": self.issuer.token_url,
                "sasl.oauthbearer.client.id": client_id,
                "sasl.oauthbearer.client.secret": secret,
                **extra,
            },
        )

    def metric(self, name: str, **labels: str) -> float:
        return scrape(self.metrics_port, name, **labels)


def _allow(admin: AdminClient, principal: str, topic_prefix: str) -> None:
    bindings = [
        AclBinding(
            kind,
            name,
            ResourcePatternType.PREFIXED,
            principal,
            "*",
            AclOperation.ALL,
            AclPermissionType.ALLOW,
        )
        for kind, name in ((ResourceType.TOPIC, topic_prefix), (ResourceType.GROUP, topic_prefix))
    ]
    for future in admin.create_acls(bindings).values():
        future.result(20)


@pytest.fixture(scope="module")
def oauth(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[OAuthBroker]:
    issuer.clients |= {
        "svc-orders": "orders-secret",
        "svc-billing": "billing-secret",
        "svc-admin": "admin-secret",
    }
    root = tmp_path_factory.mktemp("oauth")
    proc = BrokerProcess(root / "broker")
    ports = {"PLAINTEXT": proc.port, "UNSECURED": free_port(), "OIDC": free_port()}
    metrics_port = free_port()
    proc.settings = {
        "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,UNSECURED:SASL_PLAINTEXT,"
        "OIDC:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.oidc.oauthbearer.sasl.server.callback.handler.class": SECURED,
        "listener.name.oidc.oauthbearer.sasl.oauthbearer.jwks.endpoint.url": issuer.jwks_url,
        "sasl.oauthbearer.expected.audience": "kafka",
        "sasl.oauthbearer.expected.issuer": issuer.issuer,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS;User:svc-admin",
        "artesian.metrics.port": str(metrics_port),
        "connection.failed.authentication.delay.ms": "0",
    }
    proc.start()
    try:
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        _allow(admin, "User:alice", "alice-")
        _allow(admin, "User:svc-orders", "orders")
        yield OAuthBroker(proc, ports, metrics_port, issuer)
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


def _round_trip(conf: dict[str, str], topic: str, count: int = 5) -> list[tuple[int, bytes]]:
    producer = Producer({**conf, "acks": "all"})
    delivered: list[tuple[int, bytes]] = []
    errors: list[KafkaError] = []
    for i in range(count):
        producer.produce(
            topic,
            f"{topic}-{i}".encode(),
            on_delivery=lambda err, msg: (
                delivered.append((msg.offset(), msg.value())) if err is None else errors.append(err)
            ),
        )
    assert producer.flush(30) == 0
    assert not errors, errors
    consumer = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    read: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    while len(read) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            read.append((msg.offset(), msg.value()))
    consumer.close()
    assert read == delivered
    return read


def test_librdkafka_logs_in_with_an_unsigned_token(oauth: OAuthBroker) -> None:
    read = _round_trip(oauth.unsecured_conf("alice"), "alice-unsigned")
    assert read == [(i, f"alice-unsigned-{i}".encode()) for i in range(5)]
    # The principal is the token's subject: mallory may log in, but not use alice's topic.
    producer = Producer({**oauth.unsecured_conf("mallory"), "acks": "all"})
    failures: list[KafkaError] = []
    producer.produce("alice-unsigned", b"x", on_delivery=lambda err, _m: failures.append(err))
    producer.flush(30)
    assert [e.code() for e in failures] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_librdkafka_logs_in_with_a_providers_token(oauth: OAuthBroker) -> None:
    before = oauth.issuer.token_requests
    read = _round_trip(oauth.oidc_conf("svc-orders", "orders-secret"), "orders-oidc", count=20)
    assert read == [(i, f"orders-oidc-{i}".encode()) for i in range(20)]
    assert oauth.issuer.token_requests > before
    # Another client of the provider: a valid login, a principal without ACLs.
    producer = Producer({**oauth.oidc_conf("svc-billing", "billing-secret"), "acks": "all"})
    failures: list[KafkaError] = []
    producer.produce("orders-oidc", b"x", on_delivery=lambda err, _m: failures.append(err))
    producer.flush(30)
    assert [e.code() for e in failures] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # An unsigned token on the listener that wants signed ones is refused, with the JSON.
    assert '{"status":"invalid_token"}' in _login_failure(
        {
            **oauth.conf("OIDC"),
            "enable.sasl.oauthbearer.unsecure.jwt": "true",
            "sasl.oauthbearer.config": "principal=svc-orders",
        }
    )


def _login_failure(conf: dict[str, str]) -> str:
    """The authentication error librdkafka reports for ``conf``."""
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        producer.poll(0.2)
        failed = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if failed:
            return str(failed[0].str())
    raise AssertionError(f"no authentication error, only {errors}")


def _login(conn: WireConn, token: str) -> Any:
    assert sasl_handshake(conn, "OAUTHBEARER").error_code == 0
    return sasl_authenticate(conn, client_initial_response(token))


def test_refusals_on_the_wire_are_kafkas(oauth: OAuthBroker) -> None:
    failures = oauth.metric(
        "kafka_server_socket_server_authentications_total", listener="OIDC", result="failure"
    )
    with WireConn(oauth.ports["OIDC"]) as conn:
        # A token signed by another key of the same id: the RFC's JSON challenge, error NONE
        stranger = Issuer(oauth.issuer.issuer)
        answer = _login(conn, stranger.token("svc-orders"))
        assert (answer.error_code, bytes(answer.auth_bytes)) == (0, b'{"status":"invalid_token"}')
        # ... then, acknowledged, SASL_AUTHENTICATION_FAILED with it; the connection closes.
        final = sasl_authenticate(conn, b"\x01")
        assert final.error_code == ErrorCode.sasl_authentication_failed
        assert final.error_message == '{"status":"invalid_token"}'
        conn.expect_closed()
    with WireConn(oauth.ports["OIDC"]) as conn:
        assert sasl_handshake(conn, "OAUTHBEARER").error_code == 0
        malformed = sasl_authenticate(conn, b"n,,\x01auth=Bearer\x01\x01")
        assert (malformed.error_code, malformed.error_message) == (
            ErrorCode.sasl_authentication_failed,
            INVALID,
        )
        conn.expect_closed()
    with WireConn(oauth.ports["UNSECURED"]) as conn:
        answer = _login(conn, unsigned("alice", lifetime=-60))
        assert bytes(answer.auth_bytes) == b'{"status":"invalid_token"}'
        assert sasl_authenticate(conn, b"\x01").error_code == ErrorCode.sasl_authentication_failed
    assert (
        oauth.metric(
            "kafka_server_socket_server_authentications_total", listener="OIDC", result="failure"
        )
        == failures + 2
    )
    log = oauth.proc.log_tail(400)
    # The reason is the broker's to log, not the client's to learn.
    assert (
        "OAUTHBEARER token refused (invalid_token): 'Could not validate the access token: "
        "Signature verification failed'"
    ) in log
    assert (
        "OAUTHBEARER login refused: \"Invalid OAUTHBEARER client first message: invalid 'auth' "
        'format"'
    ) in log


def test_a_session_lasts_as_long_as_its_token(oauth: OAuthBroker) -> None:
    with WireConn(oauth.ports["OIDC"]) as short, WireConn(oauth.ports["OIDC"]) as hour:
        answer = _login(short, oauth.issuer.token("svc-orders", exp=int(time.time()) + 3))
        assert answer.error_code == 0
        # connections.max.reauth.ms is 0 here: the token alone bounds the session.
        assert 1000 <= answer.session_lifetime.total_seconds() * 1000 <= 3000
        long_answer = _login(hour, oauth.issuer.token("svc-orders"))
        assert 3_590_000 <= long_answer.session_lifetime.total_seconds() * 1000 <= 3_600_000
        assert len(short.request(3, 12, metadata_request()).brokers) == 1
        time.sleep(3.2)
        short.send(request_frame(3, 12, 99, metadata_request()))
        short.expect_closed()
        assert len(hour.request(3, 12, metadata_request()).brokers) == 1
    assert "(User:svc-orders) on listener OIDC: its SASL session expired" in oauth.proc.log_tail(
        200
    )


def test_a_rotated_signing_key_is_fetched_when_a_token_names_it(oauth: OAuthBroker) -> None:
    issuer = oauth.issuer
    fetched = issuer.jwks_requests
    new_kid = issuer.rotate(keep_old=True)
    token = issuer.token("svc-orders")
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"] == new_kid
    with WireConn(oauth.ports["OIDC"]) as conn:
        # The broker's keys are an hour old by its schedule: refused, but it fetches at once.
        assert bytes(_login(conn, token).auth_bytes) == b'{"status":"invalid_token"}'
    deadline = time.monotonic() + 10
    while issuer.jwks_requests == fetched and time.monotonic() < deadline:
        time.sleep(0.05)
    assert issuer.jwks_requests == fetched + 1
    deadline = time.monotonic() + 10
    while True:
        with WireConn(oauth.ports["OIDC"]) as conn:
            answer = _login(conn, token)
            if answer.error_code == 0 and not bytes(answer.auth_bytes):
                break
        assert time.monotonic() < deadline, "the new key was never used"
        time.sleep(0.1)
    # A flood of unknown key ids: the provider is asked again, but at most every 5 s.
    fetched = issuer.jwks_requests
    started = time.monotonic()
    for n in range(40):
        with WireConn(oauth.ports["OIDC"]) as conn:
            forged = issuer.token("x")
            header = json.loads(base64.urlsafe_b64decode(forged.split(".")[0] + "=="))
            header["kid"] = f"unknown-{n}"
            conn_token = _b64(header) + "." + forged.split(".", 1)[1]
            assert bytes(_login(conn, conn_token).auth_bytes) == b'{"status":"invalid_token"}'
    deadline = time.monotonic() + 10
    while issuer.jwks_requests == fetched and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 1 <= issuer.jwks_requests - fetched <= (time.monotonic() - started) / 5 + 1


def test_librdkafka_refreshes_its_token_and_reauthenticates(oauth: OAuthBroker) -> None:
    issuer = oauth.issuer
    issuer.lifetime_s = 6
    topic = "orders-refresh"
    successes = oauth.metric(
        "kafka_server_socket_server_reauthentications_total", listener="OIDC", result="success"
    )
    tokens = issuer.token_requests
    try:
        conf = oauth.oidc_conf("svc-orders", "orders-secret")
        producer = Producer({**conf, "acks": "all", "linger.ms": 0})
        delivered: list[tuple[int, bytes]] = []
        errors: list[Any] = []
        started, i = time.monotonic(), 0
        while time.monotonic() - started < 13:  # over two token lifetimes
            producer.produce(
                topic,
                f"r{i}".encode(),
                on_delivery=lambda err, msg: (
                    delivered.append((msg.offset(), msg.value()))
                    if err is None
                    else errors.append(err)
                ),
            )
            i += 1
            producer.poll(0.25)
        assert producer.flush(20) == 0
    finally:
        issuer.lifetime_s = 3600
    assert errors == []
    assert delivered == [(n, f"r{n}".encode()) for n in range(i)]
    assert issuer.token_requests >= tokens + 2  # refreshed at 80% of each lifetime
    assert (
        oauth.metric(
            "kafka_server_socket_server_reauthentications_total", listener="OIDC", result="success"
        )
        >= successes + 2
    )
    # Connections cut at a token's end are not counted against it: librdkafka may
    # re-authenticate with a token near its own expiry, whose short session ends within a
    # second, when Kafka refuses another re-authentication; it reconnects, and producing
    # carries on, as asserted above.


class _Provider:
    """kafka-python's and aiokafka's AbstractTokenProvider shape."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def extensions(self) -> dict[str, str]:
        return {"traceId": "abc"}


def test_kafka_python_and_aiokafka_log_in(oauth: OAuthBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Provider(_Provider, AbstractTokenProvider):
        pass

    token = oauth.issuer.token("svc-orders")
    common: dict[str, Any] = {
        "bootstrap_servers": f"127.0.0.1:{oauth.ports['OIDC']}",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "OAUTHBEARER",
        "sasl_oauth_token_provider": Provider(token),
    }
    producer = KafkaProducer(acks="all", **common)
    offsets = [producer.send("orders-python", f"p{i}".encode()).get(30).offset for i in range(3)]
    producer.close()
    assert offsets == [0, 1, 2]
    consumer = KafkaConsumer(
        "orders-python", group_id="orders-python", auto_offset_reset="earliest", **common
    )
    read: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    while len(read) < 3 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            read += [(r.offset, r.value) for r in records]
    consumer.close()
    assert read == [(i, f"p{i}".encode()) for i in range(3)]

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.abc import AbstractTokenProvider as AioTokenProvider

    class AioProvider(AioTokenProvider):
        async def token(self) -> str:
            return token

    async def run() -> list[tuple[int, bytes]]:
        kw: dict[str, Any] = {**common, "sasl_oauth_token_provider": AioProvider()}
        producer = AIOKafkaProducer(acks="all", **kw)
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait("orders-aio", f"a{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "orders-aio", group_id="orders-aio", auto_offset_reset="earliest", **kw
        )
        await consumer.start()
        try:
            got: list[tuple[int, bytes]] = []
            while len(got) < 3:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
                got += [(r.offset, r.value) for rs in batch.values() for r in rs]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [(i, f"a{i}".encode()) for i in range(3)]


def test_the_cli_logs_in_with_a_providers_token(oauth: OAuthBroker, tmp_path: Path) -> None:
    """Commands that speak Kafka without librdkafka take OAUTHBEARER from librdkafka's
    property names too: the token endpoint, or (development) an unsigned token."""
    config = tmp_path / "client.properties"

    def cli(listener: str, properties: str, *args: str) -> subprocess.CompletedProcess[str]:
        config.write_text(
            f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n{properties}"
        )
        bootstrap = f"127.0.0.1:{oauth.ports[listener]}"
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "artesian.cli.main",
                *args,
                "-b",
                bootstrap,
                "--command-config",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def oidc(client_id: str, secret: str) -> str:
        return (
            "sasl.oauthbearer.method=oidc\n"
            f"sasl.oauthbearer.token.endpoint.url={oauth.issuer.token_url}\n"
            f"sasl.oauthbearer.client.id={client_id}\nsasl.oauthbearer.client.secret={secret}\n"
        )

    admin = cli("OIDC", oidc("svc-admin", "admin-secret"), "transactions", "list", "--json")
    assert admin.returncode == 0 and json.loads(admin.stdout) == [], admin.stderr
    # svc-orders logs in, but may not describe the cluster's quotas.
    orders = cli("OIDC", oidc("svc-orders", "orders-secret"), "quotas", "list")
    assert orders.returncode == 1 and "Cluster authorization failed" in orders.stderr, orders.stderr
    wrong = cli("OIDC", oidc("svc-orders", "wrong"), "quotas", "list")
    assert wrong.returncode == 1
    assert "refused client 'svc-orders': HTTP 401" in wrong.stderr, wrong.stderr
    dev = "enable.sasl.oauthbearer.unsecure.jwt=true\nsasl.oauthbearer.config=principal=svc-admin\n"
    unsigned_admin = cli("UNSECURED", dev, "quotas", "list", "--json")
    assert unsigned_admin.returncode == 0, unsigned_admin.stderr
    # The same unsigned token where signed ones are wanted: the broker's refusal, reported.
    refused = cli("OIDC", dev, "quotas", "list")
    assert refused.returncode == 1 and '{"status":"invalid_token"}' in refused.stderr, (
        refused.stderr
    )


def test_brokers_replicate_logging_in_to_each_other_with_tokens(
    tmp_path: Path, issuer: Issuer
) -> None:
    """sasl.mechanism.inter.broker.protocol=OAUTHBEARER: each broker gets its token from the
    provider (the client credentials grant) and its peers check it against the JWKS keys.
    Only User:broker may replicate (super.users), so the followers' fetches prove the login."""
    issuer.clients |= {"broker": "broker-secret", "svc-admin": "admin-secret"}
    jaas = (
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'clientId="broker" clientSecret="broker-secret" scope="kafka";'
    )
    prefix = "listener.name.sasl_plaintext.oauthbearer."
    brokers = start_pair(
        tmp_path,
        lambda proc: {
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{proc.port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "OAUTHBEARER",
            "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
            f"{prefix}sasl.jaas.config": jaas,
            f"{prefix}sasl.server.callback.handler.class": SECURED,
            f"{prefix}sasl.login.callback.handler.class": SECURED_LOGIN,
            "sasl.oauthbearer.token.endpoint.url": issuer.token_url,
            "sasl.oauthbearer.jwks.endpoint.url": issuer.jwks_url,
            "sasl.oauthbearer.expected.audience": "kafka",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:broker;User:svc-admin",
        },
    )
    try:
        conf = {
            "bootstrap.servers": ",".join(b.bootstrap for b in brokers),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.token.endpoint.url": issuer.token_url,
            "sasl.oauthbearer.client.id": "svc-admin",
            "sasl.oauthbearer.client.secret": "admin-secret",
        }
        # min.insync.replicas=2: nothing is acknowledged before the follower fetched it.
        replicated_through_a_leader_kill(
            brokers, conf, "replicated-oauth", _round_trip, {"min.insync.replicas": "2"}
        )
    finally:
        for proc in brokers:
            if proc.alive():
                proc.stop()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {
                "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": "com.example.Mine"
            },
            "sasl.server.callback.handler.class=com.example.Mine is not a handler Artesian has",
        ),
        (
            {"sasl.server.callback.handler.class": SECURED},
            "needs the provider's keys: set listener.name.sasl_plaintext.oauthbearer.sasl."
            "oauthbearer.jwks.endpoint.url",
        ),
        (
            {
                "sasl.server.callback.handler.class": SECURED,
                "sasl.oauthbearer.jwks.endpoint.url": "ftp://idp/keys",
            },
            "The OAuth configuration option sasl.oauthbearer.jwks.endpoint.url contains a URL "
            "(ftp://idp/keys) that contains an invalid protocol (ftp)",
        ),
        (
            {
                "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
                "inter.broker.listener.name": "SASL_PLAINTEXT",
            },
            'needs its principal: give unsecuredLoginStringClaim_sub="<name>"',
        ),
    ],
)
def test_a_configuration_that_cannot_work_stops_the_start(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    proc = BrokerProcess(tmp_path / "broker")
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},SASL_PLAINTEXT://127.0.0.1:{free_port()}",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        **settings,
    }
    with pytest.raises(RuntimeError) as failed:
        proc.start()
    assert message in str(failed.value)


def test_kafkajs_and_kcat_log_in_with_tokens(oauth: OAuthBroker) -> None:
    from tests.clients.round_trips import kafkajs_round_trip, kcat_round_trip

    unsigned_alice = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "enable.sasl.oauthbearer.unsecure.jwt": "true",
        "sasl.oauthbearer.config": "principal=alice",
    }
    kcat_args = [f"-b127.0.0.1:{oauth.ports['UNSECURED']}"]
    kcat_args += [a for k, v in unsigned_alice.items() for a in ("-X", f"{k}={v}")]
    kcat_round_trip(kcat_args, "alice-kcat", 10)
    token = oauth.issuer.token("svc-orders")
    security = {"sasl": {"mechanism": "oauthbearer", "token": token}}
    kafkajs_round_trip(f"127.0.0.1:{oauth.ports['OIDC']}", "orders-js", 9, security)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda token, pairs: client_initial_response(token, pairs).replace(b"\x00", b""),
            st.text(max_size=200),
            st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
        ),
        st.builds(
            lambda a, b, c: client_initial_response(f"{a}.{b}.{c}"),
            st.text("abcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=60),
            st.text("abcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=60),
            st.text("abcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=60),
        ),
    )
)
def test_any_message_is_refused_or_accepted_never_crashes(message: bytes) -> None:
    for validator in (UnsecuredValidator(), _FUZZ_JWT):
        server = OAuthBearerServer(validator)
        try:
            answer = server.step(message)
        except AuthenticationFailed:
            continue
        assert isinstance(answer, bytes)
        assert answer == b"" or answer.startswith(b'{"status":')


_FUZZ_ISSUER = Issuer()
_FUZZ_JWT = JwtValidator(_loaded(_FUZZ_ISSUER), ("kafka",))


def test_garbage_on_the_wire_never_hurts_the_broker(oauth: OAuthBroker) -> None:
    import random

    rng = random.Random(7)
    tokens = [oauth.issuer.token("x")[: rng.randrange(1, 400)] for _ in range(10)] + [
        "".join(rng.choice("ab.-_=") for _ in range(rng.randrange(0, 50))) for _ in range(10)
    ]
    messages = [client_initial_response(t) for t in tokens]
    messages += [rng.randbytes(rng.randrange(0, 200)) for _ in range(20)]
    for message in messages:
        with WireConn(oauth.ports["OIDC"]) as conn:
            assert sasl_handshake(conn, "OAUTHBEARER").error_code == 0
            answer = sasl_authenticate(conn, message)
            assert answer.error_code in (ErrorCode.none, ErrorCode.sasl_authentication_failed)
            if answer.error_code == ErrorCode.none:
                assert bytes(answer.auth_bytes) == b'{"status":"invalid_token"}'
    with WireConn(oauth.ports["OIDC"]) as conn:
        assert _login(conn, oauth.issuer.token("svc-orders")).error_code == 0
        assert len(conn.request(3, 12, metadata_request()).brokers) == 1
    assert "Traceback" not in oauth.proc.log_tail(2000)
