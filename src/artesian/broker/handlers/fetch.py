"""Fetch (1): the consume hot path, with long-poll through the purgatory.

Stored batches are sent as they are: the response carries file regions that the connection
hands to sendfile, so record bytes never enter Python. A fetch that finds fewer than
``min_bytes`` parks in the purgatory and is woken by the appends it waits for. From v7 a
consumer may open an incremental fetch session (KIP-227, broker/fetch_session.py).

An offset below a tiered partition's local log is read from the object store (Kafka's
DelayedRemoteFetch): one such partition per request, as Kafka does, and the response waits for
it up to remote.fetch.max.wait.ms instead of long-polling.

From v11 a consumer may read from a follower (KIP-392): with ``replica.selector.class`` set to
the rack-aware selector, the leader points a consumer that names its rack to an in-sync
replica there (replication/replica_selector.py), and a follower serves v11+ consumers up to
its own high watermark. With that selector, a follower's fetch is answered at once when the
high watermark moved since it was last told, so that reads from followers lag the leader by
one round trip.

A consumer under a consumer_byte_rate (KIP-13, KIP-219) fetches at most what its quota allows
at once, and a response the quota cannot take now is not sent: the fetch is answered empty
with the time to wait, and the connection is muted that long (KafkaApis.handleFetchRequest).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.fetch_session import FetchContext, FetchPartition, PartitionKey
from artesian.broker.handlers._authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_names,
    cluster_authorized,
)
from artesian.broker.handlers._leader_hint import LEADER_MOVED, current_leader, node_endpoints
from artesian.broker.handlers._quota import exempt_a_replica, fetch_max_bytes, fetch_throttle_ms
from artesian.broker.purgatory import DelayedFetch
from artesian.broker.response import RawResponse
from artesian.protocol.fetch import (
    FetchPartitionResult,
    FetchTopicResult,
    NodeEndpoint,
    encode_fetch_response,
)
from artesian.replication.replica_selector import preferred_read_replica
from artesian.storage.errors import OffsetMovedToTieredStorageError

API_KEY = 1
MIN_VERSION = 4
MAX_VERSION = 18

log = logging.getLogger("artesian.fetch")


@dataclass(slots=True)
class RemoteRead:
    """A partition whose fetch offset lies in tiered storage."""

    partition: Any  # broker.replica_manager.Partition
    result: FetchPartitionResult
    fetch_offset: int
    max_bytes: int
    min_one_message: bool
    read_committed: bool
    on_follower: bool  # a consumer reading a followed partition (KIP-392)


def _topic_name(image: Any, topic_id: uuid.UUID | None) -> str:
    # The codec reads the all-zero id as None: no topic has it.
    timg = image.topics_by_id.get(topic_id) if topic_id is not None else None
    return timg.name if timg is not None else ""


def _requested(ctx: Any, request: Any) -> tuple[list[FetchPartition], list[PartitionKey]]:
    """The request's partitions (topic ids resolved from v13) and the partitions to forget."""
    image = ctx.broker.image
    by_id = ctx.header.api_version >= 13
    lc = ctx.logical_cluster

    def name_of(t: Any) -> tuple[str, uuid.UUID | None]:
        if not by_id:
            return t.topic, None
        name = _topic_name(image, t.topic_id)
        if lc is not None and not lc.owns(name):
            name = ""  # another logical cluster's topic: as unknown as a made-up id
        return name, t.topic_id

    partitions = []
    for t in request.topics:
        name, topic_id = name_of(t)
        for fp in t.partitions:
            partitions.append(
                FetchPartition(
                    name,
                    topic_id,
                    fp.partition,
                    fp.fetch_offset,
                    fp.partition_max_bytes,
                    getattr(fp, "current_leader_epoch", -1),
                    getattr(fp, "log_start_offset", -1),
                )
            )
    forgotten: list[PartitionKey] = [
        (t.topic_id if by_id else t.topic, p)
        for t in getattr(request, "forgotten_topics_data", ())
        for p in t.partitions
    ]
    return partitions, forgotten


ReadOutcome = tuple[
    list[tuple[FetchPartition, FetchPartitionResult]],
    int,
    bool,
    list[tuple[str, int]],
    RemoteRead | None,
]


