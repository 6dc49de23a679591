"""CreateAcls (30), DescribeAcls (29) and DeleteAcls (31): Kafka's ACL admin API.

ACLs are AccessControlEntryRecords in the metadata log, so every broker's authorizer applies
the same set, and they outlive restarts. Without an authorizer (``authorizer.class.name``
empty) the three answer SECURITY_DISABLED, as Kafka does. Creating an ACL that exists
already succeeds without a second copy; a DeleteAcls filter reports each ACL it matched, so
an ACL matched by two filters of one request is reported by both (and removed once).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.metadata.controller import ControllerError
from artesian.metadata.records import (
    AccessControlEntryRecord,
    MetadataRecord,
    RemoveAccessControlEntryRecord,
)
from artesian.security.acl import (
    AclBinding,
    AclBindingFilter,
    AclPermissionType,
    PatternType,
    ResourceType,
    acl_binding,
)

DESCRIBE_KEY, CREATE_KEY, DELETE_KEY = 29, 30, 31
APIS = [
    (DESCRIBE_KEY, 1, 3, lambda ctx, request: describe(ctx, request)),
    (CREATE_KEY, 1, 3, lambda ctx, request: create(ctx, request)),
    (DELETE_KEY, 1, 3, lambda ctx, request: delete(ctx, request)),
]

log = logging.getLogger("artesian.acls")

_NO_AUTHORIZER = "No Authorizer is configured."
_NOT_ALLOWED = "Cluster authorization failed."
Error = tuple[ErrorCode, str | None]


def _refusal(ctx: Any, operation: AclOperation) -> Error | None:
    if ctx.broker.authorizer is None:
        return ErrorCode.security_disabled, _NO_AUTHORIZER
    if not cluster_authorized(ctx, operation):
        return ErrorCode.cluster_authorization_failed, _NOT_ALLOWED
    return None


def _enum(enum_type: Any, value: int) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        return enum_type.UNKNOWN


def _filter(f: Any) -> AclBindingFilter:
    """A DescribeAcls request, or one DeleteAcls filter (the same fields)."""
    return AclBindingFilter(
        _enum(ResourceType, f.resource_type_filter),
        f.resource_name_filter,
        _enum(PatternType, getattr(f, "pattern_type_filter", PatternType.LITERAL)),
        f.principal_filter,
        f.host_filter,
        _enum(AclOperation, f.operation),
        _enum(AclPermissionType, f.permission_type),
    )


def _bindings(ctx: Any) -> list[tuple[str, AclBinding]]:
    return [(acl_id, acl_binding(r)) for acl_id, r in ctx.broker.image.acls.items()]


def create(ctx: Any, request: Any) -> Any:
    mod = response_module(CREATE_KEY, ctx.header.api_version)
    refusal = _refusal(ctx, AclOperation.ALTER)
    results: list[Error] = []

    def plan() -> list[MetadataRecord]:
        results.clear()
        existing = {b for _, b in _bindings(ctx)}
        records: list[MetadataRecord] = []
        for c in request.creations:
            binding = AclBinding(
                _enum(ResourceType, c.resource_type),
                c.resource_name,
                _enum(PatternType, getattr(c, "resource_pattern_type", PatternType.LITERAL)),
                c.principal,
                c.host,
                _enum(AclOperation, c.operation),
                _enum(AclPermissionType, c.permission_type),
            )
            reason = binding.invalid_reason()
            if reason is not None:
                results.append((ErrorCode.invalid_request, reason))
                continue
            results.append((ErrorCode.none, None))
            if binding in existing:
                continue
            existing.add(binding)
            records.append(
                AccessControlEntryRecord(
                    uuid.uuid4().hex,
                    binding.resource_type,
                    binding.resource_name,
                    binding.pattern_type,
                    binding.principal,
                    binding.host,
                    binding.operation,
                    binding.permission_type,
                )
            )
        return records

    if refusal is not None:
        results = [refusal] * len(request.creations)
    else:
        try:
            for record in ctx.broker.plan_and_commit(plan):
                log.info("created ACL %s by %s", acl_binding(record), ctx.connection.principal)
        except ControllerError as e:
            results = [(e.code, e.message)] * len(request.creations)
    return make(
        mod.CreateAclsResponse,
        throttle_time=datetime.timedelta(0),
        results=tuple(
            make(mod.AclCreationResult, error_code=code, error_message=message)
            for code, message in results
        ),
    )


def describe(ctx: Any, request: Any) -> Any:
    mod = response_module(DESCRIBE_KEY, ctx.header.api_version)

    def answer(error: Error, resources: tuple[Any, ...] = ()) -> Any:
        return make(
            mod.DescribeAclsResponse,
            throttle_time=datetime.timedelta(0),
            error_code=error[0],
            error_message=error[1],
            resources=resources,
        )

    refusal = _refusal(ctx, AclOperation.DESCRIBE)
    if refusal is not None:
        return answer(refusal)
    wanted = _filter(request)
    reason = wanted.invalid_reason()
    if reason is not None:
        return answer((ErrorCode.invalid_request, reason))
    by_resource: dict[tuple[int, str, int], list[Any]] = {}
    for _, binding in _bindings(ctx):
        if wanted.matches(binding):
            key = (binding.resource_type, binding.resource_name, binding.pattern_type)
            by_resource.setdefault(key, []).append(
                make(
                    mod.AclDescription,
                    principal=binding.principal,
                    host=binding.host,
                    operation=binding.operation,
                    permission_type=binding.permission_type,
                )
            )
    return answer(
        (ErrorCode.none, None),
        tuple(
            make(
                mod.DescribeAclsResource,
                resource_type=rtype,
                resource_name=name,
                pattern_type=pattern,
                acls=tuple(acls),
            )
            for (rtype, name, pattern), acls in by_resource.items()
        ),
    )


def delete(ctx: Any, request: Any) -> Any:
    mod = response_module(DELETE_KEY, ctx.header.api_version)
    refusal = _refusal(ctx, AclOperation.ALTER)
    outcome: list[tuple[Error, list[AclBinding]]] = []

    def plan() -> list[MetadataRecord]:
        outcome.clear()
        removed: set[str] = set()
        records: list[MetadataRecord] = []
        current = _bindings(ctx)
        for f in request.filters:
            wanted = _filter(f)
            reason = wanted.invalid_reason()
            if reason is not None:
                outcome.append(((ErrorCode.invalid_request, reason), []))
                continue
            matched = [(i, b) for i, b in current if wanted.matches(b)]
            records += [RemoveAccessControlEntryRecord(i) for i, _ in matched if i not in removed]
            removed.update(i for i, _ in matched)
            outcome.append(((ErrorCode.none, None), [b for _, b in matched]))
        return records

    if refusal is not None:
        outcome = [(refusal, [])] * len(request.filters)
    else:
        try:
            ctx.broker.plan_and_commit(plan)
        except ControllerError as e:
            outcome = [((e.code, e.message), [])] * len(request.filters)
        for _, bindings in outcome:
            for binding in bindings:
                log.info("deleted ACL %s by %s", binding, ctx.connection.principal)
    return make(
        mod.DeleteAclsResponse,
        throttle_time=datetime.timedelta(0),
        filter_results=tuple(
            make(
                mod.DeleteAclsFilterResult,
                error_code=code,
                error_message=message,
                matching_acls=tuple(
                    make(
                        mod.DeleteAclsMatchingAcl,
                        error_code=ErrorCode.none,
                        error_message=None,
                        resource_type=b.resource_type,
                        resource_name=b.resource_name,
                        pattern_type=b.pattern_type,
                        principal=b.principal,
                        host=b.host,
                        operation=b.operation,
                        permission_type=b.permission_type,
                    )
                    for b in bindings
                ),
            )
            for (code, message), bindings in outcome
        ),
    )
