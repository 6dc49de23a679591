"""DescribeConfigs (32), AlterConfigs (33) and IncrementalAlterConfigs (44).

Topic overrides, dynamic broker configs and consumer groups' own configs are metadata
records (ConfigRecord). A BROKER resource is named by a node id (that broker's own dynamic
configs) or "" (the cluster-wide dynamic default); only configs that may change while a
broker runs are accepted, as in Kafka. A GROUP resource (KIP-848) is a consumer group's
session timeout and heartbeat interval (``config/group.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker import broker_loggers
from artesian.broker.handlers._authz import (
    CLUSTER_DENIED,
    GROUP_DENIED,
    TOPIC_DENIED,
    AclOperation,
    ResourceType,
    authorized,
    cluster_authorized,
)
from artesian.broker.handlers._build import make, response_module
from artesian.config.broker import BROKER_CONFIG_NAMES, BROKER_CONFIGS, check_connection_limits
from artesian.config.client_metrics import (
    CLIENT_METRICS_CONFIGS,
    describe_client_metrics,
    validate_client_metrics,
)
from artesian.config.definitions import (
    ConfigError,
    ConfigSource,
    DynamicConfigError,
    InvalidConfigError,
    UnknownConfigError,
    format_value,
    parse,
)
from artesian.config.group import GROUP_CONFIGS, describe_group_configs, validate_group_configs
from artesian.config.resolve import (
    ConfigEntry,
    apply_incremental,
    describe_broker_configs,
    describe_topic_configs,
    effective_topic_config,
    validate_topic_overrides,
)
from artesian.config.topic import TOPIC_CONFIGS
from artesian.metadata.controller import ControllerError, validate_topic_name
from artesian.metadata.image import CLIENT_METRICS_RESOURCE, GROUP_RESOURCE
from artesian.tenancy.topic_policy import set_by_the_platform, topic_config_violation

DESCRIBE_CONFIGS = 32
ALTER_CONFIGS = 33
INCREMENTAL_ALTER_CONFIGS = 44

TOPIC = 2
_DELETE = 1  # IncrementalAlterConfigs operation
BROKER = 4
BROKER_LOGGER = 8
GROUP = GROUP_RESOURCE
CLIENT_METRICS = CLIENT_METRICS_RESOURCE

log = logging.getLogger("artesian.admin")


def _denied(ctx: Any, res: Any, operation: AclOperation) -> tuple[ErrorCode, str] | None:
    """Kafka's checks: ``operation`` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on the topic for a
    TOPIC resource, on the group for a GROUP one, on the cluster for BROKER and BROKER_LOGGER
    ones. Other types are refused further on as they are without an authorizer. A logical
    cluster's principal may read the brokers' configs and change nothing beyond its own
    topics and groups."""
    if ctx.logical_cluster is not None and res.resource_type not in (TOPIC, GROUP):
        readable = res.resource_type == BROKER and operation == AclOperation.DESCRIBE_CONFIGS
        if not readable:
            return ErrorCode.cluster_authorization_failed, CLUSTER_DENIED
    if ctx.broker.authorizer is None:
        return None
    if res.resource_type == TOPIC:
        if not authorized(ctx, operation, ResourceType.TOPIC, res.resource_name):
            return ErrorCode.topic_authorization_failed, TOPIC_DENIED
    elif res.resource_type == GROUP:
        if not authorized(ctx, operation, ResourceType.GROUP, res.resource_name):
            return ErrorCode.group_authorization_failed, GROUP_DENIED
    elif res.resource_type in (BROKER, BROKER_LOGGER, CLIENT_METRICS) and not cluster_authorized(
        ctx, operation
    ):
        return ErrorCode.cluster_authorization_failed, CLUSTER_DENIED
    return None


def describe(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    mod = response_module(DESCRIBE_CONFIGS, version)
    include_synonyms = getattr(request, "include_synonyms", False)
    include_docs = getattr(request, "include_documentation", False)
    results = []
    for res in request.resources:
        code, message, entries = ErrorCode.none, None, []
        names = list(res.configuration_keys) if res.configuration_keys is not None else None
        if denied := _denied(ctx, res, AclOperation.DESCRIBE_CONFIGS):
            code, message = denied
        elif res.resource_type == TOPIC:
            topic = broker.image.topics.get(res.resource_name)
            try:
                validate_topic_name(res.resource_name)
            except ControllerError as e:
                code, message = ErrorCode.invalid_topic_exception, e.message
            else:
                if topic is None:
                    code = ErrorCode.unknown_topic_or_partition
                    message = f"Topic '{res.resource_name}' does not exist."
                else:
                    entries = describe_topic_configs(
                        topic.configs, broker.config, names, include_synonyms, include_docs
                    )
                    if ctx.logical_cluster is not None:  # what the topic policy keeps
                        entries = [
                            dataclasses.replace(
                                e, read_only=e.read_only or set_by_the_platform(e.name)
                            )
                            for e in entries
                        ]
        elif res.resource_type == BROKER:
            try:
                _check_broker_resource(broker, res.resource_name)
            except ControllerError as e:
                code, message = e.code, e.message
            else:
                entries = describe_broker_configs(
                    broker.config,
                    names,
                    include_synonyms,
                    include_docs,
                    cluster_default=res.resource_name == "",
                )
        elif res.resource_type == CLIENT_METRICS:
            if not res.resource_name:
                code = ErrorCode.invalid_request
                message = "Client metrics subscription name must not be empty"
            else:
                entries = describe_client_metrics(
                    broker.image.client_metrics.get(res.resource_name, {}), names, include_synonyms
                )
        elif res.resource_type == BROKER_LOGGER:
            try:
                _check_logger_resource(broker, res.resource_name)
            except ControllerError as e:
                code, message = e.code, e.message
            else:
                entries = [
                    ConfigEntry(
                        name,
                        level,
                        read_only=False,
                        is_default=False,
                        source=ConfigSource.DYNAMIC_BROKER_LOGGER_CONFIG,
                        is_sensitive=False,
                    )
                    for name, level in broker_loggers.loggers().items()
                    if names is None or name in names
                ]
        elif res.resource_type == GROUP:
            if not res.resource_name:
                code, message = ErrorCode.invalid_request, "Group name must not be empty"
            else:
                entries = describe_group_configs(
                    broker.image.group_configs.get(res.resource_name, {}),
                    broker.config,
                    names,
                    include_synonyms,
                    include_docs,
                )
        else:
            code = ErrorCode.invalid_request
            message = f"Unsupported resource type {res.resource_type}"
        configs = tuple(
            make(
                mod.DescribeConfigsResourceResult,
                name=e.name,
                value=e.value,
                read_only=e.read_only,
                is_default=e.is_default,
                config_source=int(e.source),
                is_sensitive=e.is_sensitive,
                synonyms=tuple(
                    make(
                        mod.DescribeConfigsSynonym, name=s.name, value=s.value, source=int(s.source)
                    )
                    for s in e.synonyms
                ),
                config_type=int(e.config_type),
                documentation=e.documentation,
            )
            for e in entries
        )
        results.append(
            make(
                mod.DescribeConfigsResult,
                error_code=code,
                error_message=message,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
                configs=configs,
            )
        )
    return make(
        mod.DescribeConfigsResponse, throttle_time=datetime.timedelta(0), results=tuple(results)
    )


def _check_broker_resource(broker: Any, name: str) -> None:
    """A BROKER resource is this node's id, or "" for the cluster default (Kafka sends a
    node's resource to that node)."""
    if name not in ("", str(broker.node_id)):
        raise ControllerError(
            ErrorCode.invalid_request,
            f"Unexpected broker id, expected {broker.node_id} or empty string, but received {name}",
        )


