"""Delegation tokens (KIP-48, KIP-373) against a real broker: the four APIs' answers and
error codes, a token's SCRAM login as its owner (SCRAM with ``tokenauth=true``, which Java
clients send; no Python client can, so the login is Artesian's own SCRAM client over a raw
connection), ACLs on USER and DELEGATION_TOKEN resources, expiry, the sweep, a kill -9, and
the metadata version gate. ACLs are set with kafka-python, the one Python admin client that
names USER and DELEGATION_TOKEN resources."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)
from kio.schema.create_delegation_token.v1 import request as create_v1
from kio.schema.create_delegation_token.v3 import request as create_v3
from kio.schema.describe_delegation_token.v3 import request as describe_v3
from kio.schema.errors import ErrorCode
from kio.schema.expire_delegation_token.v2 import request as expire_v2
from kio.schema.renew_delegation_token.v2 import request as renew_v2

from artesian.cli.wire import WireClient, update_features
from artesian.metadata.features import METADATA_VERSION
from artesian.security.scram import MECHANISMS, ScramClient
from tests.broker_process import BrokerProcess, free_port
from tests.cli.test_admin_cli import cli, cli_json, fails
from tests.kafka_wire import (
    WireConn,
    sample_request,
    sasl_authenticate,
    sasl_handshake,
    scram_login,
)
from tests.storage.batches import Rec, make_batch
from tests.tls_certs import Certificates, make_certificates

SECRET = "a secret every broker shares"
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
PASSWORDS |= {"dave": "dave-secret"}
CREATE, RENEW, EXPIRE, DESCRIBE = 38, 39, 40, 41
DAY_MS, WEEK_MS = 86_400_000, 604_800_000


class TokenBroker:
    def __init__(
        self, proc: BrokerProcess, sasl_port: int, ssl_port: int, certs: Certificates
    ) -> None:
        self.proc = proc
        self.sasl_port = sasl_port
        self.ssl_port = ssl_port  # TLS without client certificates: User:ANONYMOUS
        self.certs = certs

    def login(self, user: str, mechanism: str = "SCRAM-SHA-256") -> WireConn:
        return scram_login(self.sasl_port, user, PASSWORDS[user], mechanism)

    def token_login(
        self, token_id: str, token_hmac: bytes, mechanism: str = "SCRAM-SHA-256"
    ) -> WireConn:
        return scram_login(self.sasl_port, token_id, _password(token_hmac), mechanism, token=True)


def _start(root: Path, **settings: str) -> TokenBroker:
    certs = make_certificates(root / "certs")
    proc = BrokerProcess(root / "broker")
    sasl_port, ssl_port = free_port(), free_port()
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},"
        f"SSL://127.0.0.1:{ssl_port}",
        "ssl.keystore.location": str(certs.server),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
        **settings,
    }
    proc.start()
    admin = AdminClient({"bootstrap.servers": proc.bootstrap})
    for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
        upsertions = [
            UserScramCredentialUpsertion(
                user, ScramCredentialInfo(mechanism, 4096), password.encode()
            )
            for user, password in PASSWORDS.items()
        ]
        for future in admin.alter_user_scram_credentials(upsertions).values():
            assert future.result(10) is None
    return TokenBroker(proc, sasl_port, ssl_port, certs)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenBroker]:
    started = _start(
        tmp_path_factory.mktemp("tokens"),
        **{
            "delegation.token.secret.key": SECRET,
            "delegation.token.expiry.check.interval.ms": "200",
        },
    )
    try:
        yield started
    finally:
        code = started.proc.stop()
    assert code == 0, started.proc.log_tail()


def _password(token_hmac: bytes) -> str:
    return base64.b64encode(token_hmac).decode()


def _expected_hmac(token_id: str) -> bytes:
    return hmac.new(SECRET.encode(), token_id.encode(), hashlib.sha512).digest()


def _ms(value: datetime.datetime | int) -> int:
    if isinstance(value, int):
        return value
    return round(value.timestamp() * 1000)


def _create(
    conn: WireConn,
    renewers: tuple[str, ...] = (),
    max_lifetime_ms: int = -1,
    owner: str | None = None,
    version: int = 3,
) -> Any:
    schema = create_v3 if version == 3 else create_v1
    renewer_entities = tuple(
        schema.CreatableRenewers(principal_type=kind, principal_name=name)
        for kind, _, name in (r.partition(":") for r in renewers)
    )
    # As an int: the codec writes it as is, and Long.MAX_VALUE fits no timedelta.
    lifetime: Any = max_lifetime_ms
    if version < 3:
        return conn.request(
            CREATE,
            version,
            create_v1.CreateDelegationTokenRequest(
                renewers=renewer_entities, max_lifetime=lifetime
            ),
        )
    owner_type, _, owner_name = owner.partition(":") if owner else (None, "", None)
    request = create_v3.CreateDelegationTokenRequest(
        owner_principal_type=owner_type,
        owner_principal_name=owner_name,
        renewers=renewer_entities,
        max_lifetime=lifetime,
    )
    return conn.request(CREATE, version, request)


def _renew(conn: WireConn, token_hmac: bytes, period_ms: int) -> Any:
    request = renew_v2.RenewDelegationTokenRequest(
        hmac=token_hmac,
        renew_period=period_ms,  # type: ignore[arg-type]  # written as is, as lifetimes are
    )
    return conn.request(RENEW, 2, request)


def _expire(conn: WireConn, token_hmac: bytes, period_ms: int) -> Any:
    request = expire_v2.ExpireDelegationTokenRequest(
        hmac=token_hmac,
        expiry_time_period=period_ms,  # type: ignore[arg-type]  # written as is
    )
    return conn.request(EXPIRE, 2, request)


def _describe(conn: WireConn, owners: list[str] | None = None) -> Any:
    request = describe_v3.DescribeDelegationTokenRequest(
        owners=None
        if owners is None
        else tuple(
            describe_v3.DescribeDelegationTokenOwner(principal_type=kind, principal_name=name)
            for kind, _, name in (o.partition(":") for o in owners)
        )
    )
    return conn.request(DESCRIBE, 3, request)


def _described_ids(conn: WireConn, owners: list[str] | None = None) -> set[str]:
    answer = _describe(conn, owners)
    assert answer.error_code == ErrorCode.none
    return {t.token_id for t in answer.tokens}


def _allow(broker: TokenBroker, user: str, rtype: Any, name: str, operation: Any) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.proc.bootstrap)
    try:
        result = admin.create_acls(
            [
                ACL(
                    f"User:{user}",
                    "*",
                    operation,
                    ACLPermissionType.ALLOW,
                    ResourcePattern(rtype, name),
                )
            ]
        )
        assert not result["failed"], result
    finally:
        admin.close()


def _produce(conn: WireConn, topic: str, value: bytes) -> tuple[int, int]:
    batch = make_batch([Rec(None, value, int(time.time() * 1000))])
    request = sample_request(0, 9, topic, batch=batch, acks=-1)
    (t,) = conn.request(0, 9, request).responses
    (p,) = t.partition_responses
    return int(p.error_code), int(p.base_offset)


def _writable_topic(broker: TokenBroker, user: str, name: str) -> str:
    """``name``, created unless it exists, which ``user`` may write to."""
    admin = AdminClient({"bootstrap.servers": broker.proc.bootstrap})
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        try:
            future.result(10)
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, e
    _allow(broker, user, ResourceType.TOPIC, name, ACLOperation.WRITE)
    return name


def _values(broker: TokenBroker, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": broker.proc.bootstrap, "group.id": f"{topic}-reader"}
        | {"enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.append(message.value())
        return got
    finally:
        consumer.close()


def _token_login_refused(broker: TokenBroker, token_id: str, token_hmac: bytes) -> str:
    """The login's error message; fails when the token is accepted."""
    with WireConn(broker.sasl_port) as conn:
        assert sasl_handshake(conn, "SCRAM-SHA-256").error_code == ErrorCode.none
        client = ScramClient(
            MECHANISMS["SCRAM-SHA-256"], token_id, _password(token_hmac), token=True
        )
        answer = sasl_authenticate(conn, client.first_message())
        if answer.error_code == ErrorCode.none:  # a known token: the proof fails
            answer = sasl_authenticate(conn, client.final_message(answer.auth_bytes))
        assert answer.error_code == ErrorCode.sasl_authentication_failed
        return str(answer.error_message)


