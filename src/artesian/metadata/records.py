"""Cluster metadata records (KRaft's vocabulary): the append-only log the cluster follows.

Every change to topics, partitions, configs or brokers is one of these records, appended to
the metadata store; a broker's ``MetadataImage`` is the result of replaying them in order.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


@dataclass(slots=True, frozen=True)
class TopicRecord:
    TYPE: ClassVar[str] = "topic"
    name: str
    topic_id: str


@dataclass(slots=True, frozen=True)
class PartitionRecord:
    TYPE: ClassVar[str] = "partition"
    topic_id: str
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int = 0
    partition_epoch: int = 0
    # A reassignment in progress (KIP-455): ``replicas`` is the target followed by the
    # replicas leaving; those joining copy the log until the ISR holds them all.
    adding_replicas: tuple[int, ...] = ()
    removing_replicas: tuple[int, ...] = ()


@dataclass(slots=True, frozen=True)
class RemoveTopicRecord:
    TYPE: ClassVar[str] = "remove_topic"
    topic_id: str


@dataclass(slots=True, frozen=True)
class ConfigRecord:
    """value None removes the override."""

    TYPE: ClassVar[str] = "config"
    resource_type: int  # 2 = topic, 4 = broker, 32 = group (Kafka's ConfigResource.Type)
    resource_name: str
    name: str
    value: str | None


@dataclass(slots=True, frozen=True)
class RegisterBrokerRecord:
    TYPE: ClassVar[str] = "register_broker"
    node_id: int
    host: str
    port: int
    rack: str | None = None
    incarnation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # (listener name, advertised host, port) for every listener; host and port above are the
    # inter-broker listener's. Records from before listeners had names leave it empty.
    endpoints: tuple[tuple[str, str, int], ...] = ()
    # (feature, lowest, highest level) this broker's version supports; a registration from
    # before feature levels supports artesian.metadata.version 1 alone.
    features: tuple[tuple[str, int, int], ...] = ()


@dataclass(slots=True, frozen=True)
class FeatureLevelRecord:
    """A feature's finalized level (KRaft's FeatureLevelRecord): what every broker of the
    cluster must support, and what records may be written (metadata/features.py)."""

    TYPE: ClassVar[str] = "feature_level"
    name: str
    level: int


@dataclass(slots=True, frozen=True)
class ProducerIdsRecord:
    """Producer ids below ``next_block_start`` are taken: a broker claims the block that starts
    there (KRaft's ProducerIdsRecord), so ids are never reused, even across restarts."""

    TYPE: ClassVar[str] = "producer_ids"
    next_block_start: int


@dataclass(slots=True, frozen=True)
class ClusterRecord:
    """The cluster the log belongs to: written once, first, by the broker that starts it, and
    checked against every data directory's meta.properties."""

    TYPE: ClassVar[str] = "cluster"
    cluster_id: str


@dataclass(slots=True, frozen=True)
class UnregisterBrokerRecord:
    """A broker leaves the cluster for good (KRaft's UnregisterBrokerRecord): it is no longer
    listed, and its id may be used again."""

    TYPE: ClassVar[str] = "unregister_broker"
    node_id: int


@dataclass(slots=True, frozen=True)
class BrokerRemovalRecord:
    """Desired and observed state of a broker's removal (Confluent's RemoveBrokers): asked
    for with PENDING, then the self-balancer drains it (IN_PROGRESS), reports DRAINED once it
    holds no replica, and COMPLETE once it stopped and was unregistered. FAILED says why;
    CANCELED gives the broker back its place."""

    TYPE: ClassVar[str] = "broker_removal"
    node_id: int
    state: str
    reason: str | None = None


@dataclass(slots=True, frozen=True)
class BalancerTaskRecord:
    """The self-balancer's current rebalance: what started it and where it stands (PENDING
    when asked for, IN_PROGRESS while moving replicas, COMPLETED, FAILED with a reason)."""

    TYPE: ClassVar[str] = "balancer_task"
    task_id: str
    trigger: str
    state: str
    reason: str | None = None


@dataclass(slots=True, frozen=True)
class UserScramCredentialRecord:
    """A user's SCRAM credential for one mechanism (KRaft's record of that name): what the
    server needs to verify a proof, never the password. Bytes are hex."""

    TYPE: ClassVar[str] = "user_scram_credential"
    name: str
    mechanism: int  # Kafka's ScramMechanism id: 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512
    salt: str
    stored_key: str
    server_key: str
    iterations: int


@dataclass(slots=True, frozen=True)
class RemoveUserScramCredentialRecord:
    TYPE: ClassVar[str] = "remove_user_scram_credential"
    name: str
    mechanism: int


@dataclass(slots=True, frozen=True)
class AccessControlEntryRecord:
    """One ACL (KRaft's record of that name); enum fields hold Kafka's wire ids."""

    TYPE: ClassVar[str] = "access_control_entry"
    id: str
    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission_type: int


@dataclass(slots=True, frozen=True)
class RemoveAccessControlEntryRecord:
    TYPE: ClassVar[str] = "remove_access_control_entry"
    id: str


@dataclass(slots=True, frozen=True)
class ClientQuotaRecord:
    """One quota of one entity (KRaft's record of that name): ``entity`` is (type, name)
    pairs sorted by type, name None for the type's default; value None removes the key."""

    TYPE: ClassVar[str] = "client_quota"
    entity: tuple[tuple[str, str | None], ...]
    key: str
    value: float | None


@dataclass(slots=True, frozen=True)
class LogicalClusterBindingRecord:
    """Puts a principal in a logical cluster (``lkc-...``): it then sees only that cluster's
    topics, groups and transactional ids, by their names within it. ``logical_cluster``
    None takes the principal out again. Artesian's own record (Confluent keeps the same
    binding outside Kafka)."""

    TYPE: ClassVar[str] = "logical_cluster_binding"
    principal: str
    logical_cluster: str | None


@dataclass(slots=True, frozen=True)
class LogicalClusterQuotaRecord:
    """One quota of a logical cluster (producer_byte_rate, ...), shared by all of its
    principals on each broker; value None removes it. Artesian's own record."""

    TYPE: ClassVar[str] = "logical_cluster_quota"
    logical_cluster: str
    key: str
    value: float | None


@dataclass(slots=True, frozen=True)
class DelegationTokenRecord:
    """A delegation token (KIP-48; KRaft's record of that name), written when it is created
    and each time its expiry moves. Principals are ``Type:name``; times are ms since the
    epoch. The token's HMAC is not kept: brokers derive it from the token id with
    ``delegation.token.secret.key``."""

    TYPE: ClassVar[str] = "delegation_token"
    token_id: str
    owner: str
    requester: str
    renewers: tuple[str, ...]
    issue_timestamp: int
    max_timestamp: int
    expiration_timestamp: int


@dataclass(slots=True, frozen=True)
class RemoveDelegationTokenRecord:
    TYPE: ClassVar[str] = "remove_delegation_token"
    token_id: str


MetadataRecord = (
    ClusterRecord
    | TopicRecord
    | PartitionRecord
    | RemoveTopicRecord
    | ConfigRecord
    | RegisterBrokerRecord
    | ProducerIdsRecord
    | UnregisterBrokerRecord
    | BrokerRemovalRecord
    | BalancerTaskRecord
    | UserScramCredentialRecord
    | RemoveUserScramCredentialRecord
    | AccessControlEntryRecord
    | RemoveAccessControlEntryRecord
    | ClientQuotaRecord
    | LogicalClusterBindingRecord
    | LogicalClusterQuotaRecord
    | FeatureLevelRecord
    | DelegationTokenRecord
    | RemoveDelegationTokenRecord
)

_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        ClusterRecord,
        TopicRecord,
        PartitionRecord,
        RemoveTopicRecord,
        ConfigRecord,
        RegisterBrokerRecord,
        ProducerIdsRecord,
        UnregisterBrokerRecord,
        BrokerRemovalRecord,
        BalancerTaskRecord,
        UserScramCredentialRecord,
        RemoveUserScramCredentialRecord,
        AccessControlEntryRecord,
        RemoveAccessControlEntryRecord,
        ClientQuotaRecord,
        LogicalClusterBindingRecord,
        LogicalClusterQuotaRecord,
        FeatureLevelRecord,
        DelegationTokenRecord,
        RemoveDelegationTokenRecord,
    )
}


class UnknownRecordError(ValueError):
    """A record kind this version does not know: the log was written by a newer Artesian,
    at a metadata version this one does not support."""

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"the metadata log holds a {kind!r} record, which this version of Artesian does "
            "not know: the cluster runs a newer artesian.metadata.version than this broker "
            "supports; run this broker at the cluster's version of Artesian or newer"
        )
        self.kind = kind


def encode_record(record: MetadataRecord) -> tuple[str, str]:
    return record.TYPE, json.dumps(asdict(record), separators=(",", ":"))


def decode_record(kind: str, payload: str) -> MetadataRecord:
    cls = _TYPES.get(kind)
    if cls is None:
        raise UnknownRecordError(kind)
    data: dict[str, Any] = json.loads(payload)
    # Fields a later version added are dropped, so a rolling upgrade never stalls the log.
    known = {f.name for f in fields(cls)}
    data = {k: v for k, v in data.items() if k in known}
    for key in ("replicas", "isr", "adding_replicas", "removing_replicas", "renewers"):
        if key in data:
            data[key] = tuple(data[key])
    for key in ("endpoints", "entity", "features"):
        if key in data:
            data[key] = tuple(tuple(e) for e in data[key])
    record: MetadataRecord = cls(**data)
    return record
