"""Signed JWTs checked against an identity provider's keys: Kafka's OAuthBearerValidator-
CallbackHandler (KIP-768), chosen with
``listener.name.<l>.oauthbearer.sasl.server.callback.handler.class``.

As in Kafka: any signature algorithm but ``none``, the one the key allows; ``exp`` and ``iat``
required; ``aud`` checked against ``sasl.oauthbearer.expected.audience`` and ``iss`` against
``sasl.oauthbearer.expected.issuer`` when they are set (a token with an audience is refused
when none is expected, as jose4j does); the principal is the
``sasl.oauthbearer.sub.claim.name`` claim; ``sasl.oauthbearer.clock.skew.seconds`` of leeway.
Every failure is told to the client only as ``invalid_token``; the reason is logged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from artesian.security.oauthbearer.jwks import JwksCache, SigningKey
from artesian.security.oauthbearer.sasl_server import TokenRejected, ValidatedToken
from artesian.security.oauthbearer.unsecured import MAX_NUMERIC_DATE_S

__all__ = ["JwtValidator"]

# The algorithms each key type verifies (RFC 7518); the JWK's own "alg" narrows it to one.
_ALGORITHMS = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512", "ES256K"),
    "OKP": ("EdDSA",),
    "oct": ("HS256", "HS384", "HS512"),
}


def _claim_text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if value is None:
        raise TokenRejected(f"{name} value must be non-null")
    if not isinstance(value, str):
        raise TokenRejected(f"Could not extract the '{name}' claim from the access token")
    if not value:
        raise TokenRejected(f"{name} value must be non-empty")
    if not value.strip():
        raise TokenRejected(f"{name} value must not contain only whitespace")
    return value.strip()


def _scope(claims: dict[str, Any], name: str) -> frozenset[str]:
    # As Kafka's BrokerJwtValidator: a string is one scope, a list its strings, anything else
    # no scope at all.
    value = claims.get(name)
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        items = [i for i in value if isinstance(i, str)]
    else:
        return frozenset()
    seen: set[str] = set()
    for item in (i.strip() for i in items if i.strip()):
        if item in seen:
            raise TokenRejected(
                f"{name} value must not contain duplicates - {item} already present"
            )
        seen.add(item)
    return frozenset(seen)


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    value = claims[name]  # present: PyJWT checked
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenRejected(f"Could not validate the access token: '{name}' is not a number")
    if abs(value) > MAX_NUMERIC_DATE_S:
        raise TokenRejected(f"Could not validate the access token: '{name}' is out of range")
    return float(value)


@dataclass(slots=True)
class JwtValidator:
    keys: JwksCache
    expected_audience: Sequence[str] | None = None
    expected_issuer: str | None = None
    scope_claim: str = "scope"
    sub_claim: str = "sub"
    clock_skew_s: int = 30

    def validate(self, token: str) -> ValidatedToken:
        if not token:
            raise TokenRejected(
                "Empty JWT provided; expected three sections (header, payload, and signature)"
            )
        sections = token.count(".") + 1
        if sections != 3:
            raise TokenRejected(
                f"Malformed JWT provided; expected three sections (header, payload, and "
                f"signature), but {sections} sections provided"
            )
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as e:
            raise TokenRejected(f"Could not validate the access token: {e}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg == "none":
            raise TokenRejected("Could not validate the access token: the 'none' algorithm")
        kid = kid if isinstance(kid, str) else None
        candidates = [k for k in self.keys.candidates(kid) if self._verifies(k, alg)]
        if not candidates:
            self.keys.missing(kid)
            loaded = "" if self.keys.loaded else " (none loaded yet)"
            raise TokenRejected(
                f"Unable to find a suitable verification key for JWS w/ header "
                f"{{alg={alg}, kid={kid}}} from the keys{loaded} obtained from {self.keys.url}"
            )
        claims = self._decode(token, alg, candidates)
        principal = _claim_text(claims, self.sub_claim)
        scope = _scope(claims, self.scope_claim)
        expires, issued = (_numeric_date(claims, name) for name in ("exp", "iat"))
        if expires < 0:
            raise TokenRejected("exp value must be non-negative")
        return ValidatedToken(principal, round(expires * 1000), scope, round(issued * 1000))

    @staticmethod
    def _verifies(key: SigningKey, alg: str) -> bool:
        if key.algorithm is not None:
            return key.algorithm == alg
        return alg in _ALGORITHMS.get(key.key_type, ())

    def _decode(self, token: str, alg: str, candidates: list[SigningKey]) -> dict[str, Any]:
        failure: jwt.PyJWTError | None = None
        for key in candidates:
            try:
                return jwt.decode(
                    token,
                    key.jwk.key,
                    algorithms=[alg],
                    audience=self.expected_audience or None,
                    issuer=self.expected_issuer,
                    leeway=self.clock_skew_s,
                    # Kafka (jose4j) looks at neither sub's type nor jti.
                    options={"require": ["exp", "iat"], "verify_sub": False, "verify_jti": False},
                )
            except jwt.InvalidSignatureError as e:
                failure = e  # another key with the same id may verify it
            except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError) as e:
                # Whatever the library trips on in a client's token is a refusal, not a crash.
                raise TokenRejected(f"Could not validate the access token: {e}") from None
        raise TokenRejected(f"Could not validate the access token: {failure}")