def _replica_id(request: Any) -> int:
    """The follower's broker id (v15+ moved it into replica_state); -1 for clients."""
    state = getattr(request, "replica_state", None)
    if state is not None:
        return int(state.replica_id)
    return int(getattr(request, "replica_id", -1))


def _reachable(broker: Any, listener: str, node: int) -> bool:
    """Whether a consumer on ``listener`` can fetch from ``node`` (live, with that listener)."""
    b = broker.image.brokers.get(node)
    return b is not None and node in broker.live_brokers and b.endpoint(listener) is not None


def _denied_topics(ctx: Any, request: Any, partitions: list[FetchPartition]) -> set[str]:
    """With an authorizer: the topics to answer TOPIC_AUTHORIZATION_FAILED for. A follower
    (replica id >= 0) needs CLUSTER_ACTION on the cluster, else every partition is refused
    (an unknown topic id too); a consumer needs READ on each topic, and an unknown topic id
    stays UNKNOWN_TOPIC_ID (KafkaApis' order). A session's partitions are checked again on
    every fetch, by the names they hold (a deleted topic's too)."""
    names = {fp.topic for fp in partitions}
    if _replica_id(request) >= 0:
        return set() if cluster_authorized(ctx, AclOperation.CLUSTER_ACTION) else names | {""}
    names.discard("")
    return names - authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, names)


