"""The authorizer's decisions, without a broker: Kafka's StandardAuthorizer rules."""

from __future__ import annotations

import pytest

from artesian.security.acl import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    Authorizer,
    PatternType,
    ResourceType,
)

TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
Op = AclOperation


def acl(
    name: str,
    op: AclOperation,
    permission: AclPermissionType = ALLOW,
    principal: str = "User:alice",
    host: str = "*",
    pattern: PatternType = LIT,
    rtype: ResourceType = TOPIC,
) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, host, op, permission)


def authorizer(*acls: AclBinding, allow_if_none: bool = False) -> Authorizer:
    a = Authorizer({"User:admin"}, allow_if_none)
    a.update(acls)
    return a


def can(
    a: Authorizer,
    op: AclOperation,
    name: str = "orders",
    who: str = "User:alice",
    host: str = "10.0.0.1",
    rtype: ResourceType = TOPIC,
) -> bool:
    return a.authorize(who, host, op, rtype, name)


def test_no_acl_means_denied_unless_allow_everyone_if_no_acl_found() -> None:
    assert not can(authorizer(), Op.READ)
    assert can(authorizer(allow_if_none=True), Op.READ)
    # An ACL for someone else on the resource: no longer "no ACL found".
    other = acl("orders", Op.READ, principal="User:bob")
    assert not can(authorizer(other, allow_if_none=True), Op.READ)


def test_super_users_may_do_everything() -> None:
    a = authorizer(acl("orders", Op.ALL, DENY, principal="User:*"))
    assert can(a, Op.WRITE, who="User:admin")
    assert not can(a, Op.WRITE)


def test_allow_matches_operation_principal_and_host() -> None:
    a = authorizer(acl("orders", Op.READ, host="10.0.0.1"))
    assert can(a, Op.READ)
    assert not can(a, Op.WRITE)
    assert not can(a, Op.READ, host="10.0.0.2")
    assert not can(a, Op.READ, who="User:bob")
    assert not can(a, Op.READ, name="payments")


def test_deny_wins_and_matches_only_its_operation_or_all() -> None:
    a = authorizer(acl("orders", Op.ALL), acl("orders", Op.WRITE, DENY))
    assert not can(a, Op.WRITE)
    assert can(a, Op.READ)
    # DENY READ does not deny DESCRIBE (implication is for ALLOW only).
    b = authorizer(acl("orders", Op.DESCRIBE), acl("orders", Op.READ, DENY))
    assert can(b, Op.DESCRIBE)
    assert not can(b, Op.READ)


@pytest.mark.parametrize("granted", [Op.READ, Op.WRITE, Op.DELETE, Op.ALTER, Op.ALL])
def test_describe_is_implied(granted: AclOperation) -> None:
    assert can(authorizer(acl("orders", granted)), Op.DESCRIBE)


def test_describe_configs_is_implied_by_alter_configs_only() -> None:
    assert can(authorizer(acl("orders", Op.ALTER_CONFIGS)), Op.DESCRIBE_CONFIGS)
    assert not can(authorizer(acl("orders", Op.ALTER)), Op.DESCRIBE_CONFIGS)
    assert not can(authorizer(acl("orders", Op.DESCRIBE_CONFIGS)), Op.ALTER_CONFIGS)


def test_wildcards_and_prefixes() -> None:
    a = authorizer(
        acl("*", Op.READ, principal="User:*"),
        acl("pay", Op.WRITE, pattern=PRE),
        acl("*", Op.WRITE, DENY, principal="User:mallory"),
    )
    assert can(a, Op.READ, name="anything", who="User:zed")
    assert can(a, Op.WRITE, name="payments")
    assert not can(a, Op.WRITE, name="orders")
    assert not can(a, Op.WRITE, name="payments", who="User:mallory")
    # A literal "*" under PREFIXED would be a prefix of nothing special: names start with "pay".
    assert not can(a, Op.WRITE, name="pa")


