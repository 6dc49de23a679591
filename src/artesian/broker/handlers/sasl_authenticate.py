"""SaslAuthenticate (36): one token of the mechanism chosen by SaslHandshake.

A failed login is answered with SASL_AUTHENTICATION_FAILED and the reason (where Kafka does
not answer, the authenticator raises UnansweredFailure and nothing is sent), then the
connection closes after the failed-login delay. The last token's answer carries the session
lifetime (KIP-368, v1+). After login it answers ILLEGAL_SASL_STATE, as Kafka's KafkaApis does:
tokens are taken again only in a re-authentication, which a SaslHandshake begins (see
``KafkaConnection``).
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.authenticator import SaslState, UnansweredFailure
from artesian.broker.handlers._build import make, response_module
from artesian.security.sasl import AuthenticationFailed

API_KEY = 36
MIN_VERSION = 0
MAX_VERSION = 2


def handle(ctx: Any, request: Any) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    auth = ctx.connection.authenticator

    def answer(code: ErrorCode, message: str | None, token: bytes = b"", ms: int = 0) -> Any:
        return make(
            mod.SaslAuthenticateResponse,
            error_code=code,
            error_message=message,
            auth_bytes=token,
            session_lifetime=datetime.timedelta(milliseconds=ms),
        )

    if auth is None or auth.complete:
        return answer(
            ErrorCode.illegal_sasl_state,
            "SaslAuthenticate request received after successful authentication",  # KafkaApis
        )
    try:
        token = auth.authenticate(bytes(request.auth_bytes), time.monotonic_ns())
    except AuthenticationFailed as e:
        ctx.connection.authentication_failed(e)
        if isinstance(e, UnansweredFailure):
            return None  # as Kafka: the connection closes without an answer
        return answer(ErrorCode.sasl_authentication_failed, str(e))
    if not auth.complete:
        return answer(ErrorCode.none, None, token)
    # The answer first: nothing may fail once the connection counts the login as done.
    try:
        response = answer(ErrorCode.none, None, token, auth.session_lifetime_ms)
    except Exception:
        auth.state = SaslState.FAILED  # never a login counted done but not answered
        raise
    ctx.connection.authenticated(auth)
    return response
