"""The in-memory view of cluster metadata, built by replaying metadata records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from artesian.metadata.features import METADATA_VERSION, registered_features
from artesian.metadata.records import (
    AccessControlEntryRecord,
    BalancerTaskRecord,
    BrokerRemovalRecord,
    ClientQuotaRecord,
    ClusterRecord,
    ConfigRecord,
    DelegationTokenRecord,
    FeatureLevelRecord,
    LogicalClusterBindingRecord,
    LogicalClusterQuotaRecord,
    MetadataRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveAccessControlEntryRecord,
    RemoveDelegationTokenRecord,
    RemoveTopicRecord,
    RemoveUserScramCredentialRecord,
    TopicRecord,
    UnregisterBrokerRecord,
    UserScramCredentialRecord,
)

TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4
GROUP_RESOURCE = 32  # a consumer group's own configs (KIP-848)
CLIENT_METRICS_RESOURCE = 16  # a client metrics subscription (KIP-714)
# Kafka's internal topics: clients may not write to or delete records from them.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})


@dataclass(slots=True)
class PartitionImage:
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int
    adding_replicas: tuple[int, ...] = ()
    removing_replicas: tuple[int, ...] = ()

    @property
    def reassigning(self) -> bool:
        """A reassignment (KIP-455) is in flight."""
        return bool(self.adding_replicas or self.removing_replicas)

    @property
    def target_replicas(self) -> tuple[int, ...]:
        """Where a reassignment in progress takes the partition (its replicas otherwise)."""
        return tuple(r for r in self.replicas if r not in self.removing_replicas)


@dataclass(slots=True)
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: dict[int, PartitionImage] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class BrokerImage:
    node_id: int
    host: str
    port: int
    rack: str | None
    endpoints: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Advertised (host, port) by listener name."""
    features: dict[str, tuple[int, int]] = field(default_factory=dict)
    """The (lowest, highest) level it supports, by feature."""

    def endpoint(self, listener: str) -> tuple[str, int] | None:
        """Where clients of ``listener`` reach this broker; None when it has no such
        listener (Kafka then leaves the broker out of that listener's metadata)."""
        return self.endpoints.get(listener)


def metric_name(topic: str) -> str:
    """A topic's name as Kafka's metrics spell it ("." becomes "_")."""
    return topic.replace(".", "_")