def _read(
    ctx: Any,
    request: Any,
    partitions: list[FetchPartition],
    denied: set[str] | None,
    budget: int,
) -> ReadOutcome:
    """Read every partition once. Returns (results, bytes, whether to answer without waiting
    (an error, a preferred read replica, a follower's stale high watermark), keys to wait
    on, the partition to read from tiered storage). ``denied``: topics refused by the authorizer
    (None without one); they answer TOPIC_AUTHORIZATION_FAILED without records, and do not
    cut a long poll short, as in Kafka, where they never reach the replica manager; nor do
    partitions missing from the metadata (a deleted topic's). ``budget``: the most the
    response may carry (_budget). A session's partitions keep the topic name they entered it
    with, as Kafka's CachedPartition does: once the topic is deleted they answer
    UNKNOWN_TOPIC_OR_PARTITION, or INCONSISTENT_TOPIC_ID when one of that name was created
    again. Bytes sent to clients are counted in _respond, once, when they are sent."""
    broker = ctx.broker
    rm = broker.replica_manager
    version = ctx.header.api_version
    by_id = version >= 13
    # read_committed (v4+): only up to the last stable offset, with the aborted transactions
    # the consumer must skip.
    read_committed = getattr(request, "isolation_level", 0) == 1
    replica_id = _replica_id(request)
    # KIP-392: a consumer that names its rack may be pointed to a follower there.
    client_rack = (
        (getattr(request, "rack_id", None) or "")
        if replica_id < 0 and version >= 11 and broker.replica_selector is not None
        else ""
    )
    reachable = (
        functools.partial(_reachable, broker, ctx.connection.listener.name) if client_rack else None
    )
    now_ms = int(time.time() * 1000) if replica_id >= 0 or client_rack else 0
    total = 0
    answer_now = False
    keys: list[tuple[str, int]] = []
    results: list[tuple[FetchPartition, FetchPartitionResult]] = []
    remote: RemoteRead | None = None
    for fp in partitions:
        result = FetchPartitionResult(fp.partition)
        results.append((fp, result))
        if denied is not None and fp.topic in denied:
            result.error_code = ErrorCode.topic_authorization_failed
            continue
        partition = rm.get(fp.topic, fp.partition) if fp.topic else None
        if partition is None:
            # UNKNOWN_TOPIC_ID only when the id names no topic (KafkaApis does the same).
            if by_id and not fp.topic:
                result.error_code = ErrorCode.unknown_topic_id
            elif rm.in_metadata(fp.topic, fp.partition):
                # Hosted elsewhere (a reassignment moved it): the client must look again.
                result.error_code = ErrorCode.not_leader_or_follower
                answer_now = True
            else:
                result.error_code = ErrorCode.unknown_topic_or_partition
            continue
        if by_id and partition.topic_id != fp.topic_id:
            # The session's topic was deleted and one of the same name created since: the
            # client must not read the new topic's records as the old one's.
            result.error_code = ErrorCode.inconsistent_topic_id
            answer_now = True
            continue
        # KIP-392: a follower serves consumers that send client metadata (v11+).
        from_follower_log = not partition.is_leader
        if from_follower_log and (replica_id >= 0 or version < 11):
            result.error_code = ErrorCode.not_leader_or_follower
            answer_now = True
            continue
        plog = partition.log
        if not plog.remote_log_ready:
            result.error_code = ErrorCode.kafka_storage_error  # retriable: still listing
            answer_now = True
            continue
        epoch_error = partition.leader_epoch_error(fp.current_leader_epoch)
        if replica_id >= 0 and epoch_error is None:
            if replica_id not in partition.replicas:
                epoch_error = ErrorCode.not_leader_or_follower
            elif (
                # An offset outside the local log says nothing of the follower's log (the
                # read answers an error): only a readable one counts as its log end.
                plog.local_log_start_offset <= fp.fetch_offset <= plog.log_end_offset
                and rm.update_follower_fetch(
                    partition,
                    replica_id,
                    fp.fetch_offset,
                    now_ms,
                    log_start_offset=fp.log_start_offset,
                    live=broker.live_brokers,
                )
            ):
                broker.expand_isr(partition, replica_id)
        hw = plog.high_watermark
        lso = plog.last_stable_offset
        if replica_id >= 0 and epoch_error is None and broker.replica_selector is not None:
            # Consumers may read from the follower: a stale high watermark there is answered
            # at once (docs/differences.md: Kafka dropped this in KAFKA-9952 for its cost).
            st = partition.followers.get(replica_id)
            if st is not None and st.sent_high_watermark != hw:
                answer_now = True
        result.high_watermark = hw
        result.last_stable_offset = lso
        result.log_start_offset = plog.log_start_offset
        if epoch_error is not None:
            result.error_code = epoch_error
            answer_now = True
            if from_follower_log:
                _unknown_offsets(result)
            continue
        if reachable is not None and not from_follower_log:
            preferred = preferred_read_replica(
                broker.replica_selector,
                partition,
                client_rack,
                fp.fetch_offset,
                now_ms,
                broker.rack_of,
                reachable,
            )
            if preferred >= 0:
                # No records: the consumer reads from ``preferred`` now (answered at once,
                # as Kafka's hasPreferredReadReplica).
                result.preferred_read_replica = preferred
                answer_now = True
                continue
        keys.append((fp.topic, fp.partition))
        # A follower reads up to the log end: fetching it is how the high watermark moves.
        visible = plog.log_end_offset if replica_id >= 0 else lso if read_committed else hw
        if fp.fetch_offset == visible:
            if read_committed:
                result.aborted_transactions = []
            continue  # caught up: nothing to read, the common long-poll case
        # KIP-73: a replica catching up on a throttled partition waits out the leader's quota.
        throttle = broker.leader_throttle if replica_id >= 0 else None
        in_sync = throttle is None or replica_id in partition.isr
        if throttle is not None and throttle.holds_back(fp.topic, fp.partition, in_sync):
            continue
        max_bytes = min(fp.max_bytes, budget - total)
        try:
            info = plog.read(
                fp.fetch_offset, max(max_bytes, 0), visible, total == 0, read_committed
            )
        except OffsetMovedToTieredStorageError as e:
            if replica_id >= 0 and broker.remote_log_manager is not None:
                # A follower starts its log at the local log start instead (KIP-405).
                result.error_code = ErrorCode.offset_moved_to_tiered_storage
                answer_now = True
            elif broker.remote_log_manager is None:
                result.error_code = ErrorCode(e.error_code)
                answer_now = True
            elif remote is None:
                remote = RemoteRead(
                    partition,
                    result,
                    fp.fetch_offset,
                    max(max_bytes, 0),
                    total == 0,
                    read_committed,
                    from_follower_log,
                )
            continue  # Kafka reads one tiered partition per request; the others come next
        except Exception as e:
            code = getattr(e, "error_code", None)
            if code is None:
                raise
            result.error_code = ErrorCode(code)
            answer_now = True
            if from_follower_log:
                _unknown_offsets(result)
            continue
        if read_committed:
            result.aborted_transactions = info.aborted_transactions or []
        records = info.records
        if records is not None and records.size > 0:
            result.records = [records]
            result.records_size = records.size
            total += records.size
            if throttle is not None:
                throttle.moved(fp.topic, fp.partition, in_sync, records.size)
    return results, total, answer_now, keys, remote


