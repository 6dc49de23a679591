"""Who calls the control plane's API, and with what: the platform's admin, with the token its
``controlplane run`` keeps in a file, or a tenant, with one of its API tokens.

A tenant's token reads ``art_<id>_<secret>``: the id finds the token without a search, and the
secret is checked against its SHA-256 in constant time. Tenants see and touch only their own
clusters; anything else answers as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import threading
from dataclasses import dataclass

from artesian.controlplane.documents import TOKEN_ID, ApiToken, Tenant

_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: a tenant's id, or None for the admin; ``expires_ms``: when
    the token it called with stops working (0: never)."""

    tenant: str | None
    expires_ms: int = 0

    @property
    def is_admin(self) -> bool:
        return self.tenant is None

    def owns(self, tenant: str) -> bool:
        """May act on what ``tenant`` owns ("" is the platform's own)."""
        return self.tenant is None or self.tenant == tenant


ADMIN = Caller(None)


def mint_token(description: str, now_ms: int, expires_ms: int = 0) -> tuple[ApiToken, str]:
    """A new API token and the text its holder presents, which is kept nowhere;
    ``expires_ms``: when it stops working (0: never)."""
    token_id = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
    secret = secrets.token_urlsafe(32)
    token = ApiToken(token_id, _digest(secret), description, now_ms, expires_ms)
    token.validate()
    return token, f"art_{token_id}_{secret}"


class TokenIndex:
    """Tenants' tokens by id, kept current by the tenants table's reader thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[str, ApiToken]] = {}  # token id -> (tenant id, token)
        self._of_tenant: dict[str, set[str]] = {}

    def tenant_changed(self, tenant_id: str, tenant: Tenant | None) -> None:
        with self._lock:
            for token_id in self._of_tenant.pop(tenant_id, set()):
                self._by_id.pop(token_id, None)
            if tenant is not None:
                for token in tenant.tokens:
                    self._by_id[token.id] = (tenant_id, token)
                self._of_tenant[tenant_id] = {t.id for t in tenant.tokens}

    def get(self, token_id: str) -> tuple[str, ApiToken] | None:
        with self._lock:
            return self._by_id.get(token_id)


class ExpiredToken(Exception):
    """A tenant's token presented whole, past its expiry."""

    def __init__(self, token: ApiToken) -> None:
        super().__init__(f"token {token.id} expired at {token.expires_ms} ms")
        self.token = token


def authenticate(
    presented: str, admin_token: str, tokens: TokenIndex, now_ms: int
) -> Caller | None:
    """The caller a bearer token stands for, or None. Raises ExpiredToken for a token whose
    secret matches but whose time is up: its holder is told why, and no one else learns it."""
    if hmac.compare_digest(_digest(presented), _digest(admin_token)):
        return ADMIN
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "art" or not TOKEN_ID.fullmatch(parts[1]):
        return None
    found = tokens.get(parts[1])  # ids are public: looking one up gives nothing away
    if found is None:
        return None
    tenant_id, token = found
    if not hmac.compare_digest(token.secret_sha256, _digest(parts[2])):
        return None
    if token.expired(now_ms):
        raise ExpiredToken(token)
    return Caller(tenant_id, token.expires_ms)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
