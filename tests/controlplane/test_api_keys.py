"""API keys as documents and as metadata records: minted keys log in with SCRAM, the desired
state carries only verifiers, and the data plane's plan leaves a cluster's log holding exactly
the desired keys (others' users and ACLs untouched), against a real SQLite metadata store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from artesian.controlplane.api_keys import (
    ClusterAccess,
    access_changes,
    acl_records,
    credential_records,
    mint_api_key,
)
from artesian.controlplane.documents import (
    MAX_API_KEYS,
    ApiKey,
    ClusterDesire,
    DocumentError,
)
from artesian.metadata.image import MetadataImage
from artesian.metadata.records import (
    AccessControlEntryRecord,
    ClusterRecord,
    LogicalClusterBindingRecord,
    LogicalClusterQuotaRecord,
    RemoveAccessControlEntryRecord,
    RemoveUserScramCredentialRecord,
    UserScramCredentialRecord,
)
from artesian.metadata.store import SqliteMetadataStore
from artesian.security.acl import AclOperation, Authorizer, ResourceType, acl_binding
from artesian.security.scram import (
    MECHANISMS,
    AuthenticationFailed,
    ScramClient,
    ScramCredential,
    ScramServer,
    mechanism_by_type,
)


def _login(api_key: ApiKey, mechanism: str, password: str) -> str | None:
    """A full SCRAM exchange against the key's verifiers; the user name, or None if refused."""
    scram = MECHANISMS[mechanism]
    verifier = next(v for v in api_key.scram if v.mechanism == scram.type_id)
    credential = ScramCredential(
        bytes.fromhex(verifier.salt),
        bytes.fromhex(verifier.stored_key),
        bytes.fromhex(verifier.server_key),
        verifier.iterations,
    )
    server = ScramServer(scram, lambda name: credential if name == api_key.key else None)
    client = ScramClient(scram, api_key.key, password)
    try:
        server_first = server.step(client.first_message())
        server.step(client.final_message(server_first))
    except AuthenticationFailed:
        return None
    return server.username


def test_a_minted_key_logs_in_with_its_secret_on_both_mechanisms_and_with_nothing_else() -> None:
    api_key, secret = mint_api_key(None, "billing service", 123)
    assert len(api_key.key) == 16 and api_key.key.isupper() and len(secret) >= 43
    assert {v.mechanism for v in api_key.scram} == {1, 2}
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        assert _login(api_key, mechanism, secret) == api_key.key
        assert _login(api_key, mechanism, secret + "x") is None
    other, other_secret = mint_api_key(None, "", 124)
    assert other.key != api_key.key and other_secret != secret
    # The document that travels over Kafka holds no secret, and none of what it holds logs in
    # as a password: only salts and keys that check a proof.
    travelling = ClusterDesire("lkc-abc123", "orders", 1, api_keys=(api_key,)).encode().decode()
    assert secret not in travelling
    for verifier in api_key.scram:
        for value in (verifier.salt, verifier.stored_key, verifier.server_key):
            assert value in travelling
            assert _login(api_key, "SCRAM-SHA-256", value) is None
            assert _login(api_key, "SCRAM-SHA-512", value) is None


def test_a_desire_with_api_keys_round_trips_and_the_api_view_has_no_verifiers() -> None:
    api_key, _ = mint_api_key("team-a.", "orders", 5)
    desire = ClusterDesire("lkc-abc123", "orders", 1, api_keys=(api_key,)).validate()
    assert ClusterDesire.decode(desire.encode()) == desire
    public = desire.public()
    assert public["api_keys"] == [
        {"key": api_key.key, "resource_prefix": "team-a.", "description": "orders", "created_ms": 5}
    ]
    assert "scram" not in json.dumps(public) and "stored_key" not in json.dumps(public)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": "lowercase1234567"}, "is not 16 of A-Z and 2-7"),
        ({"key": "ABCDEFGHIJKLMNO"}, "is not 16 of A-Z and 2-7"),
        ({"resource_prefix": ""}, "resource_prefix"),
        ({"resource_prefix": "a/b"}, "resource_prefix"),
        ({"resource_prefix": "_"}, "not starting with '_'"),
        ({"resource_prefix": "__consumer"}, "not starting with '_'"),
        ({"description": "x" * 257}, "256"),
        ({"scram": ()}, "one verifier per SCRAM mechanism"),
    ],
)
def test_invalid_api_keys_are_refused(change: dict[str, object], message: str) -> None:
    api_key, _ = mint_api_key(None, "", 1)
    with pytest.raises(DocumentError, match=message):
        replace(api_key, **change).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mechanism": 3}, "unknown SCRAM mechanism 3"),
        ({"iterations": 4095}, "iterations must be 4096 to 16384"),
        ({"iterations": 16385}, "iterations must be 4096 to 16384"),
        ({"salt": "zz"}, "salt is not hex"),
        ({"salt": "00" * 8}, "salt has 8 bytes"),
        ({"stored_key": "00" * 32}, "stored_key has 32 bytes"),  # SHA-512 needs 64
        ({"server_key": "00" * 65}, "server_key has 65 bytes"),
    ],
)
def test_invalid_verifiers_are_refused(change: dict[str, object], message: str) -> None:
    api_key, _ = mint_api_key(None, "", 1)
    sha512 = next(v for v in api_key.scram if v.mechanism == 2)
    with pytest.raises(DocumentError, match=message):
        replace(sha512, **change).validate()  # type: ignore[arg-type]