def _check_logger_resource(broker: Any, name: str) -> None:
    """A BROKER_LOGGER resource is this node's id (Kafka's ConfigHelper)."""
    if not name:
        raise ControllerError(ErrorCode.invalid_request, "Broker id must not be empty")
    if name != str(broker.node_id):
        raise ControllerError(
            ErrorCode.invalid_request,
            f"Unexpected broker id, expected {broker.node_id} but received {name}",
        )


def _alter_loggers(broker: Any, res: Any, validate_only: bool) -> None:
    """IncrementalAlterConfigs of this broker's loggers: SET a level, DELETE one (the logger
    inherits again), all checked before any applies, as Kafka's ConfigAdminManager."""
    _check_logger_resource(broker, res.resource_name)
    changes = []
    for c in res.configs:
        if c.config_operation not in (0, _DELETE):
            operation = "APPEND" if c.config_operation == 2 else "SUBTRACT"
            raise ControllerError(
                ErrorCode.invalid_request,
                f"{operation} operation is not allowed for the BROKER_LOGGER resource",
            )
        reset = c.config_operation == _DELETE
        level = None if reset else c.value
        try:
            broker_loggers.check(c.name, level, reset)
        except broker_loggers.LoggerLevelError as e:
            code = ErrorCode.invalid_config if e.invalid_config else ErrorCode.invalid_request
            raise ControllerError(code, str(e)) from e
        changes.append((c.name, level))
    if not validate_only:
        for name, level in changes:
            broker_loggers.set_level(name, level)
        log.info("set log levels: %s", dict(changes))


