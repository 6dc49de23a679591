"""API keys: how a tenant's clients get into a cluster the platform runs.

A key is a SCRAM user of the cluster (SCRAM-SHA-256 and SCRAM-SHA-512 both, so any client
library can log in) with ACLs that let it reach the whole cluster or, with a resource prefix,
only the topics, groups and transactional ids under that prefix; a logical cluster's key is
also bound to its logical cluster, with ACLs on its namespace only. The control plane mints the
key and its secret, shows the secret once, and keeps only verifiers in the desired state. The
data plane writes the verifiers and ACLs into the cluster's metadata log (``ClusterAccess``);
the brokers read them from there as they read any other metadata record.
"""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from collections.abc import Iterable

from artesian.controlplane.documents import API_KEY, ApiKey, ScramVerifier
from artesian.metadata.features import level_needed, refused_records
from artesian.metadata.image import MetadataImage
from artesian.metadata.records import (
    AccessControlEntryRecord,
    LogicalClusterBindingRecord,
    LogicalClusterQuotaRecord,
    MetadataRecord,
    RemoveAccessControlEntryRecord,
    RemoveUserScramCredentialRecord,
    UserScramCredentialRecord,
)
from artesian.metadata.store import MetadataStore, StaleMetadataError, open_store
from artesian.security.acl import (
    CLUSTER_NAME,
    WILDCARD,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)
from artesian.security.scram import MECHANISMS, new_credential

log = logging.getLogger("artesian.dataplane")

ITERATIONS = 8192  # within Kafka's 4096-16384: a login costs a few ms, a guess as much
# What a whole-cluster key may do to the cluster itself: create topics, see the brokers and
# their configs, write idempotently.
_TENANT_CLUSTER_OPERATIONS: tuple[AclOperation, ...] = (
    AclOperation.CREATE,
    AclOperation.DESCRIBE,
    AclOperation.DESCRIBE_CONFIGS,
    AclOperation.IDEMPOTENT_WRITE,
)
# What a logical cluster's key may do to the shared cluster: see it and its brokers' configs,
# write idempotently. Creating topics is granted on its namespace.
_LOGICAL_CLUSTER_OPERATIONS: tuple[AclOperation, ...] = (
    AclOperation.DESCRIBE,
    AclOperation.DESCRIBE_CONFIGS,
    AclOperation.IDEMPOTENT_WRITE,
)
# Fixed, so an ACL's id follows from what it grants and re-applying a key is idempotent.
_ACL_NAMESPACE = uuid.UUID("5d4c1a7e-8a0b-4c55-9a5e-2f1d3c7b6e10")


def mint_api_key(
    resource_prefix: str | None, description: str, created_ms: int
) -> tuple[ApiKey, str]:
    """A new key and its secret: 80 random bits of key, 256 of secret."""
    key = base64.b32encode(secrets.token_bytes(10)).decode()
    secret = secrets.token_urlsafe(32)
    verifiers = []
    for mechanism in MECHANISMS.values():
        credential = new_credential(mechanism, secret, ITERATIONS)
        verifiers.append(
            ScramVerifier(
                mechanism.type_id,
                credential.salt.hex(),
                credential.stored_key.hex(),
                credential.server_key.hex(),
                credential.iterations,
            )
        )
    api_key = ApiKey(key, tuple(verifiers), resource_prefix, description, created_ms)
    api_key.validate()
    return api_key, secret


def _grants(
    api_key: ApiKey, logical_cluster: str | None = None
) -> list[tuple[ResourceType, str, PatternType, AclOperation]]:
    """``logical_cluster``: the key is one of that logical cluster's, on its shared cluster:
    its names (and its own prefix) are under the logical cluster's namespace."""
    prefix = api_key.resource_prefix
    if logical_cluster is not None:
        name, pattern = f"{logical_cluster}_{prefix or ''}", PatternType.PREFIXED
        cluster_operations: tuple[AclOperation, ...] = _LOGICAL_CLUSTER_OPERATIONS
    elif prefix is None:
        name, pattern = WILDCARD, PatternType.LITERAL
        # Never ALL on the cluster: ALTER would let a tenant make SCRAM users and ACLs of its
        # own (a super user's name among them), ALTER_CONFIGS change the platform's broker
        # settings and quotas, CLUSTER_ACTION pose as a broker.
        cluster_operations = _TENANT_CLUSTER_OPERATIONS
    else:
        name, pattern = prefix, PatternType.PREFIXED
        # An idempotent producer needs it (Kafka asks for it on InitProducerId).
        cluster_operations = (AclOperation.IDEMPOTENT_WRITE,)
    return [
        (ResourceType.TOPIC, name, pattern, AclOperation.ALL),
        (ResourceType.GROUP, name, pattern, AclOperation.ALL),
        (ResourceType.TRANSACTIONAL_ID, name, pattern, AclOperation.ALL),
        *(
            (ResourceType.CLUSTER, CLUSTER_NAME, PatternType.LITERAL, op)
            for op in cluster_operations
        ),
    ]


