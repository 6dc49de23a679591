"""The group coordinator's side of the share group admin APIs (KIP-932): a share group's start
offsets and lag (DescribeShareGroupOffsets), moving them (AlterShareGroupOffsets), and
dropping them (DeleteShareGroupOffsets, and DeleteGroups of a share group).

The state itself is at the share coordinators, reached through the persister. The
partitions whose state they hold are found by asking them about every partition of the
topics in question, one request per share coordinator (Kafka keeps a record of the topics
initialized instead). A group the coordinator does not know, yet with stored state (one
deleted while its state could not be), is known by that state.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v7 import request as lo
from kio.schema.types import TopicName
from kio.static.primitive import i8, i32, i64

from artesian.broker.internal_topic import SHARE_STATE_TOPIC
from artesian.coordinator.group.consumer_coordinator import StoreFailed
from artesian.coordinator.group.group_metadata import GroupMetadata
from artesian.metadata.image import INTERNAL_TOPICS
from artesian.share.persister import PersisterError, StateSummary
from artesian.share.records import ShareStateKey

if TYPE_CHECKING:
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.share")

NO_STATE = -1  # the start offset of a partition without state, as Kafka answers
LIST_OFFSETS, LATEST_TIMESTAMP = 2, -1


@dataclass(slots=True)
class PartitionOffset:
    partition: int
    start_offset: int = NO_STATE
    leader_epoch: int = 0
    lag: int = -1
    error: ErrorCode = ErrorCode.none
    message: str | None = None


class GroupError(Exception):
    """The whole request fails for the group (NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND, ...)."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


def _keys(broker: Broker, group_id: str, topics: dict[str, list[int]]) -> list[ShareStateKey]:
    """The state keys of the named partitions that exist."""
    image = broker.image
    return [
        ShareStateKey(group_id, topic.topic_id, index)
        for name, indexes in topics.items()
        if (topic := image.topics.get(name)) is not None
        for index in indexes
        if index in topic.partitions
    ]


async def stored_states(
    broker: Broker, group_id: str, topics: list[str] | None = None
) -> dict[ShareStateKey, StateSummary]:
    """The partitions of ``topics`` (every topic but the internal ones when None) the group
    has state for."""
    image = broker.image
    if SHARE_STATE_TOPIC not in image.topics:
        return {}  # no share group has ever stored anything
    names = [n for n in image.topics if n not in INTERNAL_TOPICS] if topics is None else topics
    keys = _keys(
        broker, group_id, {n: list(image.topics[n].partitions) for n in names if n in image.topics}
    )
    summaries = await broker.share_partition_manager.persister.summaries(keys)
    found = {}
    for key, summary in summaries.items():
        if isinstance(summary, PersisterError):
            raise GroupError(summary.code, str(summary))
        if summary is not None and summary.start_offset >= 0:
            found[key] = summary
    return found


async def describe(
    broker: Broker,
    group_id: str,
    topics: dict[str, list[int]] | None,
    with_lag: bool,
    among: list[str] | None = None,
) -> dict[str, tuple[uuid.UUID | None, list[PartitionOffset]]]:
    """Each topic's id and its partitions' start offsets (and lag): the named partitions,
    or with ``topics`` None every partition the group has state for (in the topics
    ``among``, when given). A topic or partition that does not exist is answered with no
    state, as Kafka does."""
    image = broker.image
    persister = broker.share_partition_manager.persister
    if topics is None:
        stored = await stored_states(broker, group_id, among)
        wanted: dict[str, list[int]] = {}
        for key in stored:
            found = image.topics_by_id.get(key.topic_id)
            if found is not None:  # else deleted while the summaries were asked for
                wanted.setdefault(found.name, []).append(key.partition)
        summaries: dict[ShareStateKey, object] = dict(stored)
    else:
        wanted = topics
        summaries = dict(await persister.summaries(_keys(broker, group_id, topics)))
    latest = await _latest_offsets(broker, wanted) if with_lag else {}
    described: dict[str, tuple[uuid.UUID | None, list[PartitionOffset]]] = {}
    for name, indexes in sorted(wanted.items()):
        topic = image.topics.get(name)
        offsets = []
        for index in sorted(indexes):
            offset = PartitionOffset(index)
            summary = (
                summaries.get(ShareStateKey(group_id, topic.topic_id, index))
                if topic is not None
                else None
            )
            if isinstance(summary, PersisterError):
                offset.error, offset.message = summary.code, str(summary)
            elif isinstance(summary, StateSummary) and summary.start_offset >= 0:
                offset.start_offset = summary.start_offset
                offset.leader_epoch = summary.leader_epoch
                end = latest.get((name, index))
                if isinstance(end, ErrorCode):  # an IntEnum: before the int case
                    offset.error = end
                elif end is not None and summary.delivery_complete_count >= 0:
                    # Records in flight count as lag; those done with do not.
                    offset.lag = max(
                        end - summary.start_offset - summary.delivery_complete_count, 0
                    )
            offsets.append(offset)
        described[name] = (topic.topic_id if topic is not None else None, offsets)
    return described


