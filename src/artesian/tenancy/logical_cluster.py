"""A logical cluster's view of the shared cluster: requests in, answers out (sans-I/O).

Inbound, every topic name, group id and transactional id a tenant sends gets its cluster's
prefix (``lkc-ab12_orders``), a topic id of another namespace is swapped for one that names
nothing. (A subscription regex stays as sent: the group coordinator matches it against the
names of the group's own namespace, see namespace_of.) Outbound, prefixes come off,
entries of other namespaces (internal topics included) are dropped, swapped ids are put
back, the cluster id is the logical cluster's, and error messages lose the prefix too. The
classic consumer protocol's embedded subscriptions and assignments name topics too, and are
rewritten the same way.

APIs whose subjects span logical clusters (ACLs, quotas, SCRAM users, delegation tokens,
reassignments, log dirs, the brokers' own APIs, the share coordinator's, requests naming a
replica) are refused with CLUSTER_AUTHORIZATION_FAILED: they stay with the shared cluster's
operator.
"""

from __future__ import annotations

import datetime
import functools
import re
import struct
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Protocol, get_args

from kio.schema.errors import ErrorCode

from artesian.protocol.api import response_class

__all__ = [
    "LOGICAL_CLUSTER_ID",
    "PLACEMENT_IS_THE_PLATFORMS",
    "LogicalCluster",
    "Lookups",
    "Translation",
    "logical_cluster_id_of",
    "namespace_of",
    "refusal_response",
    "refused_api",
]

LOGICAL_CLUSTER_ID = re.compile(r"lkc-[a-z0-9]{1,32}")
# Names that begin with a logical cluster's id and "_" are that logical cluster's.
_NAMESPACED = re.compile(f"({LOGICAL_CLUSTER_ID.pattern})_")

# What a tenant may call, with the highest version (None: every version the broker has).
# AddPartitionsToTxn v4+ is the brokers' batched form (KIP-890).
_ALLOWED: dict[int, int | None] = {
    key: None
    for key in (
        0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 28,
        32, 33, 36, 37, 42, 44, 47, 60, 61, 65, 66, 68, 69, 71, 72, 75, 76, 77, 78, 79, 90,
        91, 92,
    )
} | {24: 3}  # fmt: skip

_TOPIC, _GROUP, _TXN, _TOPIC_ID = "topic", "group", "txn", "topic_id"
# Config resources by Kafka's type id whose names are namespaced.
_NAMESPACED_RESOURCES = frozenset({2, 32})

