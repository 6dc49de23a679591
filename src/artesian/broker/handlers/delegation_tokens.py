"""CreateDelegationToken (38), RenewDelegationToken (39), ExpireDelegationToken (40) and
DescribeDelegationToken (41): delegation tokens (KIP-48, KIP-373), as Kafka 4 serves them.

Tokens are DelegationTokenRecords in the metadata log (metadata version 3), so every broker
accepts a token's login and they outlive restarts. A token is asked for by a principal that
logged in some other way: never over PLAINTEXT, by an anonymous TLS client, or with a token
(DELEGATION_TOKEN_REQUEST_NOT_ALLOWED). The checks, their order and their codes are Kafka's
broker's and then its controller's, down to the timestamps of an error answer (-1 where the
broker refuses, 0 where the controller does).
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import logging
import time
from collections.abc import Iterable
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized
from artesian.broker.handlers._build import make, millis, response_module
from artesian.metadata.controller import ControllerError
from artesian.metadata.features import level_needed
from artesian.metadata.records import (
    DelegationTokenRecord,
    MetadataRecord,
    RemoveDelegationTokenRecord,
)
from artesian.security.delegation_token import (
    expired,
    may_describe,
    may_renew,
    new_token_id,
    token_hmac,
)

CREATE_KEY, RENEW_KEY, EXPIRE_KEY, DESCRIBE_KEY = 38, 39, 40, 41
# Version 0 of each went with Kafka 4 (KIP-896).
APIS = [
    (CREATE_KEY, 1, 3, lambda ctx, request: create(ctx, request)),
    (RENEW_KEY, 1, 2, lambda ctx, request: renew(ctx, request)),
    (EXPIRE_KEY, 1, 2, lambda ctx, request: expire(ctx, request)),
    (DESCRIBE_KEY, 1, 3, lambda ctx, request: describe(ctx, request)),
]

log = logging.getLogger("artesian.delegation_tokens")

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# The timestamps a response can carry (Python's datetime range): a lifetime of Long.MAX_VALUE
# ms, or an expiry period of Long.MIN_VALUE echoed back, is held to them.
_EARLIEST_MS = (datetime.datetime.min.replace(tzinfo=datetime.UTC) - _EPOCH) // (
    datetime.timedelta(milliseconds=1)
)
_LATEST_MS = (datetime.datetime.max.replace(tzinfo=datetime.UTC) - _EPOCH) // (
    datetime.timedelta(milliseconds=1)
)
_NO_THROTTLE = datetime.timedelta(0)
# The metadata version tokens need is their record's.
_A_TOKEN = RemoveDelegationTokenRecord("")
_USER = "User"


def _at(ms: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(milliseconds=min(max(ms, _EARLIEST_MS), _LATEST_MS))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _split(principal: str) -> tuple[str, str]:
    kind, _, name = principal.partition(":")
    return kind, name


def _requests_allowed(ctx: Any) -> bool:
    """Kafka's allowTokenRequests: tokens come from an authenticated principal that did not
    log in with a token itself (nothing over PLAINTEXT, nor from an anonymous TLS client)."""
    conn = ctx.connection
    protocol = conn.listener.security_protocol
    auth = conn.authenticator
    if auth is not None and auth.token_authenticated:
        return False
    if protocol == "PLAINTEXT":
        return False
    return not (protocol == "SSL" and conn.principal == "User:ANONYMOUS")


def _token_by_hmac(ctx: Any, given: bytes) -> DelegationTokenRecord | None:
    secret = ctx.broker.delegation_token_secret_key
    assert secret is not None
    tokens: dict[str, DelegationTokenRecord] = ctx.broker.image.delegation_tokens
    for token in tokens.values():
        if hmac.compare_digest(token_hmac(secret, token.token_id), given):
            return token
    return None


# --- CreateDelegationToken ----------------------------------------------------------------


def create(ctx: Any, request: Any) -> Any:
    mod = response_module(CREATE_KEY, ctx.header.api_version)
    broker = ctx.broker
    requester = ctx.connection.principal
    owner = requester
    owner_name = getattr(request, "owner_principal_name", None)
    invalid_owner = False
    if owner_name:
        owner_type = request.owner_principal_type
        invalid_owner = owner_type is None  # Kafka fails on it with a generic error
        owner = f"{owner_type or ''}:{owner_name}"

    def answer(code: ErrorCode, token: DelegationTokenRecord | None, hmac_: bytes, ts: int) -> Any:
        owner_type, owner_name = _split(token.owner if token else owner)
        requester_type, requester_name = _split(requester)
        return make(
            mod.CreateDelegationTokenResponse,
            error_code=code,
            principal_type=owner_type,
            principal_name=owner_name,
            token_requester_principal_type=requester_type,
            token_requester_principal_name=requester_name,
            issue_timestamp=_at(token.issue_timestamp if token else ts),
            expiry_timestamp=_at(token.expiration_timestamp if token else ts),
            max_timestamp=_at(token.max_timestamp if token else ts),
            token_id=token.token_id if token else "",
            hmac=hmac_,
            throttle_time=_NO_THROTTLE,
        )

    # The broker's checks first (an error answer's timestamps are -1), then the
    # controller's (0).
    if not _requests_allowed(ctx):
        return answer(ErrorCode.delegation_token_request_not_allowed, None, b"", -1)
    if invalid_owner:
        return answer(ErrorCode.invalid_principal_type, None, b"", -1)
    if owner != requester and not authorized(
        ctx, AclOperation.CREATE_TOKENS, ResourceType.USER, owner
    ):
        return answer(ErrorCode.delegation_token_authorization_failed, None, b"", -1)
    renewers = tuple(f"{r.principal_type}:{r.principal_name}" for r in request.renewers)
    if any(r.principal_type != _USER for r in request.renewers):
        return answer(ErrorCode.invalid_principal_type, None, b"", -1)
    secret = broker.delegation_token_secret_key
    if secret is None:
        return answer(ErrorCode.delegation_token_auth_disabled, None, b"", 0)

    config = broker.config
    requested = millis(request.max_lifetime)
    lifetime = config.get_int("delegation.token.max.lifetime.ms")
    if requested > 0:
        lifetime = min(lifetime, requested)
    made: list[DelegationTokenRecord] = []

    def plan() -> list[MetadataRecord]:
        now = _now_ms()
        max_timestamp = min(now + lifetime, _LATEST_MS)
        token = DelegationTokenRecord(
            token_id=new_token_id(),
            owner=owner,
            requester=requester,
            renewers=renewers,
            issue_timestamp=now,
            max_timestamp=max_timestamp,
            expiration_timestamp=min(
                max_timestamp, now + config.get_int("delegation.token.expiry.time.ms")
            ),
        )
        made[:] = [token]
        return [token]

    try:
        broker.plan_and_commit(plan)
    except ControllerError as e:
        log.info("delegation token for %s not created: %s", owner, e.message)
        return answer(e.code, None, b"", 0)
    token = made[0]
    log.info(
        "created delegation token %s for %s (asked for by %s), expiring at %d",
        token.token_id,
        owner,
        requester,
        token.expiration_timestamp,
    )
    return answer(ErrorCode.none, token, token_hmac(secret, token.token_id), 0)


# --- RenewDelegationToken and ExpireDelegationToken --------------------------------------


def renew(ctx: Any, request: Any) -> Any:
    mod = response_module(RENEW_KEY, ctx.header.api_version)
    code, expiry = _change_expiry(ctx, bytes(request.hmac), millis(request.renew_period), True)
    return make(
        mod.RenewDelegationTokenResponse,
        error_code=code,
        expiry_timestamp=_at(expiry),
        throttle_time=_NO_THROTTLE,
    )


def expire(ctx: Any, request: Any) -> Any:
    mod = response_module(EXPIRE_KEY, ctx.header.api_version)
    period = millis(request.expiry_time_period)
    code, expiry = _change_expiry(ctx, bytes(request.hmac), period, False)
    return make(
        mod.ExpireDelegationTokenResponse,
        error_code=code,
        expiry_timestamp=_at(expiry),
        throttle_time=_NO_THROTTLE,
    )


def _change_expiry(ctx: Any, given_hmac: bytes, period: int, renewal: bool) -> tuple[Any, int]:
    """(error, new expiry) of a renewal or an expiry. A renewal moves the expiry to ``period``
    from now (at most delegation.token.expiry.time.ms; the default when not positive); an
    expiry to ``period`` from now, removing the token at once when negative. Neither passes
    the token's max timestamp."""
    if not _requests_allowed(ctx):
        return ErrorCode.delegation_token_request_not_allowed, -1
    broker = ctx.broker
    if broker.delegation_token_secret_key is None:
        return ErrorCode.delegation_token_auth_disabled, 0
    principal = ctx.connection.principal
    default_period = broker.config.get_int("delegation.token.expiry.time.ms")
    outcome: list[tuple[DelegationTokenRecord, int]] = []

    def plan() -> list[MetadataRecord]:
        outcome.clear()
        if broker.image.metadata_version < level_needed(_A_TOKEN):
            raise ControllerError(ErrorCode.unsupported_version, "")
        token = _token_by_hmac(ctx, given_hmac)
        if token is None:
            raise ControllerError(ErrorCode.delegation_token_not_found, "")
        now = _now_ms()
        if expired(token, now):
            raise ControllerError(ErrorCode.delegation_token_expired, "")
        if not may_renew(token, principal):
            raise ControllerError(ErrorCode.delegation_token_owner_mismatch, "")
        if renewal:
            renew_for = min(default_period, period) if period > 0 else default_period
            expiry = min(token.max_timestamp, now + renew_for)
        elif period < 0:  # Kafka answers the period itself as the expiry
            outcome.append((token, period))
            return [RemoveDelegationTokenRecord(token.token_id)]
        else:
            expiry = min(token.max_timestamp, now + period)
        outcome.append((token, expiry))
        return [dataclasses.replace(token, expiration_timestamp=expiry)]

    try:
        broker.plan_and_commit(plan)
    except ControllerError as e:
        return e.code, 0
    token, expiry = outcome[0]
    what = "renewed" if renewal else ("expired" if expiry < 0 else "set the expiry of")
    log.info("%s %s delegation token %s of %s", principal, what, token.token_id, token.owner)
    return ErrorCode.none, expiry


