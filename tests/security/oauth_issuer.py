"""A small OAuth 2 authorization server for the OAUTHBEARER tests: a real HTTP server on
127.0.0.1 that issues RS256 JWTs to clients (the client credentials grant, as librdkafka's
``sasl.oauthbearer.method=oidc`` asks) and publishes its keys as a JWKS document.

It counts the JWKS downloads, can rotate its signing key, and can be told to fail, so tests
can watch the broker's key cache refresh."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["Issuer", "running_issuer"]


class Issuer:
    """Signing keys, registered clients and the tokens they are given."""

    def __init__(self, issuer: str = "https://issuer.artesian.test", audience: str = "kafka"):
        self.issuer = issuer
        self.audience = audience
        self.clients: dict[str, str] = {}  # client id -> secret
        self.lifetime_s = 3600
        self.extra_claims: dict[str, Any] = {}
        self.jwks_requests = 0
        self.token_requests = 0
        self.jwks_status = 200  # set to 500 to make the JWKS endpoint fail
        self.publish_alg = True  # False: the JWKS keys name no "alg" (the key type decides)
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self._minted = 0
        self._lock = threading.Lock()
        self.rotate()
        self.url = ""  # set once serving

    def rotate(self, keep_old: bool = False) -> str:
        """A new signing key (its kid is returned); the old one stays published if asked."""
        self._minted += 1
        kid = f"key-{self._minted}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self._lock:
            self._keys = ([*self._keys] if keep_old else []) + [(kid, key)]
        return kid

    @property
    def kid(self) -> str:
        return self._keys[-1][0]

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._keys:
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            alg = {"alg": "RS256"} if self.publish_alg else {}
            keys.append({**jwk, "kid": kid, "use": "sig", **alg})
        return {"keys": keys}

    def token(self, subject: str, **claims: Any) -> str:
        """A signed access token for ``subject``; ``claims`` override or add (None drops)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + self.lifetime_s,
            "scope": "kafka",
            **self.extra_claims,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        kid, key = self._keys[-1]
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"


class _Handler(BaseHTTPRequestHandler):
    issuer: Issuer

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path != "/jwks":
            self._send(404, {"error": "not_found"})
            return
        self.issuer.jwks_requests += 1
        if self.issuer.jwks_status != 200:
            self._send(self.issuer.jwks_status, {"error": "unavailable"})
            return
        self._send(200, self.issuer.jwks())

    def do_POST(self) -> None:
        if self.path != "/token":
            self._send(404, {"error": "not_found"})
            return
        self.issuer.token_requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        client_id = form.get("client_id", [""])[0]
        secret = form.get("client_secret", [""])[0]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            decoded = base64.b64decode(auth[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            client_id, secret = (urllib.parse.unquote(p) for p in (client_id, secret))
        if form.get("grant_type") != ["client_credentials"]:
            self._send(400, {"error": "unsupported_grant_type"})
            return
        if self.issuer.clients.get(client_id) != secret or not client_id:
            self._send(401, {"error": "invalid_client"})
            return
        scope = form.get("scope", ["kafka"])[0]
        token = self.issuer.token(client_id, scope=scope)
        self._send(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.issuer.lifetime_s,
            },
        )


@contextmanager
def running_issuer(issuer: Issuer | None = None) -> Iterator[Issuer]:
    """Serve ``issuer`` (a new one by default) on a free port of 127.0.0.1."""
    issuer = issuer or Issuer()
    handler = type("IssuerHandler", (_Handler,), {"issuer": issuer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