def test_resource_types_are_separate() -> None:
    a = authorizer(acl("orders", Op.READ, rtype=GROUP))
    assert can(a, Op.READ, rtype=GROUP)
    assert not can(a, Op.READ, rtype=TOPIC)


def test_authorize_any_for_idempotent_producers() -> None:
    assert authorizer(acl("pay", Op.WRITE, pattern=PRE)).authorize_any(
        "User:alice", "10.0.0.1", Op.WRITE, TOPIC
    )
    assert not authorizer(acl("pay", Op.READ)).authorize_any(
        "User:alice", "10.0.0.1", Op.WRITE, TOPIC
    )
    denied = authorizer(acl("pay", Op.WRITE), acl("*", Op.WRITE, DENY))
    assert not denied.authorize_any("User:alice", "10.0.0.1", Op.WRITE, TOPIC)


def test_creation_checks() -> None:
    assert acl("orders", Op.READ).invalid_reason() is None
    assert acl("foo", Op.ALTER, rtype=CLUSTER).invalid_reason() == (
        "The only valid name for the CLUSTER resource is kafka-cluster"
    )
    assert acl("orders", Op.ANY).invalid_reason() == "Operation must be concrete"
    assert acl("orders", Op.READ, pattern=PatternType.MATCH).invalid_reason() == (
        "Pattern type must be LITERAL or PREFIXED"
    )
    assert acl("orders", Op.READ, principal="alice").invalid_reason() is not None
    assert acl("*", Op.READ, pattern=PRE).invalid_reason() is not None


def test_filters() -> None:
    literal = acl("orders", Op.READ)
    prefixed = acl("ord", Op.WRITE, pattern=PRE)
    wildcard = acl("*", Op.READ)
    everything = AclBindingFilter(
        ResourceType.ANY, None, PatternType.ANY, None, None, Op.ANY, AclPermissionType.ANY
    )
    assert all(everything.matches(b) for b in (literal, prefixed, wildcard))
    match = AclBindingFilter(
        TOPIC, "orders", PatternType.MATCH, None, None, Op.ANY, AclPermissionType.ANY
    )
    assert [match.matches(b) for b in (literal, prefixed, wildcard)] == [True, True, True]
    exact = AclBindingFilter(TOPIC, "orders", LIT, None, None, Op.ANY, AclPermissionType.ANY)
    assert [exact.matches(b) for b in (literal, prefixed, wildcard)] == [True, False, False]
    writes = AclBindingFilter(TOPIC, None, PatternType.ANY, "User:alice", "*", Op.WRITE, ALLOW)
    assert [writes.matches(b) for b in (literal, prefixed, wildcard)] == [False, True, False]
    assert (
        AclBindingFilter(
            ResourceType.UNKNOWN, None, PatternType.ANY, None, None, Op.ANY, AclPermissionType.ANY
        ).invalid_reason()
        == "ResourceType must not be UNKNOWN"
    )


def test_authorize_any_follows_kafkas_rules() -> None:
    pay = acl("pay", Op.WRITE, pattern=PRE)
    # An ALLOW covered by a prefixed DENY does not count; one outside it does.
    covered = authorizer(pay, acl("pa", Op.WRITE, DENY, pattern=PRE))
    assert not covered.authorize_any("User:alice", "10.0.0.1", Op.WRITE, TOPIC)
    elsewhere = authorizer(pay, acl("orders", Op.WRITE), acl("pa", Op.WRITE, DENY, pattern=PRE))
    assert elsewhere.authorize_any("User:alice", "10.0.0.1", Op.WRITE, TOPIC)
    literal_denied = authorizer(acl("orders", Op.WRITE), acl("orders", Op.WRITE, DENY))
    assert not literal_denied.authorize_any("User:alice", "10.0.0.1", Op.WRITE, TOPIC)
    # With allow.everyone.if.no.acl.found and no ACL at all: allowed, as in Kafka.
    assert authorizer(allow_if_none=True).authorize_any("User:alice", "h", Op.WRITE, TOPIC)
    assert authorizer().authorize_any("User:admin", "h", Op.WRITE, TOPIC)
