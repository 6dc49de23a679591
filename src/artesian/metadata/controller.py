"""The controller: validates metadata changes and turns them into records.

With one broker the controller runs inside it; the records go to the metadata store, and every
broker (today: this one) applies them to its image. Validation follows Kafka's rules and error
codes, so admin clients see what they would see against Apache Kafka.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from artesian.metadata.image import TOPIC_RESOURCE, MetadataImage
from artesian.metadata.records import (
    ConfigRecord,
    MetadataRecord,
    PartitionRecord,
    RemoveTopicRecord,
    TopicRecord,
)
from artesian.metadata.store import MetadataStore

_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249
# KRaft's limit on the partitions one request may create: larger requests would stall the
# controller (and here the event loop) building their records.
MAX_PARTITIONS_PER_REQUEST = 10_000


class ControllerError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def validate_topic_name(name: str) -> None:
    if not name:
        raise ControllerError(ErrorCode.invalid_topic_exception, "Topic name is empty")
    if name in (".", ".."):
        raise ControllerError(ErrorCode.invalid_topic_exception, f"Topic name cannot be '{name}'")
    if len(name) > MAX_TOPIC_NAME:
        raise ControllerError(
            ErrorCode.invalid_topic_exception,
            f"Topic name is longer than the maximum of {MAX_TOPIC_NAME} characters",
        )
    if not _LEGAL_TOPIC.match(name):
        raise ControllerError(
            ErrorCode.invalid_topic_exception,
            f"Topic name '{name}' is illegal: it contains a character other than "
            "ASCII alphanumerics, '.', '_' and '-'",
        )


@dataclass(slots=True)
class NewTopic:
    name: str
    num_partitions: int
    replication_factor: int
    configs: Mapping[str, str]
    assignments: Mapping[int, tuple[int, ...]] | None = None


class Controller:
    def __init__(self, store: MetadataStore, image: MetadataImage) -> None:
        self.store = store
        self.image = image

    def _live_brokers(self) -> list[int]:
        return sorted(self.image.brokers)

    def plan_create_topic(self, topic: NewTopic) -> list[MetadataRecord]:
        validate_topic_name(topic.name)
        if topic.name in self.image.topics:
            raise ControllerError(
                ErrorCode.topic_already_exists, f"Topic '{topic.name}' already exists."
            )
        brokers = self._live_brokers()
        if topic.assignments:
            partitions = sorted(topic.assignments)
            if partitions != list(range(len(partitions))):
                raise ControllerError(
                    ErrorCode.invalid_replica_assignment,
                    "Partitions in the replica assignment must be consecutive from 0",
                )
            replicas_of = dict(topic.assignments)
            for reps in replicas_of.values():
                if not reps or len(set(reps)) != len(reps) or any(b not in brokers for b in reps):
                    raise ControllerError(
                        ErrorCode.invalid_replica_assignment,
                        f"Replica assignment {list(reps)} names unknown or repeated brokers",
                    )
        else:
            if topic.num_partitions > MAX_PARTITIONS_PER_REQUEST:
                raise ControllerError(
                    ErrorCode.policy_violation,
                    "Excessively large number of partitions per request.",
                )
            if topic.num_partitions <= 0:
                raise ControllerError(
                    ErrorCode.invalid_partitions, "Number of partitions must be larger than 0."
                )
            if topic.replication_factor <= 0:
                raise ControllerError(
                    ErrorCode.invalid_replication_factor,
                    "Replication factor must be larger than 0.",
                )
            if topic.replication_factor > len(brokers):
                raise ControllerError(
                    ErrorCode.invalid_replication_factor,
                    f"Unable to replicate the partition {topic.replication_factor} time(s): "
                    f"The target replication factor of {topic.replication_factor} cannot be "
                    f"reached because only {len(brokers)} broker(s) are registered.",
                )
            replicas_of = {
                p: tuple(brokers[(p + r) % len(brokers)] for r in range(topic.replication_factor))
                for p in range(topic.num_partitions)
            }
        topic_id = str(uuid.uuid4())
        records: list[MetadataRecord] = [TopicRecord(topic.name, topic_id)]
        records += [
            ConfigRecord(TOPIC_RESOURCE, topic.name, k, v) for k, v in sorted(topic.configs.items())
        ]
        records += [
            PartitionRecord(topic_id, p, reps, reps, reps[0])
            for p, reps in sorted(replicas_of.items())
        ]
        return records

    def plan_delete_topic(
        self, name: str | None, topic_id: uuid.UUID | None
    ) -> list[MetadataRecord]:
        topic = (
            self.image.topics_by_id.get(topic_id)
            if topic_id is not None and topic_id.int != 0
            else self.image.topics.get(name or "")
        )
        if topic is None:
            if topic_id is not None and topic_id.int != 0:
                raise ControllerError(
                    ErrorCode.unknown_topic_id, "This server does not host this topic ID."
                )
            raise ControllerError(
                ErrorCode.unknown_topic_or_partition,
                "This server does not host this topic-partition.",
            )
        return [RemoveTopicRecord(str(topic.topic_id))]

    def plan_create_partitions(
        self, name: str, count: int, assignments: list[tuple[int, ...]] | None
    ) -> list[MetadataRecord]:
        topic = self.image.topics.get(name)
        if topic is None:
            raise ControllerError(
                ErrorCode.unknown_topic_or_partition,
                "This server does not host this topic-partition.",
            )
        current = len(topic.partitions)
        if count < current:
            raise ControllerError(
                ErrorCode.invalid_partitions,
                f"Topic currently has {current} partitions, which is higher than the "
                f"requested {count}.",
            )
        if count == current:
            raise ControllerError(
                ErrorCode.invalid_partitions, f"Topic already has {current} partitions."
            )
        brokers = self._live_brokers()
        rf = len(topic.partitions[0].replicas) if topic.partitions else 1
        new = count - current
        if new > MAX_PARTITIONS_PER_REQUEST:
            raise ControllerError(
                ErrorCode.policy_violation,
                "Excessively large number of partitions per request.",
            )
        if assignments is not None and len(assignments) != new:
            raise ControllerError(
                ErrorCode.invalid_replica_assignment,
                f"Increasing the number of partitions by {new} but {len(assignments)} "
                "assignments provided.",
            )
        records: list[MetadataRecord] = []
        for i in range(new):
            p = current + i
            reps = (
                tuple(assignments[i])
                if assignments is not None
                else tuple(brokers[(p + r) % len(brokers)] for r in range(rf))
            )
            if not reps or any(b not in brokers for b in reps):
                raise ControllerError(
                    ErrorCode.invalid_replica_assignment,
                    f"Replica assignment {list(reps)} names unknown brokers",
                )
            records.append(PartitionRecord(str(topic.topic_id), p, reps, reps, reps[0]))
        return records

    def plan_topic_configs(
        self, name: str, configs: Mapping[str, str | None]
    ) -> list[MetadataRecord]:
        """Replace (AlterConfigs) or patch the overrides: None removes one."""
        if name not in self.image.topics:
            raise ControllerError(
                ErrorCode.unknown_topic_or_partition,
                "This server does not host this topic-partition.",
            )
        return [ConfigRecord(TOPIC_RESOURCE, name, k, v) for k, v in sorted(configs.items())]

    def commit(self, records: list[MetadataRecord]) -> int:
        """Append to the store; the caller applies the same records to the image."""
        if not records:
            return self.image.offset
        return self.store.append(records)
