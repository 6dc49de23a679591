"""What a broker presents when it connects to another: TLS and a SASL login."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

__all__ = ["ClientSecurity"]


@dataclass(slots=True, frozen=True)
class ClientSecurity:
    """TLS (a client context) and SASL (mechanism, username, password), either optional."""

    ssl_context: ssl.SSLContext | None = None
    sasl: tuple[str, str, str] | None = field(default=None, repr=False)
