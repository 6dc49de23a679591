"""The server side of SASL/OAUTHBEARER (Kafka's OAuthBearerSaslServer), without I/O.

The client's first message (RFC 7628) is ``n,[a=<authzid>],^Aauth=Bearer <token>^A`` followed
by SASL extensions ``key=value^A`` and a final ``^A``. A validator turns the token into a
principal and an expiry, or rejects it. A rejection is not final at once, as the RFC has it:
the server answers with a JSON error (``{"status":"invalid_token"}``), the client acknowledges
with a lone ``^A``, and only then does the exchange fail, with that JSON as the message.

A malformed first message is answered as Kafka does, with the generic "invalid credentials"
failure; the reason goes to the broker's log only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from artesian.security.sasl import AuthenticationFailed, InvalidCredentials

__all__ = [
    "MECHANISM",
    "ClientInitialResponse",
    "OAuthBearerServer",
    "TokenRejected",
    "TokenValidator",
    "ValidatedToken",
    "parse_client_initial_response",
]

MECHANISM = "OAUTHBEARER"

log = logging.getLogger("artesian.authenticator")

_SEP = b"\x01"
# RFC 7628 section 3.1 with RFC 5801's gs2 header; Kafka's OAuthBearerClientInitialResponse.
_AUTHZID = rb"(?:[\x01-\x2b\x2d-\x3c\x3e-\x7f]|=2C|=3D)+"  # no bare ',' or '='
_KEY = re.compile(r"[A-Za-z]+")
_VALUE = re.compile(r"[\x21-\x7E \t\r\n]+")
_MESSAGE = re.compile(
    rb"n,(?:a=(?P<authzid>" + _AUTHZID + rb"))?,\x01(?P<pairs>(?:[^\x01=]+=[^\x01]*\x01)*)\x01"
)
_AUTH = re.compile(r"(?P<scheme>\w+) +(?P<token>[-_~+/.a-zA-Z0-9]+=*)")


@dataclass(slots=True, frozen=True)
class ClientInitialResponse:
    token: str
    authzid: str = ""
    extensions: Mapping[str, str] = field(default_factory=dict)


class MalformedResponse(ValueError):
    """The client's first message is not one RFC 7628 allows; the message says why."""


def parse_client_initial_response(message: bytes) -> ClientInitialResponse:
    match = _MESSAGE.fullmatch(message)
    if match is None:
        raise MalformedResponse("Invalid OAUTHBEARER client first message")
    pairs: dict[str, str] = {}
    for pair in match["pairs"].split(_SEP)[:-1]:
        key, _, value = pair.partition(b"=")
        pairs[key.decode("latin-1")] = value.decode("latin-1")
    auth = pairs.pop("auth", None)
    if auth is None:
        raise MalformedResponse("Invalid OAUTHBEARER client first message: 'auth' not specified")
    for key, value in pairs.items():
        if not _KEY.fullmatch(key):
            raise MalformedResponse(f"Extension name {key} is invalid")
        if not _VALUE.fullmatch(value):
            raise MalformedResponse(f"Extension value ({value}) for extension {key} is invalid")
    scheme_and_token = _AUTH.fullmatch(auth)
    if scheme_and_token is None:
        raise MalformedResponse("Invalid OAUTHBEARER client first message: invalid 'auth' format")
    if scheme_and_token["scheme"].lower() != "bearer":
        raise MalformedResponse(
            f"Invalid scheme in OAUTHBEARER client first message: {scheme_and_token['scheme']}"
        )
    authzid = (match["authzid"] or b"").decode("latin-1")
    return ClientInitialResponse(scheme_and_token["token"], authzid, pairs)


@dataclass(slots=True, frozen=True)
class ValidatedToken:
    """What a valid token says: who, until when (ms since the epoch), with what scope."""

    principal: str
    expires_ms: int
    scope: frozenset[str] = frozenset()
    issued_ms: int | None = None


class TokenRejected(Exception):
    """A token that does not validate. ``str(e)`` is the reason for the broker's log; the
    client only sees the RFC 6750 status (and the scope it lacked, if that is why)."""

    def __init__(self, reason: str, status: str = "invalid_token", scope: str | None = None):
        super().__init__(reason)
        self.status = status
        self.scope = scope

    def json(self) -> str:
        # Kafka's OAuthBearerSaslServer.jsonErrorResponse, spacing included.
        text = f'{{"status":"{self.status}"'
        if self.scope is not None:
            text += f', "scope":"{self.scope}"'
        return text + "}"


class TokenValidator(Protocol):
    def validate(self, token: str) -> ValidatedToken:
        """The token's principal and expiry; raises TokenRejected."""
        ...


class OAuthBearerServer:
    """One OAUTHBEARER exchange. Every SASL extension is accepted, as both of Kafka's
    validators accept them; they are kept in ``extensions``."""

    __slots__ = ("_done", "_error", "_validator", "extensions", "mechanism", "token")

    def __init__(self, validator: TokenValidator) -> None:
        self.mechanism: str = MECHANISM
        self._validator = validator
        self._done = False
        self._error: str | None = None  # the JSON error the client must acknowledge
        self.token: ValidatedToken | None = None
        self.extensions: Mapping[str, str] = {}

    @property
    def complete(self) -> bool:
        return self._done

    @property
    def username(self) -> str | None:
        return self.token.principal if self._done and self.token else None

    @property
    def credential_expiry_ms(self) -> int | None:
        """When the token expires (ms since the epoch): the session ends then (KIP-368)."""
        return self.token.expires_ms if self._done and self.token else None

    def step(self, message: bytes) -> bytes:
        if self._done:
            raise AuthenticationFailed(
                "Authentication failed: SASL/OAUTHBEARER exchange already complete"
            )
        if message == _SEP and self._error is not None:
            raise AuthenticationFailed(self._error)  # the client acknowledged our error
        self._error = None
        try:
            response = parse_client_initial_response(message)
        except MalformedResponse as e:
            log.info("OAUTHBEARER login refused: %.300r", str(e))  # client text: bounded, escaped
            raise InvalidCredentials(MECHANISM) from e
        try:
            token = self._validator.validate(response.token)
        except TokenRejected as e:
            log.warning("OAUTHBEARER token refused (%s): %.300r", e.status, str(e))
            self._error = e.json()
            return self._error.encode()
        if response.authzid and response.authzid != token.principal:
            raise AuthenticationFailed(
                f"Authentication failed: Client requested an authorization id "
                f"({response.authzid}) that is different from the token's principal name "
                f"({token.principal})"
            )
        self.token = token
        self.extensions = dict(response.extensions)
        self._done = True
        return b""