def acl_records(
    api_key: ApiKey, logical_cluster: str | None = None
) -> list[AccessControlEntryRecord]:
    records = []
    for resource_type, name, pattern, operation in _grants(api_key, logical_cluster):
        acl_id = uuid.uuid5(
            _ACL_NAMESPACE, f"{api_key.key}|{resource_type}|{name}|{pattern}|{operation}"
        ).hex
        records.append(
            AccessControlEntryRecord(
                acl_id,
                int(resource_type),
                name,
                int(pattern),
                f"User:{api_key.key}",
                "*",
                int(operation),
                int(AclPermissionType.ALLOW),
            )
        )
    return records


def credential_records(api_key: ApiKey) -> list[UserScramCredentialRecord]:
    return [
        UserScramCredentialRecord(
            api_key.key, v.mechanism, v.salt, v.stored_key, v.server_key, v.iterations
        )
        for v in api_key.scram
    ]


def owned(principal_or_user: str) -> bool:
    """The data plane owns SCRAM users and ACL principals named like an API key."""
    return API_KEY.fullmatch(principal_or_user.removeprefix("User:")) is not None


def access_changes(
    keys: Iterable[ApiKey],
    credentials: dict[tuple[str, int], UserScramCredentialRecord],
    acls: dict[str, AccessControlEntryRecord],
    bound: dict[str, str] | None = None,
    guests: Iterable[tuple[str, ApiKey]] = (),
    quotas: tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]] | None = None,
) -> list[MetadataRecord]:
    """The records that make a log holding ``credentials``, ``acls`` and the logical cluster
    bindings ``bound`` hold exactly ``keys``, and ``guests`` (logical cluster id, key) bound
    to their logical clusters (of what the data plane owns: others' users, ACLs and
    bindings are left alone). ``quotas``, (in the log, wanted): the quotas of the logical
    clusters the data plane places on a shared cluster, by id ({} for none: a deleted one's
    go); others' are left alone."""
    placed = [(k, None) for k in keys] + [(k, lkc) for lkc, k in guests]
    wanted_credentials = {
        (r.name, r.mechanism): r for k, _ in placed for r in credential_records(k)
    }
    wanted_acls = {r.id: r for k, lkc in placed for r in acl_records(k, lkc)}
    wanted_bindings = {f"User:{k.key}": lkc for k, lkc in placed if lkc is not None}
    bound = bound or {}
    # A logical cluster's key is bound before it can log in, and unbound only after it can
    # no more: it never sees the shared cluster's names.
    changes: list[MetadataRecord] = [
        LogicalClusterBindingRecord(p, lkc)
        for p, lkc in sorted(wanted_bindings.items())
        if bound.get(p) != lkc
    ]
    for name, mechanism in sorted(credentials):
        if owned(name) and (name, mechanism) not in wanted_credentials:
            changes.append(RemoveUserScramCredentialRecord(name, mechanism))
    for acl_id, acl in sorted(acls.items()):
        if owned(acl.principal) and acl_id not in wanted_acls:
            changes.append(RemoveAccessControlEntryRecord(acl_id))
    changes += [r for k, r in wanted_credentials.items() if credentials.get(k) != r]
    changes += [r for i, r in wanted_acls.items() if acls.get(i) != r]
    changes += [
        LogicalClusterBindingRecord(p, None)
        for p in sorted(bound)
        if owned(p) and p not in wanted_bindings
    ]
    if quotas is not None:
        held, wanted = quotas
        for lkc, values in sorted(wanted.items()):  # only the logical clusters it manages
            now = held.get(lkc, {})
            changes += [
                LogicalClusterQuotaRecord(lkc, k, None) for k in sorted(now) if k not in values
            ]
            changes += [
                LogicalClusterQuotaRecord(lkc, k, float(rate))
                for k, rate in sorted(values.items())
                if now.get(k) != rate
            ]
    return changes