# Where each API names things, as field paths (a path steps into every element of an
# array). A path a version lacks is skipped.
_REQUEST_PATHS: dict[int, tuple[tuple[str, str], ...]] = {
    # Produce's view is decoded by hand (see inbound); Fetch checks its topic ids itself,
    # since its answer is encoded by hand too.
    1: (("topics.topic", _TOPIC), ("forgotten_topics_data.topic", _TOPIC)),
    2: (("topics.name", _TOPIC),),
    3: (("topics.name", _TOPIC), ("topics.topic_id", _TOPIC_ID)),
    8: (("group_id", _GROUP), ("topics.name", _TOPIC), ("topics.topic_id", _TOPIC_ID)),
    9: (
        ("group_id", _GROUP),
        ("topics.name", _TOPIC),
        ("groups.group_id", _GROUP),
        ("groups.topics.name", _TOPIC),
        ("groups.topics.topic_id", _TOPIC_ID),
    ),
    11: (("group_id", _GROUP),),
    12: (("group_id", _GROUP),),
    13: (("group_id", _GROUP),),
    14: (("group_id", _GROUP),),
    15: (("groups", _GROUP),),
    19: (("topics.name", _TOPIC),),
    20: (("topic_names", _TOPIC), ("topics.name", _TOPIC), ("topics.topic_id", _TOPIC_ID)),
    21: (("topics.name", _TOPIC),),
    22: (("transactional_id", _TXN),),
    23: (("topics.topic", _TOPIC),),
    24: (("v3_and_below_transactional_id", _TXN), ("v3_and_below_topics.name", _TOPIC)),
    25: (("transactional_id", _TXN), ("group_id", _GROUP)),
    26: (("transactional_id", _TXN),),
    28: (("transactional_id", _TXN), ("group_id", _GROUP), ("topics.name", _TOPIC)),
    37: (("topics.name", _TOPIC),),
    42: (("groups_names", _GROUP),),
    47: (("group_id", _GROUP), ("topics.name", _TOPIC)),
    61: (("topics.name", _TOPIC),),
    65: (("transactional_ids", _TXN),),
    68: (
        ("group_id", _GROUP),
        ("subscribed_topic_names", _TOPIC),
        ("topic_partitions.topic_id", _TOPIC_ID),
    ),
    69: (("group_ids", _GROUP),),
    75: (("topics.name", _TOPIC), ("cursor.topic_name", _TOPIC)),
    # Share groups (KIP-932); the share coordinator's own APIs (83-87) stay the brokers'.
    76: (("group_id", _GROUP), ("subscribed_topic_names", _TOPIC)),
    77: (("group_ids", _GROUP),),
    78: (
        ("group_id", _GROUP),
        ("topics.topic_id", _TOPIC_ID),
        ("forgotten_topics_data.topic_id", _TOPIC_ID),
    ),
    79: (("group_id", _GROUP), ("topics.topic_id", _TOPIC_ID)),
    90: (("groups.group_id", _GROUP), ("groups.topics.topic_name", _TOPIC)),
    91: (("group_id", _GROUP), ("topics.topic_name", _TOPIC)),
    92: (("group_id", _GROUP), ("topics.topic_name", _TOPIC)),
}

_RESPONSE_PATHS: dict[int, tuple[tuple[str, str], ...]] = {
    0: (("responses.name", _TOPIC), ("responses.topic_id", _TOPIC_ID)),
    2: (("topics.name", _TOPIC),),
    3: (("topics.name", _TOPIC), ("topics.topic_id", _TOPIC_ID)),
    8: (("topics.name", _TOPIC), ("topics.topic_id", _TOPIC_ID)),
    9: (
        ("topics.name", _TOPIC),
        ("groups.group_id", _GROUP),
        ("groups.topics.name", _TOPIC),
        ("groups.topics.topic_id", _TOPIC_ID),
    ),
    10: (("coordinators.key", _GROUP),),
    15: (("groups.group_id", _GROUP),),
    16: (("groups.group_id", _GROUP),),
    19: (("topics.name", _TOPIC),),
    20: (("responses.name", _TOPIC), ("responses.topic_id", _TOPIC_ID)),
    21: (("topics.name", _TOPIC),),
    23: (("topics.topic", _TOPIC),),
    24: (("results_by_topic_v3_and_below.name", _TOPIC),),
    28: (("topics.name", _TOPIC),),
    37: (("results.name", _TOPIC),),
    42: (("results.group_id", _GROUP),),
    47: (("topics.name", _TOPIC),),
    61: (("topics.name", _TOPIC),),
    65: (
        ("transaction_states.transactional_id", _TXN),
        ("transaction_states.topics.topic", _TOPIC),
    ),
    66: (("transaction_states.transactional_id", _TXN),),
    68: (("assignment.topic_partitions.topic_id", _TOPIC_ID),),
    69: (
        ("groups.group_id", _GROUP),
        ("groups.members.subscribed_topic_names", _TOPIC),
        ("groups.members.assignment.topic_partitions.topic_name", _TOPIC),
        ("groups.members.target_assignment.topic_partitions.topic_name", _TOPIC),
    ),
    75: (("topics.name", _TOPIC), ("next_cursor.topic_name", _TOPIC)),
    76: (("assignment.topic_partitions.topic_id", _TOPIC_ID),),
    77: (
        ("groups.group_id", _GROUP),
        ("groups.members.subscribed_topic_names", _TOPIC),
        ("groups.members.assignment.topic_partitions.topic_name", _TOPIC),
    ),
    78: (("responses.topic_id", _TOPIC_ID),),
    79: (("responses.topic_id", _TOPIC_ID),),
    90: (
        ("groups.group_id", _GROUP),
        ("groups.topics.topic_name", _TOPIC),
        ("groups.topics.topic_id", _TOPIC_ID),
    ),
    91: (("responses.topic_name", _TOPIC), ("responses.topic_id", _TOPIC_ID)),
    92: (("responses.topic_name", _TOPIC), ("responses.topic_id", _TOPIC_ID)),
}

