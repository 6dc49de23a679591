"""The ACL admin API (CreateAcls, DescribeAcls, DeleteAcls) on a real broker, through
confluent-kafka's AdminClient and raw frames for exact codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kio.schema.create_acls.v3 import request as create_acls
from kio.schema.delete_acls.v3 import request as delete_acls
from kio.schema.describe_acls.v3 import request as describe_acls

from tests.broker_process import BrokerProcess
from tests.kafka_wire import WireConn

AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:ANONYMOUS",
}


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("acls") / "broker", AUTHORIZER).start()
    try:
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


def _binding(name: str, op: Any, principal: str = "User:alice", **kw: Any) -> AclBinding:
    return AclBinding(
        kw.get("rtype", ResourceType.TOPIC),
        name,
        kw.get("pattern", ResourcePatternType.LITERAL),
        principal,
        kw.get("host", "*"),
        op,
        kw.get("permission", AclPermissionType.ALLOW),
    )


def _create(admin: AdminClient, *bindings: AclBinding) -> None:
    for future in admin.create_acls(list(bindings)).values():
        assert future.result(10) is None


def _describe(admin: AdminClient, acl_filter: AclBindingFilter) -> set[tuple[Any, ...]]:
    found = admin.describe_acls(acl_filter).result(10)
    return {(b.restype, b.name, b.resource_pattern_type, b.principal, b.operation) for b in found}


def _filter(name: str | None = None, **kw: Any) -> AclBindingFilter:
    return AclBindingFilter(
        kw.get("rtype", ResourceType.ANY),
        name,
        kw.get("pattern", ResourcePatternType.ANY),
        kw.get("principal"),
        None,
        kw.get("op", AclOperation.ANY),
        AclPermissionType.ANY,
    )


def test_create_describe_delete_acls(acl_broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": acl_broker.bootstrap})
    read = _binding("cad-orders", AclOperation.READ)
    write = _binding("cad-pay", AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED)
    group = _binding("cad-billing", AclOperation.READ, rtype=ResourceType.GROUP)
    _create(admin, read, write, group)
    _create(admin, read)  # again: no second copy
    topic, lit, pre = ResourceType.TOPIC, ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    assert _describe(admin, _filter(principal="User:alice")) == {
        (topic, "cad-orders", lit, "User:alice", AclOperation.READ),
        (topic, "cad-pay", pre, "User:alice", AclOperation.WRITE),
        (ResourceType.GROUP, "cad-billing", lit, "User:alice", AclOperation.READ),
    }
    # MATCH: every ACL that applies to the topic "cad-payments".
    matching = _filter("cad-payments", rtype=topic, pattern=ResourcePatternType.MATCH)
    assert _describe(admin, matching) == {(topic, "cad-pay", pre, "User:alice", AclOperation.WRITE)}
    (deleted,) = admin.delete_acls([_filter("cad-orders", rtype=topic, pattern=lit)]).values()
    assert [(b.name, b.operation) for b in deleted.result(10)] == [
        ("cad-orders", AclOperation.READ)
    ]
    assert _describe(admin, _filter("cad-orders")) == set()
    # Two filters matching the same ACL: both report it (Kafka's AclControlManager).
    both = admin.delete_acls([_filter(principal="User:alice"), _filter("cad-billing")])
    assert [len(f.result(10)) for f in both.values()] == [2, 1]
    assert _describe(admin, _filter(principal="User:alice")) == set()


_EVERYTHING: dict[str, Any] = {
    "resource_type_filter": 1,
    "resource_name_filter": None,
    "pattern_type_filter": 1,
    "principal_filter": None,
    "host_filter": None,
    "operation": 1,
    "permission_type": 1,
}


def _raw_create(conn: WireConn, *creations: dict[str, Any]) -> list[tuple[int, str | None]]:
    defaults = {"resource_pattern_type": 3, "host": "*", "permission_type": 3}
    answer = conn.request(
        30,
        3,
        create_acls.CreateAclsRequest(
            creations=tuple(create_acls.AclCreation(**{**defaults, **c}) for c in creations)
        ),
    )
    return [(r.error_code, r.error_message) for r in answer.results]


def test_invalid_acls_are_refused_with_invalid_request(acl_broker: BrokerProcess) -> None:
    good = {"resource_type": 2, "resource_name": "inv-t", "principal": "User:a", "operation": 3}
    with WireConn(acl_broker.port) as conn:
        assert _raw_create(
            conn,
            good,
            {**good, "resource_type": 4, "resource_name": "not-the-cluster", "operation": 7},
            {**good, "resource_pattern_type": 1},  # ANY is a filter value, not a pattern
            {**good, "operation": 1},
            {**good, "principal": "alice"},
            {**good, "resource_type": 9},
        ) == [
            (0, None),
            (42, "The only valid name for the CLUSTER resource is kafka-cluster"),
            (42, "Pattern type must be LITERAL or PREFIXED"),
            (42, "Operation must be concrete"),
            (
                42,
                "Could not parse principal from `alice` (no colon is present separating the "
                "principal type from the principal name)",
            ),
            (42, "Resource type must be concrete"),
        ]
        bad_filter = conn.request(
            29,
            3,
            describe_acls.DescribeAclsRequest(
                resource_type_filter=0,
                resource_name_filter=None,
                pattern_type_filter=1,
                principal_filter=None,
                host_filter=None,
                operation=1,
                permission_type=1,
            ),
        )
        assert (bad_filter.error_code, bad_filter.error_message) == (
            42,
            "ResourceType must not be UNKNOWN",
        )
        removed = conn.request(
            31,
            3,
            delete_acls.DeleteAclsRequest(
                filters=(
                    delete_acls.DeleteAclsFilter(
                        resource_type_filter=2,
                        resource_name_filter="inv-t",
                        pattern_type_filter=3,
                        principal_filter=None,
                        host_filter=None,
                        operation=1,
                        permission_type=1,
                    ),
                )
            ),
        )
        assert [
            (r.error_code, [a.resource_name for a in r.matching_acls])
            for r in removed.filter_results
        ] == [(0, ["inv-t"])]


def test_without_an_authorizer_the_acl_api_is_security_disabled(module_broker_factory: Any) -> None:
    broker = module_broker_factory()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (future,) = admin.create_acls([_binding("x", AclOperation.READ)]).values()
    with pytest.raises(KafkaException) as refused:
        future.result(10)
    assert refused.value.args[0].code() == 54  # SECURITY_DISABLED
    # librdkafka drops DescribeAcls' top-level error: read it raw.
    with WireConn(broker.port) as conn:
        described = conn.request(29, 3, describe_acls.DescribeAclsRequest(**_EVERYTHING))
        assert (described.error_code, described.error_message) == (
            54,
            "No Authorizer is configured.",
        )
        removed = conn.request(
            31,
            3,
            delete_acls.DeleteAclsRequest(filters=(delete_acls.DeleteAclsFilter(**_EVERYTHING),)),
        )
        assert [r.error_code for r in removed.filter_results] == [54]
    # The CLI reads it, and says what to set.
    listed = _cli(broker, "list")
    assert listed.returncode == 1
    assert "SECURITY_DISABLED: No Authorizer is configured." in listed.stderr
    assert "authorizer.class.name" in listed.stderr
    assert broker.alive()


def test_acls_survive_a_restart(tmp_path: Path) -> None:
    proc = BrokerProcess(tmp_path / "broker", AUTHORIZER).start()
    try:
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        _create(admin, _binding("kept", AclOperation.WRITE, principal="User:bob"))
        proc.stop()
        proc.start()
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        assert _describe(admin, _filter()) == {
            (
                ResourceType.TOPIC,
                "kept",
                ResourcePatternType.LITERAL,
                "User:bob",
                AclOperation.WRITE,
            )
        }
    finally:
        assert proc.stop() == 0, proc.log_tail()


def _cli(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artesian.cli.main", "acls", *args, "-b", broker.bootstrap],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_acls_cli_adds_lists_and_removes(acl_broker: BrokerProcess) -> None:
    added = _cli(
        acl_broker,
        "add",
        "--principal",
        "User:cli-user",
        "--operation",
        "Read",
        "--operation",
        "describe-configs",
        "--topic",
        "cli-",
        "--prefixed",
    )
    assert added.returncode == 0, added.stderr
    denied = _cli(
        acl_broker,
        "add",
        "--principal",
        "User:cli-user",
        "--operation",
        "All",
        "--cluster",
        "--deny",
    )
    assert denied.returncode == 0, denied.stderr
    listed = _cli(acl_broker, "list", "--principal", "User:cli-user", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [
        (r["resource"], r["name"], r["pattern"], r["operation"], r["permission"])
        for r in json.loads(listed.stdout)
    ] == [
        ("Cluster", "kafka-cluster", "Literal", "All", "Deny"),
        ("Topic", "cli-", "Prefixed", "DescribeConfigs", "Allow"),
        ("Topic", "cli-", "Prefixed", "Read", "Allow"),
    ]
    wrong = _cli(acl_broker, "add", "--principal", "User:x", "--operation", "Fly", "--topic", "t")
    assert wrong.returncode == 2
    assert "unknown operation 'Fly'" in wrong.stderr
    # As kafka-acls: an operation the resource type does not have is refused, All is not.
    wrong = _cli(acl_broker, "add", "--principal", "User:x", "--operation", "Write", "--group", "g")
    assert wrong.returncode == 2
    assert "a Group has no operation Write" in wrong.stderr
    assert "supports All, AlterConfigs, Delete, Describe, DescribeConfigs, Read." in wrong.stderr
    assert _cli(acl_broker, "list", "--principal", "User:x", "--json").stdout.strip() == "[]"

    # remove narrows by host and by permission.
    for host in ("10.0.0.1", "10.0.0.2"):
        added = _cli(
            acl_broker,
            "add",
            "--principal",
            "User:cli-user",
            "--operation",
            "Write",
            "--topic",
            "cli-",
            "--prefixed",
            "--host",
            host,
        )
        assert added.returncode == 0, added.stderr
    removed = _cli(
        acl_broker, "remove", "--topic", "cli-", "--prefixed", "--host", "10.0.0.1", "--json"
    )
    assert removed.returncode == 0, removed.stderr
    assert [(r["host"], r["operation"]) for r in json.loads(removed.stdout)] == [
        ("10.0.0.1", "Write")
    ]
    removed = _cli(acl_broker, "remove", "--principal", "User:cli-user", "--deny", "--json")
    assert [(r["resource"], r["permission"]) for r in json.loads(removed.stdout)] == [
        ("Cluster", "Deny")
    ]
    both = _cli(acl_broker, "remove", "--principal", "User:cli-user", "--deny", "--allow")
    assert both.returncode == 2 and "give --allow or --deny, not both" in both.stderr
    removed = _cli(acl_broker, "remove", "--principal", "User:cli-user", "--allow", "--json")
    assert removed.returncode == 0, removed.stderr
    assert sorted((r["operation"], r["host"]) for r in json.loads(removed.stdout)) == [
        ("DescribeConfigs", "*"),
        ("Read", "*"),
        ("Write", "10.0.0.2"),
    ]
    listed = _cli(acl_broker, "list", "--principal", "User:cli-user", "--json")
    assert json.loads(listed.stdout) == []


def test_acls_cli_names_user_and_delegation_token_resources(acl_broker: BrokerProcess) -> None:
    # librdkafka's admin API has neither resource type; the CLI speaks the protocol itself.
    for args in (
        ("--user-principal", "User:dave", "--operation", "CreateTokens"),
        ("--user-principal", "User:dave", "--operation", "describe-tokens"),
        ("--delegation-token", "a-token-id", "--operation", "Describe"),
    ):
        added = _cli(acl_broker, "add", "--principal", "User:token-admin", *args)
        assert added.returncode == 0, added.stderr
    listed = _cli(acl_broker, "list", "--principal", "User:token-admin", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [
        (r["resource"], r["name"], r["pattern"], r["operation"], r["permission"])
        for r in json.loads(listed.stdout)
    ] == [
        ("DelegationToken", "a-token-id", "Literal", "Describe", "Allow"),
        ("User", "User:dave", "Literal", "CreateTokens", "Allow"),
        ("User", "User:dave", "Literal", "DescribeTokens", "Allow"),
    ]
    only_user = _cli(acl_broker, "list", "--user-principal", "User:dave", "--json")
    assert {r["operation"] for r in json.loads(only_user.stdout)} == {
        "CreateTokens",
        "DescribeTokens",
    }
    two = _cli(acl_broker, "list", "--topic", "t", "--user-principal", "User:dave")
    assert two.returncode == 2 and "name one resource" in two.stderr
    removed = _cli(
        acl_broker, "remove", "--user-principal", "User:dave", "--operation", "CreateTokens"
    )
    assert removed.returncode == 0, removed.stderr
    listed = _cli(acl_broker, "list", "--principal", "User:token-admin", "--json")
    assert [r["operation"] for r in json.loads(listed.stdout)] == ["Describe", "DescribeTokens"]
