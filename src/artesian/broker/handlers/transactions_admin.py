"""DescribeTransactions (65) and ListTransactions (66): what ``kafka-transactions.sh`` shows.
ListTransactions v2 (KIP-1152) filters by a transactional id pattern, in RE2's syntax (linear
time, as every client regex here) where Kafka takes Java's, matched against the whole id."""

from __future__ import annotations

import datetime
from typing import Any

import re2
from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
)
from artesian.broker.handlers._build import make, response_module
from artesian.coordinator.transaction.transaction_metadata import TransactionState
from artesian.regex import compile_regex

DESCRIBE = 65
LIST = 66


def describe(ctx: Any, request: Any) -> Any:
    coordinator = ctx.broker.transaction_coordinator
    mod = response_module(DESCRIBE, ctx.header.api_version)
    states = []
    for tid in request.transactional_ids:
        # DESCRIBE on each transactional id; its partitions are listed for the topics the
        # principal may DESCRIBE (Kafka).
        if not authorized(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, tid):
            states.append(_no_state(mod, tid, ErrorCode.transactional_id_authorization_failed))
            continue
        meta = coordinator.describe(tid)
        if meta is None:
            code = (
                ErrorCode.transactional_id_not_found
                if coordinator.owns(tid)
                else ErrorCode.not_coordinator
            )
            states.append(_no_state(mod, tid, code))
            continue
        start_ms = meta.start_ms if meta.state is TransactionState.ONGOING else -1
        partitions = meta.sorted_partitions()
        visible = authorized_names(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t for t, _ in partitions)
        )
        states.append(
            make(
                mod.TransactionState,
                error_code=ErrorCode.none,
                transactional_id=tid,
                transaction_state=meta.state.display_name,
                transaction_timeout=datetime.timedelta(milliseconds=meta.timeout_ms),
                # -1 (no transaction open) is the epoch's millisecond before 1970.
                transaction_start_time=datetime.datetime.fromtimestamp(
                    start_ms / 1000, datetime.UTC
                ),
                producer_id=meta.producer_id,
                producer_epoch=meta.producer_epoch,
                topics=tuple(
                    make(mod.TopicData, topic=topic, partitions=indexes)
                    for topic, indexes in partitions
                    if topic in visible
                ),
            )
        )
    return make(
        mod.DescribeTransactionsResponse,
        throttle_time=datetime.timedelta(0),
        transaction_states=tuple(states),
    )


def list_(ctx: Any, request: Any) -> Any:
    coordinator = ctx.broker.transaction_coordinator
    mod = response_module(LIST, ctx.header.api_version)
    unknown = tuple(
        s for s in request.state_filters if TransactionState.from_display_name(s) is None
    )
    states = {
        st
        for s in request.state_filters
        if (st := TransactionState.from_display_name(s)) is not None
    }
    pattern = getattr(request, "transactional_id_pattern", None)
    try:
        matcher = compile_regex(pattern) if pattern else None
    except re2.error:
        return make(
            mod.ListTransactionsResponse,
            throttle_time=datetime.timedelta(0),
            error_code=ErrorCode.invalid_regular_expression,
            unknown_state_filters=(),
            transaction_states=(),
        )
    if request.state_filters and not states:
        found = []  # only unknown states asked for: nothing matches them
    else:
        found = coordinator.list_transactions(
            states or None,
            set(request.producer_id_filters) or None,
            getattr(request, "duration_filter", -1),
        )
    return make(
        mod.ListTransactionsResponse,
        throttle_time=datetime.timedelta(0),
        error_code=ErrorCode.none,
        unknown_state_filters=unknown,
        transaction_states=tuple(
            make(
                mod.TransactionState,
                transactional_id=m.transactional_id,
                producer_id=m.producer_id,
                transaction_state=m.state.display_name,
            )
            for m in found
            if (matcher is None or matcher.fullmatch(_as_named(ctx, m.transactional_id)))
            and authorized(
                ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, m.transactional_id
            )
        ),
    )


APIS = [(DESCRIBE, 0, 0, describe), (LIST, 0, 2, list_)]


def _no_state(mod: Any, tid: str, code: ErrorCode) -> Any:
    """A DescribeTransactions entry that has only its error."""
    return make(
        mod.TransactionState,
        error_code=code,
        transactional_id=tid,
        transaction_state="",
        transaction_timeout=datetime.timedelta(0),
        transaction_start_time=datetime.datetime.fromtimestamp(0, datetime.UTC),
        producer_id=-1,
        producer_epoch=-1,
        topics=(),
    )


def _as_named(ctx: Any, transactional_id: str) -> str:
    """A transactional id as the asker names it: a logical cluster's without its prefix, so
    that ListTransactions' pattern (KIP-1152) matches the ids its tenant knows."""
    lc = ctx.logical_cluster
    if lc is None:
        return transactional_id
    return lc.logical(transactional_id) or ""
