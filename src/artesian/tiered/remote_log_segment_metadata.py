"""RemoteLogSegmentMetadata: one segment in tiered storage, and where its objects live.

Kafka keeps this metadata in the ``__remote_log_metadata`` topic. Artesian keeps it in the object
store itself, as a small JSON object written after the segment's data objects (the commit point)
and deleted before them: the bucket alone is enough to serve and restore a partition's remote
log, even with every broker disk and the metadata store gone.

Object names, under the store's prefix::

    <topic>-<partition>-<topic id>/<start offset, 20 digits>-<segment id>.log
                                   ... .index .timeindex .txnindex .metadata.json
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

__all__ = [
    "INDEX_SUFFIX",
    "LOG_SUFFIX",
    "METADATA_SUFFIX",
    "TIME_INDEX_SUFFIX",
    "TXN_INDEX_SUFFIX",
    "RemoteLogSegmentMetadata",
    "partition_prefix",
]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
TXN_INDEX_SUFFIX = ".txnindex"
METADATA_SUFFIX = ".metadata.json"
DATA_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)

_VERSION = 1


def partition_prefix(topic: str, partition: int, topic_id: uuid.UUID) -> str:
    """The topic id tells a recreated topic's objects from the deleted one's."""
    return f"{topic}-{partition}-{topic_id}"


@dataclass(frozen=True, slots=True)
class RemoteLogSegmentMetadata:
    topic: str
    partition: int
    topic_id: uuid.UUID
    segment_id: uuid.UUID
    start_offset: int
    end_offset: int  # inclusive, as Kafka's
    max_timestamp: int
    size_in_bytes: int
    # (leader epoch, start offset) of each epoch that wrote into the segment.
    segment_leader_epochs: tuple[tuple[int, int], ...]
    has_txn_index: bool
    event_timestamp_ms: int
    broker_id: int

    @property
    def prefix(self) -> str:
        return partition_prefix(self.topic, self.partition, self.topic_id)

    def object_key(self, suffix: str) -> str:
        return f"{self.prefix}/{self.start_offset:020d}-{self.segment_id}{suffix}"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": _VERSION,
                "topic": self.topic,
                "partition": self.partition,
                "topic_id": str(self.topic_id),
                "segment_id": str(self.segment_id),
                "start_offset": self.start_offset,
                "end_offset": self.end_offset,
                "max_timestamp": self.max_timestamp,
                "size_in_bytes": self.size_in_bytes,
                "segment_leader_epochs": [list(e) for e in self.segment_leader_epochs],
                "has_txn_index": self.has_txn_index,
                "event_timestamp_ms": self.event_timestamp_ms,
                "broker_id": self.broker_id,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RemoteLogSegmentMetadata:
        """Raises ValueError for anything that is not a metadata object we wrote."""
        try:
            d = json.loads(data)
            if d.get("version") != _VERSION:
                raise ValueError(f"unknown remote segment metadata version {d.get('version')}")
            meta = cls(
                topic=str(d["topic"]),
                partition=int(d["partition"]),
                topic_id=uuid.UUID(d["topic_id"]),
                segment_id=uuid.UUID(d["segment_id"]),
                start_offset=int(d["start_offset"]),
                end_offset=int(d["end_offset"]),
                max_timestamp=int(d["max_timestamp"]),
                size_in_bytes=int(d["size_in_bytes"]),
                segment_leader_epochs=tuple(
                    (int(e), int(o)) for e, o in d["segment_leader_epochs"]
                ),
                has_txn_index=bool(d["has_txn_index"]),
                event_timestamp_ms=int(d["event_timestamp_ms"]),
                broker_id=int(d["broker_id"]),
            )
        except (KeyError, TypeError, AttributeError, RecursionError, json.JSONDecodeError) as e:
            raise ValueError(f"malformed remote segment metadata: {e}") from None
        if meta.end_offset < meta.start_offset or meta.size_in_bytes < 0:
            raise ValueError("malformed remote segment metadata: bad offsets or size")
        return meta