def _unknown_offsets(result: FetchPartitionResult) -> None:
    """A follower's read error carries no offsets, as Kafka's: librdkafka returns to the
    leader on OFFSET_OUT_OF_RANGE from a follower only when its offset is above the high
    watermark it is told, and would otherwise reset its position."""
    result.high_watermark = result.last_stable_offset = result.log_start_offset = -1


async def _read_remote(ctx: Any, remote: RemoteRead) -> None:
    """Fill ``remote.result`` from tiered storage, within remote.fetch.max.wait.ms; past it
    the partition answers with no records (the client fetches again), as Kafka's
    DelayedRemoteFetch does on expiry."""
    broker = ctx.broker
    rlm = broker.remote_log_manager
    p = remote.partition
    result = remote.result
    if remote.on_follower:
        st = rlm.followed_state_for(p.topic, p.index, p.topic_id, p.log)
        read_from = rlm.read_as_follower
    else:
        st = rlm.state_for(p.topic, p.index, p.topic_id, p.log)
        read_from = rlm.read
    read = read_from(
        st, remote.fetch_offset, remote.max_bytes, remote.min_one_message, remote.read_committed
    )
    timeout = broker.config.get_int("remote.fetch.max.wait.ms") / 1000
    try:
        fetched = await asyncio.wait_for(read, timeout)
    except TimeoutError:
        log.warning(
            "read of %s-%d at offset %d from tiered storage took over remote.fetch.max.wait.ms",
            p.topic,
            p.index,
            remote.fetch_offset,
        )
        return
    except Exception as e:
        code = getattr(e, "error_code", None)
        if code is None:
            log.warning(
                "read of %s-%d at offset %d from tiered storage failed: %s",
                p.topic,
                p.index,
                remote.fetch_offset,
                e,
            )
            code = ErrorCode.unknown_server_error
        result.error_code = ErrorCode(code)
        if remote.on_follower:
            _unknown_offsets(result)
        return
    if remote.read_committed:
        result.aborted_transactions = fetched.aborted_transactions or []
    if fetched.records:
        result.records = [fetched.records]
        result.records_size = len(fetched.records)


async def _respond_after_remote(
    ctx: Any,
    context: FetchContext,
    results: list[tuple[FetchPartition, FetchPartitionResult]],
    remote: RemoteRead,
) -> RawResponse:
    await _read_remote(ctx, remote)
    return _respond(ctx, context, results)


def _respond(
    ctx: Any,
    context: FetchContext,
    results: list[tuple[FetchPartition, FetchPartitionResult]],
) -> RawResponse:
    if context.session is not None:
        results = _news(results)
    quota = context.quota_max_bytes is not None
    version = ctx.header.api_version
    # Before v13 the answer names topics: a logical cluster's principal reads its own names.
    lc = ctx.logical_cluster if version < 13 else None
    topics: dict[tuple[str, uuid.UUID | None], FetchTopicResult] = {}
    for fp, result in results:
        topic = topics.get((fp.topic, fp.topic_id))
        if topic is None:
            name = fp.topic if lc is None else lc.logical(fp.topic) or ""
            topic = topics[(fp.topic, fp.topic_id)] = FetchTopicResult(name, fp.topic_id, [])
        topic.partitions.append(result)
    endpoints = _leader_hints(ctx, results) if version >= 16 else None
    session_id = context.response_session_id
    if quota:
        # The response is counted against the consumer's quota before it is sent; when the
        # quota cannot take it now, the fetch is answered empty instead (the session's
        # throttled response: same session id, no partitions) and the session is left as
        # if it had not been answered.
        parts, size = encode_fetch_response(
            version, list(topics.values()), session_id=session_id, node_endpoints=endpoints
        )
        ms = fetch_throttle_ms(ctx, size)
        if ms > 0:
            parts, size = encode_fetch_response(
                version, [], throttle_time_ms=ms, session_id=session_id
            )
            return RawResponse(parts, size, version >= 1)
    _count_sent(ctx, context, results)
    if context.session is not None:
        _sent(context, results)
    elif context.create_session:
        for fp, result in results:
            _remember(fp, result)
        session_id = ctx.broker.fetch_sessions.create(
            [fp for fp, _ in results],
            context.by_id,
            int(time.time() * 1000),
            _exists(ctx),
            _owner(ctx),
        )
    if not quota or session_id != context.response_session_id:
        parts, size = encode_fetch_response(
            version, list(topics.values()), session_id=session_id, node_endpoints=endpoints
        )
    return RawResponse(parts, size, version >= 1)