def test_a_desire_refuses_duplicate_keys_twin_verifiers_and_too_many_keys() -> None:
    api_key, _ = mint_api_key(None, "", 1)
    with pytest.raises(DocumentError, match="API keys must be unique"):
        ClusterDesire("lkc-abc123", "o", 1, api_keys=(api_key, api_key)).validate()
    twin = replace(api_key, scram=(api_key.scram[0], api_key.scram[0]))
    with pytest.raises(DocumentError, match="one verifier per SCRAM mechanism"):
        ClusterDesire("lkc-abc123", "o", 1, api_keys=(twin,)).validate()
    keys = tuple(
        replace(api_key, key="".join("ABCDEFGHIJKLMNOP"[(n >> (4 * i)) & 15] for i in range(16)))
        for n in range(MAX_API_KEYS + 1)
    )
    with pytest.raises(DocumentError, match=f"at most {MAX_API_KEYS} API keys"):
        ClusterDesire("lkc-abc123", "o", 1, api_keys=keys).validate()
    ClusterDesire("lkc-abc123", "o", 1, api_keys=keys[:MAX_API_KEYS]).validate()


@pytest.mark.parametrize(
    "raw",
    [
        {"api_keys": {}},
        {"api_keys": ["x"]},
        {"api_keys": [{"key": "ABCDEFGHIJKLMNOP", "scram": "x"}]},
        {"api_keys": [{"key": "ABCDEFGHIJKLMNOP", "scram": [], "resource_prefix": 7}]},
        {"api_keys": [{"key": "ABCDEFGHIJKLMNOP", "scram": [{"mechanism": "2"}]}]},
    ],
)
def test_malformed_api_keys_in_a_desire_record_are_refused(raw: dict[str, object]) -> None:
    doc = {"id": "lkc-abc123", "name": "o", "brokers": 1, "generation": 1, **raw}
    with pytest.raises(DocumentError):
        ClusterDesire.decode(json.dumps(doc).encode())


def _apply(
    credentials: dict[tuple[str, int], UserScramCredentialRecord],
    acls: dict[str, AccessControlEntryRecord],
    changes: list[object],
) -> None:
    for record in changes:
        match record:
            case UserScramCredentialRecord(name=name, mechanism=mechanism):
                credentials[(name, mechanism)] = record
            case RemoveUserScramCredentialRecord(name=name, mechanism=mechanism):
                del credentials[(name, mechanism)]
            case AccessControlEntryRecord(id=acl_id):
                acls[acl_id] = record
            case RemoveAccessControlEntryRecord(id=acl_id):
                del acls[acl_id]


def test_the_access_plan_adds_and_removes_only_what_it_owns() -> None:
    everything, _ = mint_api_key(None, "", 1)
    team, _ = mint_api_key("team-a.", "", 2)
    # A user and an ACL the cluster's own admin made: not the data plane's to remove.
    theirs = UserScramCredentialRecord("alice", 2, "00" * 16, "00" * 64, "00" * 64, 4096)
    their_acl = AccessControlEntryRecord("abc", 2, "logs", 3, "User:alice", "*", 3, 3)
    credentials = {("alice", 2): theirs}
    acls = {"abc": their_acl}

    changes = access_changes([everything, team], credentials, acls)
    # Two verifiers each; 3 + 4 ACLs for the whole cluster, 3 + 1 for the prefix.
    assert sorted(type(c).__name__ for c in changes) == sorted(
        ["UserScramCredentialRecord"] * 4 + ["AccessControlEntryRecord"] * 11
    )
    _apply(credentials, acls, changes)
    assert access_changes([everything, team], credentials, acls) == []  # idempotent

    changes = access_changes([team], credentials, acls)
    assert sorted(changes, key=repr) == sorted(
        [RemoveUserScramCredentialRecord(everything.key, m) for m in (1, 2)]
        + [RemoveAccessControlEntryRecord(r.id) for r in acl_records(everything)],
        key=repr,
    )
    _apply(credentials, acls, changes)
    assert credentials[("alice", 2)] == theirs and acls["abc"] == their_acl
    assert set(credentials) == {("alice", 2)} | {(team.key, m) for m in (1, 2)}
    # A verifier changed behind the data plane's back is put back.
    stale = replace(credentials[(team.key, 2)], iterations=4096)
    credentials[(team.key, 2)] = stale
    assert access_changes([team], credentials, acls) == [credential_records(team)[1]]


