"""KIP-368, SASL re-authentication: session lifetimes, re-authenticating on the same connection,
expired sessions closed at their next request. The state machine without sockets, then raw
frames and librdkafka against a real broker."""

from __future__ import annotations

import asyncio
import datetime
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.sasl_authenticate.v0.request import SaslAuthenticateRequest as SaslAuthenticateV0
from kio.schema.sasl_authenticate.v1.request import SaslAuthenticateRequest as SaslAuthenticateV1
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest
from prometheus_client.parser import text_string_to_metric_families

from artesian.broker.authenticator import SaslAuthenticator, SaslSettings, SaslState
from artesian.config.broker import BrokerConfig
from artesian.config.definitions import InvalidConfigError
from artesian.replication.replica_fetcher import LeaderConnection
from artesian.security.client import ClientSecurity
from artesian.security.plain import plain_client_token
from artesian.security.sasl import AuthenticationFailed
from artesian.security.scram import MECHANISMS, ScramClient, new_credential
from tests.broker_process import BrokerProcess, free_port
from tests.kafka_wire import Closed, WireConn, create_topic, parse_response, request_frame

LIFETIME_MS = 2000  # connections.max.reauth.ms
SHA512_LIFETIME_MS = 3000  # listener.name.sasl_plaintext.scram-sha-512.connections.max.reauth.ms
MS = 1_000_000  # ns
PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'user_alice="alice-secret" user_carol="carol-secret";'
)
SCRAM_USERS = {"bob": "bob-secret", "dave": "dave-secret"}


# --- the state machine, without sockets ------------------------------------------------------


def _authenticator(reauth_ms: int = LIFETIME_MS, users: dict[str, str] | None = None) -> Any:
    credentials = {
        (name, mech): new_credential(MECHANISMS[mech], pw, 4096)
        for name, pw in (users or {}).items()
        for mech in MECHANISMS
    }
    settings = SaslSettings(
        ("PLAIN", "SCRAM-SHA-256"),
        {"a": "a-pw", "c": "c-pw"},
        max_reauth_ms={"PLAIN": reauth_ms, "SCRAM-SHA-256": reauth_ms},
    )
    return SaslAuthenticator(settings, lambda user, mech: credentials.get((user, mech.name)))


def _plain_login(auth: SaslAuthenticator, user: str, now_ns: int) -> None:
    assert auth.handshake("PLAIN", 1).name == "none"
    auth.authenticate(plain_client_token(user, f"{user}-pw"), now_ns, 2)


def test_session_lifetimes_come_from_the_listener_and_mechanism() -> None:
    config = BrokerConfig(
        {
            "connections.max.reauth.ms": "1000",
            "listener.name.a.connections.max.reauth.ms": "2000",
            "listener.name.a.scram-sha-512.connections.max.reauth.ms": "3000",
        }
    )
    for listener, expected in [
        ("A", {"SCRAM-SHA-256": 2000, "SCRAM-SHA-512": 3000, "PLAIN": 2000}),
        ("B", {"SCRAM-SHA-256": 1000, "SCRAM-SHA-512": 1000, "PLAIN": 1000}),
    ]:
        assert SaslSettings.from_config(config, listener).max_reauth_ms == expected
    assert BrokerConfig({}).get("connections.max.reauth.ms") == 0
    assert config.key("connections.max.reauth.ms").read_only  # static, as in Kafka
    with pytest.raises(InvalidConfigError):
        BrokerConfig({"connections.max.reauth.ms": "-1"})
    with pytest.raises(InvalidConfigError):
        BrokerConfig({"listener.name.a.plain.connections.max.reauth.ms": "soon"})