def _wanted(
    res: Any,
    incremental: bool,
    current: Mapping[str, str],
    definitions: Any = TOPIC_CONFIGS,
    kind: str = "",
) -> dict[str, str]:
    """A resource's configs once the request is applied: its ops (IncrementalAlterConfigs),
    or its entries, which replace the whole set (AlterConfigs). Raises ConfigError,
    ValueError or ControllerError."""
    names = [c.name for c in res.configs]
    if len(set(names)) != len(names):
        raise ControllerError(ErrorCode.invalid_request, "Error due to duplicate config keys")
    nulls = [
        c.name
        for c in res.configs
        if c.value is None and not (incremental and c.config_operation == _DELETE)
    ]
    if nulls:
        raise ControllerError(
            ErrorCode.invalid_request, f"Null value not supported for : {','.join(nulls)}"
        )
    if incremental:
        ops = [(c.name, c.config_operation, c.value) for c in res.configs]
        return apply_incremental(current, ops, definitions, kind)
    return {c.name: c.value for c in res.configs}


@contextlib.contextmanager
def _as_controller_errors() -> Iterator[None]:
    """Kafka's codes for a config that cannot be: INVALID_REQUEST for one that may not change
    now or a malformed request, INVALID_CONFIG for a value that is not valid."""
    try:
        yield
    except DynamicConfigError as e:
        raise ControllerError(ErrorCode.invalid_request, str(e)) from e
    except ConfigError as e:
        raise ControllerError(ErrorCode.invalid_config, str(e)) from e
    except ValueError as e:
        raise ControllerError(ErrorCode.invalid_request, str(e)) from e


def _changes(current: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str | None]:
    """Records to write: what differs, and None for what is gone."""
    changes: dict[str, str | None] = {k: v for k, v in new.items() if current.get(k) != v}
    changes.update({k: None for k in current if k not in new})
    return changes


def _plan_broker_configs(broker: Any, res: Any, incremental: bool) -> list[Any]:
    """The records altering one BROKER resource's dynamic configs, planned from the image."""
    _check_broker_resource(broker, res.resource_name)
    current = broker.image.broker_configs.get(res.resource_name, {})
    with _as_controller_errors():
        new = _wanted(res, incremental, current, BROKER_CONFIG_NAMES)
        # What the request sets is checked; entries it leaves alone are not (one written by
        # another version must not block every change, nor its own deletion).
        setting = [
            c.name for c in res.configs if not (incremental and c.config_operation == _DELETE)
        ]
        broker.config.validate_dynamic({n: new[n] for n in setting if n in new})
        for n in setting:
            if n in new:  # stored as Kafka prints it, so DescribeConfigs shows what applies
                key = BROKER_CONFIG_NAMES[n]
                new[n] = format_value(key, parse(key, new[n])) or ""
            if n.endswith(_CREATION_RATE) and n in new and int(new[n]) <= 0:
                # Kafka's listener quota refuses it live (a static 0 stops new connections).
                raise InvalidConfigError(n, new[n], "Value must be > 0")
    changes = _changes(current, new)
    if _PER_IP in changes or _OVERRIDES in changes:
        with _as_controller_errors():
            _check_connection_limits(broker, res.resource_name, new)
    return broker.controller.plan_broker_configs(res.resource_name, changes)  # type: ignore[no-any-return]