_CONSUMER = "consumer"
_DROP: Any = object()  # an outbound entry of another namespace: left out of its array
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


def namespace_of(name: str) -> str | None:
    """The prefix of the logical cluster a physical name belongs to (None: the shared
    cluster's own). Coordinators use it where they resolve names themselves: a group's
    subscription regex matches the names its members know."""
    m = _NAMESPACED.match(name)
    return m.group() if m is not None else None


def logical_cluster_id_of(name: str) -> str | None:
    """The id of the logical cluster a physical name belongs to (None: the shared
    cluster's own)."""
    m = _NAMESPACED.match(name)
    return m.group(1) if m is not None else None


def refused_api(api_key: int, api_version: int, request: Any = None) -> bool:
    """Is this request closed to a logical cluster's principals? Beyond the APIs refused
    whole, a Fetch, ListOffsets or OffsetForLeaderEpoch naming a replica (a follower's
    request, which may read past the high watermark and move the ISR) is refused."""
    if api_key not in _ALLOWED:
        return True
    highest = _ALLOWED[api_key]
    if highest is not None and api_version > highest:
        return True
    if api_key in (1, 2, 23) and request is not None:
        state = getattr(request, "replica_state", None)
        replica = state.replica_id if state is not None else getattr(request, "replica_id", -1)
        return bool(replica >= 0)
    return False


_REFUSED = "a logical cluster's principal may not do this; ask the shared cluster's operator"
# CreateTopics and CreatePartitions with replica assignments (POLICY_VIOLATION).
PLACEMENT_IS_THE_PLATFORMS = (
    "a logical cluster's topics are placed by the platform: give a partition count and a "
    "replication factor, not replica assignments"
)


def refusal_response(api_key: int, api_version: int, request: Any) -> Any | None:
    """The answer refusing a request item by item, for the APIs that have no top-level
    error code (CLUSTER_AUTHORIZATION_FAILED on each, as an authorizer answers); None for
    the others, whose error response says it once."""
    cls = response_class(api_key, api_version)
    if cls is None:
        return None
    mod = sys.modules[cls.__module__]
    code = ErrorCode.cluster_authorization_failed
    error = {"error_code": code, "error_message": _REFUSED}
    match api_key:
        case 30:  # CreateAcls
            items = {"results": [_make(mod.AclCreationResult, **error) for _ in request.creations]}
        case 31:  # DeleteAcls
            items = {
                "filter_results": [
                    _make(mod.DeleteAclsFilterResult, **error, matching_acls=())
                    for _ in request.filters
                ]
            }
        case 49:  # AlterClientQuotas
            items = {
                "entries": [
                    _make(
                        mod.EntryData,
                        **error,
                        entity=tuple(
                            _make(
                                mod.EntityData, entity_type=e.entity_type, entity_name=e.entity_name
                            )
                            for e in entry.entity
                        ),
                    )
                    for entry in request.entries
                ]
            }
        case 51:  # AlterUserScramCredentials
            users = [d.name for d in request.deletions] + [u.name for u in request.upsertions]
            items = {
                "results": [
                    _make(mod.AlterUserScramCredentialsResult, user=u, **error) for u in users
                ]
            }
        case _:
            return None
    return _make(
        cls, throttle_time=datetime.timedelta(0), **{k: tuple(v) for k, v in items.items()}
    )