def test_a_session_expires_and_a_reauthentication_starts_a_new_one() -> None:
    auth = _authenticator()
    _plain_login(auth, "a", now_ns=0)
    assert (auth.complete, auth.session_lifetime_ms) == (True, LIFETIME_MS)
    assert not auth.session_expired(LIFETIME_MS * MS)
    assert auth.session_expired(LIFETIME_MS * MS + 1)
    assert not auth.reauthenticating
    # Even after expiry, a SaslHandshake may re-authenticate.
    assert auth.maybe_begin_reauthentication(5000 * MS)
    assert (auth.state, auth.reauthenticating) == (SaslState.HANDSHAKE, True)
    assert not auth.allows(18)  # no ApiVersions in a re-authentication
    _plain_login(auth, "a", now_ns=5000 * MS)
    assert auth.complete and not auth.session_expired((5000 + LIFETIME_MS) * MS)
    # Not twice within a second of the last start (Kafka's limit): an ordinary request then.
    assert not auth.maybe_begin_reauthentication(5999 * MS)
    assert auth.complete
    assert auth.maybe_begin_reauthentication(6000 * MS)


def test_reauthentication_keeps_the_principal_and_the_mechanism() -> None:
    auth = _authenticator()
    _plain_login(auth, "a", now_ns=0)
    assert auth.maybe_begin_reauthentication(MS)
    with pytest.raises(AuthenticationFailed) as failed:
        _plain_login(auth, "c", now_ns=MS)
    assert str(failed.value) == (
        "Cannot change principals during re-authentication from User.a: User.c"
    )
    assert (auth.state, auth.principal) == (SaslState.FAILED, "User:a")

    auth = _authenticator()
    _plain_login(auth, "a", now_ns=0)
    assert auth.maybe_begin_reauthentication(MS)
    assert auth.handshake("SCRAM-SHA-256", 1).name == "none"  # answered, as Kafka does
    assert auth.state is SaslState.REAUTH_BAD_MECHANISM
    assert auth.allows(36)
    with pytest.raises(AuthenticationFailed, match="not supported for re-authentication of"):
        auth.authenticate(b"n,,n=a,r=x", MS, 2)
    assert auth.state is SaslState.FAILED


def test_a_deleted_scram_user_fails_reauthentication() -> None:
    users = {"bob": "bob-pw"}
    auth = _authenticator(users=users)

    def scram(now_ns: int) -> None:
        assert auth.handshake("SCRAM-SHA-256", 1).name == "none"
        client = ScramClient(MECHANISMS["SCRAM-SHA-256"], "bob", "bob-pw")
        first = auth.authenticate(client.first_message(), now_ns, 2)
        client.verify_server_final(auth.authenticate(client.final_message(first), now_ns, 2))

    scram(0)
    assert auth.principal == "User:bob"
    auth._credentials = lambda user, mech: None  # deleted
    assert auth.maybe_begin_reauthentication(1500 * MS)
    with pytest.raises(AuthenticationFailed) as failed:
        scram(1500 * MS)
    assert str(failed.value) == (
        "Authentication failed during re-authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-256"
    )


def test_without_a_lifetime_there_is_no_session_and_no_reauthentication() -> None:
    auth = _authenticator(reauth_ms=0)
    _plain_login(auth, "a", now_ns=0)
    assert (auth.session_lifetime_ms, auth.session_expiration_ns) == (0, None)
    assert not auth.session_expired(10**18)
    assert not auth.maybe_begin_reauthentication(10**18)


# --- a real broker ----------------------------------------------------------------------------


class ReauthBroker:
    def __init__(self, proc: BrokerProcess, ports: dict[str, int], metrics_port: int) -> None:
        self.proc = proc
        self.ports = ports
        self.metrics_port = metrics_port

    @property
    def port(self) -> int:
        return self.ports["SASL_PLAINTEXT"]

    def conf(self, user: str, password: str, mechanism: str = "SCRAM-SHA-256") -> dict[str, Any]:
        return {
            "bootstrap.servers": f"127.0.0.1:{self.port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
        }

    def metric(self, name: str, **labels: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        wanted = tuple(sorted(labels.items()))
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and tuple(sorted(s.labels.items())) == wanted:
                    return float(s.value)
        return 0.0

    def reauthentications(self, result: str) -> float:
        return self.metric(
            "kafka_server_socket_server_reauthentications_total",
            listener="SASL_PLAINTEXT",
            result=result,
        )

    def expired_killed(self) -> float:
        return self.metric(
            "kafka_server_socket_server_expired_connections_killed_total",
            listener="SASL_PLAINTEXT",
        )

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.proc.bootstrap})


