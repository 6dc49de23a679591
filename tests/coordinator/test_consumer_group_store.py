"""The consumer group coordinator (KIP-848) in process, against an in-memory
__consumer_offsets that can fail: what it writes, what a reload makes of it, and how a failed
write is repaired by the next one."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from artesian.coordinator.group import records as rec
from artesian.coordinator.group.consumer_coordinator import ConsumerGroupConfig, ConsumerHeartbeat
from artesian.coordinator.group.consumer_group_records import ConsumerGroupKey
from artesian.coordinator.group.coordinator import GroupConfig, GroupCoordinator, JoinRequest

NONE, COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, UNKNOWN_MEMBER_ID = 0, 15, 69, 25
TOPIC_IDS = {"t": uuid.UUID(int=1)}


@dataclass
class Logged:
    key: bytes | None
    value: bytes | None
    producer_id: int = -1
    control: bool = False


class FlakyTopic:
    """__consumer_offsets in memory; ``fail`` appends in a row raise."""

    def __init__(self) -> None:
        self.log: list[Logged] = []
        self.fail = 0

    def append(
        self,
        partition: int,
        records: list[tuple[bytes, bytes | None]],
        producer_id: int = -1,
        producer_epoch: int = -1,
    ) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.log.extend(Logged(k, v) for k, v in records)

    def read(self, partition: int) -> Iterator[Logged]:
        return iter(list(self.log))

    def ensure(self) -> None:
        pass


class Topics:
    def partition_count(self, topic: str) -> int:
        return 4 if topic == "t" else 0

    def names(self) -> Iterable[str]:
        return ["t"]

    def version(self) -> int:
        return 1

    def viewer(self) -> str | None:
        return None

    def describable(self, names: frozenset[str]) -> frozenset[str]:
        return names


def _coordinator(topic: FlakyTopic) -> GroupCoordinator:
    names = {v: k for k, v in TOPIC_IDS.items()}
    gc = GroupCoordinator(
        GroupConfig(num_partitions=1, initial_rebalance_delay_ms=0),
        topic,
        consumer=ConsumerGroupConfig(),
        topic_id=TOPIC_IDS.get,
        topic_name=names.get,
    )
    gc.load([0])
    return gc


def _join(gc: GroupCoordinator, member: str) -> int:
    hb = ConsumerHeartbeat(
        "g",
        member,
        0,
        "c",
        "h",
        rebalance_timeout_ms=60_000,
        subscribed_topic_names=("t",),
        owned=frozenset(),
    )
    return gc.consumer_groups.heartbeat(hb, Topics()).error


def _heartbeat(gc: GroupCoordinator, member: str) -> int:
    m = gc.groups["g"].consumer.members[member]  # type: ignore[union-attr]
    hb = ConsumerHeartbeat("g", member, m.member_epoch, "c", "h", owned=m.assigned)
    return gc.consumer_groups.heartbeat(hb, Topics()).error


def _state(gc: GroupCoordinator) -> tuple[int, dict[str, tuple[int, frozenset]]]:
    cg = gc.groups["g"].consumer
    assert cg is not None
    return cg.group_epoch, {m.member_id: (m.member_epoch, m.assigned) for m in cg.members.values()}


def _stop(gc: GroupCoordinator) -> None:
    gc.shutdown()


def test_a_failed_write_is_repaired_by_the_next_one() -> None:
    async def run() -> None:
        topic = FlakyTopic()
        gc = _coordinator(topic)
        topic.fail = 1
        assert _join(gc, "a") == COORDINATOR_NOT_AVAILABLE
        member = gc.groups["g"].consumer.members["a"]  # type: ignore[union-attr]
        assert member.session_timer is not None  # it times out like any member
        assert topic.log == [] and gc.groups["g"].consumer.dirty  # type: ignore[union-attr]
        # The client retries its join: nothing looks changed in memory, yet all is written.
        assert _join(gc, "a") == NONE
        assert _heartbeat(gc, "a") == NONE
        # The whole state: the consumer group's records, and the tombstone of a classic
        # record it may have had (key version 2).
        kinds = {getattr(rec.parse_key(r.key), "kind", 2) for r in topic.log if r.key}
        assert kinds == {2, 3, 5, 6, 7, 8}
        reloaded = _coordinator(topic)
        assert _state(reloaded) == _state(gc)

        # b joins, then leaves while the log fails: the next write tombstones it.
        assert _join(gc, "b") == NONE
        topic.fail = 1
        assert _heartbeat_leave(gc, "b") == NONE  # gone in memory; the log is behind
        assert "b" not in gc.groups["g"].consumer.members  # type: ignore[union-attr]
        assert "b" in _state(_coordinator(topic))[1]  # the log still has it
        assert _heartbeat(gc, "a") == NONE
        assert _state(_coordinator(topic)) == _state(gc)
        for c in (gc, reloaded):
            _stop(c)

    asyncio.run(run())


def _heartbeat_leave(gc: GroupCoordinator, member: str) -> int:
    hb = ConsumerHeartbeat("g", member, -1, "c", "h")
    return gc.consumer_groups.heartbeat(hb, Topics()).error


def test_a_classic_group_of_another_protocol_is_never_taken_over() -> None:
    async def run() -> None:
        topic = FlakyTopic()
        gc = _coordinator(topic)
        join = asyncio.ensure_future(
            gc.join_group(
                JoinRequest(
                    "g",
                    "",
                    None,
                    "connect",
                    "h",
                    10_000,
                    10_000,
                    "connect",
                    [("default", b"")],
                    require_known_member_id=False,
                )
            )
        )
        result = await join
        assert result.error == NONE
        r = gc.consumer_groups.heartbeat(
            ConsumerHeartbeat(
                "g",
                "m",
                0,
                "c",
                "h",
                rebalance_timeout_ms=1000,
                subscribed_topic_names=("t",),
                owned=frozenset(),
            ),
            Topics(),
        )
        assert (r.error, r.message) == (
            GROUP_ID_NOT_FOUND,
            "Cannot upgrade classic group g to consumer group because the group does not use "
            "the consumer embedded protocol.",
        )
        _stop(gc)

    asyncio.run(run())


def test_keys_parse_back() -> None:
    from artesian.coordinator.group import consumer_group_records as cgr

    assert rec.parse_key(cgr.key(5, "g", "m")) == ConsumerGroupKey(5, "g", "m")
    assert rec.parse_key(cgr.key(3, "g")) == ConsumerGroupKey(3, "g", None)


def test_classic_member_metadata_is_written_as_kafka_writes_it() -> None:
    """ConsumerGroupMemberMetadataValue's tagged field 0 (ClassicMemberMetadata, a nullable
    struct): its size, a presence byte, then the struct, byte for byte as Kafka's generated
    code writes it; read back the same."""
    from artesian.coordinator.group import consumer_group_records as cgr
    from artesian.coordinator.group.consumer_group import ClassicMember

    value = cgr.MemberMetadataValue(
        None, None, "c", "h", ("t",), None, 300, None, ClassicMember(6000, (("range", b"\x01"),))
    )
    encoded = cgr.member_metadata_value(value)
    struct_ = (
        b"\x01"  # present
        + (6000).to_bytes(4, "big")  # SessionTimeoutMs
        + b"\x02"  # one protocol (compact array: n + 1)
        + b"\x06range"  # Name (compact string)
        + b"\x02\x01"  # Metadata (compact bytes)
        + b"\x00"  # the protocol's tagged fields
        + b"\x00"  # the struct's tagged fields
    )
    head = (
        b"\x00\x00"  # version
        + b"\x00\x00"  # InstanceId, RackId: null
        + b"\x02c\x02h"  # ClientId, ClientHost
        + b"\x02\x02t"  # SubscribedTopicNames
        + b"\x00"  # SubscribedTopicRegex: null
        + (300).to_bytes(4, "big")
        + b"\x00"  # ServerAssignor: null
    )
    assert encoded == head + b"\x01\x00" + bytes([len(struct_)]) + struct_
    assert cgr.parse_member_metadata_value(encoded) == value
    without = cgr.member_metadata_value(dataclasses.replace(value, classic=None))
    assert without == head + b"\x00"
    assert cgr.parse_member_metadata_value(without).classic is None
