"""The client side of a connection to a broker: TLS and a SASL login. A broker uses it to reach
another, the operator and the CLI to reach any.

``sasl_login`` is sans-I/O: a generator that yields the requests to send (api key, version,
fields) and is sent each decoded response, so that blocking and asyncio callers drive the
same exchange."""

from __future__ import annotations

import ssl
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from artesian.security.oauthbearer.login import TokenSource, client_initial_response
from artesian.security.plain import plain_client_token
from artesian.security.sasl import AuthenticationFailed
from artesian.security.scram import MECHANISMS, ScramClient

__all__ = ["ClientSecurity", "LoginFailed", "reauthentication_delay_ms", "sasl_login"]

_SASL_HANDSHAKE, _SASL_AUTHENTICATE = 17, 36
Request = tuple[int, int, dict[str, Any]]


@dataclass(slots=True, frozen=True)
class ClientSecurity:
    """TLS (a client context) and SASL (mechanism, username, password), either optional.
    For OAUTHBEARER the username and password are empty and ``oauthbearer`` gives tokens."""

    ssl_context: ssl.SSLContext | None = None
    sasl: tuple[str, str, str] | None = field(default=None, repr=False)
    oauthbearer: TokenSource | None = None


class LoginFailed(Exception):
    """The broker refused the mechanism or the credentials, or failed to prove itself."""


def sasl_login(mechanism: str, username: str, password: str) -> Generator[Request, Any, int]:
    """SaslHandshake v1, then SaslAuthenticate v2 until the mechanism completes. Returns the
    session lifetime in ms the broker gave (KIP-368; 0: the session does not expire). The
    same exchange on a logged-in connection is a re-authentication. For OAUTHBEARER the
    password is the token."""
    shake = yield _SASL_HANDSHAKE, 1, {"mechanism": mechanism}
    if shake.error_code != 0:
        raise LoginFailed(
            f"SASL mechanism {mechanism} refused ({shake.error_code.name}); the broker offers "
            f"{', '.join(shake.mechanisms)}"
        )
    lifetime_ms = 0

    def authenticate(token: bytes) -> Generator[Request, Any, bytes]:
        nonlocal lifetime_ms
        answer = yield _SASL_AUTHENTICATE, 2, {"auth_bytes": token}
        if answer.error_code != 0:
            raise LoginFailed(str(answer.error_message))
        lifetime_ms = answer.session_lifetime // timedelta(milliseconds=1)
        return bytes(answer.auth_bytes)

    if mechanism == "PLAIN":
        yield from authenticate(plain_client_token(username, password))
        return lifetime_ms
    if mechanism == "OAUTHBEARER":
        refusal = yield from authenticate(client_initial_response(password))
        if refusal:  # RFC 7628: acknowledge the broker's error, which then fails the login
            yield from authenticate(b"\x01")
            raise LoginFailed(f"the broker refused the token: {refusal.decode(errors='replace')}")
        return lifetime_ms
    if mechanism not in MECHANISMS:
        raise LoginFailed(f"SASL mechanism {mechanism} is not one this client speaks")
    client = ScramClient(MECHANISMS[mechanism], username, password)
    try:
        first = yield from authenticate(client.first_message())
        client.verify_server_final((yield from authenticate(client.final_message(first))))
    except AuthenticationFailed as e:  # the broker failed to prove itself
        raise LoginFailed(str(e)) from e
    return lifetime_ms


def reauthentication_delay_ms(lifetime_ms: int, fraction: float) -> float:
    """When a client re-authenticates: as Kafka's clients, at a random 85-95% of the session
    lifetime (``fraction`` in [0, 1) picks where), so that many connections do not all come
    back at once."""
    return lifetime_ms * (0.85 + 0.10 * fraction)