# --- creating a token, and logging in with it ------------------------------------------------


def test_a_token_is_created_with_kafkas_lifetimes_and_logs_in_as_its_owner(
    broker: TokenBroker,
) -> None:
    with broker.login("alice") as alice:
        before = int(time.time() * 1000)
        created = _create(alice)
        after = int(time.time() * 1000)
    assert created.error_code == ErrorCode.none
    assert (created.principal_type, created.principal_name) == ("User", "alice")
    requester = (created.token_requester_principal_type, created.token_requester_principal_name)
    assert requester == ("User", "alice")
    issued = _ms(created.issue_timestamp)
    assert before <= issued <= after
    # The defaults: a day until it must be renewed, a week at most.
    assert _ms(created.expiry_timestamp) == issued + DAY_MS
    assert _ms(created.max_timestamp) == issued + WEEK_MS
    assert len(created.token_id) == 22 and not created.token_id.startswith("-")
    assert created.hmac == _expected_hmac(created.token_id)

    # Alice may write to "alice-topic"; her token acts as her, with either mechanism.
    _writable_topic(broker, "alice", "alice-topic")
    for offset, mechanism in enumerate(("SCRAM-SHA-256", "SCRAM-SHA-512")):
        with broker.token_login(created.token_id, created.hmac, mechanism) as conn:
            value = f"via token, {mechanism}".encode()
            assert _produce(conn, "alice-topic", value) == (0, offset)
    assert _values(broker, "alice-topic", 2) == [
        b"via token, SCRAM-SHA-256",
        b"via token, SCRAM-SHA-512",
    ]

    # Bob may not write there, and a token is no way round that for him.
    with broker.login("bob") as bob:
        bobs = _create(bob)
    with broker.token_login(bobs.token_id, bobs.hmac) as conn:
        code, _ = _produce(conn, "alice-topic", b"no")
        assert code == ErrorCode.topic_authorization_failed.value

    # The session ends when the token does (KIP-368): the login says how long it has left.
    with WireConn(broker.sasl_port) as conn:
        sasl_handshake(conn, "SCRAM-SHA-256")
        client = ScramClient(
            MECHANISMS["SCRAM-SHA-256"], created.token_id, _password(created.hmac), token=True
        )
        first = sasl_authenticate(conn, client.first_message())
        final = sasl_authenticate(conn, client.final_message(first.auth_bytes))
        now = int(time.time() * 1000)
        assert final.error_code == ErrorCode.none
        left = final.session_lifetime // datetime.timedelta(milliseconds=1)
        assert _ms(created.expiry_timestamp) - now - 10_000 <= left
        assert left <= _ms(created.expiry_timestamp) - now + 1000