def _leader_hints(
    ctx: Any, results: list[tuple[FetchPartition, FetchPartitionResult]]
) -> list[NodeEndpoint] | None:
    """KIP-951: partitions that moved name their current leader; returns the endpoints of
    those leaders (None when no partition moved, the common case)."""
    listener = ctx.connection.listener.name
    leaders: set[int] = set()
    for fp, result in results:
        if result.error_code in LEADER_MOVED and fp.topic:
            leader = current_leader(ctx.broker, listener, fp.topic, fp.partition)
            if leader is not None:
                result.current_leader = leader
                leaders.add(leader[0])
    return node_endpoints(ctx.broker, listener, leaders) if leaders else None


def _news(
    results: list[tuple[FetchPartition, FetchPartitionResult]],
) -> list[tuple[FetchPartition, FetchPartitionResult]]:
    """An incremental response names only partitions with news for the client: records, an
    error, a preferred read replica, or a moved high watermark or log start offset."""
    return [
        (fp, result)
        for fp, result in results
        if result.records_size
        or result.error_code
        or result.preferred_read_replica >= 0
        or result.high_watermark != fp.sent_high_watermark
        or result.log_start_offset != fp.sent_log_start_offset
    ]


def _count_sent(
    ctx: Any, context: FetchContext, results: list[tuple[FetchPartition, FetchPartitionResult]]
) -> None:
    """The bytes a response sends: Kafka's BytesOut (or ReplicationBytesOut) and each
    partition's total for the self-balancer's load samples, counted once per response (not
    per read: a long poll reads again on every wake). A follower's response also records the
    high watermark it tells the follower."""
    metrics = ctx.broker.metrics
    rm = ctx.broker.replica_manager
    if context.from_follower:
        for fp, result in results:
            if result.records_size:
                metrics.replication_bytes_out.inc(result.records_size)
            if ctx.broker.replica_selector is None:
                continue  # the high watermark a follower was told matters only with one
            partition = rm.get(fp.topic, fp.partition)
            st = partition.followers.get(context.replica_id) if partition is not None else None
            if st is not None and not result.error_code:
                st.sent_high_watermark = result.high_watermark
        return
    for fp, result in results:
        if result.records_size:
            metrics.bytes_out_for(fp.topic).inc(result.records_size)
            partition = rm.get(fp.topic, fp.partition)
            if partition is not None:
                partition.bytes_out_total += result.records_size


def _remember(fp: FetchPartition, result: FetchPartitionResult) -> None:
    """What the session's client was told. A partition answered with an error is remembered
    with high watermark -1, so that it is sent again once the error clears (as Kafka's
    CachedPartition does)."""
    fp.sent_high_watermark = -1 if result.error_code else result.high_watermark
    fp.sent_log_start_offset = result.log_start_offset


def _sent(context: FetchContext, sent: list[tuple[FetchPartition, FetchPartitionResult]]) -> None:
    """Remember what the session's client was told (_remember). Partitions that returned
    records move to the end of the session, so that the next fetch.max.bytes goes to the
    others first (Kafka's round robin)."""
    assert context.session is not None
    for fp, result in sent:
        _remember(fp, result)
    session_partitions = context.session.partitions
    for fp, result in sent:
        if result.records_size:
            key = fp.key(context.by_id)
            # A later request on the session (another connection) may have forgotten it.
            moved = session_partitions.pop(key, None)
            if moved is not None:
                session_partitions[key] = moved


def _exists(ctx: Any) -> Callable[[FetchPartition], bool]:
    rm = ctx.broker.replica_manager
    if ctx.broker.authorizer is None:
        return lambda fp: bool(fp.topic) and rm.get(fp.topic, fp.partition) is not None

    @functools.cache
    def readable(topic: str) -> bool:  # once per topic, not per partition
        return authorized(ctx, AclOperation.READ, ResourceType.TOPIC, topic)

    def exists(fp: FetchPartition) -> bool:
        if not fp.topic:
            return False
        if rm.get(fp.topic, fp.partition) is not None:
            return True
        # A topic the principal may not read must look the same whether it exists or not:
        # the session is kept (or opened) either way.
        return not readable(fp.topic)

    return exists


