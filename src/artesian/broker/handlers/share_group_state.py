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

# A partition result's fields besides its error when there is no state to tell of (each
# response keeps those it has: ``make``).
NO_STATE: dict[str, Any] = {
    "state_epoch": 0,
    "leader_epoch": 0,
    "start_offset": -1,
    "delivery_complete_count": -1,
    "state_batches": (),
}

Answer = Callable[[ShareStateKey, Any], Awaitable[tuple[ErrorCode, dict[str, Any]]]]


async def _answered(ctx: Any, request: Any, mod: Any, result_type: Any, answer: Answer) -> Any:
    """Each topic's result: every partition's error and fields from ``answer``, after the
    checks all these APIs make."""
    allowed = ctx.quota_exempt = cluster_authorized(ctx, AclOperation.CLUSTER_ACTION)
    results = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            fields = NO_STATE
            if not allowed:
                code = ErrorCode.cluster_authorization_failed
            elif topic.topic_id is None:
                code = ErrorCode.unknown_topic_id
            else:
                key = ShareStateKey(request.group_id, topic.topic_id, int(p.partition))
                code, fields = await answer(key, p)
            partitions.append(
                make(mod.PartitionResult, partition=p.partition, error_code=code, **fields)
            )
        results.append(make(result_type, topic_id=topic.topic_id, partitions=tuple(partitions)))
    return tuple(results)


async def read(ctx: Any, request: Any) -> Any:
    mod = response_module(READ, ctx.header.api_version)

    async def answer(key: ShareStateKey, p: Any) -> tuple[ErrorCode, dict[str, Any]]:
        try:
            state = ctx.broker.share_coordinator.read(key, int(p.leader_epoch))
        except NotShareCoordinator:
            return ErrorCode.not_coordinator, NO_STATE
        except Exception as e:  # the fence could not be written
            return ErrorCode.coordinator_not_available, {**NO_STATE, "error_message": str(e)}
        if state is None:
            return ErrorCode.none, NO_STATE
        return ErrorCode.none, {
            "state_epoch": state.state_epoch,
            "start_offset": state.start_offset,
            "state_batches": tuple(
                make(
                    mod.StateBatch,
                    first_offset=b.first_offset,
                    last_offset=b.last_offset,
                    delivery_state=int(b.state),
                    delivery_count=b.delivery_count,
                )
                for b in state.batches
            ),
        }

    return make(
        mod.ReadShareGroupStateResponse,
        results=await _answered(ctx, request, mod, mod.ReadStateResult, answer),
    )


async def read_summary(ctx: Any, request: Any) -> Any:
    mod = response_module(READ_SUMMARY, ctx.header.api_version)

    async def answer(key: ShareStateKey, _p: Any) -> tuple[ErrorCode, dict[str, Any]]:
        try:
            summary = summary_of(ctx.broker.share_coordinator.summary(key))
        except NotShareCoordinator:
            return ErrorCode.not_coordinator, NO_STATE
        # No state: start offset -1, as Kafka answers (not an error).
        return ErrorCode.none, NO_STATE if summary is None else {
            "state_epoch": summary.state_epoch,
            "leader_epoch": summary.leader_epoch,
            "start_offset": summary.start_offset,
            "delivery_complete_count": summary.delivery_complete_count,
        }

    return make(
        mod.ReadShareGroupStateSummaryResponse,
        results=await _answered(ctx, request, mod, mod.ReadStateSummaryResult, answer),
    )


async def write(ctx: Any, request: Any) -> Any:
    mod = response_module(WRITE, ctx.header.api_version)

    async def answer(key: ShareStateKey, p: Any) -> tuple[ErrorCode, dict[str, Any]]:
        try:
            batches = tuple(state_batch_of(b) for b in p.state_batches)
        except ValueError:
            return ErrorCode.invalid_request, {}
        state = ShareState(int(p.state_epoch), int(p.leader_epoch), int(p.start_offset), batches)
        return await write_local(ctx.broker, key, state), {}

    return make(
        mod.WriteShareGroupStateResponse,
        results=await _answered(ctx, request, mod, mod.WriteStateResult, answer),
    )


async def initialize(ctx: Any, request: Any) -> Any:
    mod = response_module(INITIALIZE, ctx.header.api_version)

    async def answer(key: ShareStateKey, p: Any) -> tuple[ErrorCode, dict[str, Any]]:
        code = await initialize_local(ctx.broker, key, int(p.state_epoch), int(p.start_offset))
        return code, {}

    return make(
        mod.InitializeShareGroupStateResponse,
        results=await _answered(ctx, request, mod, mod.InitializeStateResult, answer),
    )


async def delete(ctx: Any, request: Any) -> Any:
    mod = response_module(DELETE, ctx.header.api_version)

    async def answer(key: ShareStateKey, _p: Any) -> tuple[ErrorCode, dict[str, Any]]:
        return await delete_local(ctx.broker, key), {}

    return make(
        mod.DeleteShareGroupStateResponse,
        results=await _answered(ctx, request, mod, mod.DeleteStateResult, answer),
    )


APIS = [
    (INITIALIZE, 0, 0, initialize),
    (READ, 0, 0, read),
    (WRITE, 0, 0, write),
    (DELETE, 0, 0, delete),
    (READ_SUMMARY, 0, 1, read_summary),
]