def test_a_prefixed_key_reaches_only_its_prefix_under_kafkas_authorizer() -> None:
    everything, _ = mint_api_key(None, "", 1)
    team, _ = mint_api_key("team-a.", "", 2)
    authorizer = Authorizer(super_users=[], allow_everyone_if_no_acl_found=False)
    authorizer.update(acl_binding(r) for k in (everything, team) for r in acl_records(k))

    def may(key: ApiKey, op: AclOperation, kind: ResourceType, name: str) -> bool:
        return authorizer.authorize(f"User:{key.key}", "127.0.0.1", op, kind, name)

    for op in (AclOperation.WRITE, AclOperation.READ, AclOperation.CREATE, AclOperation.DELETE):
        assert may(team, op, ResourceType.TOPIC, "team-a.orders")
        assert not may(team, op, ResourceType.TOPIC, "team-b.orders")
        assert may(everything, op, ResourceType.TOPIC, "team-b.orders")
    assert may(team, AclOperation.READ, ResourceType.GROUP, "team-a.app")
    assert not may(team, AclOperation.READ, ResourceType.GROUP, "app")
    assert may(team, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, "team-a.tx")
    assert may(team, AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, "kafka-cluster")
    assert not may(team, AclOperation.CREATE, ResourceType.CLUSTER, "kafka-cluster")
    for op in (
        AclOperation.CREATE,
        AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE,
    ):
        assert may(everything, op, ResourceType.CLUSTER, "kafka-cluster")
    # No key may make users or ACLs (a super user's name among them), change the platform's
    # broker configs and quotas, or pose as a broker.
    for key in (everything, team):
        for op in (AclOperation.ALTER, AclOperation.ALTER_CONFIGS, AclOperation.CLUSTER_ACTION):
            assert not may(key, op, ResourceType.CLUSTER, "kafka-cluster")
    assert not may(team, AclOperation.READ, ResourceType.TOPIC, "__consumer_offsets")


def test_cluster_access_writes_the_log_once_a_broker_formatted_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    store = SqliteMetadataStore(tmp_path / "metadata.db")
    api_key, _ = mint_api_key("team-a.", "", 1)
    access = ClusterAccess(url)
    try:
        # No broker has started the log: nothing is written into it.
        assert access.sync((api_key,)) is False
        assert list(store.read()) == []

        store.append([ClusterRecord("cluster-1")])
        assert access.sync((api_key,)) is True
        image = MetadataImage()
        for offset, record in store.read():
            image.apply(offset, record)
        assert access.applied_offset == image.offset == 6  # 1 + 2 credentials + 4 ACLs
        assert set(image.scram_credentials) == {(api_key.key, 1), (api_key.key, 2)}
        verifier = image.scram_credentials[(api_key.key, 2)]
        assert mechanism_by_type(verifier.mechanism) is MECHANISMS["SCRAM-SHA-512"]
        assert {r.principal for r in image.acls.values()} == {f"User:{api_key.key}"}

        # Nothing new to write: the log is not touched again.
        assert access.sync((api_key,)) is True and len(list(store.read())) == 7
        # A broker's record after ours is read, and the removal goes on top of it.
        store.append([ClusterRecord("cluster-1")])
        assert access.sync(()) is True
        for offset, record in store.read(image.offset):
            image.apply(offset, record)
        assert image.scram_credentials == {} and image.acls == {}
        assert access.applied_offset == image.offset == 7 + 6
        # Another agent (a restart) finds the keys applied, and where: brokers must reach it.
        store.append([ClusterRecord("cluster-1")])
        again = ClusterAccess(url)
        assert again.sync(()) is True and again.applied_offset == 13
        again.close()
    finally:
        access.close()
        store.close()