def _make(cls: type, **values: Any) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


class Lookups(Protocol):
    """What the translation asks the broker."""

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        """The physical name of the topic with this id, None for none."""
        ...

    def group_protocol_type(self, group_id: str) -> str | None:
        """A classic group's protocol type ("consumer", "connect", ...), None if unknown."""
        ...


@dataclass(frozen=True, slots=True)
class LogicalCluster:
    id: str

    @property
    def prefix(self) -> str:
        return self.id + "_"

    def physical(self, name: str) -> str:
        """The shared cluster's name for one of ours (the empty name stays invalid)."""
        return self.prefix + name if name else name

    def logical(self, name: str) -> str | None:
        """Our name for a physical one; None when it is another namespace's."""
        if name.startswith(self.prefix):
            return name[len(self.prefix) :]
        return None

    def owns(self, name: str) -> bool:
        return name.startswith(self.prefix)

    def translate(self, api_key: int, request: Any, lookups: Lookups) -> Translation:
        return Translation(self, api_key, lookups).inbound(request)


@dataclass(slots=True)
class Translation:
    """One request's trip through a logical cluster's view: ``request`` is what the handler
    gets; ``response()`` turns its answer back into the tenant's names."""

    cluster: LogicalCluster
    api_key: int
    lookups: Lookups
    request: Any = None
    # Topic ids of other namespaces, swapped for ids naming nothing: swapped -> original.
    swapped_ids: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    consumer_protocol: bool = False

    def inbound(self, request: Any) -> Translation:
        lc = self.cluster
        for path, kind in _REQUEST_PATHS.get(self.api_key, ()):
            request = _rewrite(request, path.split("."), self._inbound_leaf(kind))
        match self.api_key:
            case 0:  # Produce: the hand-decoded view is this request's own, rewritten in place
                if request.transactional_id:
                    request.transactional_id = lc.physical(request.transactional_id)
                for t in request.topics:
                    t.name = lc.physical(t.name)
                    if t.topic_id is not None:
                        t.topic_id = self._swap_foreign_id(t.topic_id)
            case 10:  # FindCoordinator: group (0) and transaction (1) keys are ours
                if getattr(request, "key_type", 0) in (0, 1):  # v0: groups only
                    if hasattr(request, "coordinator_keys"):
                        keys = tuple(lc.physical(k) for k in request.coordinator_keys)
                        request = replace(request, coordinator_keys=keys)
                    else:
                        request = replace(request, key=lc.physical(request.key))
            case 11:  # JoinGroup: the members' subscriptions
                self.consumer_protocol = request.protocol_type == _CONSUMER
                if self.consumer_protocol:
                    protocols = tuple(
                        replace(p, metadata=_subscription(p.metadata, lc.physical))
                        for p in request.protocols
                    )
                    request = replace(request, protocols=protocols)
            case 14:  # SyncGroup: the leader's assignments
                protocol_type = getattr(request, "protocol_type", None)
                if protocol_type is None:  # before v5 only the group knows
                    protocol_type = self.lookups.group_protocol_type(request.group_id)
                self.consumer_protocol = protocol_type == _CONSUMER
                if self.consumer_protocol:
                    assignments = tuple(
                        replace(a, assignment=_assignment(a.assignment, lc.physical))
                        for a in request.assignments
                    )
                    request = replace(request, assignments=assignments)
            case 32 | 33 | 44:  # configs: topic and group resources are ours
                resources = tuple(
                    replace(r, resource_name=lc.physical(r.resource_name))
                    if r.resource_type in _NAMESPACED_RESOURCES
                    else r
                    for r in request.resources
                )
                request = replace(request, resources=resources)
        self.request = request
        return self

    def response(self, response: Any) -> Any:
        lc = self.cluster
        for path, kind in _RESPONSE_PATHS.get(self.api_key, ()):
            response = _rewrite(response, path.split("."), self._outbound_leaf(kind))
        for steps in _message_paths(response.__class__):
            response = _rewrite(response, list(steps), self._unprefixed)
        if hasattr(response, "cluster_id") and response.cluster_id is not None:
            response = replace(response, cluster_id=lc.id)  # Metadata, DescribeCluster
        match self.api_key:
            case 11 if self.consumer_protocol:
                members = tuple(
                    replace(m, metadata=_subscription(m.metadata, self._logical_name))
                    for m in response.members
                )
                response = replace(response, members=members)
            case 14 if self.consumer_protocol:
                response = replace(
                    response, assignment=_assignment(response.assignment, self._logical_name)
                )
            case 15:
                response = replace(response, groups=tuple(map(self._described, response.groups)))
            case 32 | 33 | 44:
                attribute = "results" if self.api_key == 32 else "responses"
                results = tuple(
                    replace(r, resource_name=self._logical_name(r.resource_name))
                    if r.resource_type in _NAMESPACED_RESOURCES
                    else r
                    for r in getattr(response, attribute)
                )
                response = replace(response, **{attribute: results})
        return response

    def _described(self, group: Any) -> Any:
        if group.protocol_type != _CONSUMER:
            return group
        members = tuple(
            replace(
                m,
                member_metadata=_subscription(m.member_metadata, self._logical_name),
                member_assignment=_assignment(m.member_assignment, self._logical_name),
            )
            for m in group.members
        )
        return replace(group, members=members)

    def _unprefixed(self, message: Any) -> Any:
        """An error message as the tenant would have it: a handler names the topic or group
        it failed on by its physical name."""
        prefix = self.cluster.prefix
        if isinstance(message, str) and prefix in message:
            # Only where a name starts: a tenant's own name may hold its prefix further in.
            return re.sub(rf"(?<![A-Za-z0-9._-]){re.escape(prefix)}", "", message)
        return message

    def _logical_name(self, name: str) -> str:
        logical = self.cluster.logical(name)
        return name if logical is None else logical

    def _inbound_leaf(self, kind: str) -> Callable[[Any], Any]:
        lc = self.cluster
        if kind == _TOPIC_ID:
            return self._swap_foreign_id
        return lambda v: lc.physical(v) if isinstance(v, str) else v

    def _outbound_leaf(self, kind: str) -> Callable[[Any], Any]:
        lc = self.cluster
        if kind == _TOPIC_ID:
            return lambda v: self.swapped_ids.get(v, v)

        def name(v: Any) -> Any:
            if not isinstance(v, str) or not v:
                return v
            logical = lc.logical(v)
            return _DROP if logical is None else logical

        return name

    def _swap_foreign_id(self, topic_id: Any) -> Any:
        if not isinstance(topic_id, uuid.UUID):
            return topic_id
        name = self.lookups.topic_name(topic_id)
        if name is None or self.cluster.owns(name):
            return topic_id
        swapped = uuid.uuid4()
        self.swapped_ids[swapped] = topic_id
        return swapped


