"""The controller: validates metadata changes and turns them into records.

With one broker the controller runs inside it; the records go to the metadata store, and every
broker (today: this one) applies them to its image. Validation follows Kafka's rules and error
codes, so admin clients see what they would see against Apache Kafka.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.metadata.image import (
    BROKER_RESOURCE,
    CLIENT_METRICS_RESOURCE,
    GROUP_RESOURCE,
    TOPIC_RESOURCE,
    MetadataImage,
    PartitionImage,
    TopicImage,
    metric_name,
)
from artesian.metadata.records import (
    ConfigRecord,
    MetadataRecord,
    PartitionRecord,
    RemoveTopicRecord,
    TopicRecord,
)
from artesian.metadata.store import MetadataStore
from artesian.tenancy import logical_cluster_id_of

_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249
# KRaft's limit on the partitions one request may create: larger requests would stall the
# controller (and here the event loop) building their records.
MAX_PARTITIONS_PER_REQUEST = 10_000


# The texts Kafka's ApiError gives these outcomes of ElectLeaders.
_ELECTION_MESSAGES = {
    ErrorCode.election_not_needed: "Leader election not needed for topic partition.",
    ErrorCode.preferred_leader_not_available: "The preferred leader was not available.",
    ErrorCode.eligible_leaders_not_available: "Eligible topic partition leaders are not available.",
}


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
    def __init__(
        self,
        store: MetadataStore,
        image: MetadataImage,
        live: Callable[[], Set[int]] | None = None,
    ) -> None:
        self.store = store
        self.image = image
        self._live = live

    def _live_brokers(self) -> list[int]:
        """Registered brokers with open sessions, and not being removed: new replicas go
        there (a broker being drained is cordoned, as KIP-1066 cordons log dirs)."""
        leaving = self.image.removing()
        registered = [b for b in sorted(self.image.brokers) if b not in leaving] or sorted(
            self.image.brokers
        )
        if self._live is None:
            return registered
        live = self._live()
        return [b for b in registered if b in live] or registered

    @staticmethod
    def _changed(topic_id: uuid.UUID, p: PartitionImage, **changes: Any) -> PartitionRecord:
        """The partition's next record: ``changes`` over what it has now (a reassignment in
        progress carries over), with the next partition epoch."""
        fields = {
            "replicas": p.replicas,
            "isr": p.isr,
            "leader": p.leader,
            "leader_epoch": p.leader_epoch,
            "adding_replicas": p.adding_replicas,
            "removing_replicas": p.removing_replicas,
            **changes,
        }
        return PartitionRecord(
            str(topic_id), p.partition, partition_epoch=p.partition_epoch + 1, **fields
        )

    def plan_elections(
        self,
        live: Set[int],
        unclean: bool | Callable[[TopicImage], bool],
        leaving: int | None = None,
    ) -> list[MetadataRecord]:
        """Partitions led by a broker outside ``live`` get the first live ISR member (in
        replica order) as leader, with the next leader epoch; brokers outside ``live`` leave
        every ISR. With no live ISR member the partition goes offline (leader -1) until one
        returns, unless ``unclean`` (unclean.leader.election.enable, for every topic or as a
        function of the topic) allows any live replica.
        An offline partition whose ISR member is back gets it as leader.

        ``leaving``: a live broker to move off (Kafka's controlled shutdown, and KRaft's
        fencing of a restarted broker's old incarnation): its leaderships go to another live
        ISR member and it leaves ISRs, wherever another member remains."""
        records: list[MetadataRecord] = []
        for topic in self.image.topics.values():
            # Asked only for a partition with no live ISR member: the answer reads configs.
            def allowed(topic: TopicImage = topic) -> bool:
                return unclean(topic) if callable(unclean) else unclean

            for p in topic.partitions.values():
                planned = self._elect(p, live, allowed, leaving)
                if planned is not None:
                    leader, isr, epoch = planned
                    records.append(
                        self._changed(topic.topic_id, p, isr=isr, leader=leader, leader_epoch=epoch)
                    )
        return records

    def plan_restarted_leader(self, node: int) -> list[MetadataRecord]:
        """A broker starts while still leading replicated partitions (no in-sync follower was
        live to take over): each gets a new leader epoch, as KRaft's fencing of the old
        incarnation does, so followers holding records the restart lost find their tails
        diverging by epoch and truncate them."""
        return [
            self._changed(topic.topic_id, p, leader_epoch=p.leader_epoch + 1)
            for topic in self.image.topics.values()
            for p in topic.partitions.values()
            if p.leader == node and len(p.replicas) > 1
        ]

    def plan_preferred_leaders(
        self, live: Set[int], imbalance_percent: int
    ) -> list[MetadataRecord]:
        """Kafka's auto leader rebalance: for a live broker that leads fewer than its share of
        the partitions it is preferred for (first in the replica list), by more than
        ``imbalance_percent``, leadership goes back to it wherever it is in sync."""
        preferred: dict[int, list[tuple[TopicImage, PartitionImage]]] = {}
        for topic in self.image.topics.values():
            for p in topic.partitions.values():
                if p.replicas:
                    preferred.setdefault(p.replicas[0], []).append((topic, p))
        records: list[MetadataRecord] = []
        for broker, parts in sorted(preferred.items()):
            if broker not in live:
                continue
            elsewhere = [(t, p) for t, p in parts if p.leader != broker]
            if len(elsewhere) * 100 <= imbalance_percent * len(parts):
                continue
            for t, p in elsewhere:
                _, record = self._preferred_election(t.topic_id, p, live)
                if record is not None:
                    records.append(record)
        return records

    def plan_requested_elections(
        self,
        unclean: bool,
        wanted: Sequence[tuple[str, Sequence[int]]] | None,
        live: Set[int],
    ) -> tuple[list[MetadataRecord], dict[str, list[tuple[int, ErrorCode, str | None]]]]:
        """ElectLeaders (KIP-460): a preferred election moves leadership to the first replica
        if it is live and in sync; an unclean one gives a partition without a live leader
        its first live ISR member, else its first live replica (which then is the ISR).
        ``wanted`` None means every partition, whose results then leave out those that
        needed nothing, as KRaft's controller does. Returns the records and, per topic, each
        partition's (index, error, message)."""
        records: list[MetadataRecord] = []
        results: dict[str, list[tuple[int, ErrorCode, str | None]]] = {}
        everything = wanted is None
        if wanted is None:
            wanted = [(name, sorted(t.partitions)) for name, t in sorted(self.image.topics.items())]
        for name, indexes in wanted:
            topic = self.image.topics.get(name)
            outcomes = results.setdefault(name, [])
            for index in indexes:
                p = topic.partitions.get(index) if topic is not None else None
                if topic is None or p is None:
                    what = f"topic as {name}" if topic is None else f"partition as {name}-{index}"
                    outcomes.append(
                        (index, ErrorCode.unknown_topic_or_partition, f"No such {what}")
                    )
                    continue
                elect = self._unclean_election if unclean else self._preferred_election
                code, record = elect(topic.topic_id, p, live)
                if record is not None:
                    records.append(record)
                if not (everything and code is ErrorCode.election_not_needed):
                    outcomes.append((index, code, _ELECTION_MESSAGES.get(code)))
        return records, results

    def _preferred_election(
        self, topic_id: uuid.UUID, p: PartitionImage, live: Set[int]
    ) -> tuple[ErrorCode, PartitionRecord | None]:
        """Leadership back to the first replica, if it is live and in sync (ElectLeaders'
        PREFERRED, and the auto leader rebalance)."""
        preferred = p.replicas[0] if p.replicas else -1
        if p.leader == preferred:
            return ErrorCode.election_not_needed, None
        if preferred not in live or preferred not in p.isr:
            return ErrorCode.preferred_leader_not_available, None
        return ErrorCode.none, self._changed(
            topic_id, p, leader=preferred, leader_epoch=p.leader_epoch + 1
        )

    def _unclean_election(
        self, topic_id: uuid.UUID, p: PartitionImage, live: Set[int]
    ) -> tuple[ErrorCode, PartitionRecord | None]:
        """ElectLeaders' UNCLEAN: the controller's own election with unclean allowed."""
        # Any leader at all, as Kafka: whether it lives is the active controller's to judge
        # (its sessions), not a view this broker may hold a moment too long.
        if p.leader != -1:
            return ErrorCode.election_not_needed, None
        planned = self._elect(p, live, lambda: True, None)
        if planned is None or planned[0] == -1:
            return ErrorCode.eligible_leaders_not_available, None
        leader, isr, epoch = planned
        return ErrorCode.none, self._changed(
            topic_id, p, leader=leader, isr=isr, leader_epoch=epoch
        )

    @staticmethod
    def _elect(
        p: PartitionImage, live: Set[int], unclean: Callable[[], bool], leaving: int | None
    ) -> tuple[int, tuple[int, ...], int] | None:
        """(leader, ISR, leader epoch) the partition should have, or None if unchanged."""
        eligible = live if leaving is None else live - {leaving}
        live_isr = tuple(r for r in p.isr if r in eligible)
        leader, isr, epoch = p.leader, p.isr, p.leader_epoch
        if leaving is not None:
            if not live_isr or leaving not in p.isr:
                return None  # nobody to take over, or not part of it
            # Only the leaving broker leaves the ISR, as in Kafka's controlled shutdown: this
            # broker's view of the others may be a heartbeat old (one that just rejoined
            # looks fenced), and shrinking the ISR on it can take a partition below
            # min.insync.replicas. Fenced brokers are the active controller's to remove.
            isr = tuple(r for r in p.isr if r != leaving)
            if p.leader == leaving or p.leader not in live:
                leader = next(r for r in p.replicas if r in live_isr)
                epoch += 1
        else:
            isr = live_isr or p.isr
            if p.leader not in live:
                candidates = [r for r in p.replicas if r in live_isr]
                if not candidates and unclean():
                    candidates = [r for r in p.replicas if r in live]
                    isr = tuple(candidates[:1]) or p.isr
                leader = candidates[0] if candidates else -1
                if leader != p.leader:
                    epoch += 1
        if (leader, isr, epoch) == (p.leader, p.isr, p.leader_epoch):
            return None
        return leader, isr, epoch

    def plan_leader_transfer(
        self, name: str, partition: int, replicas: tuple[int, ...], live: Set[int]
    ) -> list[MetadataRecord]:
        """The self-balancer's leadership move: the same replicas in a new order, whose first
        (the preferred leader) takes over now if it is live and in sync."""
        topic = self.image.topics.get(name)
        p = topic.partitions.get(partition) if topic is not None else None
        if topic is None or p is None or p.adding_replicas or p.removing_replicas:
            return []
        if sorted(replicas) != sorted(p.replicas):
            return []
        leader, epoch = p.leader, p.leader_epoch
        if replicas[0] != p.leader and replicas[0] in p.isr and replicas[0] in live:
            leader, epoch = replicas[0], epoch + 1
        if (replicas, leader) == (p.replicas, p.leader):
            return []
        return [
            self._changed(topic.topic_id, p, replicas=replicas, leader=leader, leader_epoch=epoch)
        ]

    def plan_alter_isr(
        self, topic_id: uuid.UUID, partition: int, leader_epoch: int, isr: tuple[int, ...]
    ) -> list[MetadataRecord]:
        """A leader's ISR change (Kafka's AlterPartition); refused once its epoch is stale."""
        topic = self.image.topics_by_id.get(topic_id)
        p = topic.partitions.get(partition) if topic is not None else None
        if p is None:
            raise ControllerError(ErrorCode.unknown_topic_or_partition, "partition is gone")
        if p.leader_epoch != leader_epoch:
            raise ControllerError(ErrorCode.fenced_leader_epoch, "leader epoch is stale")
        if not isr or p.leader not in isr:
            raise ControllerError(ErrorCode.invalid_request, "the ISR must hold the leader")
        return [self._changed(topic_id, p, isr=isr)]

    # --- partition reassignment (KIP-455) ------------------------------------------------

    def plan_reassignment(
        self, name: str, partition: int, target: tuple[int, ...] | None
    ) -> list[MetadataRecord]:
        """Start moving a partition to ``target`` (None cancels a move in progress). Its
        replicas become the target plus those leaving; the joining ones copy the log as
        followers, and ``plan_completed_reassignments`` finishes once the ISR holds them."""
        topic = self.image.topics.get(name)
        p = topic.partitions.get(partition) if topic is not None else None
        if topic is None or p is None:
            raise ControllerError(
                ErrorCode.unknown_topic_or_partition,
                "This server does not host this topic-partition.",
            )
        original = tuple(r for r in p.replicas if r not in p.adding_replicas)
        cancelling = target is None
        if target is None:
            if not p.adding_replicas and not p.removing_replicas:
                raise ControllerError(
                    ErrorCode.no_reassignment_in_progress,
                    f"No ongoing reassignment for {name}-{partition}.",
                )
            target = original
        elif not target or len(set(target)) != len(target):
            raise ControllerError(
                ErrorCode.invalid_replica_assignment,
                f"The replica assignment {list(target)} is empty or repeats a broker.",
            )
        elif any(b not in self.image.brokers for b in target):
            raise ControllerError(
                ErrorCode.invalid_replica_assignment,
                f"The replica assignment {list(target)} names a broker that is not registered.",
            )
        adding = tuple(r for r in target if r not in original)
        removing = tuple(r for r in original if r not in target)
        replicas = target + removing
        if cancelling or (not adding and all(r in p.isr for r in target)):
            # Back to the original replicas, or only leaving (or reordered) ones with the rest
            # in sync: done at once, as Kafka; a leader that is no replica any more hands over.
            return [self._finish(topic.topic_id, p, target, target)]
        isr = tuple(r for r in p.isr if r in replicas)
        leader, epoch = p.leader, p.leader_epoch
        if leader not in replicas:  # a joining replica of the move this one replaces led
            leader = next((r for r in replicas if r in isr), -1)
            epoch += 1
        return [
            self._changed(
                topic.topic_id,
                p,
                replicas=replicas,
                isr=isr,
                leader=leader,
                leader_epoch=epoch,
                adding_replicas=adding,
                removing_replicas=removing,
            )
        ]

    def plan_completed_reassignments(self, live: Set[int]) -> list[MetadataRecord]:
        """Moves whose joining replicas are all in the ISR end: the leaving replicas go (a
        leaving leader hands over to the first in-sync replica of the target)."""
        records: list[MetadataRecord] = []
        for topic in self.image.topics.values():
            for p in topic.partitions.values():
                if not (p.adding_replicas or p.removing_replicas):
                    continue
                target = p.target_replicas
                # Joining replicas in sync; a move that only drops replicas waits for the
                # ones that stay to be in sync.
                if all(r in p.isr for r in (p.adding_replicas or target)) and any(
                    r in p.isr and r in live for r in target
                ):
                    records.append(self._finish(topic.topic_id, p, target, target))
        return records

    def _finish(
        self,
        topic_id: uuid.UUID,
        p: PartitionImage,
        target: tuple[int, ...],
        replicas: tuple[int, ...],
    ) -> PartitionRecord:
        isr = tuple(r for r in p.isr if r in replicas) or p.isr
        leader, epoch = p.leader, p.leader_epoch
        if leader not in replicas:
            leader = next((r for r in target if r in isr), -1)
            epoch += 1
        return self._changed(
            topic_id,
            p,
            replicas=replicas,
            isr=isr,
            leader=leader,
            leader_epoch=epoch,
            adding_replicas=(),
            removing_replicas=(),
        )

    def plan_create_topic(self, topic: NewTopic) -> list[MetadataRecord]:
        validate_topic_name(topic.name)
        if topic.name in self.image.topics:
            raise ControllerError(
                ErrorCode.topic_already_exists, f"Topic '{topic.name}' already exists."
            )
        # Kafka's metric names turn "." into "_": two such names would share them. A logical
        # cluster's topic is checked within its own namespace, so that no name outside it
        # can refuse it (or be disclosed to it).
        tenant = logical_cluster_id_of(topic.name)
        for existing in sorted(self.image.topics_by_metric_name.get(metric_name(topic.name), ())):
            if logical_cluster_id_of(existing) == tenant:
                raise ControllerError(
                    ErrorCode.invalid_topic_exception,
                    f"Topic '{topic.name}' collides with existing topic: {existing}",
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
            # Kafka starts each topic's round robin at a random broker, so leaders of many
            # small topics spread out.
            start = random.randrange(len(brokers)) if brokers else 0
            replicas_of = {
                p: tuple(
                    brokers[(start + p + r) % len(brokers)] for r in range(topic.replication_factor)
                )
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

    def plan_broker_configs(
        self, resource: str, configs: Mapping[str, str | None]
    ) -> list[MetadataRecord]:
        """Dynamic broker configs: ``resource`` is a node id, or "" for the cluster-wide
        default. None removes one; unchanged entries make no records."""
        return self._plan_configs(BROKER_RESOURCE, self.image.broker_configs, resource, configs)

    def plan_group_configs(
        self, group_id: str, configs: Mapping[str, str | None]
    ) -> list[MetadataRecord]:
        """A consumer group's own configs; None removes one. The group need not exist yet,
        as in Kafka: its members find the values when they join."""
        return self._plan_configs(GROUP_RESOURCE, self.image.group_configs, group_id, configs)

    def plan_client_metrics(
        self, name: str, configs: Mapping[str, str | None]
    ) -> list[MetadataRecord]:
        """A client metrics subscription's configs; None removes one, and a subscription
        left with none is deleted."""
        return self._plan_configs(CLIENT_METRICS_RESOURCE, self.image.client_metrics, name, configs)

    @staticmethod
    def _plan_configs(
        resource_type: int,
        stored: Mapping[str, Mapping[str, str]],
        name: str,
        configs: Mapping[str, str | None],
    ) -> list[MetadataRecord]:
        current = stored.get(name, {})
        return [
            ConfigRecord(resource_type, name, k, v)
            for k, v in sorted(configs.items())
            if current.get(k) != v
        ]
