"""SASL/PLAIN (RFC 4616), server and client side, with Kafka's checks and messages.

The whole exchange is one client token, ``[authzid] NUL authcid NUL passwd`` in UTF-8, and an
empty server reply. Like Kafka, an authorization id is only accepted when it names the
authenticating user itself (no impersonation).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from artesian.security.sasl import AuthenticationFailed

__all__ = ["MECHANISM", "PlainServer", "plain_client_token"]

MECHANISM = "PLAIN"

_INVALID_CREDENTIALS = "Authentication failed: Invalid username or password"


class PlainServer:
    """Checks one PLAIN token against a username -> password table."""

    __slots__ = ("_done", "_failed", "_username", "_users", "mechanism")

    def __init__(self, users: Mapping[str, str]) -> None:
        self.mechanism: str = MECHANISM
        self._users = users
        self._username: str | None = None
        self._done = False
        self._failed = False

    @property
    def complete(self) -> bool:
        return self._done

    @property
    def credential_expiry_ms(self) -> None:
        return None  # a password does not expire

    @property
    def username(self) -> str | None:
        return self._username if self._done else None

    def step(self, token: bytes) -> bytes:
        if self._done:
            raise AuthenticationFailed(
                "Authentication failed: SASL/PLAIN exchange already complete"
            )
        if self._failed:
            raise AuthenticationFailed("Authentication failed: SASL/PLAIN exchange already failed")
        # Any failure ends the exchange: a client gets exactly one attempt per connection.
        self._failed = True
        self._username = _authenticate(token, self._users)
        self._failed = False
        self._done = True
        return b""


def _authenticate(token: bytes, users: Mapping[str, str]) -> str:
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationFailed("Invalid SASL/PLAIN response: not valid UTF-8") from None
    parts = text.split("\0")
    if len(parts) != 3:
        raise AuthenticationFailed(
            f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(parts)}"
        )
    authzid, username, password = parts
    if not username:
        raise AuthenticationFailed("Authentication failed: username not specified")
    if not password:
        raise AuthenticationFailed("Authentication failed: password not specified")
    expected = users.get(username)
    # Fixed-size digests compared even for an unknown user: the reply time reveals neither
    # which users exist nor a password's length.
    ok = hmac.compare_digest(
        hashlib.sha256(password.encode("utf-8")).digest(),
        hashlib.sha256((expected if expected is not None else "\0").encode("utf-8")).digest(),
    )
    if expected is None or not ok:
        raise AuthenticationFailed(_INVALID_CREDENTIALS)
    if authzid and authzid != username:
        raise AuthenticationFailed(
            "Authentication failed: Client requested an authorization id that is different"
            " from username"
        )
    return username


def plain_client_token(username: str, password: str) -> bytes:
    """The client's PLAIN token; the authzid is left empty, as Kafka's clients do."""
    return f"\0{username}\0{password}".encode()


if TYPE_CHECKING:
    from artesian.security.sasl import SaslServer

    def _conforms(server: PlainServer) -> SaslServer:  # mypy checks the Protocol here
        return server