@functools.cache
def _message_paths(cls: Any) -> tuple[tuple[str, ...], ...]:
    """Where a response entity carries error messages (``error_message``,
    ``batch_index_error_message``, ...), found once per class from kio's field types."""
    paths: list[tuple[str, ...]] = []
    for f in fields(cls):
        if f.name.endswith("error_message"):
            paths.append((f.name,))
            continue
        if (entity := _entity_in(f.type)) is not None:
            paths.extend((f.name, *p) for p in _message_paths(entity))
    return tuple(paths)


def _entity_in(annotation: Any) -> type | None:
    """The entity class a field holds, alone, in an array or optional."""
    if isinstance(annotation, type) and is_dataclass(annotation):
        return annotation
    for arg in get_args(annotation):
        if (entity := _entity_in(arg)) is not None:
            return entity
    return None


def _rewrite(obj: Any, path: list[str], leaf: Callable[[Any], Any]) -> Any:
    """``obj`` with the field at ``path`` passed through ``leaf``; arrays are stepped into
    element by element, and an element whose leaf says _DROP is left out. A nested entity
    (not in an array) that would be dropped becomes None."""
    name = path[0]
    value = getattr(obj, name, _DROP)
    if value is _DROP or value is None:
        return obj  # not in this version, or null
    rest = path[1:]
    if not rest:
        if isinstance(value, tuple):
            mapped = tuple(v for v in map(leaf, value) if v is not _DROP)
        else:
            mapped = leaf(value)
            if mapped is _DROP:
                return _DROP
    elif isinstance(value, tuple):
        mapped = tuple(r for r in (_rewrite(v, rest, leaf) for v in value) if r is not _DROP)
    else:
        mapped = _rewrite(value, rest, leaf)
        if mapped is _DROP:
            mapped = None
    if mapped == value:
        return obj
    return replace(obj, **{name: mapped})


