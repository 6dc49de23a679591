"""Delegation tokens (KIP-48, KIP-373): what a token is and how it logs in, without I/O.

A token is an id and an HMAC-SHA512 of that id under ``delegation.token.secret.key``, which
every broker of a cluster shares, so the HMAC (the token's secret) is never stored: a broker
derives it from the id. A client logs in with SCRAM, the token id as user name, the HMAC
(base64) as password, and the ``tokenauth=true`` extension; it then acts as the token's
owner, but may not create or renew tokens itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Collection
from dataclasses import dataclass

from artesian.metadata.records import DelegationTokenRecord
from artesian.security.scram import MIN_ITERATIONS, ScramCredential, ScramMechanism, new_credential

__all__ = [
    "TokenCredentials",
    "TokenLogin",
    "expired",
    "may_describe",
    "may_renew",
    "new_token_id",
    "token_hmac",
    "token_password",
]


def new_token_id() -> str:
    """A random id as Kafka's Uuid.randomUuid().toString() prints one: 16 random bytes,
    URL-safe base64 without padding, never starting with '-' (a tool would take it for
    an option)."""
    while True:
        token_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not token_id.startswith("-"):
            return token_id


def token_hmac(secret_key: str, token_id: str) -> bytes:
    return hmac.new(secret_key.encode(), token_id.encode(), hashlib.sha512).digest()


def token_password(token_hmac_bytes: bytes) -> str:
    """The SCRAM password of a token: its HMAC in standard base64."""
    return base64.b64encode(token_hmac_bytes).decode("ascii")


def expired(token: DelegationTokenRecord, now_ms: int) -> bool:
    return token.max_timestamp < now_ms or token.expiration_timestamp < now_ms


def may_renew(token: DelegationTokenRecord, principal: str) -> bool:
    """The owner and the renewers may renew and expire a token (Kafka's controller does not
    count the principal that asked for it, KIP-373, among them)."""
    return principal == token.owner or principal in token.renewers


def may_describe(token: DelegationTokenRecord, principal: str) -> bool:
    """Kafka's TokenInformation.ownerOrRenewer: the owner, the principal that asked for the
    token and the renewers see it without an ACL."""
    return principal == token.requester or may_renew(token, principal)


@dataclass(slots=True, frozen=True)
class TokenLogin:
    """What SCRAM needs to accept a token: its credential, whom it logs in as, and when it
    expires (ms since the epoch), which ends the session (KIP-368)."""

    credential: ScramCredential
    owner: str
    expiry_ms: int


class TokenCredentials:
    """The SCRAM credential of each token, derived once per mechanism (4096 PBKDF2
    iterations, as Kafka's token cache does) and kept while the token lasts."""

    __slots__ = ("_by_token",)

    def __init__(self) -> None:
        self._by_token: dict[tuple[str, str], ScramCredential] = {}

    def login(
        self,
        secret_key: str | None,
        token: DelegationTokenRecord | None,
        mechanism: ScramMechanism,
        now_ms: int,
    ) -> TokenLogin | None:
        """None when tokens are off, or the token is unknown or expired."""
        if secret_key is None or token is None:
            return None
        if expired(token, now_ms):
            return None
        key = (token.token_id, mechanism.name)
        credential = self._by_token.get(key)
        if credential is None:
            password = token_password(token_hmac(secret_key, token.token_id))
            credential = new_credential(mechanism, password, MIN_ITERATIONS)
            self._by_token[key] = credential
        # Kafka's SCRAM takes the owner's name and builds a User principal from it.
        owner = "User:" + token.owner.partition(":")[2]
        return TokenLogin(credential, owner, token.expiration_timestamp)

    def forget_all_but(self, token_ids: Collection[str]) -> None:
        """Drops the credentials of tokens that no longer exist."""
        for key in [k for k in self._by_token if k[0] not in token_ids]:
            del self._by_token[key]