def test_a_wrong_hmac_or_an_unknown_token_does_not_log_in(broker: TokenBroker) -> None:
    with broker.login("alice") as alice:
        created = _create(alice)
    wrong = bytes(b ^ 1 for b in created.hmac)
    message = _token_login_refused(broker, created.token_id, wrong)
    assert "invalid credentials" in message
    # Without tokenauth=true the id is taken for a user name, and there is no such user.
    with WireConn(broker.sasl_port) as conn:
        sasl_handshake(conn, "SCRAM-SHA-256")
        client = ScramClient(MECHANISMS["SCRAM-SHA-256"], created.token_id, "x")
        answer = sasl_authenticate(conn, client.first_message())
        assert answer.error_code == ErrorCode.sasl_authentication_failed
    _token_login_refused(broker, "no-such-token", created.hmac)


def test_max_lifetime_is_the_shorter_of_the_request_and_the_broker(broker: TokenBroker) -> None:
    with broker.login("alice") as alice:
        short = _create(alice, max_lifetime_ms=60_000)
        long = _create(alice, max_lifetime_ms=10 * WEEK_MS)
        v1 = _create(alice, max_lifetime_ms=0, version=1)
    issued = _ms(short.issue_timestamp)
    assert _ms(short.max_timestamp) == issued + 60_000
    assert _ms(short.expiry_timestamp) == issued + 60_000  # never past the max
    assert _ms(long.max_timestamp) == _ms(long.issue_timestamp) + WEEK_MS
    assert v1.error_code == ErrorCode.none
    assert _ms(v1.max_timestamp) == _ms(v1.issue_timestamp) + WEEK_MS
    assert (v1.principal_type, v1.principal_name) == ("User", "alice")


