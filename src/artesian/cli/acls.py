"""``artesian acls``: add, list and remove ACLs (like kafka-acls), through Kafka's own
CreateAcls/DescribeAcls/DeleteAcls v3, so it works against Apache Kafka 3.3 and later too.

They speak the protocol through ``wire.WireClient``: librdkafka's admin API knows neither
the USER nor the DELEGATION_TOKEN resource (it lists them as UNKNOWN), nor the CreateTokens
and DescribeTokens operations."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
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
    table,
)
from artesian.cli.wire import WireClient, check_answer
from artesian.security.acl import (
    CLUSTER_NAME,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)

acls_app = make_app("Add, list and remove ACLs (authorizer.class.name must be set).")

_CREATE_ACLS, _DESCRIBE_ACLS, _DELETE_ACLS = 30, 29, 31

_OPERATIONS: dict[str, AclOperation] = {
    op.name.replace("_", "").lower(): op
    for op in AclOperation
    if op not in (AclOperation.UNKNOWN, AclOperation.ANY)
}

_A = AclOperation
# The operations each resource type has (kafka-acls refuses others; All always applies).
SUPPORTED_OPERATIONS: dict[ResourceType, frozenset[AclOperation]] = {
    ResourceType.TOPIC: frozenset(
        {_A.READ, _A.WRITE, _A.CREATE, _A.DESCRIBE, _A.DELETE, _A.ALTER}
        | {_A.DESCRIBE_CONFIGS, _A.ALTER_CONFIGS}
    ),
    ResourceType.GROUP: frozenset(
        {_A.READ, _A.DESCRIBE, _A.DELETE, _A.DESCRIBE_CONFIGS, _A.ALTER_CONFIGS}
    ),
    ResourceType.CLUSTER: frozenset(
        {_A.CREATE, _A.CLUSTER_ACTION, _A.DESCRIBE_CONFIGS, _A.ALTER_CONFIGS}
        | {_A.IDEMPOTENT_WRITE, _A.ALTER, _A.DESCRIBE}
    ),
    ResourceType.TRANSACTIONAL_ID: frozenset({_A.DESCRIBE, _A.WRITE}),
    ResourceType.DELEGATION_TOKEN: frozenset({_A.DESCRIBE}),
    ResourceType.USER: frozenset({_A.CREATE_TOKENS, _A.DESCRIBE_TOKENS}),
}

# What to do next, by the broker's error (Kafka's codes by name).
_HINTS = {
    "security_disabled": "Set authorizer.class.name on the brokers "
    "(org.apache.kafka.metadata.authorizer.StandardAuthorizer).",
    "cluster_authorization_failed": "Managing ACLs needs Alter (to add or remove) or Describe "
    "(to list) on the cluster: log in as a super user (--command-config).",
    "invalid_request": "Check the resource name and the operation: not every operation "
    "applies to every resource.",
}

TopicOpt = Annotated[str | None, typer.Option("--topic", help="A topic name ('*': all).")]
GroupOpt = Annotated[str | None, typer.Option("--group", help="A consumer group id ('*': all).")]
TxnOpt = Annotated[
    str | None, typer.Option("--transactional-id", help="A transactional id ('*': all).")
]
ClusterOpt = Annotated[bool, typer.Option("--cluster", help="The cluster resource.")]
UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user-principal",
        help="A USER resource, e.g. User:alice (CreateTokens, DescribeTokens on it).",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--delegation-token", help="A DELEGATION_TOKEN resource: a token id."),
]
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
        "AlterConfigs, IdempotentWrite, CreateTokens, DescribeTokens or All. Repeatable.",
    ),
]
HostOpt = Annotated[str, typer.Option("--host", help="Client IP address the ACL applies to.")]


def _resource(
    topic: str | None,
    group: str | None,
    txn: str | None,
    cluster: bool,
    user: str | None = None,
    token: str | None = None,
) -> tuple[ResourceType, str] | None:
    chosen = [
        (kind, name)
        for kind, name in (
            (ResourceType.TOPIC, topic),
            (ResourceType.GROUP, group),
            (ResourceType.TRANSACTIONAL_ID, txn),
            (ResourceType.CLUSTER, CLUSTER_NAME if cluster else None),
            (ResourceType.USER, user),
            (ResourceType.DELEGATION_TOKEN, token),
        )
        if name is not None
    ]
    if len(chosen) > 1:
        raise CliError(
            "name one resource: --topic, --group, --transactional-id, --cluster, "
            "--user-principal or --delegation-token",
            "Run the command once per resource.",
            code=2,
        )
    return chosen[0] if chosen else None


def _operations(names: list[str] | None) -> list[AclOperation]:
    ops: list[AclOperation] = []
    for name in names or []:
        op = _OPERATIONS.get(name.replace("-", "").replace("_", "").lower())
        if op is None:
            raise CliError(f"unknown operation {name!r}", "See --help for the list.", code=2)
        ops.append(op)
    return ops


def _check_supported(kind: ResourceType, ops: list[AclOperation]) -> None:
    supported = SUPPORTED_OPERATIONS[kind] | {AclOperation.ALL}
    if wrong := [op for op in ops if op not in supported]:
        raise CliError(
            f"a {_name(ResourceType, kind)} has no operation "
            + ", ".join(_name(AclOperation, op) for op in wrong),
            f"A {_name(ResourceType, kind)} supports "
            + ", ".join(sorted(_name(AclOperation, op) for op in supported))
            + ".",
            code=2,
        )


def _name(enum_type: type[Any], value: int) -> str:
    try:
        member = enum_type(value)
    except ValueError:
        return str(value)
    return "".join(p.capitalize() for p in member.name.split("_"))


def _row(
    resource_type: int,
    name: str,
    pattern: int,
    principal: str,
    host: str,
    operation: int,
    permission: int,
) -> tuple[str, ...]:
    return (
        _name(ResourceType, resource_type),
        name,
        _name(PatternType, pattern),
        principal,
        host,
        _name(AclOperation, operation),
        _name(AclPermissionType, permission),
    )


def _show(rows: list[tuple[str, ...]], as_json: bool, empty: str) -> None:
    rows = sorted(rows)
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
    user_principal: UserOpt = None,
    delegation_token: TokenOpt = None,
    prefixed: PrefixedOpt = False,
    deny: Annotated[bool, typer.Option("--deny", help="A DENY ACL (default ALLOW).")] = False,
    host: HostOpt = "*",
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
) -> None:
    """Allow (or --deny) a principal operations on one resource."""
    from kio.schema.create_acls.v3 import request as schema  # here: slow to import
    from kio.static.primitive import i8

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        resource = _resource(
            topic, group, transactional_id, cluster, user_principal, delegation_token
        )
        ops = _operations(operation)
        if resource is None or not ops or not principal:
            raise CliError(
                "give --principal, at least one --operation, and a resource",
                "Example: artesian acls add --principal User:alice --operation Read --topic orders",
                code=2,
            )
        _check_supported(resource[0], ops)
        pattern = PatternType.PREFIXED if prefixed else PatternType.LITERAL
        permission = AclPermissionType.DENY if deny else AclPermissionType.ALLOW
        creations = tuple(
            schema.AclCreation(
                resource_type=i8(resource[0]),
                resource_name=resource[1],
                resource_pattern_type=i8(pattern),
                principal=principal,
                host=host,
                operation=i8(op),
                permission_type=i8(permission),
            )
            for op in ops
        )
        with WireClient.for_options(opts) as client:
            response = client.request(_CREATE_ACLS, 3, creations=creations)
        for r in response.results:
            check_answer(r.error_code, r.error_message, "adding ACLs", _HINTS)
    out.print(f"Added {len(creations)} ACL(s).")


def _filter(
    principal: str | None,
    operation: AclOperation,
    resource: tuple[ResourceType, str] | None,
    prefixed: bool,
    host: str | None = None,
    permission: AclPermissionType = AclPermissionType.ANY,
) -> dict[str, Any]:
    """A DescribeAcls / DeleteAcls filter's fields."""
    kind, name = resource if resource is not None else (ResourceType.ANY, None)
    pattern = (
        PatternType.PREFIXED
        if prefixed
        else PatternType.LITERAL
        if name is not None
        else PatternType.ANY
    )
    return {
        "resource_type_filter": kind,
        "resource_name_filter": name,
        "pattern_type_filter": pattern,
        "principal_filter": principal,
        "host_filter": host,
        "operation": operation,
        "permission_type": permission,
    }


