"""ACLs and the authorizer (Kafka's StandardAuthorizer semantics), without I/O.

An ACL allows or denies a principal, from a host, an operation on resources named literally,
by prefix, or by the wildcard ``*``. A request is allowed when the principal is a super
user, or some ALLOW ACL matches and no DENY ACL does. DENY wins. ALLOW of READ, WRITE,
DELETE or ALTER implies DESCRIBE; ALLOW of ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL
matches every operation. When no ACL at all names a resource,
``allow.everyone.if.no.acl.found`` decides.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLUSTER_NAME",
    "WILDCARD",
    "AclBinding",
    "AclBindingFilter",
    "AclOperation",
    "AclPermissionType",
    "Authorizer",
    "PatternType",
    "ResourceType",
    "acl_binding",
]

CLUSTER_NAME = "kafka-cluster"  # the one CLUSTER resource's name, as in Kafka
WILDCARD = "*"


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class AclPermissionType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


# ALLOW of the key grants these too (Kafka's implied operations).
_IMPLIED_BY = {
    AclOperation.DESCRIBE: (
        AclOperation.DESCRIBE,
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.ALL,
    ),
    AclOperation.DESCRIBE_CONFIGS: (
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
        AclOperation.ALL,
    ),
}


@dataclass(slots=True, frozen=True)
class AclBinding:
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType  # LITERAL or PREFIXED
    principal: str  # "User:alice", or "User:*" for every user
    host: str  # an IP address, or "*"
    operation: AclOperation
    permission_type: AclPermissionType  # ALLOW or DENY

    def invalid_reason(self) -> str | None:
        """Why CreateAcls must refuse this binding (Kafka's checks), or None."""
        if self.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
            return "Resource type must be concrete"
        if self.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
            return "Pattern type must be LITERAL or PREFIXED"
        if self.operation in (AclOperation.UNKNOWN, AclOperation.ANY):
            return "Operation must be concrete"
        if self.permission_type not in (AclPermissionType.ALLOW, AclPermissionType.DENY):
            return "Permission type must be ALLOW or DENY"
        if not self.resource_name:
            return "Resource name must not be empty"
        if self.resource_type is ResourceType.CLUSTER and self.resource_name != CLUSTER_NAME:
            return f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        if self.pattern_type is PatternType.PREFIXED and self.resource_name == WILDCARD:
            return "A PREFIXED pattern cannot be the wildcard"
        if ":" not in self.principal:  # Kafka's only check ("User:" names an empty DN)
            return (
                f"Could not parse principal from `{self.principal}` (no colon is present "
                "separating the principal type from the principal name)"
            )
        if not self.host:
            return "Host must not be empty"
        return None


def acl_binding(entry: Any) -> AclBinding:
    """The binding an AccessControlEntryRecord (or anything with its fields) stores."""
    return AclBinding(
        ResourceType(entry.resource_type),
        entry.resource_name,
        PatternType(entry.pattern_type),
        entry.principal,
        entry.host,
        AclOperation(entry.operation),
        AclPermissionType(entry.permission_type),
    )


@dataclass(slots=True, frozen=True)
class AclBindingFilter:
    """DescribeAcls/DeleteAcls filters: None (null) and the ANY values match everything;
    MATCH matches every pattern that would apply to the named resource."""

    resource_type: ResourceType
    resource_name: str | None
    pattern_type: PatternType
    principal: str | None
    host: str | None
    operation: AclOperation
    permission_type: AclPermissionType

    def invalid_reason(self) -> str | None:
        for value, enum_type in (
            (self.resource_type, ResourceType),
            (self.pattern_type, PatternType),
            (self.operation, AclOperation),
            (self.permission_type, AclPermissionType),
        ):
            if value == enum_type.UNKNOWN:
                return f"{enum_type.__name__} must not be UNKNOWN"
        return None

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type is not ResourceType.ANY and acl.resource_type != self.resource_type:
            return False
        if not self._matches_pattern(acl):
            return False
        if self.principal is not None and acl.principal != self.principal:
            return False
        if self.host is not None and acl.host != self.host:
            return False
        if self.operation is not AclOperation.ANY and acl.operation != self.operation:
            return False
        return (
            self.permission_type is AclPermissionType.ANY
            or acl.permission_type == self.permission_type
        )

    def _matches_pattern(self, acl: AclBinding) -> bool:
        name = self.resource_name
        if self.pattern_type is PatternType.MATCH:
            if name is None:
                return True
            if acl.pattern_type is PatternType.LITERAL:
                return acl.resource_name in (name, WILDCARD)
            return name.startswith(acl.resource_name)
        if self.pattern_type is not PatternType.ANY and acl.pattern_type != self.pattern_type:
            return False
        return name is None or acl.resource_name == name


class Authorizer:
    def __init__(self, super_users: Iterable[str], allow_everyone_if_no_acl_found: bool) -> None:
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefixed: dict[ResourceType, list[AclBinding]] = {}
        self._by_type: dict[ResourceType, list[AclBinding]] = {}
        self.names_hosts = False  # some ACL names a host: answers may differ by address

    def update(self, acls: Iterable[AclBinding]) -> None:
        """Replace every ACL (from the metadata image)."""
        literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        prefixed: dict[ResourceType, list[AclBinding]] = {}
        by_type: dict[ResourceType, list[AclBinding]] = {}
        for acl in acls:
            by_type.setdefault(acl.resource_type, []).append(acl)
            if acl.pattern_type is PatternType.PREFIXED:
                prefixed.setdefault(acl.resource_type, []).append(acl)
            else:
                literal.setdefault((acl.resource_type, acl.resource_name), []).append(acl)
        self._literal, self._prefixed, self._by_type = literal, prefixed, by_type
        self.names_hosts = any(a.host != WILDCARD for v in by_type.values() for a in v)

    def _applicable(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        found = [
            *self._literal.get((resource_type, name), ()),
            *self._literal.get((resource_type, WILDCARD), ()),
        ]
        found += [
            a for a in self._prefixed.get(resource_type, ()) if name.startswith(a.resource_name)
        ]
        return found

    def authorize(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
    ) -> bool:
        if principal in self.super_users:
            return True
        acls = self._applicable(resource_type, name)
        if not acls:
            return self.allow_everyone_if_no_acl_found
        allowing = _IMPLIED_BY.get(operation, (operation, AclOperation.ALL))
        allowed = False
        for acl in acls:
            if acl.principal not in (principal, "User:*") or acl.host not in (host, WILDCARD):
                continue
            if acl.permission_type is AclPermissionType.DENY:
                if acl.operation in (operation, AclOperation.ALL):
                    return False
            elif acl.operation in allowing:
                allowed = True
        return allowed

    def authorize_any(
        self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType
    ) -> bool:
        """Whether ``operation`` may be allowed on some resource of the type (Kafka's
        authorizeByResourceType, which InitProducerId uses for idempotent producers): an
        ALLOW that no DENY of this principal covers."""
        if self.authorize(principal, host, operation, resource_type, "hardcode"):
            return True  # as Kafka: a super user, a wildcard ALLOW, or no ACL found
        allowing = _IMPLIED_BY.get(operation, (operation, AclOperation.ALL))
        mine = [
            a
            for a in self._by_type.get(resource_type, ())
            if a.principal in (principal, "User:*") and a.host in (host, WILDCARD)
        ]
        denies = [
            a
            for a in mine
            if a.permission_type is AclPermissionType.DENY
            and a.operation in (operation, AclOperation.ALL)
        ]
        denied_names = {a.resource_name for a in denies if a.pattern_type is PatternType.LITERAL}
        denied_prefixes = [
            a.resource_name for a in denies if a.pattern_type is PatternType.PREFIXED
        ]
        if WILDCARD in denied_names:
            return False
        for a in mine:
            if a.permission_type is not AclPermissionType.ALLOW or a.operation not in allowing:
                continue
            if any(a.resource_name.startswith(p) for p in denied_prefixes):
                continue
            if a.pattern_type is PatternType.LITERAL and a.resource_name in denied_names:
                continue
            return True
        return False
