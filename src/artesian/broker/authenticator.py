"""SASL authentication of one connection (Kafka's SaslServerAuthenticator), without I/O.

On a SASL listener a connection starts unauthenticated: it may send ApiVersions and
SaslHandshake, then SaslAuthenticate until the mechanism completes; anything else closes it.
A SaslHandshake v0 client sends its tokens as bare size-prefixed frames instead of
SaslAuthenticate requests (``raw_tokens``), as Kafka allows for old clients.

Re-authentication (KIP-368): with ``connections.max.reauth.ms`` set, a login starts a session
of that lifetime. A SaslHandshake on the logged-in connection begins a re-authentication
(``maybe_begin_reauthentication``, Kafka's KafkaChannel.maybeBeginServerReauthentication),
which must keep the mechanism and the principal; once the session has expired, anything
else closes the connection (``session_expired``). Times are monotonic nanoseconds passed in.
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
from artesian.security.scram import (
    MECHANISMS,
    InvalidCredentials,
    ScramCredential,
    ScramMechanism,
    ScramServer,
)

__all__ = ["AuthenticationFailed", "SaslAuthenticator", "SaslSettings", "SaslState"]

ANONYMOUS = "User:ANONYMOUS"
# Kafka's KafkaChannel.MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS: a SaslHandshake sooner after the
# last re-authentication began is not one; it is answered as after login (ILLEGAL_SASL_STATE).
MIN_REAUTH_INTERVAL_NS = 1_000_000_000

CredentialLookup = Callable[[str, ScramMechanism], ScramCredential | None]


@dataclass(slots=True, frozen=True)
class SaslSettings:
    """One SASL listener's settings, read once at start-up."""

    mechanisms: tuple[str, ...]
    plain_users: Mapping[str, str] = field(repr=False)
    max_receive_size: int = 524_288
    # connections.max.reauth.ms per mechanism (Kafka's connectionsMaxReauthMsByMechanism).
    max_reauth_ms: Mapping[str, int] = field(default_factory=dict)

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
        reauth: dict[str, int] = {}
        for mechanism in mechanisms:
            value = config.for_listener(listener, "connections.max.reauth.ms", str(mechanism))
            assert isinstance(value, int)
            reauth[str(mechanism)] = value
        return cls(tuple(str(m) for m in mechanisms), users, size, reauth)