# --- who may ask ------------------------------------------------------------------------------


def test_tokens_are_not_handed_out_over_plaintext_or_to_a_token(broker: TokenBroker) -> None:
    with WireConn(broker.proc.port) as plaintext:
        refused = _create(plaintext)
        assert refused.error_code == ErrorCode.delegation_token_request_not_allowed
        # The broker's own refusal: timestamps -1, no id, no HMAC.
        assert _ms(refused.issue_timestamp) == -1 and _ms(refused.max_timestamp) == -1
        assert (refused.token_id, refused.hmac) == ("", b"")
        assert _describe(plaintext).error_code == ErrorCode.delegation_token_request_not_allowed
        renewed = _renew(plaintext, b"x", 1000)
        assert renewed.error_code == ErrorCode.delegation_token_request_not_allowed
        assert _ms(renewed.expiry_timestamp) == -1
    with broker.login("alice") as alice:
        created = _create(alice)
    with broker.token_login(created.token_id, created.hmac) as by_token:
        for answer in (
            _create(by_token),
            _describe(by_token),
            _renew(by_token, created.hmac, 1000),
            _expire(by_token, created.hmac, 1000),
        ):
            assert answer.error_code == ErrorCode.delegation_token_request_not_allowed


def test_an_anonymous_tls_client_gets_no_token(broker: TokenBroker) -> None:
    context = ssl.create_default_context(cafile=str(broker.certs.ca))
    with WireConn(broker.ssl_port) as conn:
        conn.sock = context.wrap_socket(conn.sock, server_hostname="localhost")
        refused = _create(conn)
        assert refused.error_code == ErrorCode.delegation_token_request_not_allowed
        assert (refused.principal_type, refused.principal_name) == ("User", "ANONYMOUS")
        assert _describe(conn).error_code == ErrorCode.delegation_token_request_not_allowed


def test_a_token_for_someone_else_needs_create_tokens_on_that_user(broker: TokenBroker) -> None:
    with broker.login("carol") as carol:
        refused = _create(carol, owner="User:dave")
        assert refused.error_code == ErrorCode.delegation_token_authorization_failed
        assert (refused.principal_type, refused.principal_name) == ("User", "dave")
        assert refused.token_requester_principal_name == "carol"
        # Granted with the CLI (`artesian acls`), which names USER resources.
        cli(
            None,
            "acls",
            "add",
            *("-b", broker.proc.bootstrap, "--principal", "User:carol"),
            *("--operation", "CreateTokens", "--user-principal", "User:dave"),
        )
        created = _create(carol, owner="User:dave")
        assert created.error_code == ErrorCode.none
        assert (created.principal_name, created.token_requester_principal_name) == (
            "dave",
            "carol",
        )
        # Renewers are users; anything else is refused before the token is made. So is an
        # owner without a principal type.
        wrong = _create(carol, renewers=("Group:ops",))
        assert wrong.error_code == ErrorCode.invalid_principal_type
        no_type = create_v3.CreateDelegationTokenRequest(
            owner_principal_type=None,
            owner_principal_name="dave",
            renewers=(),
            max_lifetime=datetime.timedelta(milliseconds=-1),
        )
        assert carol.request(CREATE, 3, no_type).error_code == ErrorCode.invalid_principal_type
        # An empty type is a principal of its own (":dave"), which carol may not act for.
        empty_type = _create(carol, owner=":dave").error_code
        assert empty_type == ErrorCode.delegation_token_authorization_failed
        # Carol asked for dave's token: she sees it, but only its owner and renewers renew it.
        assert created.token_id in _described_ids(carol)
        assert _renew(carol, created.hmac, 1000).error_code == (
            ErrorCode.delegation_token_owner_mismatch
        )
    # The token logs in as dave: dave's ACLs apply.
    _writable_topic(broker, "dave", "dave-topic")
    carols = _writable_topic(broker, "carol", "carol-topic")
    with broker.token_login(created.token_id, created.hmac) as conn:
        assert _produce(conn, "dave-topic", b"from dave's token") == (0, 0)
        assert _produce(conn, carols, b"no")[0] == ErrorCode.topic_authorization_failed.value
    assert _values(broker, "dave-topic", 1) == [b"from dave's token"]


