"""SaslHandshake (17): the client names its SASL mechanism.

Only meaningful before authentication on a SASL listener, or to begin a re-authentication
(KIP-368: ``KafkaConnection`` decides, before this runs); elsewhere it answers
ILLEGAL_SASL_STATE, as Kafka does. An unsupported mechanism is answered with the enabled
ones, then the connection closes.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module
from artesian.security.sasl import AuthenticationFailed

API_KEY = 17
MIN_VERSION = 0
MAX_VERSION = 1


def handle(ctx: Any, request: Any) -> Any:
    mod = response_module(API_KEY, ctx.header.api_version)
    auth = ctx.connection.authenticator
    if auth is None or auth.complete:
        return make(
            mod.SaslHandshakeResponse, error_code=ErrorCode.illegal_sasl_state, mechanisms=()
        )
    code = auth.handshake(request.mechanism, ctx.header.api_version)
    if code is ErrorCode.unsupported_sasl_mechanism:
        ctx.connection.authentication_failed(
            AuthenticationFailed(
                f"mechanism {request.mechanism!r} is not enabled (sasl.enabled.mechanisms="
                f"{','.join(auth.settings.mechanisms)})"
            )
        )
    return make(mod.SaslHandshakeResponse, error_code=code, mechanisms=auth.settings.mechanisms)
