"""SaslAuthenticate (36): one token of the mechanism chosen by SaslHandshake.

A failed login is answered with SASL_AUTHENTICATION_FAILED and the reason, then the
connection closes. After success it answers ILLEGAL_SASL_STATE (re-authentication, KIP-368,
is not supported: ``connections.max.reauth.ms`` is 0).
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module
from artesian.security.sasl import AuthenticationFailed

API_KEY = 36
MIN_VERSION = 0
MAX_VERSION = 2


def handle(ctx: Any, request: Any) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    auth = ctx.connection.authenticator

    def answer(code: ErrorCode, message: str | None, token: bytes = b"") -> Any:
        return make(
            mod.SaslAuthenticateResponse,
            error_code=code,
            error_message=message,
            auth_bytes=token,
            session_lifetime=datetime.timedelta(0),
        )

    if auth is None or auth.complete:
        return answer(
            ErrorCode.illegal_sasl_state, "SaslAuthenticate is only valid while authenticating"
        )
    try:
        token = auth.authenticate(bytes(request.auth_bytes))
    except AuthenticationFailed as e:
        ctx.connection.authentication_failed(str(e))
        return answer(ErrorCode.sasl_authentication_failed, str(e))
    if auth.complete:
        ctx.connection.authenticated(auth.principal)
    return answer(ErrorCode.none, None, token)
