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

A failure raises AuthenticationFailed, which the client is told; ``UnansweredFailure`` where
Kafka closes without an answer (bare tokens, a re-authentication's other mechanism).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from artesian.config.broker import MAX_REAUTH_MS, BrokerConfig
from artesian.security.jaas import parse_jaas_config, plain_users
from artesian.security.oauthbearer import OAuthBearerServer, TokenValidator
from artesian.security.oauthbearer.settings import listener_validator
from artesian.security.plain import PlainServer
from artesian.security.sasl import AuthenticationFailed, SaslServer
from artesian.security.scram import (
    MECHANISMS,
    InvalidCredentials,
    ScramCredential,
    ScramMechanism,
    ScramServer,
)

if TYPE_CHECKING:  # PyJWT loads only for a listener that checks token signatures
    from artesian.security.delegation_token import TokenLogin
    from artesian.security.oauthbearer.jwks import JwksCache

__all__ = [
    "AuthenticationFailed",
    "SaslAuthenticator",
    "SaslSettings",
    "SaslState",
    "UnansweredFailure",
]

log = logging.getLogger("artesian.authenticator")

ANONYMOUS = "User:ANONYMOUS"
# Kafka's KafkaChannel.MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS: a SaslHandshake sooner after the
# last re-authentication began is not one; it is answered as after login (ILLEGAL_SASL_STATE).
MIN_REAUTH_INTERVAL_NS = 1_000_000_000
# Clients re-authenticate at 85-95% of a session, so a shorter one is re-authenticated within a
# second of the last re-authentication's start, which is refused: they reconnect instead.
SHORTEST_REAUTHENTICABLE_MS = 1200

CredentialLookup = Callable[[str, ScramMechanism], ScramCredential | None]
# A delegation token's login by its id (None: unknown, expired, or tokens are off).
TokenLookup = Callable[[str, ScramMechanism], "TokenLogin | None"]


@dataclass(slots=True, frozen=True)
class SaslSettings:
    """One SASL listener's settings, read once at start-up."""

    mechanisms: tuple[str, ...]
    plain_users: Mapping[str, str] = field(repr=False)
    max_receive_size: int = 524_288
    # connections.max.reauth.ms per mechanism (Kafka's connectionsMaxReauthMsByMechanism).
    max_reauth_ms: Mapping[str, int] = field(default_factory=dict)
    # OAUTHBEARER's token validator, and the signing keys the broker keeps fresh for it.
    oauthbearer: TokenValidator | None = None
    jwks: JwksCache | None = None

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
        too_short = sorted(m for m, ms in reauth.items() if 0 < ms < SHORTEST_REAUTHENTICABLE_MS)
        if too_short:
            log.warning(
                "listener %s: a SASL session lifetime (connections.max.reauth.ms) of %s ms for "
                "%s is under %d ms: clients, this broker's connections to leaders among them, "
                "re-authenticate at 85-95%% of a session, and a re-authentication within a "
                "second of the last one's start is refused (as in Kafka), so they reconnect and "
                "log in again instead",
                listener,
                ", ".join(sorted({str(reauth[m]) for m in too_short})),
                ", ".join(too_short),
                SHORTEST_REAUTHENTICABLE_MS,
            )
        validator, jwks = None, None
        if "OAUTHBEARER" in mechanisms:
            validator, jwks = listener_validator(config, listener)
        return cls(tuple(str(m) for m in mechanisms), users, size, reauth, validator, jwks)


class SaslState(enum.Enum):
    HANDSHAKE = "handshake"  # ApiVersions or SaslHandshake expected
    AUTHENTICATE = "authenticate"  # tokens of the chosen mechanism expected
    # Re-authentication named another mechanism: its handshake was answered, the next token
    # fails the connection without an answer (as Kafka, so the failure is counted).
    REAUTH_BAD_MECHANISM = "reauth_bad_mechanism"
    COMPLETE = "complete"
    FAILED = "failed"


class UnansweredFailure(AuthenticationFailed):
    """A failure Kafka does not answer: the request that failed gets no response, and the
    connection closes after the failed-login delay (the message is only logged)."""


class SaslAuthenticator:
    def __init__(
        self,
        settings: SaslSettings,
        credentials: CredentialLookup,
        tokens: TokenLookup | None = None,
    ) -> None:
        self.settings = settings
        self._credentials = credentials
        self._tokens = tokens
        self.state = SaslState.HANDSHAKE
        self.mechanism: str | None = None
        self.raw_tokens = False
        self.principal = ANONYMOUS
        # Logged in with a delegation token: such a principal may not ask for tokens.
        self.token_authenticated = False
        self._server: SaslServer | None = None
        self._versions_asked = False
        # Successful logins, re-authentications included (Kafka's successfulAuthentications).
        self.logins = 0
        # KIP-368. The session ends at session_expiration_ns (None: never).
        self.session_lifetime_ms = 0
        self.session_expiration_ns: int | None = None
        # (mechanism, principal) that the re-authentication under way must keep; None when
        # none is (before the first login, and once a re-authentication succeeds).
        self._kept: tuple[str, str] | None = None
        self._reauth_started_ns = 0
        self._bad_mechanism = ""  # the failure of a re-authentication naming another mechanism

    @property
    def complete(self) -> bool:
        return self.state is SaslState.COMPLETE

    @property
    def reauthenticating(self) -> bool:
        """A re-authentication has begun and not succeeded (it is under way, or failed)."""
        return self._kept is not None

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
        if self._kept is not None and mechanism != self._kept[0]:
            self._bad_mechanism = (
                f"SASL mechanism '{mechanism}' requested by client is not supported for "
                f"re-authentication of mechanism '{self._kept[0]}'"
            )
            self.state = SaslState.REAUTH_BAD_MECHANISM
            return ErrorCode.none  # Kafka answers the handshake, then fails the next token
        self.mechanism = mechanism
        self._server = self._new_server(mechanism)
        self.state = SaslState.AUTHENTICATE
        return ErrorCode.none

    def authenticate(self, token: bytes, now_ns: int) -> bytes:
        """The server's answer to one client token. AuthenticationFailed ends the exchange;
        UnansweredFailure when Kafka sends no answer: SaslHandshake v0's bare tokens have no
        way to say why, and a re-authentication that named another mechanism fails here."""
        try:
            return self._step(token, now_ns)
        except AuthenticationFailed as e:
            self.state = SaslState.FAILED
            if self.raw_tokens and not isinstance(e, UnansweredFailure):
                raise UnansweredFailure(str(e)) from e
            raise

    def _step(self, token: bytes, now_ns: int) -> bytes:
        if self.state is SaslState.REAUTH_BAD_MECHANISM:
            raise UnansweredFailure(self._bad_mechanism)
        if self.state is not SaslState.AUTHENTICATE or self._server is None:
            raise AuthenticationFailed("Unexpected SASL token: no authentication in progress")
        if len(token) > self.settings.max_receive_size:
            raise AuthenticationFailed(
                f"SASL token of {len(token)} bytes is larger than "
                f"sasl.server.max.receive.size={self.settings.max_receive_size}"
            )
        try:
            reply = self._server.step(token)
        except InvalidCredentials as e:
            if self._kept is None:
                raise
            raise e.during_reauthentication() from e
        except AuthenticationFailed as e:
            if isinstance(self._server, ScramServer):
                # Kafka tells a SCRAM client only that its credentials failed: why (a
                # malformed message, a wrong nonce) may hint whether the user exists. The
                # broker's log keeps the reason (the cause).
                raise InvalidCredentials(self._server.mechanism, self._kept is not None) from e
            raise
        except Exception as e:  # a mechanism's bug must fail the login, never pass it
            log.exception("SASL %s exchange failed unexpectedly", self.mechanism)
            raise InvalidCredentials(self._server.mechanism, self._kept is not None) from e
        if self._server.complete:
            server = self._server
            owner = server.token_owner if isinstance(server, ScramServer) else None
            principal = owner or f"User:{server.username}"
            if self._kept is not None and principal != self._kept[1]:
                before, after = (p.replace(":", ".", 1) for p in (self._kept[1], principal))
                raise AuthenticationFailed(
                    f"Cannot change principals during re-authentication from {before}: {after}"
                )
            self.state = SaslState.COMPLETE
            self.principal = principal
            self.token_authenticated = owner is not None
            self.logins += 1
            self._kept = None
            self._start_session(now_ns)
        return reply

    def unexpected_request(self, api_name: str) -> AuthenticationFailed:
        """A request ``allows`` refused during a re-authentication fails it, as Kafka's
        IllegalSaslStateException does: answered ILLEGAL_SASL_STATE once tokens are expected
        (AuthenticationFailed), else not (UnansweredFailure; after a handshake naming another
        mechanism, that failure, as Kafka fails whatever comes next)."""
        state, self.state = self.state, SaslState.FAILED
        if state is SaslState.REAUTH_BAD_MECHANISM:
            return UnansweredFailure(self._bad_mechanism)
        kind = api_name.upper()
        if state is SaslState.AUTHENTICATE:
            return AuthenticationFailed(
                f"Unexpected Kafka request of type {kind} during SASL authentication"
            )
        return UnansweredFailure(f"Unexpected Kafka request of type {kind} during SASL handshake")

    # --- re-authentication (KIP-368) --------------------------------------------------------

    def _start_session(self, now_ns: int) -> None:
        """Kafka's calcCompletionTimesAndReturnSessionLifetimeMs: the session lasts
        connections.max.reauth.ms of the mechanism (forever at 0), and ends no later than the
        credential does: an OAUTHBEARER token's expiry, whatever connections.max.reauth.ms."""
        assert self.mechanism is not None
        max_reauth = self.settings.max_reauth_ms.get(self.mechanism, 0)
        expiry_ms = self._server.credential_expiry_ms if self._server is not None else None
        if expiry_ms is None and max_reauth <= 0:
            self.session_lifetime_ms, self.session_expiration_ns = 0, None
            return
        lifetime = max_reauth if max_reauth > 0 else None
        if expiry_ms is not None:
            remaining = expiry_ms - time.time_ns() // 1_000_000
            lifetime = remaining if lifetime is None else min(lifetime, remaining)
        assert lifetime is not None
        # A token may claim to last for ages: the session stays within what KIP-368's int64
        # nanoseconds (and SaslAuthenticate's int64 milliseconds) can say.
        lifetime = min(max(0, lifetime), MAX_REAUTH_MS)
        self.session_lifetime_ms = lifetime
        self.session_expiration_ns = now_ns + lifetime * 1_000_000

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
        self._kept = (self.mechanism, self.principal)
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
        if mechanism == "OAUTHBEARER":
            assert self.settings.oauthbearer is not None
            return OAuthBearerServer(self.settings.oauthbearer)
        scram = MECHANISMS[mechanism]
        tokens = self._tokens
        return ScramServer(
            scram,
            lambda user: self._credentials(user, scram),
            token_lookup=(lambda token_id: tokens(token_id, scram)) if tokens else None,
        )