# --- renewing and expiring --------------------------------------------------------------------


def test_renewal_moves_the_expiry_for_the_owner_and_renewers_only(broker: TokenBroker) -> None:
    with broker.login("alice") as alice:
        created = _create(alice, renewers=("User:bob",))
        assert created.error_code == ErrorCode.none
        with broker.login("carol") as carol:
            mismatch = _renew(carol, created.hmac, 1000)
            assert mismatch.error_code == ErrorCode.delegation_token_owner_mismatch
            assert _ms(mismatch.expiry_timestamp) == 0
        with broker.login("bob") as bob:
            before = int(time.time() * 1000)
            renewed = _renew(bob, created.hmac, 60_000)
            after = int(time.time() * 1000)
        assert renewed.error_code == ErrorCode.none
        assert before + 60_000 <= _ms(renewed.expiry_timestamp) <= after + 60_000
        # A longer period than delegation.token.expiry.time.ms gets that; so does -1.
        for period in (10 * DAY_MS, -1):
            before = int(time.time() * 1000)
            renewed = _renew(alice, created.hmac, period)
            after = int(time.time() * 1000)
            assert before + DAY_MS <= _ms(renewed.expiry_timestamp) <= after + DAY_MS
        # Never past the token's max.
        short = _create(alice, max_lifetime_ms=30_000)
        capped = _renew(alice, short.hmac, 60_000)
        assert _ms(capped.expiry_timestamp) == _ms(short.max_timestamp)
        # Describe shows the moved expiry.
        (described,) = [t for t in _describe(alice).tokens if t.token_id == created.token_id]
        assert described.expiry_timestamp == _ms(renewed.expiry_timestamp)
        assert [(r.principal_type, r.principal_name) for r in described.renewers] == [
            ("User", "bob")
        ]
        unknown = _renew(alice, b"not a token's hmac", 1000)
        assert unknown.error_code == ErrorCode.delegation_token_not_found
    # A renewer may expire it too; whoever else may not.
    with broker.login("carol") as carol:
        mismatch = _expire(carol, created.hmac, -1)
        assert mismatch.error_code == ErrorCode.delegation_token_owner_mismatch
    with broker.login("bob") as bob:
        assert _expire(bob, created.hmac, -1).error_code == ErrorCode.none
        assert created.token_id not in _described_ids(bob)


def test_expiring_a_token_refuses_its_new_logins(broker: TokenBroker) -> None:
    with broker.login("alice") as alice:
        created = _create(alice)
        later = _create(alice)
        # A period from now, not past the max.
        before = int(time.time() * 1000)
        moved = _expire(alice, later.hmac, 120_000)
        assert moved.error_code == ErrorCode.none
        assert before + 120_000 <= _ms(moved.expiry_timestamp) <= before + 125_000
        # A negative period removes it at once (Kafka answers the period as the expiry).
        gone = _expire(alice, created.hmac, -1)
        assert gone.error_code == ErrorCode.none and _ms(gone.expiry_timestamp) == -1
        assert created.token_id not in _described_ids(alice)
        assert later.token_id in _described_ids(alice)
        again = _expire(alice, created.hmac, -1)
        assert again.error_code == ErrorCode.delegation_token_not_found
    _token_login_refused(broker, created.token_id, created.hmac)


def test_an_expired_token_is_swept(broker: TokenBroker) -> None:
    with broker.login("alice") as alice:
        created = _create(alice, max_lifetime_ms=1000)
        assert _expire(alice, created.hmac, 0).error_code == ErrorCode.none
        # The sweep (every 200 ms here) removes it from the metadata.
        deadline = time.monotonic() + 15
        while created.token_id in _described_ids(alice) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert created.token_id not in _described_ids(alice)
        gone = _renew(alice, created.hmac, 1000)
        assert gone.error_code == ErrorCode.delegation_token_not_found


# --- describing ---------------------------------------------------------------------------