@acls_app.command("list")
def list_(
    principal: PrincipalOpt = None,
    topic: TopicOpt = None,
    group: GroupOpt = None,
    transactional_id: TxnOpt = None,
    cluster: ClusterOpt = False,
    user_principal: UserOpt = None,
    delegation_token: TokenOpt = None,
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
        resource = _resource(
            topic, group, transactional_id, cluster, user_principal, delegation_token
        )
        fields = _filter(principal, AclOperation.ANY, resource, prefixed)
        with WireClient.for_options(opts) as client:
            response = client.request(_DESCRIBE_ACLS, 3, **fields)
        check_answer(response.error_code, response.error_message, "listing ACLs", _HINTS)
    rows = [
        _row(
            r.resource_type,
            r.resource_name,
            r.pattern_type,
            a.principal,
            a.host,
            a.operation,
            a.permission_type,
        )
        for r in response.resources
        for a in r.acls
    ]
    _show(rows, as_json, "No ACLs.")


@acls_app.command()
def remove(
    principal: PrincipalOpt = None,
    operation: OperationsOpt = None,
    topic: TopicOpt = None,
    group: GroupOpt = None,
    transactional_id: TxnOpt = None,
    cluster: ClusterOpt = False,
    user_principal: UserOpt = None,
    delegation_token: TokenOpt = None,
    prefixed: PrefixedOpt = False,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Only ACLs for this client address ('*' is itself a value)."),
    ] = None,
    allow: Annotated[bool, typer.Option("--allow", help="Only ALLOW ACLs.")] = False,
    deny: Annotated[bool, typer.Option("--deny", help="Only DENY ACLs.")] = False,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Remove the ACLs that match: a resource, a principal, operations (at least one of the
    three), narrowed by --host and --allow or --deny."""
    from kio.schema.delete_acls.v3 import request as schema  # here: slow to import

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        resource = _resource(
            topic, group, transactional_id, cluster, user_principal, delegation_token
        )
        if resource is None and not principal and not operation:
            raise CliError(
                "name what to remove: a resource, --principal or --operation",
                "To see what exists: artesian acls list",
                code=2,
            )
        if allow and deny:
            raise CliError("give --allow or --deny, not both", code=2)
        permission = (
            AclPermissionType.ALLOW
            if allow
            else AclPermissionType.DENY
            if deny
            else AclPermissionType.ANY
        )
        filters = tuple(
            schema.DeleteAclsFilter(**_filter(principal, op, resource, prefixed, host, permission))
            for op in _operations(operation) or [AclOperation.ANY]
        )
        with WireClient.for_options(opts) as client:
            response = client.request(_DELETE_ACLS, 3, filters=filters)
        rows = []
        for result in response.filter_results:
            check_answer(result.error_code, result.error_message, "removing ACLs", _HINTS)
            for m in result.matching_acls:
                check_answer(m.error_code, m.error_message, "removing ACLs", _HINTS)
            rows += [
                _row(
                    m.resource_type,
                    m.resource_name,
                    m.pattern_type,
                    m.principal,
                    m.host,
                    m.operation,
                    m.permission_type,
                )
                for m in result.matching_acls
            ]
    _show(rows, as_json, "No ACL matched.")
