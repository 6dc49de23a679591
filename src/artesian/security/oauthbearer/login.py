"""The client side of OAUTHBEARER: where a token comes from, and keeping it fresh.

- ``UnsecuredLogin`` (in ``unsecured``): an unsigned token, for development.
- ``ClientCredentialsLogin``: the OAuth 2 client credentials grant against
  ``sasl.oauthbearer.token.endpoint.url`` (Kafka's OAuthBearerLoginCallbackHandler, and
  librdkafka's ``sasl.oauthbearer.method=oidc``): HTTP basic auth with the client id and
  secret, ``grant_type=client_credentials`` and the optional scope.
- ``RefreshingToken``: reuses a token until 80% of its lifetime (Kafka's
  ``sasl.login.refresh.window.factor`` default), then asks again.

Fetching blocks (it is HTTP), so asyncio callers run ``token()`` in a thread.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "ClientCredentialsLogin",
    "LoginError",
    "RefreshingToken",
    "TokenSource",
    "client_initial_response",
]

REFRESH_WINDOW_FACTOR = 0.8
LOGIN_TIMEOUT_S = 10.0


def client_initial_response(token: str, extensions: Mapping[str, str] | None = None) -> bytes:
    """The client's first message (RFC 7628), without an authorization id, as Kafka's and
    librdkafka's clients send it."""
    pairs = "".join(f"{k}={v}\x01" for k, v in (extensions or {}).items())
    return f"n,,\x01auth=Bearer {token}\x01{pairs}\x01".encode()


class LoginError(Exception):
    """No token could be had; the message says why and what to check."""


class TokenSource(Protocol):
    def token(self) -> tuple[str, float]:
        """A token and its expiry in seconds since the epoch; raises LoginError."""
        ...


@dataclass(slots=True, frozen=True)
class ClientCredentialsLogin:
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None

    def token(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        basic = ":".join(
            urllib.parse.quote(p, safe="") for p in (self.client_id, self.client_secret)
        )
        request = urllib.request.Request(
            self.token_url,
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "Basic " + base64.b64encode(basic.encode()).decode(),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=LOGIN_TIMEOUT_S) as response:
                body = json.loads(response.read(1 << 20))
        except urllib.error.HTTPError as e:
            raise LoginError(
                f"the token endpoint {self.token_url} refused client {self.client_id!r}: HTTP "
                f"{e.code} {e.reason}; check its clientId and clientSecret"
            ) from e
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise LoginError(f"cannot get a token from {self.token_url}: {e}") from e
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise LoginError(f"the token endpoint {self.token_url} answered no access_token")
        expires_in = body.get("expires_in")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            return token, time.time() + float(expires_in)
        import jwt  # here: Artesian's clients load PyJWT only when they use tokens

        try:  # the client only reads its own token's expiry; the broker checks the signature
            return token, float(jwt.decode(token, options={"verify_signature": False})["exp"])
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as e:
            raise LoginError(
                f"the token from {self.token_url} has neither expires_in nor an exp claim"
            ) from e


class RefreshingToken:
    """A token source's token, reused until 80% of its lifetime has passed."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._cached: tuple[str, float, float] | None = None  # token, expiry, refresh at

    def token(self) -> tuple[str, float]:
        with self._lock:
            now = time.time()
            if self._cached is None or now >= self._cached[2]:
                token, expires = self.source.token()
                self._cached = (token, expires, now + (expires - now) * REFRESH_WINDOW_FACTOR)
            return self._cached[0], self._cached[1]