_PER_IP, _OVERRIDES = "max.connections.per.ip", "max.connections.per.ip.overrides"
_CREATION_RATE = "max.connection.creation.rate"


def _check_connection_limits(broker: Any, resource: str, new: Mapping[str, str]) -> None:
    """The per-address limits a broker would run with once ``resource``'s layer is ``new``
    (its own layer over the cluster default over its static settings), checked together as
    Kafka checks them: 0 per address needs overrides."""
    defaults = broker.image.broker_configs.get("", {})
    own = broker.image.broker_configs.get(str(broker.node_id), {})
    layers = [own, new] if resource == "" else [new, defaults]

    def effective(name: str) -> str:
        for layer in layers:
            if name in layer:
                return str(layer[name])
        return str(broker.config.explicit.get(name, BROKER_CONFIGS[name].default))

    check_connection_limits(int(effective(_PER_IP)), effective(_OVERRIDES))


def _plan_topic_configs(
    broker: Any, res: Any, incremental: bool, tenant: bool = False
) -> list[Any]:
    """The records altering a topic's overrides, planned from the image. A ``tenant`` (a
    logical cluster's principal) changes only what the topic policy lets it, and its
    AlterConfigs, which replaces every override, keeps those the platform set."""
    # The name before the topic, as Kafka's ControllerConfigurationValidator.
    if not res.resource_name:
        raise ControllerError(ErrorCode.invalid_request, "Default topic resources are not allowed.")
    validate_topic_name(res.resource_name)
    topic = broker.image.topics.get(res.resource_name)
    if topic is None:
        raise ControllerError(
            ErrorCode.unknown_topic_or_partition,
            f"Topic '{res.resource_name}' does not exist.",
        )
    with _as_controller_errors():
        wanted = _wanted(res, incremental, topic.configs)
        if tenant and not incremental:
            kept = {k: v for k, v in topic.configs.items() if set_by_the_platform(k)}
            wanted = {**kept, **wanted}
        # An override this version does not know (another wrote it) is carried over as it
        # is; it must not block changes to the others.
        foreign = {
            k: v for k, v in wanted.items() if k not in TOPIC_CONFIGS and topic.configs.get(k) == v
        }
        validated = validate_topic_overrides(
            {k: v for k, v in wanted.items() if k not in foreign}, broker.config
        )
        old = {k: v for k, v in topic.configs.items() if k in TOPIC_CONFIGS}
        _check_remote_storage_disable(broker, old, validated)
        new = {**foreign, **validated}
    changes = _changes(topic.configs, new)
    if tenant and (problem := topic_config_violation(new, changes)):
        raise ControllerError(ErrorCode.policy_violation, problem)
    return broker.controller.plan_topic_configs(res.resource_name, changes)  # type: ignore[no-any-return]


def _plan_group_configs(broker: Any, res: Any, incremental: bool) -> list[Any]:
    """The records altering a consumer group's own configs, planned from the image."""
    if not res.resource_name:
        raise ControllerError(ErrorCode.invalid_request, "Group name must not be empty")
    current = broker.image.group_configs.get(res.resource_name, {})
    with _as_controller_errors():
        new = validate_group_configs(
            _wanted(res, incremental, current, GROUP_CONFIGS, "group"), broker.config, current
        )
    changes = _changes(current, new)
    return broker.controller.plan_group_configs(res.resource_name, changes)  # type: ignore[no-any-return]


def _plan_client_metrics(broker: Any, res: Any, incremental: bool) -> list[Any]:
    """The records altering a client metrics subscription (KIP-714)."""
    if not res.resource_name:
        raise ControllerError(ErrorCode.invalid_request, "Subscription name can't be empty")
    current = broker.image.client_metrics.get(res.resource_name, {})
    try:
        wanted = _wanted(res, incremental, current, CLIENT_METRICS_CONFIGS, "client metrics")
    except UnknownConfigError as e:  # Kafka's words and code for this resource
        raise ControllerError(
            ErrorCode.invalid_request, f"Unknown client metrics configuration: {e.name}"
        ) from e
    except ConfigError as e:
        raise ControllerError(ErrorCode.invalid_config, str(e)) from e
    with _as_controller_errors():
        new = validate_client_metrics(wanted)
    return broker.controller.plan_client_metrics(  # type: ignore[no-any-return]
        res.resource_name, _changes(current, new)
    )