def test_a_logical_clusters_key_waits_whole_for_its_metadata_version(tmp_path: Path) -> None:
    """On a cluster at artesian.metadata.version 1 (a roll from an older release not yet
    finished), the host's own key is written, but not a guest's: its binding needs level 2,
    and its credentials wait with it, so that it never logs in unbound."""
    from artesian.metadata.features import METADATA_VERSION
    from artesian.metadata.records import FeatureLevelRecord

    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    store = SqliteMetadataStore(tmp_path / "metadata.db")
    store.append([ClusterRecord("cluster-1")])  # no FeatureLevelRecord: level 1
    host_key, _ = mint_api_key(None, "", 1)
    guest_key, _ = mint_api_key(None, "", 1)
    access = ClusterAccess(url)
    try:
        assert access.sync((host_key,), [("lkc-g1", guest_key)]) is False
        image = MetadataImage()
        for offset, record in store.read():
            image.apply(offset, record)
        assert {name for name, _ in image.scram_credentials} == {host_key.key}
        assert {r.principal for r in image.acls.values()} == {f"User:{host_key.key}"}
        assert image.logical_clusters == {}

        store.append([FeatureLevelRecord(METADATA_VERSION, 2)])
        assert access.sync((host_key,), [("lkc-g1", guest_key)]) is True
        for offset, record in store.read(image.offset):
            image.apply(offset, record)
        assert {name for name, _ in image.scram_credentials} == {host_key.key, guest_key.key}
        assert image.logical_clusters == {f"User:{guest_key.key}": "lkc-g1"}
    finally:
        access.close()
        store.close()


def test_a_desire_whose_latest_record_is_unreadable_is_neither_kept_nor_deleted() -> None:
    """The older desire may hold a key the newer one revoked: the table drops it, and marks
    the cluster unreadable so that its data plane does not take it for deleted either."""
    from artesian.controlplane.documents import DESIRED_TOPIC
    from artesian.controlplane.state_topics import StateTable

    table = StateTable("127.0.0.1:1", DESIRED_TOPIC, ClusterDesire.decode)  # never started
    try:
        api_key, _ = mint_api_key(None, "", 1)
        desire = ClusterDesire("lkc-abc123", "o", 1, api_keys=(api_key,)).validate()
        key = desire.id.encode()
        table._apply(key, desire.encode(), 0)
        assert table.get(desire.id) == desire and table.unreadable == set()
        table._apply(key, b"{not json", 1)
        assert table.get(desire.id) is None and desire.id not in table.snapshot()
        assert table.unreadable == {desire.id}
        revoked = desire.changed(api_keys=())
        table._apply(key, revoked.encode(), 2)
        assert table.get(desire.id) == revoked and table.unreadable == set()
        table._apply(key, b"{not json", 3)
        table._apply(key, None, 4)  # a tombstone: deleted, and readable as such
        assert table.get(desire.id) is None and table.unreadable == set()
    finally:
        table._consumer.close()


def test_a_logical_cluster_s_keys_are_bound_first_and_reach_only_its_namespace() -> None:
    own, _ = mint_api_key(None, "", 1)
    guest, _ = mint_api_key(None, "", 2)
    narrow, _ = mint_api_key("team.", "", 3)
    guests = [("lkc-north1", guest), ("lkc-north1", narrow)]
    credentials: dict[tuple[str, int], UserScramCredentialRecord] = {}
    acls: dict[str, AccessControlEntryRecord] = {}
    changes = access_changes([own], credentials, acls, {}, guests)
    # Bound before its credentials exist: it never sees the shared cluster's names.
    assert changes[:2] == [
        LogicalClusterBindingRecord(p, "lkc-north1")
        for p in sorted((f"User:{guest.key}", f"User:{narrow.key}"))
    ]
    assert all(not isinstance(c, LogicalClusterBindingRecord) for c in changes[2:])
    authorizer = Authorizer(super_users=[], allow_everyone_if_no_acl_found=False)
    authorizer.update(acl_binding(c) for c in changes if isinstance(c, AccessControlEntryRecord))

    def may(key: ApiKey, op: AclOperation, kind: ResourceType, name: str) -> bool:
        return authorizer.authorize(f"User:{key.key}", "127.0.0.1", op, kind, name)

    assert may(guest, AclOperation.CREATE, ResourceType.TOPIC, "lkc-north1_orders")
    assert may(guest, AclOperation.READ, ResourceType.GROUP, "lkc-north1_app")
    assert not may(guest, AclOperation.READ, ResourceType.TOPIC, "lkc-south1_orders")
    # An id that begins like its own is another namespace: the "_" ends the prefix.
    assert not may(guest, AclOperation.READ, ResourceType.TOPIC, "lkc-north12_orders")
    assert not may(guest, AclOperation.READ, ResourceType.TOPIC, "orders")
    assert may(narrow, AclOperation.WRITE, ResourceType.TOPIC, "lkc-north1_team.x")
    assert not may(narrow, AclOperation.WRITE, ResourceType.TOPIC, "lkc-north1_other")
    for op in (AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.IDEMPOTENT_WRITE):
        assert may(guest, op, ResourceType.CLUSTER, "kafka-cluster")
    # Not CREATE on the cluster: that would reach names outside its namespace.
    assert not may(guest, AclOperation.CREATE, ResourceType.CLUSTER, "kafka-cluster")
    assert may(own, AclOperation.READ, ResourceType.TOPIC, "lkc-south1_orders")

    _apply(credentials, acls, changes)
    bound = {
        f"User:{guest.key}": "lkc-north1",
        f"User:{narrow.key}": "lkc-north1",
        "User:x": "lkc-y",
    }
    assert access_changes([own], credentials, acls, bound, guests) == []
    # The logical cluster goes: its keys lose their credentials first, their binding last;
    # a binding the data plane does not own (User:x) stays.
    changes = access_changes([own], credentials, acls, bound, [])
    assert changes[-2:] == [
        LogicalClusterBindingRecord(p, None)
        for p in sorted((f"User:{guest.key}", f"User:{narrow.key}"))
    ]
    assert all(not isinstance(c, LogicalClusterBindingRecord) for c in changes[:-2])