async def _latest_offsets(
    broker: Broker, partitions: dict[str, list[int]]
) -> dict[tuple[str, int], int | ErrorCode]:
    """The high watermark of each partition named (ListOffsets LATEST, as Kafka computes
    lag), from this broker's own replica or with one request per leader."""
    image = broker.image
    rm = broker.replica_manager
    found: dict[tuple[str, int], int | ErrorCode] = {}
    elsewhere: dict[int, dict[str, list[int]]] = {}
    for name, indexes in partitions.items():
        topic = image.topics.get(name)
        known = topic.partitions if topic is not None else {}
        for index, state in ((i, known[i]) for i in indexes if i in known):
            local = rm.get(name, index) if rm is not None else None
            if local is not None and local.is_leader:
                found[(name, index)] = local.high_watermark
            elif state.leader < 0:
                found[(name, index)] = ErrorCode.leader_not_available
            else:
                elsewhere.setdefault(state.leader, {}).setdefault(name, []).append(index)
    persister = broker.share_partition_manager.persister
    for node, partitions in elsewhere.items():
        try:
            response: Any = await persister.connection(node, admin=True).request(
                LIST_OFFSETS,
                7,
                replica_id=i32(-1),
                isolation_level=i8(0),
                topics=tuple(
                    lo.ListOffsetsTopic(
                        name=TopicName(name),
                        partitions=tuple(
                            lo.ListOffsetsPartition(
                                partition_index=i32(i), timestamp=i64(LATEST_TIMESTAMP)
                            )
                            for i in indexes
                        ),
                    )
                    for name, indexes in partitions.items()
                ),
            )
        except (OSError, TimeoutError, EOFError, PersisterError) as e:
            log.info("no high watermarks from broker %d for share group lag: %s", node, e)
            for name, indexes in partitions.items():
                found.update(
                    dict.fromkeys(((name, i) for i in indexes), ErrorCode.leader_not_available)
                )
            continue
        for t in response.topics:
            for p in t.partitions:
                code = ErrorCode(p.error_code)
                found[(t.name, int(p.partition_index))] = (
                    int(p.offset) if code is ErrorCode.none else code
                )
    return found


def _empty_share_group(broker: Broker, group_id: str, create: bool) -> GroupMetadata | None:
    """The group, which must be a share group without members (raises GroupError); created
    when missing and ``create`` (AlterShareGroupOffsets makes the group, as in Kafka)."""
    coordinator = broker.group_coordinator
    if coordinator is None or not coordinator.owns(group_id):
        raise GroupError(ErrorCode.not_coordinator)
    group = coordinator.groups.get(group_id)
    if group is None:
        if not create:
            return None
        try:
            return coordinator.share_groups.create(group_id)
        except StoreFailed as e:
            raise GroupError(ErrorCode.coordinator_not_available, str(e)) from e
    if group.share is None:
        if group.is_empty() and not group.protocol_type and not group.offsets:
            return None
        raise GroupError(ErrorCode.group_id_not_found, f"Group {group_id} is not a share group.")
    _check_empty(group)
    return group


def _check_empty(group: GroupMetadata | None) -> None:
    """Raises NON_EMPTY_GROUP when the group has members: checked again after each wait,
    since a member may join while the share coordinators answer."""
    if group is not None and not group.is_empty():
        raise GroupError(ErrorCode.non_empty_group, "The group is not empty.")


