"""SASL/OAUTHBEARER (RFC 7628, KIP-255 and KIP-768): clients log in with an OAuth 2 bearer
token, a JWT, and the principal is ``User:<its subject>``.

- ``sasl_server``: the mechanism's server side, sans-I/O, with Kafka's checks and messages.
- ``unsecured``: Kafka's default validator (unsigned JWTs, for development) and the matching
  unsecured login a broker uses for its own connections.
- ``jwt_validator`` and ``jwks``: signed JWTs checked against an identity provider's keys
  (Kafka's OAuthBearerValidatorCallbackHandler), the keys refreshed in the background.
- ``login``: the client side (token sources and the initial response).
- ``settings``: which validator a listener uses, from Kafka's config names.
"""

from artesian.security.oauthbearer.sasl_server import (
    MECHANISM,
    OAuthBearerServer,
    TokenRejected,
    TokenValidator,
    ValidatedToken,
)

__all__ = ["MECHANISM", "OAuthBearerServer", "TokenRejected", "TokenValidator", "ValidatedToken"]