class SaslState(enum.Enum):
    HANDSHAKE = "handshake"  # ApiVersions or SaslHandshake expected
    AUTHENTICATE = "authenticate"  # tokens of the chosen mechanism expected
    # Re-authentication named another mechanism: its handshake was answered, the next token
    # fails the connection without an answer (as Kafka, so the failure is counted).
    REAUTH_BAD_MECHANISM = "reauth_bad_mechanism"
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
        # KIP-368. The session ends at session_expiration_ns (None: never).
        self.session_lifetime_ms = 0
        self.session_expiration_ns: int | None = None
        self.client_supports_reauthentication = False  # a SaslAuthenticate v1+ was seen
        # (mechanism, principal) of the session being re-authenticated, once one is.
        self._previous: tuple[str, str] | None = None
        self._reauth_started_ns = 0
        self.bad_mechanism_message = ""

    @property
    def complete(self) -> bool:
        return self.state is SaslState.COMPLETE

    @property
    def reauthenticating(self) -> bool:
        """The exchange under way (or just ended) is a re-authentication."""
        return self._previous is not None

    def allows(self, api_key: int) -> bool:
        """Whether a request of ``api_key`` may come now (before authentication ends). As in
        Kafka: ApiVersions at most once, then SaslHandshake, then SaslAuthenticate."""
        if self.state is SaslState.HANDSHAKE:
            if api_key == 18 and not self._versions_asked:
                self._versions_asked = True
                return True
            return api_key == 17
        waiting = self.state in (SaslState.AUTHENTICATE, SaslState.REAUTH_BAD_MECHANISM)
        return waiting and api_key == 36 and not self.raw_tokens

    def handshake(self, mechanism: str, version: int) -> ErrorCode:
        if self.state is not SaslState.HANDSHAKE:
            return ErrorCode.illegal_sasl_state
        if mechanism not in self.settings.mechanisms:
            self.state = SaslState.FAILED
            return ErrorCode.unsupported_sasl_mechanism
        self.raw_tokens = version == 0
        if self._previous is not None and mechanism != self._previous[0]:
            self.bad_mechanism_message = (
                f"SASL mechanism '{mechanism}' requested by client is not supported for "
                f"re-authentication of mechanism '{self._previous[0]}'"
            )
            self.state = SaslState.REAUTH_BAD_MECHANISM
            return ErrorCode.none  # Kafka answers the handshake, then fails the next token
        self.mechanism = mechanism
        self._server = self._new_server(mechanism)
        self.state = SaslState.AUTHENTICATE
        return ErrorCode.none

    def authenticate(self, token: bytes, now_ns: int, version: int = 0) -> bytes:
        """The server's answer to one client token (of a SaslAuthenticate ``version``; 0 for
        bare tokens); AuthenticationFailed ends the exchange."""
        if self.state is SaslState.REAUTH_BAD_MECHANISM:
            self.state = SaslState.FAILED
            raise AuthenticationFailed(self.bad_mechanism_message)
        if self.state is not SaslState.AUTHENTICATE or self._server is None:
            self.state = SaslState.FAILED
            raise AuthenticationFailed("Unexpected SASL token: no authentication in progress")
        if len(token) > self.settings.max_receive_size:
            self.state = SaslState.FAILED
            raise AuthenticationFailed(
                f"SASL token of {len(token)} bytes is larger than "
                f"sasl.server.max.receive.size={self.settings.max_receive_size}"
            )
        self.client_supports_reauthentication |= version > 0
        try:
            reply = self._server.step(token)
        except InvalidCredentials as e:
            self.state = SaslState.FAILED
            if self._previous is None:
                raise
            raise AuthenticationFailed(
                "Authentication failed during re-authentication due to invalid credentials "
                f"with SASL mechanism {e.mechanism}"
            ) from e
        except AuthenticationFailed:
            self.state = SaslState.FAILED
            raise
        if self._server.complete:
            principal = f"User:{self._server.username}"
            if self._previous is not None and principal != self._previous[1]:
                self.state = SaslState.FAILED
                before, after = (p.replace(":", ".", 1) for p in (self._previous[1], principal))
                raise AuthenticationFailed(
                    f"Cannot change principals during re-authentication from {before}: {after}"
                )
            self.state = SaslState.COMPLETE
            self.principal = principal
            self._start_session(now_ns)
        return reply

    # --- re-authentication (KIP-368) --------------------------------------------------------

    def _start_session(self, now_ns: int) -> None:
        """Kafka's calcCompletionTimesAndReturnSessionLifetimeMs. No mechanism here has a
        credential lifetime of its own (Kafka's come from OAUTHBEARER and delegation tokens),
        so the session lasts connections.max.reauth.ms of the mechanism, or forever at 0."""
        assert self.mechanism is not None
        lifetime = max(0, self.settings.max_reauth_ms.get(self.mechanism, 0))
        self.session_lifetime_ms = lifetime
        self.session_expiration_ns = now_ns + lifetime * 1_000_000 if lifetime > 0 else None

    def maybe_begin_reauthentication(self, now_ns: int) -> bool:
        """A SaslHandshake arrived after login: whether it begins a re-authentication (then
        it is handled as the first request of one). Not without a session lifetime, nor
        within a second of the last one's start; it is then an ordinary request, answered
        ILLEGAL_SASL_STATE."""
        if self.state is not SaslState.COMPLETE or self.session_expiration_ns is None:
            return False
        if self._reauth_started_ns and now_ns - self._reauth_started_ns < MIN_REAUTH_INTERVAL_NS:
            return False
        assert self.mechanism is not None
        self._reauth_started_ns = now_ns
        self._previous = (self.mechanism, self.principal)
        self.state = SaslState.HANDSHAKE
        self._versions_asked = True  # only the handshake and its tokens now, as in Kafka
        self._server = None
        self.raw_tokens = False  # until the handshake's version says
        return True

    def session_expired(self, now_ns: int) -> bool:
        """Kafka's serverAuthenticationSessionExpired: any request but a re-authentication
        then closes the connection unanswered."""
        expiration = self.session_expiration_ns
        return expiration is not None and now_ns - expiration > 0

    def _new_server(self, mechanism: str) -> SaslServer:
        if mechanism == "PLAIN":
            return PlainServer(self.settings.plain_users)
        scram = MECHANISMS[mechanism]
        return ScramServer(scram, lambda user: self._credentials(user, scram))
