"""ReadShareGroupState (84) and WriteShareGroupState (85): share partitions' leaders reading
and storing their state at the share coordinator (between brokers, CLUSTER_ACTION)."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.share.persister import write_local
from artesian.share.records import ShareState, ShareStateKey, state_batch_of
from artesian.share.share_coordinator import NotShareCoordinator

READ, WRITE = 84, 85


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


APIS = [(READ, 0, 0, read), (WRITE, 0, 0, write)]