def _upsert(admin: AdminClient, user: str, password: str) -> None:
    upsertion = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsertion]).values():
        assert future.result() is None


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReauthBroker]:
    root = tmp_path_factory.mktemp("reauth")
    proc = BrokerProcess(root / "broker")
    ports = {"PLAINTEXT": proc.port, "SASL_PLAINTEXT": free_port(), "NOREAUTH": free_port()}
    metrics_port = free_port()
    proc.settings = {
        "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,NOREAUTH:SASL_PLAINTEXT"
        ),
        "connections.max.reauth.ms": str(LIFETIME_MS),
        "listener.name.sasl_plaintext.scram-sha-512.connections.max.reauth.ms": str(
            SHA512_LIFETIME_MS
        ),
        "listener.name.noreauth.connections.max.reauth.ms": "0",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "listener.name.noreauth.plain.sasl.jaas.config": PLAIN_JAAS,
        "artesian.metrics.port": str(metrics_port),
    }
    proc.start()
    try:
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        for user, password in SCRAM_USERS.items():
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
                upsertion = UserScramCredentialUpsertion(
                    user, ScramCredentialInfo(mechanism, 8192), password.encode()
                )
                for future in admin.alter_user_scram_credentials([upsertion]).values():
                    assert future.result() is None
        yield ReauthBroker(proc, ports, metrics_port)
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


def _metadata() -> MetadataRequest:
    return MetadataRequest(
        topics=(), allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )


def _handshake(conn: WireConn, mechanism: str, version: int = 1) -> Any:
    return conn.request(17, version, SaslHandshakeRequest(mechanism=mechanism))


def _authenticate(conn: WireConn, token: bytes) -> Any:
    return conn.request(36, 2, SaslAuthenticateRequest(auth_bytes=token))


def _scram(conn: WireConn, user: str, mechanism: str = "SCRAM-SHA-256", password: str = "") -> Any:
    """Handshake and SCRAM exchange (a login or a re-authentication); the last answer."""
    assert _handshake(conn, mechanism).error_code == 0
    client = ScramClient(MECHANISMS[mechanism], user, password or SCRAM_USERS[user])
    first = _authenticate(conn, client.first_message())
    if first.error_code != 0:  # an unknown user fails at the first message
        return first
    final = _authenticate(conn, client.final_message(first.auth_bytes))
    if final.error_code == 0:
        client.verify_server_final(final.auth_bytes)
    return final


def _plain(conn: WireConn, user: str, password: str) -> Any:
    assert _handshake(conn, "PLAIN").error_code == 0
    return _authenticate(conn, plain_client_token(user, password))


def _works(conn: WireConn) -> bool:
    return len(conn.request(3, 12, _metadata()).brokers) == 1


def _lifetime(ms: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=ms)


def test_sasl_authenticate_answers_the_session_lifetime(broker: ReauthBroker) -> None:
    with WireConn(broker.port) as conn:
        final = _scram(conn, "bob")
        assert (final.error_code, final.session_lifetime) == (0, _lifetime(LIFETIME_MS))
    with WireConn(broker.port) as conn:  # the listener's override for the mechanism
        final = _scram(conn, "bob", "SCRAM-SHA-512")
        assert (final.error_code, final.session_lifetime) == (0, _lifetime(SHA512_LIFETIME_MS))
    with WireConn(broker.port) as conn:
        assert _handshake(conn, "PLAIN").error_code == 0
        token = plain_client_token("alice", "alice-secret")
        answer = conn.request(36, 1, SaslAuthenticateV1(auth_bytes=token))
        assert (answer.error_code, answer.session_lifetime) == (0, _lifetime(LIFETIME_MS))
    with WireConn(broker.ports["NOREAUTH"]) as conn:
        final = _scram(conn, "bob")
        assert (final.error_code, final.session_lifetime) == (0, _lifetime(0))
        # Off: no re-authentication; a handshake is answered as after any login, and kept.
        assert _handshake(conn, "SCRAM-SHA-256").error_code == 34  # ILLEGAL_SASL_STATE
        assert _works(conn)


