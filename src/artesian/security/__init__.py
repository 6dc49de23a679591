"""Sans-I/O SASL authentication: PLAIN, SCRAM-SHA-256/512 and ``sasl.jaas.config`` parsing.

Bytes in, bytes out: the connection layer owns the sockets and feeds tokens to a
``SaslServer`` (see ``sasl``); ``scram`` and ``plain`` implement the mechanisms and ``jaas``
reads the broker's user table from Kafka's JAAS config syntax.
"""

from artesian.security.jaas import JaasConfig, parse_jaas_config, plain_users
from artesian.security.plain import PlainServer, plain_client_token
from artesian.security.sasl import AuthenticationFailed, SaslServer
from artesian.security.scram import (
    MAX_ITERATIONS,
    MECHANISMS,
    MIN_ITERATIONS,
    ScramClient,
    ScramCredential,
    ScramMechanism,
    ScramServer,
    credential_from_salted_password,
    mechanism_by_type,
    new_credential,
    salted_password,
)

__all__ = [
    "MAX_ITERATIONS",
    "MECHANISMS",
    "MIN_ITERATIONS",
    "AuthenticationFailed",
    "JaasConfig",
    "PlainServer",
    "SaslServer",
    "ScramClient",
    "ScramCredential",
    "ScramMechanism",
    "ScramServer",
    "credential_from_salted_password",
    "mechanism_by_type",
    "new_credential",
    "parse_jaas_config",
    "plain_client_token",
    "plain_users",
    "salted_password",
]