@dataclass(slots=True)
class MetadataImage:
    topics: dict[str, TopicImage] = field(default_factory=dict)
    topics_by_id: dict[uuid.UUID, TopicImage] = field(default_factory=dict)
    removed_topics: list[str] | None = None
    """With track_removed_topics(), the names of topics removed since last taken
    (take_removed_topics): a RemoveTopicRecord carries only the id."""
    topics_by_metric_name: dict[str, set[str]] = field(default_factory=dict)
    """Topic names by their name with "." as "_" (Kafka's topicsWithCollisionChars): two
    topics whose metric names would be the same are refused."""
    brokers: dict[int, BrokerImage] = field(default_factory=dict)
    broker_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    """Dynamic broker configs by resource name: a node id, or "" for the cluster default."""
    group_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    """Consumer groups' own configs (KIP-848) by group id."""
    client_metrics: dict[str, dict[str, str]] = field(default_factory=dict)
    """Client metrics subscriptions (KIP-714) by name."""
    offset: int = -1
    """Offset of the last applied record: the metadata epoch clients can cache against."""
    next_producer_id_block: int = 0
    """First producer id no broker has claimed yet (ProducerIdsRecord)."""
    cluster_id: str | None = None
    """The cluster the log belongs to (ClusterRecord); None in logs older than the record."""
    removals: dict[int, BrokerRemovalRecord] = field(default_factory=dict)
    """Each broker's latest removal state (the self-balancer drains those in progress)."""
    balancer_task: BalancerTaskRecord | None = None
    scram_credentials: dict[tuple[str, int], UserScramCredentialRecord] = field(
        default_factory=dict
    )
    """SCRAM credentials by (user, mechanism id)."""
    delegation_tokens: dict[str, DelegationTokenRecord] = field(default_factory=dict)
    """Delegation tokens by token id."""
    acls: dict[str, AccessControlEntryRecord] = field(default_factory=dict)
    """ACLs by id, in the order they were created."""
    client_quotas: dict[tuple[tuple[str, str | None], ...], dict[str, float]] = field(
        default_factory=dict
    )
    """Client quotas by entity, then key (producer_byte_rate, ...)."""
    logical_clusters: dict[str, str] = field(default_factory=dict)
    """The logical cluster each bound principal works in (``User:k`` -> ``lkc-...``)."""
    logical_cluster_quotas: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each logical cluster's quotas by key (producer_byte_rate, ...)."""
    features: dict[str, int] = field(default_factory=dict)
    """Finalized feature levels (FeatureLevelRecord)."""
    features_epoch: int = -1
    """Offset of the last FeatureLevelRecord (ApiVersions' finalized_features_epoch)."""

    @property
    def metadata_version(self) -> int:
        """A log from before feature levels is at the first level."""
        return self.features.get(METADATA_VERSION, 1)

    def reassigning(self) -> list[tuple[TopicImage, PartitionImage]]:
        """Partitions with a reassignment in flight."""
        return [
            (t, p) for t in self.topics.values() for p in t.partitions.values() if p.reassigning
        ]

    def replicas_on(self, node: int) -> int:
        """Partitions with a replica on ``node``, leaving ones included."""
        return sum(node in p.replicas for t in self.topics.values() for p in t.partitions.values())

    def removing(self) -> frozenset[int]:
        """Brokers that must not receive replicas: asked to leave, not yet back."""
        return frozenset(
            b for b, r in self.removals.items() if r.state in ("PENDING", "IN_PROGRESS", "DRAINED")
        )

    def track_removed_topics(self) -> None:
        self.removed_topics = []

    def take_removed_topics(self) -> list[str]:
        taken = self.removed_topics or []
        if self.removed_topics is not None:
            self.removed_topics = []
        return taken

    def apply(self, offset: int, record: MetadataRecord) -> None:
        self.offset = offset
        match record:
            case TopicRecord(name=name, topic_id=tid):
                topic = TopicImage(name, uuid.UUID(tid))
                self.topics[name] = topic
                self.topics_by_id[topic.topic_id] = topic
                self.topics_by_metric_name.setdefault(metric_name(name), set()).add(name)
            case PartitionRecord():
                topic = self.topics_by_id[uuid.UUID(record.topic_id)]
                topic.partitions[record.partition] = PartitionImage(
                    record.partition,
                    record.replicas,
                    record.isr,
                    record.leader,
                    record.leader_epoch,
                    record.partition_epoch,
                    record.adding_replicas,
                    record.removing_replicas,
                )
            case RemoveTopicRecord(topic_id=tid):
                removed = self.topics_by_id.pop(uuid.UUID(tid), None)
                if removed is not None:
                    self.topics.pop(removed.name, None)
                    if self.removed_topics is not None:
                        self.removed_topics.append(removed.name)
                    key = metric_name(removed.name)
                    same = self.topics_by_metric_name.get(key, set())
                    same.discard(removed.name)
                    if not same:
                        self.topics_by_metric_name.pop(key, None)
            case ConfigRecord(resource_type=rtype, resource_name=rname, name=name, value=value):
                target: dict[str, str] | None
                if rtype == TOPIC_RESOURCE:
                    t = self.topics.get(rname)
                    target = t.configs if t is not None else None
                elif rtype == BROKER_RESOURCE:
                    target = self.broker_configs.setdefault(rname, {})
                elif rtype == GROUP_RESOURCE:
                    target = self.group_configs.setdefault(rname, {})
                elif rtype == CLIENT_METRICS_RESOURCE:
                    target = self.client_metrics.setdefault(rname, {})
                else:
                    target = None  # a resource this version does not know
                if target is not None:
                    if value is None:
                        target.pop(name, None)
                    else:
                        target[name] = value
                    if rtype == GROUP_RESOURCE and not target:
                        del self.group_configs[rname]
                    elif rtype == CLIENT_METRICS_RESOURCE and not target:
                        del self.client_metrics[rname]  # a subscription with nothing set is gone
            case RegisterBrokerRecord():
                # A registration from before named listeners was on PLAINTEXT.
                endpoints = {name: (host, port) for name, host, port in record.endpoints} or {
                    "PLAINTEXT": (record.host, record.port)
                }
                self.brokers[record.node_id] = BrokerImage(
                    record.node_id,
                    record.host,
                    record.port,
                    record.rack,
                    endpoints,
                    registered_features(record),
                )
                # A removed broker that registers again is a new member.
                removal = self.removals.get(record.node_id)
                if removal is not None and removal.state == "COMPLETE":
                    del self.removals[record.node_id]
            case FeatureLevelRecord(name=name, level=level):
                self.features[name] = level
                self.features_epoch = offset
            case UnregisterBrokerRecord(node_id=node):
                self.brokers.pop(node, None)
            case BrokerRemovalRecord():
                self.removals[record.node_id] = record
            case BalancerTaskRecord():
                self.balancer_task = record
            case UserScramCredentialRecord(name=name, mechanism=mechanism):
                self.scram_credentials[(name, mechanism)] = record
            case RemoveUserScramCredentialRecord(name=name, mechanism=mechanism):
                self.scram_credentials.pop((name, mechanism), None)
            case DelegationTokenRecord(token_id=token_id):
                self.delegation_tokens[token_id] = record
            case RemoveDelegationTokenRecord(token_id=token_id):
                self.delegation_tokens.pop(token_id, None)
            case AccessControlEntryRecord(id=acl_id):
                self.acls[acl_id] = record
            case RemoveAccessControlEntryRecord(id=acl_id):
                self.acls.pop(acl_id, None)
            case ClientQuotaRecord(entity=entity, key=key, value=value):
                _set_quota(self.client_quotas, entity, key, value)
            case LogicalClusterBindingRecord(principal=principal, logical_cluster=lkc):
                if lkc is None:
                    self.logical_clusters.pop(principal, None)
                else:
                    self.logical_clusters[principal] = lkc
            case LogicalClusterQuotaRecord(logical_cluster=lkc, key=key, value=value):
                _set_quota(self.logical_cluster_quotas, lkc, key, value)
            case ClusterRecord(cluster_id=cid):
                self.cluster_id = cid
            case ProducerIdsRecord(next_block_start=start):
                self.next_producer_id_block = max(self.next_producer_id_block, start)


def _set_quota(
    quotas: dict[Any, dict[str, float]], owner: Any, key: str, value: float | None
) -> None:
    """One quota of ``owner`` set, or removed (None); an owner left without any goes."""
    if value is None:
        values = quotas.get(owner)
        if values is not None:
            values.pop(key, None)
            if not values:
                del quotas[owner]
    else:
        quotas.setdefault(owner, {})[key] = value
