"""Share sessions (KIP-932): the partitions a share group member fetches from this broker,
under an epoch that moves with each request (Kafka's ShareSessionCache). Epoch 0 opens a
session, -1 closes it; any other epoch must be the one the last request left."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

INITIAL_EPOCH, FINAL_EPOCH = 0, -1
# A client has one member (one session per broker) per connection; more is someone filling
# the cache that every member of every group shares.
MAX_SESSIONS_PER_CONNECTION = 16
PartitionKey = tuple[uuid.UUID, int]  # topic id, partition


@dataclass(slots=True, eq=False)
class ShareSession:
    group_id: str
    member_id: str
    connection: object
    epoch: int = 1
    partitions: dict[PartitionKey, None] = field(default_factory=dict)
    """In the order they were added (a dict as an ordered set)."""

    def advance(self) -> None:
        self.epoch = 1 if self.epoch >= 2**31 - 1 else self.epoch + 1


class ShareSessionCache:
    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.sessions: dict[tuple[str, str], ShareSession] = {}
        # By connection (its id): every connection's close looks here, share client or not.
        self._by_connection: dict[int, dict[tuple[str, str], ShareSession]] = {}

    def get(self, group_id: str, member_id: str) -> ShareSession | None:
        return self.sessions.get((group_id, member_id))

    def open(self, group_id: str, member_id: str, connection: object) -> ShareSession | ErrorCode:
        """A new session (epoch 0), replacing the member's old one; the old one's records
        wait for their locks to expire, as in Kafka."""
        key = (group_id, member_id)
        if key not in self.sessions and (
            len(self.sessions) >= self.max_sessions
            or len(self.of_connection(connection)) >= MAX_SESSIONS_PER_CONNECTION
        ):
            return ErrorCode.share_session_limit_reached
        old = self.sessions.get(key)
        if old is not None:
            self.remove(old)
        session = self.sessions[key] = ShareSession(group_id, member_id, connection)
        self._by_connection.setdefault(id(connection), {})[key] = session
        return session

    def has_group(self, group_id: str) -> bool:
        """Whether a member of the group has a session here (asked when one closes)."""
        return any(group == group_id for group, _member in self.sessions)

    def check(self, group_id: str, member_id: str, epoch: int) -> ShareSession | ErrorCode:
        """The session a request with ``epoch`` (not 0) continues or closes."""
        session = self.sessions.get((group_id, member_id))
        if session is None:
            return ErrorCode.share_session_not_found
        if epoch != FINAL_EPOCH and epoch != session.epoch:
            return ErrorCode.invalid_share_session_epoch
        return session

    def remove(self, session: ShareSession) -> None:
        key = (session.group_id, session.member_id)
        if self.sessions.get(key) is session:
            del self.sessions[key]
            of_connection = self._by_connection.get(id(session.connection), {})
            of_connection.pop(key, None)
            if not of_connection:
                self._by_connection.pop(id(session.connection), None)

    def of_connection(self, connection: object) -> list[ShareSession]:
        return list(self._by_connection.get(id(connection), {}).values())