# --- DescribeDelegationToken --------------------------------------------------------------


def describe(ctx: Any, request: Any) -> Any:
    mod = response_module(DESCRIBE_KEY, ctx.header.api_version)

    def answer(code: ErrorCode, tokens: Iterable[Any] = ()) -> Any:
        return make(
            mod.DescribeDelegationTokenResponse,
            error_code=code,
            tokens=tuple(tokens),
            throttle_time=_NO_THROTTLE,
        )

    if not _requests_allowed(ctx):
        return answer(ErrorCode.delegation_token_request_not_allowed)
    secret = ctx.broker.delegation_token_secret_key
    if secret is None:
        return answer(ErrorCode.delegation_token_auth_disabled)
    owners = (
        None
        if request.owners is None
        else [f"{o.principal_type}:{o.principal_name}" for o in request.owners]
    )
    if owners == []:
        return answer(ErrorCode.none)
    principal = ctx.connection.principal
    described = []
    for token in ctx.broker.image.delegation_tokens.values():
        # Kafka's DelegationTokenManager.filterToken.
        if owners is not None and not any(may_describe(token, o) for o in owners):
            continue
        if not (
            may_describe(token, principal)
            or authorized(ctx, AclOperation.DESCRIBE, ResourceType.DELEGATION_TOKEN, token.token_id)
            or authorized(ctx, AclOperation.DESCRIBE_TOKENS, ResourceType.USER, token.owner)
        ):
            continue
        owner_type, owner_name = _split(token.owner)
        requester_type, requester_name = _split(token.requester)
        described.append(
            make(
                mod.DescribedDelegationToken,
                principal_type=owner_type,
                principal_name=owner_name,
                token_requester_principal_type=requester_type,
                token_requester_principal_name=requester_name,
                issue_timestamp=token.issue_timestamp,
                expiry_timestamp=token.expiration_timestamp,
                max_timestamp=token.max_timestamp,
                token_id=token.token_id,
                hmac=token_hmac(secret, token.token_id),
                renewers=tuple(
                    make(
                        mod.DescribedDelegationTokenRenewer,
                        principal_type=_split(r)[0],
                        principal_name=_split(r)[1],
                    )
                    for r in token.renewers
                ),
            )
        )
    return answer(ErrorCode.none, described)
