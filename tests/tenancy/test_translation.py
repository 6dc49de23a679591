"""The logical cluster's translation without a broker (sans-I/O): embedded consumer
protocol documents, entries of other namespaces, swapped topic ids, refused APIs."""

from __future__ import annotations

import dataclasses
import datetime
import typing
import uuid

from kio.schema.errors import ErrorCode
from kio.schema.list_groups.v5 import response as list_groups
from kio.schema.metadata.v12 import request as metadata_request
from kio.schema.metadata.v12 import response as metadata_response

from artesian.broker.handlers import HANDLERS
from artesian.coordinator.group.consumer_protocol import (
    assignment_bytes,
    parse_assignment,
    parse_subscription,
)
from artesian.coordinator.serde import Writer
from artesian.protocol import api
from artesian.tenancy import LogicalCluster, logical_cluster, namespace_of, refused_api
from artesian.tenancy.logical_cluster import _assignment, _subscription

LKC = LogicalCluster("lkc-t1")


def _subscription_v3(topics: list[str], owned: list[tuple[str, int]], tail: bytes) -> bytes:
    w = Writer().i16(3).i32(len(topics))
    for t in topics:
        w.string(t)
    w.bytes_(b"\x00sticky\x01")  # user data: opaque, kept as sent
    by_topic: dict[str, list[int]] = {}
    for t, p in owned:
        by_topic.setdefault(t, []).append(p)
    w.i32(len(by_topic))
    for t, ps in by_topic.items():
        w.string(t).i32(len(ps))
        for p in ps:
            w.i32(p)
    w.i32(7).string("rack-a")  # generation, rack
    return bytes(w.out) + tail


def test_subscriptions_are_rewritten_and_later_fields_kept() -> None:
    tail = b"\x00\x00\x00\x2a"  # what a later version might append
    logical = _subscription_v3(["orders", "clicks"], [("orders", 0), ("orders", 3)], tail)
    physical = _subscription(logical, LKC.physical)
    parsed = parse_subscription(physical)
    assert parsed.topics == ("lkc-t1_orders", "lkc-t1_clicks")
    assert parsed.owned == {("lkc-t1_orders", 0), ("lkc-t1_orders", 3)}
    assert (parsed.user_data, parsed.generation_id, parsed.rack_id) == (
        b"\x00sticky\x01",
        7,
        "rack-a",
    )
    assert physical.endswith(tail)
    assert _subscription(physical, lambda n: LKC.logical(n) or n) == logical


def test_assignments_are_rewritten_and_bad_bytes_pass_unchanged() -> None:
    logical = assignment_bytes(frozenset({("orders", 1), ("clicks", 0)}), 3)
    physical = _assignment(logical, LKC.physical)
    assert parse_assignment(physical).partitions == {("lkc-t1_orders", 1), ("lkc-t1_clicks", 0)}
    assert _assignment(physical, lambda n: LKC.logical(n) or n) == logical
    for bad in (b"\x00", b"\x00\x03\x00\x00\x00\x05\x00\x02ab", b"\xff\xff\x00"):
        assert _assignment(bad, LKC.physical) == bad
        assert _subscription(bad, LKC.physical) == bad
    assert _assignment(b"", LKC.physical) == b""  # a member that got nothing yet


class _Lookups:
    def __init__(self, names: dict[uuid.UUID, str]) -> None:
        self.names = names

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        return self.names.get(topic_id)

    def group_protocol_type(self, group_id: str) -> str | None:
        return None


