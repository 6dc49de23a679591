"""The shape every server-side SASL mechanism shares, and its one failure type.

Mechanisms are sans-I/O state machines: the connection layer feeds each client token
(SaslAuthenticate auth_bytes) to ``step`` and sends back what it returns, so the same code
serves the broker, tests and Artesian's own clients without sockets or an event loop.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["AuthenticationFailed", "SaslServer"]


class AuthenticationFailed(Exception):
    """The message (str(e)) is what the client is told (SaslAuthenticate error_message)."""


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

    def step(self, token: bytes) -> bytes:
        """Consume the client's next token and return the server's; raises AuthenticationFailed."""
        ...
