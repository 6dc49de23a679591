"""SASL authentication of one connection (Kafka's SaslServerAuthenticator), without I/O.

On a SASL listener a connection starts unauthenticated: it may send ApiVersions and
SaslHandshake, then SaslAuthenticate until the mechanism completes; anything else closes it.
A SaslHandshake v0 client sends its tokens as bare size-prefixed frames instead of
SaslAuthenticate requests (``raw_tokens``), as Kafka allows for old clients.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from artesian.config.broker import BrokerConfig
from artesian.security.jaas import parse_jaas_config, plain_users
from artesian.security.plain import PlainServer
from artesian.security.sasl import AuthenticationFailed, SaslServer
from artesian.security.scram import MECHANISMS, ScramCredential, ScramMechanism, ScramServer

__all__ = ["AuthenticationFailed", "SaslAuthenticator", "SaslSettings", "SaslState"]

ANONYMOUS = "User:ANONYMOUS"

CredentialLookup = Callable[[str, ScramMechanism], ScramCredential | None]


@dataclass(slots=True, frozen=True)
class SaslSettings:
    """One SASL listener's settings, read once at start-up."""

    mechanisms: tuple[str, ...]
    plain_users: Mapping[str, str] = field(repr=False)
    max_receive_size: int = 524_288

    @classmethod
    def from_config(cls, config: BrokerConfig, listener: str) -> SaslSettings:
        mechanisms = config.for_listener(listener, "sasl.enabled.mechanisms") or []
        assert isinstance(mechanisms, list)
        users: dict[str, str] = {}
        jaas = config.for_listener(listener, "sasl.jaas.config", "PLAIN")
        if "PLAIN" in mechanisms and jaas:
            setting = f"listener.name.{listener.lower()}.plain.sasl.jaas.config"
            try:
                users = plain_users(parse_jaas_config(str(jaas)))
            except ValueError as e:
                raise ValueError(f"{setting}: {e}") from e
        size = config.for_listener(listener, "sasl.server.max.receive.size")
        assert isinstance(size, int)
        return cls(tuple(str(m) for m in mechanisms), users, size)


class SaslState(enum.Enum):
    HANDSHAKE = "handshake"  # ApiVersions or SaslHandshake expected
    AUTHENTICATE = "authenticate"  # tokens of the chosen mechanism expected
    COMPLETE = "complete"
    FAILED = "failed"


class SaslAuthenticator:
    def __init__(self, settings: SaslSettings, credentials: CredentialLookup) -> None:
        self.settings = settings
        self._credentials = credentials
        self.state = SaslState.HANDSHAKE
        self.mechanism: str | None = None
        self.raw_tokens = False
        self.principal = ANONYMOUS
        self._server: SaslServer | None = None
        self._versions_asked = False

    @property
    def complete(self) -> bool:
        return self.state is SaslState.COMPLETE

    def allows(self, api_key: int) -> bool:
        """Whether a request of ``api_key`` may come now (before authentication ends). As in
        Kafka: ApiVersions at most once, then SaslHandshake, then SaslAuthenticate."""
        if self.state is SaslState.HANDSHAKE:
            if api_key == 18 and not self._versions_asked:
                self._versions_asked = True
                return True
            return api_key == 17
        return self.state is SaslState.AUTHENTICATE and api_key == 36 and not self.raw_tokens

    def handshake(self, mechanism: str, version: int) -> ErrorCode:
        if self.state is not SaslState.HANDSHAKE:
            return ErrorCode.illegal_sasl_state
        if mechanism not in self.settings.mechanisms:
            self.state = SaslState.FAILED
            return ErrorCode.unsupported_sasl_mechanism
        self.mechanism = mechanism
        self._server = self._new_server(mechanism)
        self.state = SaslState.AUTHENTICATE
        self.raw_tokens = version == 0
        return ErrorCode.none

    def authenticate(self, token: bytes) -> bytes:
        """The server's answer to one client token; AuthenticationFailed ends the exchange."""
        if self.state is not SaslState.AUTHENTICATE or self._server is None:
            self.state = SaslState.FAILED
            raise AuthenticationFailed("Unexpected SASL token: no authentication in progress")
        if len(token) > self.settings.max_receive_size:
            self.state = SaslState.FAILED
            raise AuthenticationFailed(
                f"SASL token of {len(token)} bytes is larger than "
                f"sasl.server.max.receive.size={self.settings.max_receive_size}"
            )
        try:
            reply = self._server.step(token)
        except AuthenticationFailed:
            self.state = SaslState.FAILED
            raise
        if self._server.complete:
            self.state = SaslState.COMPLETE
            self.principal = f"User:{self._server.username}"
        return reply

    def _new_server(self, mechanism: str) -> SaslServer:
        if mechanism == "PLAIN":
            return PlainServer(self.settings.plain_users)
        scram = MECHANISMS[mechanism]
        return ScramServer(scram, lambda user: self._credentials(user, scram))