def test_reauthenticating_keeps_the_connection_and_its_requests(broker: ReauthBroker) -> None:
    with WireConn(broker.proc.port) as admin:
        create_topic(admin, "reauth-in-flight")
    successes = broker.reauthentications("success")
    with WireConn(broker.port) as conn:
        assert _scram(conn, "bob").session_lifetime == _lifetime(LIFETIME_MS)
        logged_in = time.monotonic()
        time.sleep(1.2)
        # A long-poll Fetch in flight, the re-authentication's handshake pipelined behind it:
        # the fetch is answered first, after its wait, then the handshake.
        fetch = _long_poll_fetch(wait_ms=300)
        conn.send(
            request_frame(1, 12, 101, fetch)
            + request_frame(17, 1, 102, SaslHandshakeRequest(mechanism="SCRAM-SHA-256"))
        )
        began = time.monotonic()
        corr, fetched = parse_response(1, 12, conn.recv_frame())
        assert (corr, fetched.error_code) == (101, 0)
        assert time.monotonic() - began >= 0.25
        corr, shook = parse_response(17, 1, conn.recv_frame())
        assert (corr, shook.error_code) == (102, 0)
        client = ScramClient(MECHANISMS["SCRAM-SHA-256"], "bob", "bob-secret")
        first = _authenticate(conn, client.first_message())
        # The last token and a Metadata behind it: both answered, in order.
        conn.send(
            request_frame(
                36,
                2,
                201,
                SaslAuthenticateRequest(auth_bytes=client.final_message(first.auth_bytes)),
            )
            + request_frame(3, 12, 202, _metadata())
        )
        corr, final = parse_response(36, 2, conn.recv_frame())
        assert (corr, final.error_code, final.session_lifetime) == (201, 0, _lifetime(LIFETIME_MS))
        client.verify_server_final(final.auth_bytes)
        assert parse_response(3, 12, conn.recv_frame())[0] == 202
        reauthenticated = time.monotonic()
        # Past the first session's end, within the second's: still served.
        _sleep_until(logged_in + LIFETIME_MS / 1000 + 0.4)
        assert time.monotonic() < began + LIFETIME_MS / 1000 - 0.2
        assert _works(conn)
        # The second session ends too.
        _sleep_until(reauthenticated + LIFETIME_MS / 1000 + 0.3)
        conn.send(request_frame(3, 12, 301, _metadata()))
        conn.expect_closed()
    assert broker.reauthentications("success") == successes + 1


