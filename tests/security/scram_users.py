"""SCRAM users made through Kafka's admin API (KIP-554), for the SASL tests."""

from __future__ import annotations

from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)


def upsert_scram_user(
    admin: AdminClient,
    user: str,
    password: str,
    mechanism: ScramMechanism = ScramMechanism.SCRAM_SHA_256,
) -> None:
    upsertion = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(mechanism, 8192), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsertion]).values():
        assert future.result() is None
