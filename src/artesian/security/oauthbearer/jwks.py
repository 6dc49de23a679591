"""An identity provider's signing keys (a JWKS document, RFC 7517), kept fresh in the
background: Kafka's RefreshingHttpsJwks, for ``sasl.oauthbearer.jwks.endpoint.url``.

Keys are fetched when the broker starts and every ``sasl.oauthbearer.jwks.endpoint.refresh.ms``
after; a failed fetch is retried with exponential backoff from
``...retry.backoff.ms`` to ``...retry.backoff.max.ms``, and the last good keys stay in use
meanwhile. A token signed with a key id the cache does not know is refused, and asks for an
early refresh (at most once a minute per key id, as Kafka), so a provider's key rotation is
picked up within a refresh's time rather than an hour.

Validation never waits on the network: tokens are checked against what is cached, and the
fetch runs in a thread. ``file:`` URLs are read the same way (Kafka reads them once; here a
rotated file is picked up at the next refresh).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jwt import PyJWK, PyJWTError

__all__ = ["JwksCache", "SigningKey", "parse_jwks"]

log = logging.getLogger("artesian.oauthbearer")

# Kafka's RefreshingHttpsJwks: an unknown key id asks for a refresh at most this often, and
# only the latest few ids (and none absurdly long) are remembered.
MISSING_KID_INTERVAL_S = 60.0
MISSING_KIDS_REMEMBERED = 16
LONGEST_KID = 1000
# A JWKS document is a few keys; a provider answering more is misconfigured or hostile.
MAX_JWKS_BYTES = 1 << 20
FETCH_TIMEOUT_S = 10.0
# Early refreshes come at most this often, however many unknown key ids arrive: clients that
# are not yet authenticated choose them, and must not turn the broker against the provider.
MIN_EARLY_REFRESH_INTERVAL_S = 5.0
# Failed fetches are retried no faster than this, whatever retry.backoff.ms says (0 is valid).
MIN_RETRY_BACKOFF_MS = 100


@dataclass(slots=True, frozen=True)
class SigningKey:
    kid: str | None
    key_type: str  # RSA, EC, OKP or oct
    algorithm: str | None  # the JWK's "alg", when it names one
    jwk: PyJWK


def parse_jwks(document: Any) -> list[SigningKey]:
    """The usable signature keys of a JWKS document; keys for encryption, and keys PyJWT
    cannot use (an unknown type or curve, a malformed value), are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS document: expected {"keys": [...]}')
    keys = []
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = PyJWK(entry)
        except (PyJWTError, ValueError, TypeError, KeyError, NotImplementedError) as e:
            log.debug("skipping JWKS key %r: %s", entry.get("kid"), e)
            continue
        kid = entry.get("kid")
        alg = entry.get("alg")
        keys.append(
            SigningKey(
                kid if isinstance(kid, str) else None,
                str(entry.get("kty")),
                alg if isinstance(alg, str) else None,
                jwk,
            )
        )
    return keys


def _fetch(url: str) -> bytes:
    if urllib.parse.urlsplit(url).scheme == "file":
        with urllib.request.urlopen(url) as f:
            return bytes(f.read(MAX_JWKS_BYTES + 1))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
        return bytes(response.read(MAX_JWKS_BYTES + 1))


class JwksCache:
    def __init__(
        self,
        url: str,
        refresh_ms: int = 3_600_000,
        retry_backoff_ms: int = 100,
        retry_backoff_max_ms: int = 10_000,
        fetch: Callable[[str], bytes] = _fetch,
    ) -> None:
        self.url = url
        self.refresh_ms = refresh_ms
        self.retry_backoff_ms = max(retry_backoff_ms, MIN_RETRY_BACKOFF_MS)
        self.retry_backoff_max_ms = max(retry_backoff_max_ms, self.retry_backoff_ms)
        self._fetch = fetch
        self.keys: list[SigningKey] = []
        self.loaded = False  # at least one fetch succeeded
        self.refreshes = 0  # successful fetches
        self._missing: OrderedDict[str, float] = OrderedDict()  # kid -> when it asked
        self._wake: asyncio.Event | None = None

    def candidates(self, kid: str | None) -> list[SigningKey]:
        """The keys a token with this key id may be signed with (all, without an id)."""
        if kid is None:
            return list(self.keys)
        return [k for k in self.keys if k.kid == kid]

    def missing(self, kid: str | None) -> None:
        """A token named a key id the cache lacks: refresh early, unless this id asked
        within the last minute."""
        if kid is None or len(kid) > LONGEST_KID:
            return
        now = time.monotonic()
        asked = self._missing.get(kid)
        if asked is not None and now - asked < MISSING_KID_INTERVAL_S:
            return
        self._missing[kid] = now
        self._missing.move_to_end(kid)
        while len(self._missing) > MISSING_KIDS_REMEMBERED:
            self._missing.popitem(last=False)
        if self._wake is not None:
            self._wake.set()

    def load(self, document: bytes) -> None:
        if len(document) > MAX_JWKS_BYTES:
            raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        keys = parse_jwks(json.loads(document))
        if not keys:
            raise ValueError("no signature keys this broker can use")
        self.keys = keys
        self.loaded = True
        self.refreshes += 1

    async def refresh_once(self) -> None:
        self.load(await asyncio.to_thread(self._fetch, self.url))

    async def run(self) -> None:
        """Keep the keys fresh until cancelled: at once unless they are loaded, then on
        schedule or when a token asks."""
        self._wake = asyncio.Event()
        backoff_ms = self.retry_backoff_ms
        fetch_now = not self.loaded
        fetched_at = time.monotonic()
        while True:
            if not fetch_now:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                    # that races with the wake-up, and the broker's stop would wait forever.
                    async with asyncio.timeout(self.refresh_ms / 1000):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                else:
                    floor = fetched_at + MIN_EARLY_REFRESH_INTERVAL_S - time.monotonic()
                    await asyncio.sleep(max(0.0, floor))
            self._wake.clear()
            fetched_at = time.monotonic()
            try:
                await self.refresh_once()
            except Exception as e:
                self._refresh_failed(e, backoff_ms)
                await asyncio.sleep(backoff_ms / 1000)
                backoff_ms = min(backoff_ms * 2, self.retry_backoff_max_ms)
                fetch_now = True
                continue
            backoff_ms, fetch_now = self.retry_backoff_ms, False
            log.info("loaded %d OAUTHBEARER signing key(s) from %s", len(self.keys), self.url)

    def _refresh_failed(self, error: Exception, retry_ms: int) -> None:
        log.warning(
            "cannot load OAUTHBEARER signing keys from %s (sasl.oauthbearer.jwks.endpoint.url):"
            " %s; %s, retrying in %d ms",
            self.url,
            error,
            "keeping the keys loaded before"
            if self.loaded
            else "tokens are refused until it answers",
            retry_ms,
        )