def _long_poll_fetch(wait_ms: int) -> Any:
    from kio.schema.fetch.v12 import request as f

    return f.FetchRequest(
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=wait_ms),
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(
            f.FetchTopic(
                topic="reauth-in-flight",
                partitions=(
                    f.FetchPartition(
                        partition=0,
                        current_leader_epoch=-1,
                        fetch_offset=0,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=1 << 20,
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def test_reauthentication_must_keep_the_principal_and_the_mechanism(
    broker: ReauthBroker,
) -> None:
    mark = broker.proc.log_mark()
    failures = broker.reauthentications("failure")
    with WireConn(broker.port) as conn:
        _scram(conn, "bob")
        final = _scram(conn, "dave")
        assert (final.error_code, final.error_message) == (
            58,  # SASL_AUTHENTICATION_FAILED
            "Cannot change principals during re-authentication from User.bob: User.dave",
        )
        conn.expect_closed()
    with WireConn(broker.port) as conn:
        assert _plain(conn, "alice", "alice-secret").error_code == 0
        answer = _plain(conn, "carol", "carol-secret")
        assert (answer.error_code, answer.error_message) == (
            58,
            "Cannot change principals during re-authentication from User.alice: User.carol",
        )
        conn.expect_closed()
    with WireConn(broker.port) as conn:
        _scram(conn, "bob")
        # Another enabled mechanism: the handshake is answered, the next token is not.
        shook = _handshake(conn, "SCRAM-SHA-512")
        assert (shook.error_code, shook.mechanisms) == (
            0,
            ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"),
        )
        client = ScramClient(MECHANISMS["SCRAM-SHA-512"], "bob", "bob-secret")
        conn.send(
            request_frame(36, 2, 9, SaslAuthenticateRequest(auth_bytes=client.first_message()))
        )
        conn.expect_closed()
    assert broker.reauthentications("failure") == failures + 3
    log = broker.proc.log_tail(200, since=mark)
    assert "(User:bob) on listener SASL_PLAINTEXT: Cannot change principals" in log
    assert "not supported for re-authentication of mechanism 'SCRAM-SHA-256'" in log


def test_an_expired_session_is_closed_at_its_next_request(broker: ReauthBroker) -> None:
    mark = broker.proc.log_mark()
    killed = broker.expired_killed()
    port = broker.port
    with (
        WireConn(port) as v2,
        WireConn(port) as v0,
        WireConn(port) as bare,
        WireConn(port) as late,
        WireConn(broker.ports["NOREAUTH"]) as forever,
    ):
        assert _scram(v2, "bob").error_code == 0
        # SaslAuthenticate v0 has no lifetime field; the session ends all the same (Kafka).
        assert _handshake(v0, "PLAIN").error_code == 0
        token = plain_client_token("alice", "alice-secret")
        assert v0.request(36, 0, SaslAuthenticateV0(auth_bytes=token)).error_code == 0
        # SaslHandshake v0's bare tokens: likewise.
        assert _handshake(bare, "PLAIN", version=0).error_code == 0
        bare.send(struct.pack(">i", len(token)) + token)
        assert bare.recv_frame() == b""
        assert _scram(late, "dave").error_code == 0
        assert _scram(forever, "bob").error_code == 0
        for conn in (v2, v0, bare, late, forever):
            assert _works(conn)
        time.sleep(LIFETIME_MS / 1000 + 0.3)
        for conn in (v2, v0, bare):
            conn.send(request_frame(3, 12, 77, _metadata()))
            conn.expect_closed()  # EOF, no answer
        # After expiry a re-authentication is still allowed, as in Kafka.
        assert _scram(late, "dave").session_lifetime == _lifetime(LIFETIME_MS)
        assert _works(late)
        assert _works(forever)
    assert broker.expired_killed() == killed + 3
    log = broker.proc.log_tail(200, since=mark)
    for principal in ("User:bob", "User:alice"):
        assert (
            f"({principal}) on listener SASL_PLAINTEXT: its SASL session expired without "
            f"re-authentication (session lifetime {LIFETIME_MS} ms); metadata not answered"
        ) in log
    assert "User:dave" not in log


def _until_login_fails(broker: ReauthBroker, user: str, password: str) -> None:
    """The broker has applied the credential change (a fresh login is refused)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with WireConn(broker.port) as conn:
            if _scram(conn, user, password=password).error_code == 58:
                return
        time.sleep(0.1)
    raise AssertionError(f"{user} can still log in")


def test_a_deleted_or_changed_credential_fails_reauthentication(broker: ReauthBroker) -> None:
    admin = broker.admin()
    _upsert(admin, "erin", "erin-secret")
    _upsert(admin, "fred", "fred-old")
    with WireConn(broker.port) as erin, WireConn(broker.port) as fred:
        assert _scram(erin, "erin", password="erin-secret").error_code == 0
        assert _scram(fred, "fred", password="fred-old").error_code == 0
        deletion = UserScramCredentialDeletion("erin", ScramMechanism.SCRAM_SHA_256)
        for future in admin.alter_user_scram_credentials([deletion]).values():
            assert future.result() is None
        _upsert(admin, "fred", "fred-new")
        _until_login_fails(broker, "erin", "erin-secret")
        _until_login_fails(broker, "fred", "fred-old")
        assert _works(erin) and _works(fred)  # logged in until the session ends
        for conn, user, password in ((erin, "erin", "erin-secret"), (fred, "fred", "fred-old")):
            final = _scram(conn, user, password=password)
            assert (final.error_code, final.error_message) == (
                58,
                "Authentication failed during re-authentication due to invalid credentials "
                "with SASL mechanism SCRAM-SHA-256",
            )
            conn.expect_closed()
    with WireConn(broker.port) as fred:
        assert _scram(fred, "fred", password="fred-new").error_code == 0
        assert _scram(fred, "fred", password="fred-new").error_code == 0
        assert _works(fred)


def test_sasl_misuse_after_login_never_hurts_the_broker(broker: ReauthBroker) -> None:
    port = broker.port
    with WireConn(port) as conn:
        _scram(conn, "bob")
        # SaslAuthenticate without a handshake: answered ILLEGAL_SASL_STATE, connection kept.
        answer = _authenticate(conn, b"n,,n=bob,r=abc")
        assert answer.error_code == 34
        assert _works(conn)
        # A re-authentication with an unknown mechanism: refused, then closed.
        shook = _handshake(conn, "GSSAPI")
        assert shook.error_code == 33  # UNSUPPORTED_SASL_MECHANISM
        conn.expect_closed()
    with WireConn(port) as conn:
        _scram(conn, "bob")
        _handshake(conn, "SCRAM-SHA-256")
        # Mid re-authentication another request: ILLEGAL_SASL_STATE, then closed.
        listed = conn.request(16, 4, ListGroupsRequest(states_filter=()))
        assert (listed.error_code, listed.groups) == (34, ())
        conn.expect_closed()
    with WireConn(port) as conn:
        _scram(conn, "bob")
        _handshake(conn, "SCRAM-SHA-256")
        # ApiVersions too (only before a first login): the same.
        versions = ApiVersionsRequest(client_software_name="t", client_software_version="1")
        assert conn.request(18, 3, versions).error_code == 34
        conn.expect_closed()
    with WireConn(port) as conn:
        _scram(conn, "bob")
        _handshake(conn, "SCRAM-SHA-256")
        assert _authenticate(conn, b"\xff\x00not scram").error_code == 58
        conn.expect_closed()
    with WireConn(port) as conn:
        _scram(conn, "bob")
        _handshake(conn, "SCRAM-SHA-256")
        # Larger than a SASL token may be, mid re-authentication.
        conn.send(struct.pack(">i", 10_000_000) + b"\x00" * 64)
        conn.expect_closed()
    with WireConn(port) as conn:
        assert _plain(conn, "alice", "alice-secret").error_code == 0
        assert _plain(conn, "alice", "alice-secret").error_code == 0
        # A second re-authentication within a second: not one (Kafka's limit); kept.
        assert _handshake(conn, "PLAIN").error_code == 34
        assert _works(conn)
        time.sleep(1.0)
        # Re-authenticating with SaslHandshake v0's bare tokens.
        assert _handshake(conn, "PLAIN", version=0).error_code == 0
        token = plain_client_token("alice", "alice-secret")
        conn.send(struct.pack(">i", len(token)) + token)
        assert conn.recv_frame() == b""
        assert _works(conn)
    with WireConn(port) as conn, pytest.raises(Closed):
        # Out of order on a fresh connection, too.
        conn.send(request_frame(36, 2, 1, SaslAuthenticateRequest(auth_bytes=b"x")))
        conn.recv_frame()
    assert broker.proc.alive()
    with WireConn(port) as conn:
        assert _scram(conn, "dave").error_code == 0
        assert _works(conn)


def test_brokers_own_connections_reauthenticate(broker: ReauthBroker) -> None:
    """LeaderConnection (replica fetchers, marker writers) re-authenticates too, so a broker's
    replication is never cut at a session's end."""
    successes, killed = broker.reauthentications("success"), broker.expired_killed()

    async def requests_over_three_lifetimes() -> int:
        connection = LeaderConnection(
            "127.0.0.1",
            broker.port,
            b"reauth-test",
            10.0,
            ClientSecurity(sasl=("SCRAM-SHA-256", "bob", "bob-secret")),
        )
        try:
            await connection.request(3, 12, **_metadata_fields())
            writer = connection._writer
            count = 1
            started = time.monotonic()
            while time.monotonic() - started < 3 * LIFETIME_MS / 1000:
                await asyncio.sleep(0.2)
                answer = await connection.request(3, 12, **_metadata_fields())
                assert len(answer.brokers) == 1
                assert connection._writer is writer  # never reconnected
                count += 1
            return count
        finally:
            connection.close()

    assert asyncio.run(requests_over_three_lifetimes()) > 10
    assert broker.reauthentications("success") >= successes + 2
    assert broker.expired_killed() == killed


def _metadata_fields() -> dict[str, Any]:
    return {
        "topics": (),
        "allow_auto_topic_creation": False,
        "include_topic_authorized_operations": False,
    }


# --- librdkafka -------------------------------------------------------------------------------


def test_librdkafka_reauthenticates_and_keeps_producing_and_consuming(
    broker: ReauthBroker,
) -> None:
    _upsert(broker.admin(), "gwen", "gwen-secret")
    topic = "reauth-librdkafka"
    conf = broker.conf("gwen", "gwen-secret")
    successes, killed = broker.reauthentications("success"), broker.expired_killed()
    producer = Producer({**conf, "acks": "all", "linger.ms": 0})
    consumer = Consumer(
        {
            **conf,
            "group.id": "g-reauth",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    delivered: list[tuple[int, bytes]] = []
    errors: list[Any] = []
    got: list[tuple[int, bytes]] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            delivered.append((msg.offset(), msg.value()))
        else:
            errors.append(err)

    try:
        consumer.subscribe([topic])
        started = time.monotonic()
        i = 0
        # Over three and a half lifetimes: a record every 250 ms, read back as it goes.
        while time.monotonic() - started < 3.5 * LIFETIME_MS / 1000:
            producer.produce(topic, f"r{i}".encode(), on_delivery=on_delivery)
            i += 1
            producer.poll(0)
            msg = consumer.poll(0.25)
            if msg is not None and not msg.error():
                got.append((msg.offset(), msg.value()))
        assert producer.flush(20) == 0
        deadline = time.monotonic() + 20
        while len(got) < i and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.offset(), msg.value()))
    finally:
        consumer.close()
    assert errors == []
    expected = [(n, f"r{n}".encode()) for n in range(i)]
    assert delivered == expected
    assert got == expected
    # librdkafka (2.2+) re-authenticates on its connections: none is left to expire.
    assert broker.reauthentications("success") >= successes + 3
    assert broker.expired_killed() == killed


def test_a_deleted_users_librdkafka_client_is_cut_off(broker: ReauthBroker) -> None:
    _upsert(broker.admin(), "hana", "hana-secret")
    mark = broker.proc.log_mark()
    topic = "reauth-deleted"
    client_errors: list[Any] = []
    producer = Producer(
        {
            **broker.conf("hana", "hana-secret"),
            "acks": "all",
            "message.timeout.ms": 4000,
            "error_cb": client_errors.append,
        }
    )
    results: list[Any] = []
    producer.produce(topic, b"before", on_delivery=lambda err, msg: results.append(err))
    assert producer.flush(20) == 0
    assert results == [None]
    deleted = subprocess.run(
        [
            sys.executable,
            "-m",
            "artesian.cli.main",
            "users",
            "delete",
            "hana",
            "-m",
            "SCRAM-SHA-256",
            "-b",
            broker.proc.bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert deleted.returncode == 0, deleted.stderr
    deleted_at = time.monotonic()
    cut_off_at = None
    while time.monotonic() - deleted_at < 3 * LIFETIME_MS / 1000 and cut_off_at is None:
        producer.poll(0.1)
        if any(e.code() == KafkaError._AUTHENTICATION for e in client_errors):
            cut_off_at = time.monotonic()
    assert cut_off_at is not None, client_errors
    # Within about one lifetime: the re-authentication due at 85-95% of it fails.
    assert cut_off_at - deleted_at < LIFETIME_MS / 1000 + 1.0
    log = broker.proc.log_tail(200, since=mark)
    assert (
        "(User:hana) on listener SASL_PLAINTEXT: Authentication failed during re-authentication "
        "due to invalid credentials with SASL mechanism SCRAM-SHA-256"
    ) in log
    # And it can produce no more.
    producer.produce(topic, b"after", on_delivery=lambda err, msg: results.append(err))
    producer.flush(10)
    assert len(results) == 2 and results[1] is not None
    assert results[1].code() in (KafkaError._MSG_TIMED_OUT, KafkaError._AUTHENTICATION)
