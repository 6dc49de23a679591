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
from dataclasses import dataclass

from artesian.controlplane.documents import TOKEN_ID, ApiToken, Tenant

_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: a tenant's id, or None for the admin."""

    tenant: str | None

    @property
    def is_admin(self) -> bool:
        return self.tenant is None

    def owns(self, tenant: str) -> bool:
        """May act on what ``tenant`` owns ("" is the platform's own)."""
        return self.tenant is None or self.tenant == tenant


ADMIN = Caller(None)


def mint_token(description: str, now_ms: int) -> tuple[ApiToken, str]:
    """A new API token and the text its holder presents, which is kept nowhere."""
    token_id = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
    secret = secrets.token_urlsafe(32)
    token = ApiToken(token_id, _digest(secret), description, now_ms)
    token.validate()
    return token, f"art_{token_id}_{secret}"


def authenticate(presented: str, admin_token: str, tenants: dict[str, Tenant]) -> Caller | None:
    """The caller a bearer token stands for, or None."""
    if hmac.compare_digest(_digest(presented), _digest(admin_token)):
        return ADMIN
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "art" or not TOKEN_ID.fullmatch(parts[1]):
        return None
    digest = _digest(parts[2])
    for tenant in tenants.values():
        for token in tenant.tokens:
            if token.id == parts[1] and hmac.compare_digest(token.secret_sha256, digest):
                return Caller(tenant.id)
    return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