def test_describe_shows_owned_and_renewable_tokens_and_what_acls_allow(
    broker: TokenBroker,
) -> None:
    with broker.login("alice") as alice:
        mine = _create(alice, renewers=("User:carol",))
        described = [t for t in _describe(alice).tokens if t.token_id == mine.token_id]
        (token,) = described
        assert token.hmac == mine.hmac
        assert (token.principal_name, token.token_requester_principal_name) == ("alice", "alice")
        assert token.issue_timestamp == _ms(mine.issue_timestamp)
        assert token.max_timestamp == _ms(mine.max_timestamp)
        # An empty list of owners asks for nothing; null for everything one may see.
        assert _describe(alice, []).tokens == ()
        assert mine.token_id in _described_ids(alice, ["User:carol"])  # a renewer counts
        assert mine.token_id not in _described_ids(alice, ["User:bob"])
    with broker.login("carol") as carol:
        assert mine.token_id in _described_ids(carol)
    with broker.login("dave") as dave:
        assert mine.token_id not in _described_ids(dave)
        _allow(broker, "dave", ResourceType.DELEGATION_TOKEN, mine.token_id, ACLOperation.DESCRIBE)
        assert mine.token_id in _described_ids(dave)
    with broker.login("bob") as bob:
        seen_before = _described_ids(bob)
        assert mine.token_id not in seen_before
        _allow(broker, "bob", ResourceType.USER, "User:alice", ACLOperation.DESCRIBE_TOKENS)
        alices = _described_ids(bob) - seen_before
        assert mine.token_id in alices


def test_tokens_outlive_a_kill_9(broker: TokenBroker) -> None:
    with broker.login("alice") as alice:
        created = _create(alice)
    topic = _writable_topic(broker, "alice", "restarted-topic")
    broker.proc.kill9()
    broker.proc.restart()
    with broker.token_login(created.token_id, created.hmac) as conn, broker.login("alice") as alice:
        assert created.token_id in _described_ids(alice)
        assert _produce(conn, topic, b"after the restart") == (0, 0)
    assert _values(broker, topic, 1) == [b"after the restart"]


# --- switched off, and the metadata version ----------------------------------------------


def test_without_a_secret_key_tokens_are_off(tmp_path: Path) -> None:
    off = _start(tmp_path / "off")
    try:
        with off.login("alice") as alice:
            created = _create(alice)
            assert created.error_code == ErrorCode.delegation_token_auth_disabled
            assert _ms(created.issue_timestamp) == 0 and created.token_id == ""
            assert _describe(alice).error_code == ErrorCode.delegation_token_auth_disabled
            assert _renew(alice, b"x", 1).error_code == ErrorCode.delegation_token_auth_disabled
            assert _expire(alice, b"x", 1).error_code == ErrorCode.delegation_token_auth_disabled
        assert "invalid credentials" in _token_login_refused(off, "some-id", b"x")
    finally:
        assert off.proc.stop() == 0, off.proc.log_tail()


def test_tokens_wait_for_metadata_version_3_and_expire(tmp_path: Path) -> None:
    old = _start(
        tmp_path / "old",
        **{"delegation.token.secret.key": SECRET, "artesian.metadata.version.bootstrap": "2"},
    )
    try:
        with old.login("alice") as alice:
            refused = _create(alice)
            assert refused.error_code == ErrorCode.unsupported_version
            assert _describe(alice).tokens == ()
            # The controller's order: the metadata version before looking for the token.
            assert _renew(alice, b"x", 1000).error_code == ErrorCode.unsupported_version
            assert _expire(alice, b"x", -1).error_code == ErrorCode.unsupported_version
            with WireClient(old.proc.bootstrap, 10) as client:
                update_features(client, {METADATA_VERSION: 3})  # raises if refused
            created = _create(alice)
            assert created.error_code == ErrorCode.none
            # This broker sweeps hourly: an expired token stays listed until then, but
            # neither renews nor logs in.
            assert _expire(alice, created.hmac, 0).error_code == ErrorCode.none
            time.sleep(0.01)
            expired = _renew(alice, created.hmac, 1000)
            assert expired.error_code == ErrorCode.delegation_token_expired
            assert _expire(alice, created.hmac, 0).error_code == ErrorCode.delegation_token_expired
            assert created.token_id in _described_ids(alice)
        _token_login_refused(old, created.token_id, created.hmac)
    finally:
        assert old.proc.stop() == 0, old.proc.log_tail()


