"""The share coordinator's APIs, between brokers (CLUSTER_ACTION): share partitions' leaders
reading and storing their state (ReadShareGroupState 84, WriteShareGroupState 85), and the
group coordinator's summaries, fresh starts and deletes for the share group admin APIs
(ReadShareGroupStateSummary 87, InitializeShareGroupState 83, DeleteShareGroupState 86)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.share.persister import delete_local, initialize_local, summary_of, write_local
from artesian.share.records import ShareState, ShareStateKey, state_batch_of
from artesian.share.share_coordinator import NotShareCoordinator

INITIALIZE, READ, WRITE, DELETE, READ_SUMMARY = 83, 84, 85, 86, 87


def read(ctx: Any, request: Any) -> Any:
    mod = response_module(READ, ctx.header.api_version)
    allowed = cluster_authorized(ctx, AclOperation.CLUSTER_ACTION)
    results = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            code, message, state = ErrorCode.none, None, None
            if not allowed:
                code = ErrorCode.cluster_authorization_failed
            elif topic.topic_id is None:
                code = ErrorCode.unknown_topic_id
            else:
                key = ShareStateKey(request.group_id, topic.topic_id, int(p.partition))
                try:
                    state = ctx.broker.share_coordinator.read(key, int(p.leader_epoch))
                except NotShareCoordinator:
                    code = ErrorCode.not_coordinator
                except Exception as e:  # the fence could not be written
                    code, message = ErrorCode.coordinator_not_available, str(e)
            partitions.append(
                make(
                    mod.PartitionResult,
                    partition=p.partition,
                    error_code=code,
                    error_message=message,
                    state_epoch=state.state_epoch if state is not None else 0,
                    start_offset=state.start_offset if state is not None else -1,
                    state_batches=tuple(
                        make(
                            mod.StateBatch,
                            first_offset=b.first_offset,
                            last_offset=b.last_offset,
                            delivery_state=int(b.state),
                            delivery_count=b.delivery_count,
                        )
                        for b in (state.batches if state is not None else ())
                    ),
                )
            )
        results.append(
            make(mod.ReadStateResult, topic_id=topic.topic_id, partitions=tuple(partitions))
        )
    return make(mod.ReadShareGroupStateResponse, results=tuple(results))


async def write(ctx: Any, request: Any) -> Any:
    mod = response_module(WRITE, ctx.header.api_version)
    allowed = cluster_authorized(ctx, AclOperation.CLUSTER_ACTION)
    results = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            if not allowed:
                code = ErrorCode.cluster_authorization_failed
            elif topic.topic_id is None:
                code = ErrorCode.unknown_topic_id
            else:
                try:
                    batches = tuple(state_batch_of(b) for b in p.state_batches)
                except ValueError:
                    code = ErrorCode.invalid_request
                else:
                    code = await write_local(
                        ctx.broker,
                        ShareStateKey(request.group_id, topic.topic_id, int(p.partition)),
                        ShareState(
                            int(p.state_epoch), int(p.leader_epoch), int(p.start_offset), batches
                        ),
                    )
            partitions.append(
                make(
                    mod.PartitionResult, partition=p.partition, error_code=code, error_message=None
                )
            )
        results.append(
            make(mod.WriteStateResult, topic_id=topic.topic_id, partitions=tuple(partitions))
        )
    return make(mod.WriteShareGroupStateResponse, results=tuple(results))


def read_summary(ctx: Any, request: Any) -> Any:
    mod = response_module(READ_SUMMARY, ctx.header.api_version)
    allowed = cluster_authorized(ctx, AclOperation.CLUSTER_ACTION)
    results = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            code, summary = ErrorCode.none, None
            if not allowed:
                code = ErrorCode.cluster_authorization_failed
            elif topic.topic_id is None:
                code = ErrorCode.unknown_topic_id
            else:
                key = ShareStateKey(request.group_id, topic.topic_id, int(p.partition))
                try:
                    summary = summary_of(ctx.broker.share_coordinator.summary(key))
                except NotShareCoordinator:
                    code = ErrorCode.not_coordinator
            # No state: start offset -1, as Kafka answers (not an error).
            partitions.append(
                make(
                    mod.PartitionResult,
                    partition=p.partition,
                    error_code=code,
                    error_message=None,
                    state_epoch=summary.state_epoch if summary is not None else 0,
                    leader_epoch=summary.leader_epoch if summary is not None else 0,
                    start_offset=summary.start_offset if summary is not None else -1,
                    delivery_complete_count=(
                        summary.delivery_complete_count if summary is not None else -1
                    ),
                )
            )
        results.append(
            make(mod.ReadStateSummaryResult, topic_id=topic.topic_id, partitions=tuple(partitions))
        )
    return make(mod.ReadShareGroupStateSummaryResponse, results=tuple(results))


async def initialize(ctx: Any, request: Any) -> Any:
    mod = response_module(INITIALIZE, ctx.header.api_version)

    async def change(key: ShareStateKey, p: Any) -> ErrorCode:
        return await initialize_local(ctx.broker, key, int(p.state_epoch), int(p.start_offset))

    return make(
        mod.InitializeShareGroupStateResponse,
        results=await _changed(ctx, request, mod, mod.InitializeStateResult, change),
    )


async def delete(ctx: Any, request: Any) -> Any:
    mod = response_module(DELETE, ctx.header.api_version)

    async def change(key: ShareStateKey, _p: Any) -> ErrorCode:
        return await delete_local(ctx.broker, key)

    return make(
        mod.DeleteShareGroupStateResponse,
        results=await _changed(ctx, request, mod, mod.DeleteStateResult, change),
    )


async def _changed(
    ctx: Any,
    request: Any,
    mod: Any,
    result_type: Any,
    change: Callable[[ShareStateKey, Any], Awaitable[ErrorCode]],
) -> tuple[Any, ...]:
    """Each partition's ErrorCode after ``change`` (initialize or delete)."""
    allowed = cluster_authorized(ctx, AclOperation.CLUSTER_ACTION)
    results = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            if not allowed:
                code = ErrorCode.cluster_authorization_failed
            elif topic.topic_id is None:
                code = ErrorCode.unknown_topic_id
            else:
                code = await change(
                    ShareStateKey(request.group_id, topic.topic_id, int(p.partition)), p
                )
            partitions.append(
                make(
                    mod.PartitionResult, partition=p.partition, error_code=code, error_message=None
                )
            )
        results.append(make(result_type, topic_id=topic.topic_id, partitions=tuple(partitions)))
    return tuple(results)


APIS = [
    (INITIALIZE, 0, 0, initialize),
    (READ, 0, 0, read),
    (WRITE, 0, 0, write),
    (DELETE, 0, 0, delete),
    (READ_SUMMARY, 0, 1, read_summary),
]
