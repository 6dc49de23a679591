"""TxnOffsetCommit (28): a transactional producer commits a group's offsets inside its
transaction (consume-transform-produce); they take effect when the transaction commits.

The group's ``__consumer_offsets`` partition must be in the transaction (AddOffsetsToTxn)
first. Versions 3+ carry the member and generation, checked as OffsetCommit checks them
(KIP-447). Versions 4+ (KIP-890's implicit AddOffsetsToTxn) are not offered.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import (
    make,
    reply_when_replicated,
    response_module,
    with_replication_error,
)
from artesian.broker.handlers._txn import for_version, verifies
from artesian.broker.internal_topic import OFFSETS_TOPIC
from artesian.coordinator.group.group_metadata import OffsetAndMetadata

API_KEY = 28
MIN_VERSION = 0
MAX_VERSION = 3


def handle(ctx: Any, request: Any) -> Any:
    broker = ctx.broker
    version = ctx.header.api_version
    image = broker.image
    now = int(time.time() * 1000)
    wanted = [(t.name, p) for t in request.topics for p in t.partitions]
    mod = response_module(API_KEY, version)
    by_topic: dict[str, list[int]] = {}
    for name, p in wanted:
        by_topic.setdefault(name, []).append(p.partition_index)
    # WRITE on the transactional id, then READ on the group: else every partition fails
    # with TRANSACTIONAL_ID_ / GROUP_AUTHORIZATION_FAILED; then READ on each topic.
    refused = None
    if not authorized(
        ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id
    ):
        refused = ErrorCode.transactional_id_authorization_failed
    elif not authorized(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        refused = ErrorCode.group_authorization_failed
    if refused is not None:
        return _response(mod, by_topic, {(name, p.partition_index): refused for name, p in wanted})
    readable = authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, by_topic)
    errors: dict[tuple[str, int], int] = {}
    offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
    for name, p in wanted:
        tp = (name, p.partition_index)
        timg = image.topics.get(name)
        if name not in readable:
            errors[tp] = ErrorCode.topic_authorization_failed
            continue
        if timg is None or p.partition_index not in timg.partitions:
            errors[tp] = ErrorCode.unknown_topic_or_partition
            continue
        offsets[tp] = OffsetAndMetadata(
            p.committed_offset,
            getattr(p, "committed_leader_epoch", -1),
            p.committed_metadata or "",
            now,
        )
    groups = broker.group_coordinator
    if offsets:
        code = ErrorCode.none
        if not request.group_id:
            code = ErrorCode.invalid_group_id
        elif not groups.owns(request.group_id):
            code = ErrorCode.not_coordinator
        elif verifies(broker, request.transactional_id):
            code = broker.transaction_coordinator.verify_partition(
                request.transactional_id,
                request.producer_id,
                request.producer_epoch,
                (OFFSETS_TOPIC, groups.partition_for(request.group_id)),
            )
        if code != ErrorCode.none:
            errors.update(dict.fromkeys(offsets, for_version(code, version, 3)))
        else:
            errors.update(
                groups.commit_txn_offsets(
                    request.group_id,
                    request.producer_id,
                    request.producer_epoch,
                    getattr(request, "member_id", ""),
                    getattr(request, "group_instance_id", None),
                    getattr(request, "generation_id", -1),
                    offsets,
                )
            )

    def build(replication: ErrorCode) -> Any:
        return _response(mod, by_topic, with_replication_error(errors, replication))

    wait = broker.coordinator_write_replicated(OFFSETS_TOPIC, request.group_id)
    return reply_when_replicated(wait, build)


def _response(mod: Any, by_topic: dict[str, list[int]], errors: dict[tuple[str, int], int]) -> Any:
    return make(
        mod.TxnOffsetCommitResponse,
        throttle_time=datetime.timedelta(0),
        topics=tuple(
            make(
                mod.TxnOffsetCommitResponseTopic,
                name=name,
                partitions=tuple(
                    make(
                        mod.TxnOffsetCommitResponsePartition,
                        partition_index=i,
                        error_code=errors.get((name, i), ErrorCode.unknown_server_error),
                    )
                    for i in indexes
                ),
            )
            for name, indexes in by_topic.items()
        ),
    )