def _alter(ctx: Any, request: Any, api_key: int, incremental: bool) -> Any:
    broker = ctx.broker
    mod = response_module(api_key, ctx.header.api_version)
    responses = []
    # A resource named twice is answered once and left as it is (ControllerApis).
    counts = Counter((res.resource_type, res.resource_name) for res in request.resources)
    answered_duplicates: set[tuple[int, str]] = set()
    for res in request.resources:
        code, message = ErrorCode.none, None
        key = (res.resource_type, res.resource_name)
        if counts[key] > 1:
            if key in answered_duplicates:
                continue
            answered_duplicates.add(key)
        try:
            if counts[key] > 1:
                raise ControllerError(ErrorCode.invalid_request, "Duplicate resource.")
            if denied := _denied(ctx, res, AclOperation.ALTER_CONFIGS):
                raise ControllerError(*denied)
            if res.resource_type == BROKER_LOGGER and incremental:
                _alter_loggers(broker, res, request.validate_only)  # nothing to commit
            else:
                plan, what = _planner(ctx, res)
                if request.validate_only:
                    plan(broker, res, incremental)
                else:
                    records = broker.plan_and_commit(
                        lambda res=res, plan=plan: plan(broker, res, incremental)
                    )
                    if records:
                        changes = {r.name: r.value for r in records}
                        log.info("altered the configs of %s: %s", what, changes)
        except ControllerError as e:
            code, message = e.code, e.message
        responses.append(
            make(
                mod.AlterConfigsResourceResponse,
                error_code=code,
                error_message=message,
                resource_type=res.resource_type,
                resource_name=res.resource_name,
            )
        )
    return make(
        mod.__dict__[_response_name(api_key)],
        throttle_time=datetime.timedelta(0),
        responses=tuple(responses),
    )


def _planner(ctx: Any, res: Any) -> tuple[Callable[[Any, Any, bool], list[Any]], str]:
    """The function that plans a resource's config records, and what to call it in logs."""
    name = res.resource_name
    if res.resource_type == TOPIC:
        tenant = ctx.logical_cluster is not None
        return functools.partial(_plan_topic_configs, tenant=tenant), f"topic {name}"
    if res.resource_type == BROKER:
        return _plan_broker_configs, f"broker {name}" if name else "cluster default"
    if res.resource_type == GROUP:
        return _plan_group_configs, f"group {name}"
    if res.resource_type == CLIENT_METRICS:
        return _plan_client_metrics, f"client metrics subscription {name}"
    raise ControllerError(
        ErrorCode.invalid_request, f"Unsupported resource type {res.resource_type}"
    )


def _check_remote_storage_disable(
    broker: Any, old: Mapping[str, str], new: Mapping[str, str]
) -> None:
    """Turning tiered storage off must say what becomes of the remote data (Kafka 3.9)."""
    was = effective_topic_config(old, broker.config)["remote.storage.enable"]
    now = effective_topic_config(new, broker.config)
    if was and not now["remote.storage.enable"] and not now["remote.log.delete.on.disable"]:
        raise InvalidConfigError(
            "remote.storage.enable",
            False,
            "It is invalid to disable remote storage without deleting remote data. If you want "
            "to keep the remote data and turn to read only, please set "
            "`remote.storage.enable=true,remote.log.copy.disable=true`. If you want to disable "
            "remote storage and delete all remote data, please set "
            "`remote.storage.enable=false,remote.log.delete.on.disable=true`.",
        )


def _response_name(api_key: int) -> str:
    return "AlterConfigsResponse" if api_key == ALTER_CONFIGS else "IncrementalAlterConfigsResponse"


def alter(ctx: Any, request: Any) -> Any:
    return _alter(ctx, request, ALTER_CONFIGS, incremental=False)


def incremental_alter(ctx: Any, request: Any) -> Any:
    return _alter(ctx, request, INCREMENTAL_ALTER_CONFIGS, incremental=True)


APIS = [
    (DESCRIBE_CONFIGS, 1, 4, describe),
    (ALTER_CONFIGS, 0, 2, alter),
    (INCREMENTAL_ALTER_CONFIGS, 0, 1, incremental_alter),
]