def test_other_namespaces_are_left_out_and_their_ids_name_nothing() -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    lookups = _Lookups({ours: "lkc-t1_a", theirs: "lkc-t2_a"})
    request = metadata_request.MetadataRequest(
        topics=(
            metadata_request.MetadataRequestTopic(name=None, topic_id=ours),
            metadata_request.MetadataRequestTopic(name=None, topic_id=theirs),
            metadata_request.MetadataRequestTopic(name="b", topic_id=None),
        ),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    translation = LKC.translate(3, request, lookups)
    sent = [(t.name, t.topic_id) for t in translation.request.topics]
    assert sent[0] == (None, ours)
    assert sent[1][1] not in (ours, theirs)  # swapped for an id no topic has
    assert sent[2] == ("lkc-t1_b", None)

    def entry(name: str | None, topic_id: uuid.UUID, code: ErrorCode) -> object:
        return metadata_response.MetadataResponseTopic(
            error_code=code,
            name=name,
            topic_id=topic_id,
            is_internal=False,
            partitions=(),
            topic_authorized_operations=-2147483648,
        )

    answer = metadata_response.MetadataResponse(
        throttle_time=datetime.timedelta(0),
        brokers=(),
        cluster_id="physical",
        controller_id=1,
        topics=(
            entry("lkc-t1_a", ours, ErrorCode.none),
            entry(None, sent[1][1], ErrorCode.unknown_topic_id),
            entry("lkc-t1_b", uuid.uuid4(), ErrorCode.none),
            entry("__consumer_offsets", uuid.uuid4(), ErrorCode.none),
            entry("lkc-t2_a", theirs, ErrorCode.none),
        ),
    )
    out = translation.response(answer)
    assert out.cluster_id == "lkc-t1"
    assert [(t.name, t.topic_id, t.error_code) for t in out.topics[:2]] == [
        ("a", ours, ErrorCode.none),
        (None, theirs, ErrorCode.unknown_topic_id),  # the tenant's own id, put back
    ]
    assert [t.name for t in out.topics] == ["a", None, "b"]


def test_listed_groups_of_other_namespaces_are_dropped() -> None:
    groups = tuple(
        list_groups.ListedGroup(
            group_id=g, protocol_type="consumer", group_state="Stable", group_type="classic"
        )
        for g in ("lkc-t1_g", "lkc-t2_g", "plain", "lkc-t1_h")
    )
    answer = list_groups.ListGroupsResponse(
        throttle_time=datetime.timedelta(0), error_code=ErrorCode.none, groups=groups
    )
    translation = LKC.translate(16, None, _Lookups({}))
    assert [g.group_id for g in translation.response(answer).groups] == ["g", "h"]


def test_namespaces_and_refused_apis() -> None:
    assert namespace_of("lkc-ab12_orders") == "lkc-ab12_"
    assert namespace_of("lkc-AB_orders") is None
    assert namespace_of("orders") is None
    assert namespace_of("lkc-ab12") is None
    assert refused_api(29, 3)  # DescribeAcls
    assert refused_api(24, 4) and not refused_api(24, 3)  # brokers' AddPartitionsToTxn
    assert not refused_api(0, 13) and not refused_api(18, 4)
    assert refused_api(30002, 0)  # AlterLogicalClusters itself


def test_every_translated_path_is_a_field_of_its_api() -> None:
    """A misspelt path would translate nothing, silently: each must name a field of some
    version the broker serves."""

    def has(cls: type, path: list[str]) -> bool:
        field = {f.name: f for f in dataclasses.fields(cls)}.get(path[0])
        if field is None:
            return False
        if len(path) == 1:
            return True
        stack, inner = [typing.get_type_hints(cls)[path[0]]], []
        while stack:
            t = stack.pop()
            if dataclasses.is_dataclass(t):
                inner.append(t)
            else:
                stack.extend(typing.get_args(t))
        return any(has(c, path[1:]) for c in inner)

    for table, schema in (
        (logical_cluster._REQUEST_PATHS, api.request_class),
        (logical_cluster._RESPONSE_PATHS, api.response_class),
    ):
        for key, paths in table.items():
            entry = HANDLERS[key]
            classes = [
                c
                for v in range(entry.min_version, entry.max_version + 1)
                if (c := schema(key, v)) is not None
            ]
            for path, _kind in paths:
                assert any(has(c, path.split(".")) for c in classes), (key, path)
            assert not refused_api(key, entry.max_version), key  # a translated API is offered