async def alter(
    broker: Broker, group_id: str, offsets: dict[str, dict[int, int]]
) -> dict[str, dict[int, tuple[ErrorCode, str | None]]]:
    """Start each named partition afresh at its offset (raises GroupError). The state epoch
    moves past the stored one, so a leader still caching the old state is refused its next
    write and loads the new one."""
    group = _empty_share_group(broker, group_id, create=True)
    image = broker.image
    persister = broker.share_partition_manager.persister
    results: dict[str, dict[int, tuple[ErrorCode, str | None]]] = {}
    keys = {}
    for name, partitions in offsets.items():
        topic = image.topics.get(name)
        results[name] = {}
        for index, start in partitions.items():
            if topic is None or index not in topic.partitions:
                results[name][index] = (ErrorCode.unknown_topic_or_partition, None)
            elif start < 0:
                results[name][index] = (
                    ErrorCode.invalid_request,
                    f"The start offset {start} is not valid.",
                )
            else:
                keys[ShareStateKey(group_id, topic.topic_id, index)] = (name, index, start)
    current = await persister.summaries(list(keys))
    for key, (name, index, start) in keys.items():
        summary = current.get(key)
        if isinstance(summary, PersisterError):
            results[name][index] = (summary.code, str(summary))
            continue
        epoch = summary.state_epoch + 1 if summary is not None else 0
        try:
            _check_empty(group)
            await persister.initialize(key, epoch, start)
        except GroupError as e:
            results[name][index] = (e.code, e.message)
        except PersisterError as e:
            results[name][index] = (e.code, str(e))
        else:
            results[name][index] = (ErrorCode.none, None)
            log.info(
                "share group %s's start offset of %s-%d set to %d", group_id, name, index, start
            )
    return results


async def delete(
    broker: Broker, group_id: str, topics: list[str]
) -> dict[str, tuple[uuid.UUID | None, ErrorCode, str | None]]:
    """Drop the group's state of each topic (raises GroupError)."""
    group = _empty_share_group(broker, group_id, create=False)
    image = broker.image
    stored = await stored_states(broker, group_id, topics)
    if group is None and not stored:
        raise GroupError(ErrorCode.group_id_not_found, f"Group {group_id} not found.")
    assert broker.group_coordinator is not None  # else _empty_share_group raised
    _check_empty(broker.group_coordinator.groups.get(group_id))
    deleted = await broker.share_partition_manager.persister.delete(list(stored))
    results: dict[str, tuple[uuid.UUID | None, ErrorCode, str | None]] = {}
    for name in topics:
        topic = image.topics.get(name)
        if topic is None:
            results[name] = (None, ErrorCode.unknown_topic_or_partition, None)
            continue
        codes = [code for key, code in deleted.items() if key.topic_id == topic.topic_id]
        if not codes:
            results[name] = (
                topic.topic_id,
                ErrorCode.unknown_topic_or_partition,
                "There is no offset information to delete.",
            )
            continue
        failed = next((c for c in codes if c is not ErrorCode.none), ErrorCode.none)
        results[name] = (topic.topic_id, failed, None)
        if failed is ErrorCode.none:
            log.info("share group %s's state of %s deleted", group_id, name)
    return results


async def delete_group(broker: Broker, group_id: str) -> ErrorCode | None:
    """DeleteGroups of a share group: its state everywhere, then the group. None when
    ``group_id`` is no share group (the other protocols' path answers for it)."""
    coordinator = broker.group_coordinator
    if coordinator is None or not broker.share_enabled or not coordinator.owns(group_id):
        return None
    known = coordinator.groups.get(group_id)
    if known is not None and known.share is None:
        return None
    try:
        group = _empty_share_group(broker, group_id, create=False)
        stored = await stored_states(broker, group_id)
    except GroupError as e:
        if known is None:  # not known here; nor, for want of an answer, by its state
            log.info("share state of group %s not looked up (%s): not deleted", group_id, e)
            return None
        return e.code
    if group is None and not stored:
        return None
    try:
        _check_empty(coordinator.groups.get(group_id))
    except GroupError as e:
        return e.code
    deleted = await broker.share_partition_manager.persister.delete(list(stored))
    failed = next((c for c in deleted.values() if c is not ErrorCode.none), None)
    if failed is not None:
        return failed
    current = coordinator.groups.get(group_id)
    if current is not None:
        if not current.is_empty():  # a member joined after all: the state is gone, the group stays
            return ErrorCode.non_empty_group
        try:
            coordinator.remove_share_group(current)
        except Exception as e:
            log.warning("share group %s's state is deleted, but not the group: %s", group_id, e)
            return ErrorCode.coordinator_not_available
    log.info("share group %s deleted, with its state of %d partition(s)", group_id, len(stored))
    return ErrorCode.none
