"""The client side of a connection to a broker: TLS and a SASL login. A broker uses it to reach
another, the operator and the CLI to reach any.

``sasl_login`` is sans-I/O: a generator that yields the requests to send (api key, version,
fields) and is sent each decoded response, so that blocking and asyncio callers drive the
same exchange."""

from __future__ import annotations

import ssl
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from artesian.security.plain import plain_client_token
from artesian.security.sasl import AuthenticationFailed
from artesian.security.scram import MECHANISMS, ScramClient

__all__ = ["ClientSecurity", "LoginFailed", "sasl_login"]

_SASL_HANDSHAKE, _SASL_AUTHENTICATE = 17, 36
Request = tuple[int, int, dict[str, Any]]


@dataclass(slots=True, frozen=True)
class ClientSecurity:
    """TLS (a client context) and SASL (mechanism, username, password), either optional."""

    ssl_context: ssl.SSLContext | None = None
    sasl: tuple[str, str, str] | None = field(default=None, repr=False)


class LoginFailed(Exception):
    """The broker refused the mechanism or the credentials, or failed to prove itself."""


def sasl_login(mechanism: str, username: str, password: str) -> Generator[Request, Any, None]:
    """SaslHandshake v1, then SaslAuthenticate v2 until the mechanism completes."""
    shake = yield _SASL_HANDSHAKE, 1, {"mechanism": mechanism}
    if shake.error_code != 0:
        raise LoginFailed(
            f"SASL mechanism {mechanism} refused ({shake.error_code.name}); the broker offers "
            f"{', '.join(shake.mechanisms)}"
        )

    def authenticate(token: bytes) -> Generator[Request, Any, bytes]:
        answer = yield _SASL_AUTHENTICATE, 2, {"auth_bytes": token}
        if answer.error_code != 0:
            raise LoginFailed(str(answer.error_message))
        return bytes(answer.auth_bytes)

    if mechanism == "PLAIN":
        yield from authenticate(plain_client_token(username, password))
        return
    if mechanism not in MECHANISMS:
        raise LoginFailed(f"SASL mechanism {mechanism} is not one this client speaks")
    client = ScramClient(MECHANISMS[mechanism], username, password)
    try:
        first = yield from authenticate(client.first_message())
        client.verify_server_final((yield from authenticate(client.final_message(first))))
    except AuthenticationFailed as e:  # the broker failed to prove itself
        raise LoginFailed(str(e)) from e
