"""Incremental fetch sessions (KIP-227).

A consumer's first Fetch (epoch 0) names every partition it reads; the broker caches that set
and answers with a session id. Later Fetches (epoch 1, 2, ...) name only the partitions whose
fetch position changed, plus those to forget, and the response carries only the partitions
that have something new: records, an error, or a moved high watermark or log start offset.
With thousands of partitions that saves both sides most of the request and response.

The names follow Kafka's FetchSession, FetchSessionCache and FetchContext.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
# A session idle this long may be evicted for a new one (Kafka's fixed value).
EVICTION_MS = 120_000

PartitionKey = tuple[object, int]  # (topic id from v13, else topic name; partition)


def next_epoch(epoch: int) -> int:
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == 0x7FFFFFFF else epoch + 1


@dataclass(slots=True)
class FetchPartition:
    """One partition to read, and (in a session) what its client was last told."""

    topic: str  # "" when a v13+ topic id names no topic
    topic_id: uuid.UUID | None
    partition: int
    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int = -1
    log_start_offset: int = -1  # a follower's (v5+): the leader's low watermark needs it
    sent_high_watermark: int = -1
    sent_log_start_offset: int = -1

    def key(self, by_id: bool) -> PartitionKey:
        return (self.topic_id if by_id else self.topic, self.partition)


@dataclass(slots=True)
class FetchSession:
    id: int
    epoch: int
    by_id: bool  # v13+ clients name topics by id
    partitions: dict[PartitionKey, FetchPartition]
    last_used_ms: int
    # The logical cluster whose principal opened it ("" for none): only its own may use it.
    owner: str = ""

    def update(self, changed: Iterable[FetchPartition], forgotten: Iterable[PartitionKey]) -> None:
        for p in changed:
            known = self.partitions.get(p.key(self.by_id))
            if known is None:
                self.partitions[p.key(self.by_id)] = p
            else:
                known.fetch_offset = p.fetch_offset
                known.max_bytes = p.max_bytes
                known.current_leader_epoch = p.current_leader_epoch
                known.log_start_offset = p.log_start_offset
        for key in forgotten:
            self.partitions.pop(key, None)


@dataclass(slots=True)
class FetchContext:
    """What one Fetch request reads and how its response is cut down.

    ``session`` is set for an incremental fetch; ``create_session`` for a full fetch that may
    open one; ``error`` for a request whose session is unknown or out of step."""

    partitions: list[FetchPartition]
    session: FetchSession | None = None
    create_session: bool = False
    error: ErrorCode = ErrorCode.none
    by_id: bool = False
    response_session_id: int = INVALID_SESSION_ID
    # A replica's fetch (its broker id; -1 for clients): replication bytes, not a client's.
    replica_id: int = -1
    # A consumer under a consumer_byte_rate: the most its response may carry, and the
    # response is checked against the quota before it is sent. None: no quota applies.
    quota_max_bytes: int | None = None

    @property
    def from_follower(self) -> bool:
        return self.replica_id >= 0


@dataclass
class FetchSessionCache:
    max_slots: int
    on_evict: Callable[[], object] = lambda: None
    sessions: dict[int, FetchSession] = field(default_factory=dict)

    @property
    def cached_partitions(self) -> int:
        # list(): a scrape counts on another thread while sessions come and go.
        return sum(len(s.partitions) for s in list(self.sessions.values()))

    def new_context(
        self,
        session_id: int,
        epoch: int,
        partitions: list[FetchPartition],
        forgotten: list[PartitionKey],
        by_id: bool,
        now_ms: int,
        exists: Callable[[FetchPartition], bool],
        owner: str = "",
    ) -> FetchContext:
        """``owner``: the requester's logical cluster ("" for none); another's session is
        as unknown to it as one that never was."""
        session = self.sessions.get(session_id)
        if session is not None and session.owner != owner:
            session = None
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            # A full fetch closes any session it names; epoch -1 asks for no new one.
            if session is not None:
                del self.sessions[session_id]
            return FetchContext(partitions, create_session=epoch == INITIAL_EPOCH, by_id=by_id)
        if session is None:
            return FetchContext([], error=ErrorCode.fetch_session_id_not_found)
        if session.epoch != epoch:
            return FetchContext([], error=ErrorCode.invalid_fetch_session_epoch)
        if session.by_id != by_id:
            return FetchContext([], error=ErrorCode.fetch_session_topic_id_error)
        if not all(exists(p) for p in partitions):
            # Sessions hold only partitions that exist, which bounds their memory; the client
            # sees session id 0 and starts a new one with a full fetch.
            del self.sessions[session_id]
            return FetchContext(partitions, by_id=by_id)
        session.update(partitions, forgotten)
        if not session.partitions:
            del self.sessions[session_id]
            return FetchContext(partitions, by_id=by_id)
        session.epoch = next_epoch(session.epoch)
        session.last_used_ms = now_ms
        return FetchContext(
            list(session.partitions.values()),
            session=session,
            by_id=by_id,
            response_session_id=session.id,
        )

    def create(
        self,
        partitions: list[FetchPartition],
        by_id: bool,
        now_ms: int,
        exists: Callable[[FetchPartition], bool],
        owner: str = "",
    ) -> int:
        """Cache a full fetch's partitions as a new session; its id, or 0 when there is no
        slot or a partition does not exist."""
        if self.max_slots <= 0 or not partitions or not all(exists(p) for p in partitions):
            return INVALID_SESSION_ID
        if len(self.sessions) >= self.max_slots and not self._evict(len(partitions), now_ms):
            return INVALID_SESSION_ID
        session_id = INVALID_SESSION_ID
        while session_id == INVALID_SESSION_ID or session_id in self.sessions:
            session_id = random.randint(1, 0x7FFFFFFF)
        self.sessions[session_id] = FetchSession(
            session_id,
            next_epoch(INITIAL_EPOCH),
            by_id,
            {p.key(by_id): p for p in partitions},
            now_ms,
            owner,
        )
        return session_id

    def _evict(self, new_size: int, now_ms: int) -> bool:
        """Kafka's rule: a stale session goes first; else a smaller one than the newcomer."""
        stale = min(self.sessions.values(), key=lambda s: s.last_used_ms)
        if now_ms - stale.last_used_ms >= EVICTION_MS:
            victim = stale
        else:
            victim = min(self.sessions.values(), key=lambda s: len(s.partitions))
            if len(victim.partitions) >= new_size:
                return False
        del self.sessions[victim.id]
        self.on_evict()
        return True
