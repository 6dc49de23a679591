"""Unsecured JWTs (``"alg":"none"``, no signature): Kafka's default OAUTHBEARER validator
(OAuthBearerUnsecuredValidatorCallbackHandler) and login (OAuthBearerUnsecuredLoginCallback-
Handler). Anyone can make such a token for any principal, so they are for development and
tests only; production listeners validate signed tokens (``jwt_validator``).

The validator's options come from the listener's OAUTHBEARER ``sasl.jaas.config``, with
Kafka's names: unsecuredValidatorPrincipalClaimName (sub), unsecuredValidatorScopeClaimName
(scope), unsecuredValidatorRequiredScope (space-separated, none by default) and
unsecuredValidatorAllowableClockSkewMs (0). The login's: unsecuredLoginStringClaim_<name>,
unsecuredLoginNumberClaim_<name>, unsecuredLoginListClaim_<name>, unsecuredLoginPrincipalClaimName
(sub), unsecuredLoginLifetimeSeconds (3600) and unsecuredLoginScopeClaimName (scope).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from artesian.security.oauthbearer.sasl_server import TokenRejected, ValidatedToken

__all__ = ["MAX_NUMERIC_DATE_S", "UnsecuredLogin", "UnsecuredValidator", "unsecured_jwt"]

# Times beyond this (seconds; some 300,000 years) are refused rather than turned into
# milliseconds that overflow: a client's claim must not reach arithmetic that raises.
MAX_NUMERIC_DATE_S = 1e13


def _b64url_json(part: str) -> Any:
    try:
        padded = part + "=" * (-len(part) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise TokenRejected("malformed Base64 URL encoded value") from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise TokenRejected("malformed JSON") from None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenRejected(f"The '{name}' claim was not of type Number: {value}")
    if abs(value) > MAX_NUMERIC_DATE_S:
        raise TokenRejected(f"The '{name}' claim is out of range: {value}")
    return float(value)


def _scope(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset([value.strip()]) if value.strip() else frozenset()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(v.strip() for v in value if v.strip())
    raise TokenRejected(f"The 'scope' claim was not of type String or List: {value}")


@dataclass(slots=True, frozen=True)
class UnsecuredValidator:
    principal_claim: str = "sub"
    scope_claim: str = "scope"
    required_scope: tuple[str, ...] = ()
    clock_skew_ms: int = 0
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000

    @classmethod
    def from_jaas(cls, options: Mapping[str, str]) -> UnsecuredValidator:
        skew_text = options.get("unsecuredValidatorAllowableClockSkewMs", "").strip() or "0"
        try:
            skew = int(skew_text)
        except ValueError:
            raise ValueError(
                f"unsecuredValidatorAllowableClockSkewMs must be an integer, not {skew_text!r}"
            ) from None
        if skew < 0:
            raise ValueError(f"Allowable clock skew millis must not be negative: {skew_text}")
        return cls(
            options.get("unsecuredValidatorPrincipalClaimName", "").strip() or "sub",
            options.get("unsecuredValidatorScopeClaimName", "").strip() or "scope",
            tuple(options.get("unsecuredValidatorRequiredScope", "").split()),
            skew,
        )

    def validate(self, token: str) -> ValidatedToken:
        if ".." in token:
            raise TokenRejected("Malformed compact serialization contains '..'")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenRejected(
                "Unsecured JWS compact serializations must have 3 dot-separated Base64URL-"
                "encoded values"
            )
        header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenRejected("malformed JSON")
        if header.get("alg") != "none":
            raise TokenRejected("Unsecured JWS must have 'none' for an algorithm")
        if parts[2]:
            raise TokenRejected("Unsecured JWS must not contain a digital signature")
        expires = _number(claims, "exp")
        if expires is None:
            raise TokenRejected("No expiration time in JWT")
        principal = claims.get(self.principal_claim)
        if principal is not None and not isinstance(principal, str):
            raise TokenRejected(
                f"The '{self.principal_claim}' claim was not of type String: {principal}"
            )
        if not principal or not principal.strip():
            raise TokenRejected(f"No principal name in JWT claim: {self.principal_claim}")
        issued = _number(claims, "iat")
        now, skew = self.now_ms(), self.clock_skew_ms
        if issued is not None and issued * 1000 > now + skew:
            raise TokenRejected(
                f"The Issued At value ({issued:f} seconds) was after the indicated time "
                f"({now} ms) plus allowable clock skew ({skew} ms)"
            )
        if now - skew >= expires * 1000:
            raise TokenRejected(
                f"The indicated time ({now} ms) minus allowable clock skew ({skew} ms) was on "
                f"or after the Expiration Time value ({expires:f} seconds)"
            )
        if issued is not None and expires <= issued:
            raise TokenRejected(
                f"The Expiration Time time ({expires:f} seconds) was not after the Issued At "
                f"time ({issued:f} seconds)"
            )
        scope = _scope(claims.get(self.scope_claim))
        for required in self.required_scope:
            if required not in scope:
                listed = ", ".join(self.required_scope)
                raise TokenRejected(
                    f"The provided scope ([{', '.join(sorted(scope))}]) was missing a required "
                    f"scope ({required}).  All required scope elements: [{listed}]",
                    status="insufficient_scope",
                    scope=f"[{listed}]",
                )
        issued_ms = None if issued is None else round(issued * 1000)
        return ValidatedToken(principal, round(expires * 1000), scope, issued_ms)


def unsecured_jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned compact JWT: ``<header>.<claims>.`` in base64url without padding."""

    def part(value: Mapping[str, Any]) -> str:
        text = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(text).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}."


@dataclass(slots=True, frozen=True)
class UnsecuredLogin:
    """A broker's own unsecured token, made from its OAUTHBEARER JAAS options."""

    claims: Mapping[str, Any]
    principal_claim: str = "sub"
    lifetime_s: int = 3600

    @classmethod
    def from_jaas(cls, options: Mapping[str, str]) -> UnsecuredLogin:
        claims: dict[str, Any] = {}
        for key, value in options.items():
            for prefix, convert in (
                ("unsecuredLoginStringClaim_", str),
                ("unsecuredLoginNumberClaim_", float),
                ("unsecuredLoginListClaim_", _list_claim),
            ):
                if key.startswith(prefix):
                    try:
                        claims[key[len(prefix) :]] = convert(value)
                    except ValueError:
                        raise ValueError(f"{key} is not a number: {value!r}") from None
        principal_claim = options.get("unsecuredLoginPrincipalClaimName", "").strip() or "sub"
        if not isinstance(claims.get(principal_claim), str) or not claims[principal_claim]:
            raise ValueError(
                f"an unsecured OAUTHBEARER login needs its principal: give "
                f'unsecuredLoginStringClaim_{principal_claim}="<name>"'
            )
        lifetime = options.get("unsecuredLoginLifetimeSeconds", "").strip() or "3600"
        if not lifetime.isdigit() or int(lifetime) < 1:
            raise ValueError(
                f"unsecuredLoginLifetimeSeconds must be a positive integer: {lifetime}"
            )
        return cls(claims, principal_claim, int(lifetime))

    def token(self) -> tuple[str, float]:
        """A fresh token and its expiry (seconds since the epoch)."""
        now = time.time_ns() // 1_000_000 / 1000  # whole ms, as Kafka compares them
        expires = now + self.lifetime_s
        return unsecured_jwt({**self.claims, "iat": now, "exp": expires}), expires


def _list_claim(value: str) -> list[str]:
    # Kafka's convention: the first character is the separator, e.g. ",a,b".
    if not value:
        return []
    return [v for v in value[1:].split(value[0]) if v] if len(value) > 1 else []