def _owner(ctx: Any) -> str:
    return ctx.logical_cluster.id if ctx.logical_cluster is not None else ""


def handle(ctx: Any, request: Any) -> Any:
    partitions, forgotten = _requested(ctx, request)
    if ctx.header.api_version >= 7:
        context = ctx.broker.fetch_sessions.new_context(
            request.session_id,
            request.session_epoch,
            partitions,
            forgotten,
            ctx.header.api_version >= 13,
            int(time.time() * 1000),
            _exists(ctx),
            _owner(ctx),
        )
        if context.error:
            parts, size = encode_fetch_response(
                ctx.header.api_version, [], error_code=context.error
            )
            return RawResponse(parts, size, ctx.header.api_version >= 1)
    else:
        context = FetchContext(partitions)
    context.replica_id = _replica_id(request)
    exempt_a_replica(ctx, context.replica_id)
    if not context.from_follower and ctx.broker.quota_manager.active("fetch"):
        # Followers are not subject to client quotas (KIP-73 throttles them instead).
        context.quota_max_bytes = fetch_max_bytes(ctx)
    return _fetch(ctx, request, context)


def _fetch(ctx: Any, request: Any, context: FetchContext) -> Any:
    denied = None
    if ctx.broker.authorizer is not None:
        denied = _denied_topics(ctx, request, context.partitions) or None
    # The most a response may carry: what the client asks, within the broker's
    # fetch.max.bytes and a client quota's cap, as in Kafka.
    budget = min(request.max_bytes, ctx.broker.config.get_int("fetch.max.bytes"))
    if context.quota_max_bytes is not None:
        budget = min(budget, context.quota_max_bytes)
    results, total, answer_now, keys, remote = _read(
        ctx, request, context.partitions, denied, budget
    )
    if remote is not None:
        return _respond_after_remote(ctx, context, results, remote)
    max_wait_ms = int(request.max_wait.total_seconds() * 1000)
    # min_bytes within the budget too, so that a long poll can complete (Kafka's).
    min_bytes = min(request.min_bytes, budget)
    if total >= min_bytes or answer_now or max_wait_ms <= 0 or not keys:
        return _respond(ctx, context, results)
    # Parked now, not when the coroutine first runs: an append that comes in between (a
    # produce handled inline on another connection) would otherwise find no watcher, and the
    # fetch would sleep its whole max_wait_ms through it. The connection cancels it if it is
    # lost before the coroutine starts.
    deadline = asyncio.get_running_loop().time() + max_wait_ms / 1000
    op = ctx.broker.replica_manager.purgatory.park(keys, min_bytes, total, max_wait_ms)
    ctx.connection.parked_fetch = op
    return _wait_and_read(ctx, request, context, op, deadline, denied, min_bytes, budget)


async def _wait_and_read(
    ctx: Any,
    request: Any,
    context: FetchContext,
    op: DelayedFetch,
    deadline: float,
    denied: set[str] | None,
    min_bytes: int,
    budget: int,
) -> RawResponse:
    purgatory = ctx.broker.replica_manager.purgatory
    loop = asyncio.get_running_loop()
    try:
        while True:
            await op.future
            if op.expired:
                kind = "follower" if context.from_follower else "consumer"
                ctx.broker.metrics.delayed_fetch_expires.labels(kind).inc()
            waited = set(op.keys)
            results, accumulated, answer_now, keys, remote = _read(
                ctx, request, context.partitions, denied, budget
            )
            if remote is not None:
                await _read_remote(ctx, remote)
                return _respond(ctx, context, results)
            max_wait_ms = int((deadline - loop.time()) * 1000)
            # A read_committed fetch is woken by appends past the last stable offset too (an
            # open transaction holds it back): it waits again for what it can read, as
            # Kafka's DelayedFetch counts bytes up to the LSO only. A partition it waited on
            # that went away (its topic deleted) answers at once, as in DelayedFetch.
            if (
                accumulated >= min_bytes
                or answer_now
                or max_wait_ms <= 0
                or not keys
                or not waited.issubset(keys)
            ):
                return _respond(ctx, context, results)
            op = purgatory.park(keys, min_bytes, accumulated, max_wait_ms)
            ctx.connection.parked_fetch = op
    finally:
        ctx.connection.parked_fetch = None
