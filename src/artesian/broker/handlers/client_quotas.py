"""DescribeClientQuotas (48) and AlterClientQuotas (49), KIP-546.

Quotas are ClientQuotaRecords in the metadata log, so every broker enforces the same set.
Entities are a user, a client id, or both, or an ip (a null name is the type's default).
Users and client ids take producer_byte_rate, consumer_byte_rate, controller_mutation_rate
and request_percentage; an ip takes connection_creation_rate (KIP-612), as in Kafka.
"""

from __future__ import annotations

import datetime
import logging
import math
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.broker.quota_manager import QUOTA_KEYS, Entity, is_address, rate_problem
from artesian.metadata.controller import ControllerError
from artesian.metadata.records import ClientQuotaRecord, MetadataRecord

DESCRIBE_KEY, ALTER_KEY = 48, 49
APIS = [
    (DESCRIBE_KEY, 0, 1, lambda ctx, request: describe(ctx, request)),
    (ALTER_KEY, 0, 1, lambda ctx, request: alter(ctx, request)),
]

log = logging.getLogger("artesian.quotas")

_TYPES = ("client-id", "ip", "user")
_IP_KEYS = ("connection_creation_rate",)  # the ip entity's, and only its
_EXACT, _DEFAULT, _ANY = 0, 1, 2
Error = tuple[ErrorCode, str]


def _entity(data: Any) -> tuple[Entity | None, str | None]:
    """The request's entity, sorted by type, or why it is invalid."""
    pairs = [(e.entity_type, e.entity_name) for e in data]
    if not pairs:
        return None, "Invalid empty client quota entity"
    types = [t for t, _ in pairs]
    for t, name in pairs:
        if t not in _TYPES:
            return None, f"Unhandled client quota entity type: {t}"
        if name == "":
            return None, f"Empty {t} not supported"
    if len(set(types)) != len(types):
        return None, "Duplicate quota entity type in the entity"
    if "ip" in types and len(types) > 1:
        return (
            None,
            "Invalid quota entity combination, IP entity should not be combined with User or ClientId",
        )
    for t, name in pairs:
        if t == "ip" and name is not None and not is_address(name):
            return None, f"{name} is not a valid IP"
    return tuple(sorted(pairs, key=lambda p: p[0])), None


def _check_op(key: str, value: float, remove: bool, ip: bool) -> str | None:
    if key not in QUOTA_KEYS or (key in _IP_KEYS) != ip:
        return f"Invalid configuration key {key}"
    if remove:
        return None
    if key in _IP_KEYS:  # connections a second: Kafka's INT, at least 0
        if not math.isfinite(value) or value < 0 or value != int(value) or value >= 2**31:
            return f"Configuration {key} must be a whole number of connections per second"
        return None
    return rate_problem(key, value)


def alter(ctx: Any, request: Any) -> Any:
    mod = response_module(ALTER_KEY, ctx.header.api_version)
    broker = ctx.broker
    allowed = cluster_authorized(ctx, AclOperation.ALTER_CONFIGS)
    results: list[tuple[Any, ErrorCode, str | None]] = []
    records: list[ClientQuotaRecord] = []
    seen: set[Entity] = set()
    for entry in request.entries:
        entity, problem = _entity(entry.entity)
        error: Error | None = None
        if not allowed:
            error = ErrorCode.cluster_authorization_failed, "Cluster authorization failed."
        elif problem is not None:
            error = ErrorCode.invalid_request, problem
        elif entity in seen:
            error = ErrorCode.invalid_request, "Ignoring duplicate entity"
        else:
            keys = [op.key for op in entry.ops]
            if len(set(keys)) != len(keys):
                error = ErrorCode.invalid_request, "Duplicate quota key in one entry"
            ip = entity is not None and entity[0][0] == "ip"
            for op in entry.ops:
                problem = _check_op(op.key, op.value, op.remove, ip)
                if error is None and problem is not None:
                    error = ErrorCode.invalid_request, problem
        if entity is not None:
            seen.add(entity)
        if error is None and entity is not None:
            records += [
                ClientQuotaRecord(entity, op.key, None if op.remove else float(op.value))
                for op in entry.ops
            ]
        results.append((entry.entity, *(error or (ErrorCode.none, None))))
    if records and not request.validate_only:
        try:
            broker.plan_and_commit(lambda: list[MetadataRecord](records))
        except ControllerError as e:
            results = [
                (entity, *((e.code, e.message) if code is ErrorCode.none else (code, message)))
                for entity, code, message in results
            ]
        else:
            for r in records:
                log.info("client quota %s: %s=%s", dict(r.entity), r.key, r.value)
    return make(
        mod.AlterClientQuotasResponse,
        throttle_time=datetime.timedelta(0),
        entries=tuple(
            make(
                mod.EntryData,
                error_code=code,
                error_message=message,
                entity=tuple(
                    make(mod.EntityData, entity_type=e.entity_type, entity_name=e.entity_name)
                    for e in entity
                ),
            )
            for entity, code, message in results
        ),
    )


def describe(ctx: Any, request: Any) -> Any:
    mod = response_module(DESCRIBE_KEY, ctx.header.api_version)

    def answer(code: ErrorCode, message: str | None, entries: Any) -> Any:
        return make(
            mod.DescribeClientQuotasResponse,
            throttle_time=datetime.timedelta(0),
            error_code=code,
            error_message=message,
            entries=entries,
        )

    if not cluster_authorized(ctx, AclOperation.DESCRIBE_CONFIGS):
        return answer(ErrorCode.cluster_authorization_failed, "Cluster authorization failed.", None)
    wanted: dict[str, tuple[int, str | None]] = {}
    for c in request.components:
        if c.entity_type not in _TYPES:
            return answer(
                ErrorCode.unsupported_version, f"Unsupported entity type {c.entity_type!r}", None
            )
        if c.match_type != _EXACT and c.match is not None:
            return answer(ErrorCode.invalid_request, "Only an exact match names an entity", None)
        if c.entity_type in wanted:
            return answer(ErrorCode.invalid_request, f"Duplicate {c.entity_type} filter", None)
        if "ip" in wanted or (wanted and c.entity_type == "ip"):
            return answer(
                ErrorCode.invalid_request,
                "Invalid entity filter component combination, IP filter component should not "
                "be used with user or clientId filter component.",
                None,
            )
        if c.match_type == _EXACT and c.match is None:
            return answer(ErrorCode.invalid_request, "An exact match needs a name", None)
        if c.match_type not in (_EXACT, _DEFAULT, _ANY):
            return answer(ErrorCode.invalid_request, f"Unknown match type {c.match_type}", None)
        wanted[c.entity_type] = (c.match_type, c.match)

    def matches(entity: Entity) -> bool:
        names = dict(entity)
        if request.strict and set(names) != set(wanted):
            return False
        for entity_type, (match_type, match) in wanted.items():
            if entity_type not in names:
                return False
            name = names[entity_type]
            if match_type == _EXACT and name != match:
                return False
            if match_type == _DEFAULT and name is not None:
                return False
        return True

    entries = tuple(
        make(
            mod.EntryData,
            entity=tuple(make(mod.EntityData, entity_type=t, entity_name=n) for t, n in entity),
            values=tuple(make(mod.ValueData, key=k, value=v) for k, v in sorted(values.items())),
        )
        for entity, values in sorted(
            ctx.broker.image.client_quotas.items(), key=lambda kv: repr(kv[0])
        )
        if matches(entity)
    )
    return answer(ErrorCode.none, None, entries)