# The classic consumer protocol's embedded documents (ConsumerProtocolSubscription and
# ConsumerProtocolAssignment): topic names are rewritten, every other byte is kept as sent
# (user data, generation, rack, and whatever later versions append). Bytes that do not
# parse are passed on unchanged: the group's members and the coordinator judge them.


def _subscription(data: bytes, rename: Callable[[str], str]) -> bytes:
    try:
        out = bytearray()
        pos = _copy(data, 0, 2, out)  # version
        version = _I16.unpack_from(data, 0)[0]
        if version < 0:
            return data
        pos = _strings(data, pos, out, rename)  # topics
        pos = _blob(data, pos, out)  # user data
        if version >= 1:
            pos = _partitions(data, pos, out, rename)  # owned partitions
        out += data[pos:]
        return bytes(out)
    except (ValueError, struct.error, UnicodeDecodeError):
        return data


def _assignment(data: bytes, rename: Callable[[str], str]) -> bytes:
    if not data:
        return data
    try:
        out = bytearray()
        pos = _copy(data, 0, 2, out)
        if _I16.unpack_from(data, 0)[0] < 0:
            return data
        pos = _partitions(data, pos, out, rename)
        out += data[pos:]
        return bytes(out)
    except (ValueError, struct.error, UnicodeDecodeError):
        return data


def _copy(data: bytes, pos: int, n: int, out: bytearray) -> int:
    if pos + n > len(data):
        raise ValueError("truncated")
    out += data[pos : pos + n]
    return pos + n


def _string(data: bytes, pos: int, out: bytearray, rename: Callable[[str], str]) -> int:
    n: int = _I16.unpack_from(data, pos)[0]
    if n < 0:
        return _copy(data, pos, 2, out)
    if pos + 2 + n > len(data):
        raise ValueError("truncated")
    name = rename(bytes(data[pos + 2 : pos + 2 + n]).decode())
    raw = name.encode()
    out += _I16.pack(len(raw)) + raw
    return pos + 2 + n


def _count(data: bytes, pos: int, out: bytearray) -> tuple[int, int]:
    (n,) = _I32.unpack_from(data, pos)
    out += data[pos : pos + 4]
    return max(n, 0), pos + 4


def _strings(data: bytes, pos: int, out: bytearray, rename: Callable[[str], str]) -> int:
    n, pos = _count(data, pos, out)
    for _ in range(n):
        pos = _string(data, pos, out, rename)
    return pos


def _blob(data: bytes, pos: int, out: bytearray) -> int:
    (n,) = _I32.unpack_from(data, pos)
    return _copy(data, pos, 4 + max(n, 0), out)


def _partitions(data: bytes, pos: int, out: bytearray, rename: Callable[[str], str]) -> int:
    topics, pos = _count(data, pos, out)
    for _ in range(topics):
        pos = _string(data, pos, out, rename)
        n, pos = _count(data, pos, out)
        pos = _copy(data, pos, 4 * n, out)
    return pos
