"""``artesian acls``: add, list and remove ACLs (like kafka-acls), through Kafka's own
CreateAcls/DescribeAcls/DeleteAcls, so it works against Apache Kafka too."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    ClientOptions,
    CliError,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    make_app,
    out,
    print_json,
    reporting,
    result,
    table,
)

acls_app = make_app("Add, list and remove ACLs (authorizer.class.name must be set).")

_OPERATIONS = {
    op.name.replace("_", "").lower(): op
    for op in AclOperation
    if op not in (AclOperation.UNKNOWN, AclOperation.ANY)
}

TopicOpt = Annotated[str | None, typer.Option("--topic", help="A topic name ('*': all).")]
GroupOpt = Annotated[str | None, typer.Option("--group", help="A consumer group id ('*': all).")]
TxnOpt = Annotated[
    str | None, typer.Option("--transactional-id", help="A transactional id ('*': all).")
]
ClusterOpt = Annotated[bool, typer.Option("--cluster", help="The cluster resource.")]
PrefixedOpt = Annotated[
    bool, typer.Option("--prefixed", help="The name is a prefix (PREFIXED pattern).")
]
PrincipalOpt = Annotated[
    str | None, typer.Option("--principal", help="E.g. User:alice, or User:* for everyone.")
]
OperationsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--operation",
        help="Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, "
        "AlterConfigs, IdempotentWrite or All. Repeatable.",
    ),
]
HostOpt = Annotated[str, typer.Option("--host", help="Client IP address the ACL applies to.")]


def _resource(
    topic: str | None, group: str | None, txn: str | None, cluster: bool
) -> tuple[Any, str] | None:
    chosen = [
        (kind, name)
        for kind, name in (
            (ResourceType.TOPIC, topic),
            (ResourceType.GROUP, group),
            (ResourceType.TRANSACTIONAL_ID, txn),
            (ResourceType.BROKER, "kafka-cluster" if cluster else None),
        )
        if name is not None
    ]
    if len(chosen) > 1:
        raise CliError(
            "name one resource: --topic, --group, --transactional-id or --cluster",
            "Run the command once per resource.",
            code=2,
        )
    return chosen[0] if chosen else None


def _operations(names: list[str] | None) -> list[Any]:
    ops = []
    for name in names or []:
        op = _OPERATIONS.get(name.replace("-", "").replace("_", "").lower())
        if op is None:
            raise CliError(f"unknown operation {name!r}", "See --help for the list.", code=2)
        ops.append(op)
    return ops


def _name(enum_value: Any) -> str:
    return "".join(p.capitalize() for p in enum_value.name.split("_"))


def _rows(bindings: list[Any]) -> list[tuple[str, ...]]:
    return sorted(
        (
            _name(b.restype).replace("Broker", "Cluster"),
            b.name,
            _name(b.resource_pattern_type),
            b.principal,
            b.host,
            _name(b.operation),
            _name(b.permission_type),
        )
        for b in bindings
    )


def _show(rows: list[tuple[str, ...]], as_json: bool, empty: str) -> None:
    columns = ["RESOURCE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]
    if as_json:
        print_json([dict(zip((c.lower() for c in columns), r, strict=True)) for r in rows])
    elif rows:
        out.print(table(None, columns, rows))
    else:
        out.print(empty)


@acls_app.command()
def add(
    principal: PrincipalOpt = None,
    operation: OperationsOpt = None,
    topic: TopicOpt = None,
    group: GroupOpt = None,
    transactional_id: TxnOpt = None,
    cluster: ClusterOpt = False,
    prefixed: PrefixedOpt = False,
    deny: Annotated[bool, typer.Option("--deny", help="A DENY ACL (default ALLOW).")] = False,
    host: HostOpt = "*",
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Allow (or --deny) a principal operations on one resource."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        resource = _resource(topic, group, transactional_id, cluster)
        ops = _operations(operation)
        if resource is None or not ops or not principal:
            raise CliError(
                "give --principal, at least one --operation, and a resource",
                "Example: artesian acls add --principal User:alice --operation Read --topic orders",
                code=2,
            )
        pattern = ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL
        permission = AclPermissionType.DENY if deny else AclPermissionType.ALLOW
        bindings = [
            AclBinding(resource[0], resource[1], pattern, principal, host, op, permission)
            for op in ops
        ]
        admin = opts.admin()
        for future in admin.create_acls(bindings).values():
            result(future, opts.timeout, opts.bootstrap, "adding ACLs: ")
    out.print(f"Added {len(bindings)} ACL(s).")


def _acl_filter(
    principal: str | None,
    operation: list[str] | None,
    resource: tuple[Any, str] | None,
    prefixed: bool,
) -> list[Any]:
    ops = _operations(operation) or [AclOperation.ANY]
    kind, name = resource if resource is not None else (ResourceType.ANY, None)
    pattern = (
        ResourcePatternType.PREFIXED
        if prefixed
        else ResourcePatternType.LITERAL
        if name is not None
        else ResourcePatternType.ANY
    )
    return [
        AclBindingFilter(kind, name, pattern, principal, None, op, AclPermissionType.ANY)
        for op in ops
    ]


def _list(opts: ClientOptions, filters: list[Any]) -> list[Any]:
    admin = opts.admin()
    found: list[Any] = []
    for f in filters:
        found += result(admin.describe_acls(f), opts.timeout, opts.bootstrap, "listing ACLs: ")
    return found


@acls_app.command("list")
def list_(
    principal: PrincipalOpt = None,
    topic: TopicOpt = None,
    group: GroupOpt = None,
    transactional_id: TxnOpt = None,
    cluster: ClusterOpt = False,
    prefixed: PrefixedOpt = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """List ACLs, all of them or those of a principal or resource."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        resource = _resource(topic, group, transactional_id, cluster)
        found = _list(opts, _acl_filter(principal, None, resource, prefixed))
    _show(_rows(found), as_json, "No ACLs.")


@acls_app.command()
def remove(
    principal: PrincipalOpt = None,
    operation: OperationsOpt = None,
    topic: TopicOpt = None,
    group: GroupOpt = None,
    transactional_id: TxnOpt = None,
    cluster: ClusterOpt = False,
    prefixed: PrefixedOpt = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Remove the ACLs that match: a resource, a principal, operations (at least one of the
    three)."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        resource = _resource(topic, group, transactional_id, cluster)
        if resource is None and not principal and not operation:
            raise CliError(
                "name what to remove: a resource, --principal or --operation",
                "To see what exists: artesian acls list",
                code=2,
            )
        admin = opts.admin()
        removed: list[Any] = []
        filters = _acl_filter(principal, operation, resource, prefixed)
        for future in admin.delete_acls(filters).values():
            removed += result(future, opts.timeout, opts.bootstrap, "removing ACLs: ")
    _show(_rows(removed), as_json, "No ACL matched.")
