"""The shape every server-side SASL mechanism shares, and its one failure type.

Mechanisms are sans-I/O state machines: the connection layer feeds each client token
(SaslAuthenticate auth_bytes) to ``step`` and sends back what it returns, so the same code
serves the broker, tests and Artesian's own clients without sockets or an event loop.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["AuthenticationFailed", "InvalidCredentials", "SaslServer"]


class AuthenticationFailed(Exception):
    """The message (str(e)) is what the client is told (SaslAuthenticate error_message)."""


class InvalidCredentials(AuthenticationFailed):
    """Unknown user or wrong proof. The message names neither, as Kafka's does; it says
    "re-authentication" when that is what failed (``during_reauthentication``)."""

    def __init__(self, mechanism: str, reauthentication: bool = False) -> None:
        self.mechanism = mechanism
        what = "re-authentication" if reauthentication else "authentication"
        super().__init__(
            f"Authentication failed during {what} due to invalid credentials with SASL"
            f" mechanism {mechanism}"
        )

    def during_reauthentication(self) -> InvalidCredentials:
        return InvalidCredentials(self.mechanism, reauthentication=True)


@runtime_checkable
class SaslServer(Protocol):
    """One authentication exchange on one connection, server side."""

    mechanism: str

    @property
    def complete(self) -> bool:
        """True once the client is authenticated; no further tokens are accepted."""
        ...

    @property
    def username(self) -> str | None:
        """The authenticated user once ``complete``, else None."""
        ...

    @property
    def credential_expiry_ms(self) -> int | None:
        """When the credential expires (ms since the epoch), if it does: the session ends
        then (KIP-368). OAUTHBEARER tokens do; passwords do not."""
        ...

    def step(self, token: bytes) -> bytes:
        """Consume the client's next token and return the server's; raises AuthenticationFailed."""
        ...
