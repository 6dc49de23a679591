"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), KIP-554.

Credentials live in the metadata log as UserScramCredentialRecords, so every broker verifies
logins against the same set and they survive restarts. The client salts the password; the
broker keeps only the salt, the stored key and the server key. The checks and their codes
are Kafka's: an empty user name is UNACCEPTABLE_CREDENTIAL, as are iterations outside
4096..16384; an unknown mechanism is UNSUPPORTED_SASL_MECHANISM; a user named twice in one
request is DUPLICATE_RESOURCE; deleting a credential that does not exist is
RESOURCE_NOT_FOUND.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import CLUSTER_DENIED, AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.metadata.controller import ControllerError
from artesian.metadata.records import (
    MetadataRecord,
    RemoveUserScramCredentialRecord,
    UserScramCredentialRecord,
)
from artesian.security.scram import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    credential_from_salted_password,
    mechanism_by_type,
)

DESCRIBE_KEY = 50
ALTER_KEY = 51
APIS = [
    (DESCRIBE_KEY, 0, 0, lambda ctx, request: describe(ctx, request)),
    (ALTER_KEY, 0, 0, lambda ctx, request: alter(ctx, request)),
]

log = logging.getLogger("artesian.scram")

_TWICE = "A user credential cannot be altered twice in the same request"
Error = tuple[ErrorCode, str]


def describe(ctx: Any, request: Any) -> Any:
    mod = response_module(DESCRIBE_KEY, ctx.header.api_version)
    if not cluster_authorized(ctx, AclOperation.DESCRIBE):
        # Kafka's error response: the code at the top and for each user asked about.
        denied = ErrorCode.cluster_authorization_failed
        return make(
            mod.DescribeUserScramCredentialsResponse,
            throttle_time=datetime.timedelta(0),
            error_code=denied,
            error_message=CLUSTER_DENIED,
            results=tuple(
                make(
                    mod.DescribeUserScramCredentialsResult,
                    user=u.name,
                    error_code=denied,
                    error_message=CLUSTER_DENIED,
                    credential_infos=(),
                )
                for u in request.users or ()
            ),
        )
    credentials = ctx.broker.image.scram_credentials
    by_user: dict[str, list[Any]] = {}
    for (user, mechanism), record in sorted(credentials.items()):
        by_user.setdefault(user, []).append(
            make(mod.CredentialInfo, mechanism=mechanism, iterations=record.iterations)
        )
    wanted = [u.name for u in request.users] if request.users else sorted(by_user)
    results = []
    for user in dict.fromkeys(wanted):
        code, message = ErrorCode.none, None
        if wanted.count(user) > 1:
            code = ErrorCode.duplicate_resource
            message = (
                "Cannot describe SCRAM credentials for the same user twice in a single "
                f"request: {user}"
            )
        elif user not in by_user:
            code = ErrorCode.resource_not_found
            message = f"Attempt to describe a user credential that does not exist: {user}"
        results.append(
            make(
                mod.DescribeUserScramCredentialsResult,
                user=user,
                error_code=code,
                error_message=message,
                credential_infos=tuple(by_user.get(user, ())) if code is ErrorCode.none else (),
            )
        )
    return make(
        mod.DescribeUserScramCredentialsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        error_message=None,
        results=tuple(results),
    )


def alter(ctx: Any, request: Any) -> Any:
    mod = response_module(ALTER_KEY, ctx.header.api_version)
    broker = ctx.broker
    outcome: dict[str, Error | None] = {}
    if not cluster_authorized(ctx, AclOperation.ALTER):
        # Every user named, once, sorted (Kafka's error response); nothing changes.
        users = sorted({u.name for u in (*request.deletions, *request.upsertions)})
        return make(
            mod.AlterUserScramCredentialsResponse,
            throttle_time=datetime.timedelta(0),
            results=tuple(
                make(
                    mod.AlterUserScramCredentialsResult,
                    user=user,
                    error_code=ErrorCode.cluster_authorization_failed,
                    error_message=CLUSTER_DENIED,
                )
                for user in users
            ),
        )

    def plan() -> list[MetadataRecord]:
        outcome.clear()
        records = _plan(broker.image.scram_credentials, request, outcome)
        return records

    try:
        records = broker.plan_and_commit(plan)
    except ControllerError as e:
        outcome = dict.fromkeys(outcome, (e.code, e.message))
        records = []
    for record in records:
        kind = "removed" if isinstance(record, RemoveUserScramCredentialRecord) else "set"
        mechanism = mechanism_by_type(record.mechanism)
        log.info("%s the %s credential of user %s", kind, mechanism and mechanism.name, record.name)
    return make(
        mod.AlterUserScramCredentialsResponse,
        throttle_time=datetime.timedelta(0),
        results=tuple(
            make(
                mod.AlterUserScramCredentialsResult,
                user=user,
                error_code=error[0] if error else ErrorCode.none,
                error_message=error[1] if error else None,
            )
            for user, error in outcome.items()
        ),
    )


def _plan(
    existing: dict[tuple[str, int], Any], request: Any, outcome: dict[str, Error | None]
) -> list[MetadataRecord]:
    """Fills ``outcome`` (user -> error, None for success) and returns the records to
    commit; a user named twice fails whole, as in Kafka."""
    deletions: dict[str, Any] = {}
    upsertions: dict[str, Any] = {}
    errors: dict[str, Error] = {}
    for deletion in request.deletions:
        name = deletion.name
        if name in errors:
            continue
        if deletions.pop(name, None) is not None:
            errors[name] = (ErrorCode.duplicate_resource, _TWICE)
            continue
        error = _check_name_and_mechanism(name, deletion.mechanism)
        if error is None and (name, deletion.mechanism) not in existing:
            error = (
                ErrorCode.resource_not_found,
                "Attempt to delete a user credential that does not exist",
            )
        if error is not None:
            errors[name] = error
        else:
            deletions[name] = deletion
    for upsertion in request.upsertions:
        name = upsertion.name
        if name in errors:
            continue
        if deletions.pop(name, None) is not None or upsertions.pop(name, None) is not None:
            errors[name] = (ErrorCode.duplicate_resource, _TWICE)
            continue
        error = _check_name_and_mechanism(name, upsertion.mechanism)
        if error is None and upsertion.iterations < MIN_ITERATIONS:
            error = (ErrorCode.unacceptable_credential, "Too few iterations")
        elif error is None and upsertion.iterations > MAX_ITERATIONS:
            error = (ErrorCode.unacceptable_credential, "Too many iterations")
        if error is not None:
            errors[name] = error
        else:
            upsertions[name] = upsertion
    records: list[MetadataRecord] = []
    for name, deletion in deletions.items():
        outcome[name] = None
        records.append(RemoveUserScramCredentialRecord(name, deletion.mechanism))
    for name, upsertion in upsertions.items():
        mechanism = mechanism_by_type(upsertion.mechanism)
        assert mechanism is not None
        credential = credential_from_salted_password(
            mechanism, bytes(upsertion.salt), bytes(upsertion.salted_password), upsertion.iterations
        )
        outcome[name] = None
        records.append(
            UserScramCredentialRecord(
                name,
                upsertion.mechanism,
                credential.salt.hex(),
                credential.stored_key.hex(),
                credential.server_key.hex(),
                credential.iterations,
            )
        )
    outcome.update(errors)
    return records


def _check_name_and_mechanism(name: str, mechanism: int) -> Error | None:
    if not name:
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    if mechanism_by_type(mechanism) is None:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    return None