# --- the CLI ----------------------------------------------------------------------------------


def test_the_cli_creates_renews_describes_and_expires_tokens(broker: TokenBroker) -> None:
    as_alice = [
        "-b",
        f"127.0.0.1:{broker.sasl_port}",
        *("-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=SCRAM-SHA-512"),
        *("-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORDS['alice']}"),
    ]
    created = cli_json(
        None,
        "delegation-tokens",
        "create",
        *as_alice,
        "--renewer-principal",
        "User:bob",
        "--max-life-time-period",
        "3600000",
    )
    assert (created["owner"], created["requester"], created["renewers"]) == (
        "User:alice",
        "User:alice",
        ["User:bob"],
    )
    assert created["max_timestamp"] == created["issue_timestamp"] + 3_600_000
    token_hmac = base64.b64decode(created["hmac"])
    assert token_hmac == _expected_hmac(created["token_id"])
    topic = _writable_topic(broker, "alice", "cli-topic")
    with broker.token_login(created["token_id"], token_hmac, "SCRAM-SHA-512") as conn:
        assert _produce(conn, topic, b"logged in with the CLI's token") == (0, 0)

    described = cli_json(None, "delegation-tokens", "describe", *as_alice)
    (mine,) = [t for t in described if t["token_id"] == created["token_id"]]
    assert mine == created
    assert (
        cli_json(
            None, "delegation-tokens", "describe", *as_alice, "--owner-principal", "User:nobody"
        )
        == []
    )

    renewed = cli_json(
        None,
        "delegation-tokens",
        "renew",
        *as_alice,
        "--hmac",
        created["hmac"],
        "--renew-time-period",
        "60000",
    )
    assert created["issue_timestamp"] + 60_000 <= renewed["expiry_timestamp"]
    assert renewed["expiry_timestamp"] <= int(time.time() * 1000) + 60_000

    removed = cli(
        None, "delegation-tokens", "expire", *as_alice, "--hmac", "-", stdin=created["hmac"] + "\n"
    )
    assert "removed" in removed.stdout
    _token_login_refused(broker, created["token_id"], token_hmac)
    # The broker's refusal names the code, and the next step.
    again = fails(None, "delegation-tokens", "renew", *as_alice, "--hmac", created["hmac"])
    assert "DELEGATION_TOKEN_NOT_FOUND" in again and "describe" in again
    plaintext = fails(None, "delegation-tokens", "create", "-b", broker.proc.bootstrap)
    assert "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED" in plaintext and "sasl" in plaintext
    bad_hmac = fails(None, "delegation-tokens", "renew", *as_alice, "--hmac", "not base64!")
    assert "--hmac is not base64" in bad_hmac
    bad_owner = fails(None, "delegation-tokens", "create", *as_alice, "--owner-principal", "dave")
    assert "is not a principal" in bad_owner and "User:<name>" in bad_owner
    group = fails(None, "delegation-tokens", "create", *as_alice, "--renewer-principal", "Group:g")
    assert "must name users" in group


def test_extreme_periods_are_answered_not_crashed_on(broker: TokenBroker) -> None:
    long_max, long_min = 2**63 - 1, -(2**63)
    with broker.login("alice") as alice:
        created = _create(alice, max_lifetime_ms=long_max)
        assert created.error_code == ErrorCode.none
        assert _ms(created.max_timestamp) == _ms(created.issue_timestamp) + WEEK_MS
        renewed = _renew(alice, created.hmac, long_max)
        assert renewed.error_code == ErrorCode.none
        assert _ms(renewed.expiry_timestamp) <= _ms(created.max_timestamp)
        moved = _expire(alice, created.hmac, long_max)
        assert _ms(moved.expiry_timestamp) == _ms(created.max_timestamp)
        # Removed at once; the period echoed back is held to what a timestamp can say.
        gone = _expire(alice, created.hmac, long_min)
        assert gone.error_code == ErrorCode.none and _ms(gone.expiry_timestamp) < 0
        assert created.token_id not in _described_ids(alice)
        # The connection carries on.
        assert _describe(alice).error_code == ErrorCode.none