def test_a_logical_cluster_s_desire_has_a_host_and_nothing_of_its_own() -> None:
    logical = ClusterDesire(id="lkc-north1", name="north", brokers=0, host="lkc-pool01")
    assert logical.validate().logical
    assert ClusterDesire.decode(logical.encode()) == logical
    for wrong in (
        {"brokers": 1},
        {"host": "lkc-north1"},
        {"host": "pool"},
        {"shared": True},
        {"config": {"log.retention.ms": "1"}},
    ):
        with pytest.raises(DocumentError):
            replace(logical, **wrong).validate()
    # A document from before logical clusters is a physical cluster's.
    old = json.loads(ClusterDesire(id="lkc-pool01", name="pool", brokers=1).encode())
    del old["host"], old["shared"]
    decoded = ClusterDesire.decode(json.dumps(old).encode())
    assert (decoded.logical, decoded.shared, decoded.brokers) == (False, False, 1)


def test_a_shared_cluster_holds_exactly_its_logical_clusters_quotas() -> None:
    held = {
        "lkc-north1": {"producer_byte_rate": 1.0, "consumer_byte_rate": 2.0},
        "lkc-gone1": {"request_percentage": 5.0},
        "lkc-byhand": {"producer_byte_rate": 9.0},  # set with logical-clusters set-quota
    }
    # north is placed there with one quota, new with another, gone is being deleted.
    wanted = {
        "lkc-north1": {"producer_byte_rate": 5.0},
        "lkc-new1": {"consumer_byte_rate": 7.0},
        "lkc-gone1": {},
    }
    assert access_changes([], {}, {}, {}, (), (held, wanted)) == [
        LogicalClusterQuotaRecord("lkc-gone1", "request_percentage", None),
        LogicalClusterQuotaRecord("lkc-new1", "consumer_byte_rate", 7.0),
        LogicalClusterQuotaRecord("lkc-north1", "consumer_byte_rate", None),
        LogicalClusterQuotaRecord("lkc-north1", "producer_byte_rate", 5.0),
    ]
    after = {**wanted, "lkc-byhand": held["lkc-byhand"]}
    assert access_changes([], {}, {}, {}, (), (after, wanted)) == []
    logical = ClusterDesire(id="lkc-north1", name="north", brokers=0, host="lkc-pool01")
    assert replace(logical, quotas={"producer_byte_rate": 1e6}).validate()
    assert replace(logical, quotas={"request_percentage": 12.5}).validate()
    for wrong in (
        {"connection_creation_rate": 1.0},  # an address's, not a cluster's
        {"producer_byte_rate": 0.0},
        {"producer_byte_rate": 0.5},  # byte rates are whole bytes, as Kafka's
        {"producer_byte_rate": float("inf")},  # JSON's 1e999
        {"request_percentage": float("nan")},
    ):
        with pytest.raises(DocumentError):
            replace(logical, quotas=wrong).validate()
    with pytest.raises(DocumentError):
        ClusterDesire(
            id="lkc-pool01", name="pool", brokers=1, quotas={"producer_byte_rate": 1.0}
        ).validate()
