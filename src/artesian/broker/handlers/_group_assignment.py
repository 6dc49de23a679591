"""A consumer group member's partitions as ConsumerGroupHeartbeat and ConsumerGroupDescribe
carry them: by topic id (and name, where the version has it), partitions sorted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from artesian.broker.handlers._build import make
from artesian.metadata.image import MetadataImage


def assignment_entity(mod: Any, image: MetadataImage, partitions: Iterable[tuple[str, int]]) -> Any:
    by_topic: dict[str, list[int]] = {}
    for topic, index in partitions:
        by_topic.setdefault(topic, []).append(index)
    return make(
        mod.Assignment,
        topic_partitions=tuple(
            make(
                mod.TopicPartitions,
                topic_id=image.topics[topic].topic_id,
                topic_name=topic,
                partitions=tuple(sorted(indexes)),
            )
            for topic, indexes in sorted(by_topic.items())
            # A topic deleted since the assignment was computed: its partitions are gone.
            if topic in image.topics
        ),
    )