class ClusterAccess:
    """Keeps one cluster's metadata log holding exactly its desired API keys. It follows the
    log into a MetadataImage, as a broker does, from where it last read, and appends only on
    top of what it has read (a broker's append in between makes it try again next pass)."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._store: MetadataStore | None = None
        self.image = MetadataImage()
        # Where the log came to hold the keys last asked for: brokers that have applied
        # this offset enforce them.
        self.applied_offset = -1
        self._holding: str | None = None  # why records wait for a newer metadata version

    def _catch_up(self, store: MetadataStore) -> None:
        image = self.image
        for offset, record in store.read(image.offset):
            touched = _about(image, record)
            image.apply(offset, record)
            if isinstance(record, LogicalClusterQuotaRecord) or (
                touched is not None and owned(touched)
            ):
                # Brokers enforce the keys once they have applied this far (also after the
                # agent restarts, or when an append's answer was lost).
                self.applied_offset = offset

    def sync(
        self,
        keys: tuple[ApiKey, ...],
        guests: Iterable[tuple[str, ApiKey]] = (),
        quotas: dict[str, dict[str, float]] | None = None,
    ) -> bool:
        """Apply what is missing; True once the log holds exactly ``keys``, and the keys of
        the logical clusters placed on this cluster (``guests``: id and key) bound to them,
        and those logical clusters' ``quotas`` (by id; others' quotas are left alone)."""
        guests = tuple(guests)
        if self._store is None:
            self._store = open_store(self.store_url)
        store = self._store
        self._catch_up(store)
        image = self.image
        if image.cluster_id is None:
            return False  # no broker has started the cluster's log yet

        def missing() -> list[MetadataRecord]:
            return access_changes(
                keys,
                image.scram_credentials,
                image.acls,
                image.logical_clusters,
                guests,
                None if quotas is None else (image.logical_cluster_quotas, quotas),
            )

        changes = missing()
        if not changes:
            return True
        writable = _writable_now(changes, image.metadata_version)
        if len(writable) < len(changes):
            why = refused_records(changes, image.metadata_version)
            if why != self._holding:
                log.info("%s; %d access record(s) wait", why, len(changes) - len(writable))
            self._holding = why
        else:
            self._holding = None
        if not writable:
            return False
        try:
            store.append(writable, expected_last=image.offset)
        except StaleMetadataError:
            return False  # a broker appended meanwhile: read that first, next pass
        self._catch_up(store)
        log.info("applied %d access record(s) for %d API key(s)", len(writable), len(keys))
        return not missing()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _writable_now(changes: list[MetadataRecord], level: int) -> list[MetadataRecord]:
    """What the cluster's metadata ``level`` lets the agent write (records of a newer level
    wait until a roll is over: an older broker could not read them). A key whose binding
    waits waits whole, credentials and ACLs too: it must never log in unbound."""
    waiting = {
        r.principal
        for r in changes
        if isinstance(r, LogicalClusterBindingRecord)
        and r.logical_cluster is not None
        and level_needed(r) > level
    }

    def waits(r: MetadataRecord) -> bool:
        if level_needed(r) > level:
            return True
        if isinstance(r, UserScramCredentialRecord):
            return f"User:{r.name}" in waiting
        return isinstance(r, AccessControlEntryRecord) and r.principal in waiting

    return [r for r in changes if not waits(r)]


def _about(image: MetadataImage, record: MetadataRecord) -> str | None:
    """The user or principal a credential or ACL record is about (None for other records)."""
    match record:
        case UserScramCredentialRecord(name=name) | RemoveUserScramCredentialRecord(name=name):
            return name
        case AccessControlEntryRecord(principal=principal):
            return principal
        case RemoveAccessControlEntryRecord(id=acl_id):
            removed = image.acls.get(acl_id)
            return removed.principal if removed is not None else None
        case LogicalClusterBindingRecord(principal=principal):
            return principal
    return None
