"""DescribeProducers (61): the producers a partition's replica keeps state for, with their
open transactions (KIP-664); what ``kafka-transactions.sh describe-producers`` and
``find-hanging`` read. Any replica answers, as in Kafka (the tools may ask a follower)."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import AclOperation, ResourceType, authorized_names
from artesian.broker.handlers._build import make, response_module

API_KEY = 61
MIN_VERSION = 0
MAX_VERSION = 0


def handle(ctx: Any, request: Any) -> Any:
    rm = ctx.broker.replica_manager
    mod = response_module(API_KEY, ctx.header.api_version)
    # READ on each topic, as Kafka asks; TOPIC_AUTHORIZATION_FAILED for its partitions else.
    allowed = authorized_names(
        ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    topics = []
    for t in request.topics:
        partitions = []
        for index in t.partition_indexes:
            producers: tuple[Any, ...] = ()
            partition = rm.get(t.name, index)
            if t.name not in allowed:
                code = ErrorCode.topic_authorization_failed
            elif partition is not None:
                code = ErrorCode.none
                producers = _producers(mod, partition.log.producer_state.producers)
            elif rm.in_metadata(t.name, index):
                code = ErrorCode.not_leader_or_follower  # hosted elsewhere
            else:
                code = ErrorCode.unknown_topic_or_partition
            partitions.append(
                make(
                    mod.PartitionResponse,
                    partition_index=index,
                    error_code=code,
                    error_message=None,
                    active_producers=producers,
                )
            )
        topics.append(make(mod.TopicResponse, name=t.name, partitions=tuple(partitions)))
    return make(
        mod.DescribeProducersResponse, throttle_time=datetime.timedelta(0), topics=tuple(topics)
    )


def _producers(mod: Any, entries: dict[int, Any]) -> tuple[Any, ...]:
    return tuple(
        make(
            mod.ProducerState,
            producer_id=e.producer_id,
            producer_epoch=e.producer_epoch,
            last_sequence=e.last_seq,
            last_timestamp=e.last_timestamp,
            coordinator_epoch=e.coordinator_epoch,
            current_txn_start_offset=(
                e.current_txn_first_offset if e.current_txn_first_offset is not None else -1
            ),
        )
        for e in sorted(entries.values(), key=lambda e: e.producer_id)
    )
