"""KIP-368, SASL re-authentication: session lifetimes, re-authenticating on the same connection,
expired sessions closed at their next request. The state machine without sockets, then raw
frames and librdkafka against a real broker."""

from __future__ import annotations

import asyncio
import datetime
import logging
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramMechanism,
    UserScramCredentialDeletion,
)
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.sasl_authenticate.v0.request import SaslAuthenticateRequest as SaslAuthenticateV0
from kio.schema.sasl_authenticate.v1.request import SaslAuthenticateRequest as SaslAuthenticateV1
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest

from artesian.broker.authenticator import (
    SaslAuthenticator,
    SaslSettings,
    SaslState,
    UnansweredFailure,
)
from artesian.broker.handlers import sasl_authenticate as sasl_authenticate_handler
from artesian.cli.wire import WireClient
from artesian.config.broker import BrokerConfig
from artesian.config.definitions import InvalidConfigError
from artesian.replication.replica_fetcher import LeaderConnection
from artesian.security.client import ClientSecurity
from artesian.security.plain import plain_client_token
from artesian.security.sasl import AuthenticationFailed
from artesian.security.scram import MECHANISMS, ScramClient, new_credential
from tests.broker_process import BrokerProcess, free_port
from tests.kafka_wire import (
    Closed,
    WireConn,
    create_topic,
    metadata_request,
    parse_response,
    request_frame,
    sample_request,
    sasl_authenticate,
    sasl_handshake,
)
from tests.metrics import scrape
from tests.security.scram_users import upsert_scram_user
from tests.storage.batches import make_batch

LIFETIME_MS = 2000  # connections.max.reauth.ms
SHA512_LIFETIME_MS = 3000  # listener.name.sasl_plaintext.scram-sha-512.connections.max.reauth.ms
# Listeners whose sessions are long enough that a loaded machine's stalls (a few hundred ms)
# never decide a test: 85-95% of SLOW_MS leaves clients at least 400 ms to re-authenticate.
SLOW_MS = 8000
LONG_MS = 30_000
BRIEF_MS = 250  # shorter than a second: a re-authentication cannot come in time
LONGEST_MS = 9_223_372_036_854  # Kafka's longest in effect (Long.MAX_VALUE ns)
FAILED_LOGIN_DELAY_MS = 300  # connection.failed.authentication.delay.ms
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
    auth.authenticate(plain_client_token(user, f"{user}-pw"), now_ns)


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
    # Kafka's session expiry (nanoseconds in a long) overflows beyond this: refused.
    longest = 9_223_372_036_854
    assert (
        BrokerConfig({"connections.max.reauth.ms": str(longest)}).get("connections.max.reauth.ms")
        == longest
    )
    for too_long in (longest + 1, 2**63 - 1):
        with pytest.raises(InvalidConfigError, match="no more than 9223372036854"):
            BrokerConfig({"listener.name.a.connections.max.reauth.ms": str(too_long)})
    with pytest.raises(InvalidConfigError):
        BrokerConfig({"listener.name.a.plain.connections.max.reauth.ms": "soon"})


def test_a_lifetime_too_short_to_reauthenticate_in_warns_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = BrokerConfig(
        {
            "connections.max.reauth.ms": "1199",
            "listener.name.a.connections.max.reauth.ms": "1200",
            "listener.name.a.plain.connections.max.reauth.ms": "500",
            "listener.name.b.connections.max.reauth.ms": "0",
        }
    )
    with caplog.at_level(logging.WARNING, logger="artesian.authenticator"):
        SaslSettings.from_config(config, "A")
        SaslSettings.from_config(config, "B")
        assert [r.getMessage() for r in caplog.records] == [
            "listener A: a SASL session lifetime (connections.max.reauth.ms) of 500 ms for "
            "PLAIN is under 1200 ms: clients, this broker's connections to leaders among them, "
            "re-authenticate at 85-95% of a session, and a re-authentication within a second "
            "of the last one's start is refused (as in Kafka), so they reconnect and log in "
            "again instead"
        ]
        caplog.clear()
        SaslSettings.from_config(config, "C")  # the global 1199
        assert "1199 ms for PLAIN, SCRAM-SHA-256, SCRAM-SHA-512" in caplog.text


def test_failures_kafka_does_not_answer_are_unanswered() -> None:
    """UnansweredFailure marks what Kafka closes without an answer: a bare token's failure
    (SaslHandshake v0), a re-authentication's other mechanism, a stray request before its
    tokens are expected."""
    auth = _authenticator()
    assert auth.handshake("PLAIN", 0).name == "none"
    with pytest.raises(UnansweredFailure, match="Invalid username or password"):
        auth.authenticate(plain_client_token("a", "wrong"), 0)
    auth = _authenticator()
    assert auth.handshake("PLAIN", 1).name == "none"
    with pytest.raises(AuthenticationFailed) as answered:
        auth.authenticate(plain_client_token("a", "wrong"), 0)
    assert not isinstance(answered.value, UnansweredFailure)
    # In a re-authentication, a request the exchange does not allow fails it; answered
    # ILLEGAL_SASL_STATE only once tokens are expected, as Kafka.
    auth = _authenticator()
    _plain_login(auth, "a", now_ns=0)
    assert auth.maybe_begin_reauthentication(MS)
    assert auth.handshake("PLAIN", 1).name == "none"
    stray = auth.unexpected_request("list_groups")
    assert (type(stray), str(stray)) == (
        AuthenticationFailed,
        "Unexpected Kafka request of type LIST_GROUPS during SASL authentication",
    )
    assert auth.state is SaslState.FAILED
    auth = _authenticator()
    _plain_login(auth, "a", now_ns=0)
    assert auth.maybe_begin_reauthentication(MS)
    assert auth.handshake("SCRAM-SHA-256", 1).name == "none"
    assert isinstance(auth.unexpected_request("metadata"), UnansweredFailure)
    # logins counts successes, re-authentications included; reauthenticating is only true
    # from a re-authentication's start until it succeeds.
    auth = _authenticator()
    _plain_login(auth, "a", now_ns=0)
    assert (auth.logins, auth.reauthenticating) == (1, False)
    assert auth.maybe_begin_reauthentication(MS)
    assert auth.reauthenticating
    _plain_login(auth, "a", now_ns=MS)
    assert (auth.logins, auth.reauthenticating) == (2, False)


def test_the_last_answer_is_built_before_the_login_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SaslAuthenticate's final answer, session lifetime included, is made before the
    connection hears of the login: an answer that cannot be made leaves nothing counted,
    and the exchange failed. A lifetime beyond what KIP-368's int64 nanoseconds can say is
    cut to the longest that can (the configuration refuses it; a token could claim it)."""
    calls: list[Any] = []
    connection = SimpleNamespace(authenticated=calls.append, authentication_failed=calls.append)
    ctx = SimpleNamespace(connection=connection, header=SimpleNamespace(api_version=2))
    token = SimpleNamespace(auth_bytes=plain_client_token("a", "a-pw"))
    connection.authenticator = auth = _authenticator(reauth_ms=10**18)
    assert auth.handshake("PLAIN", 1).name == "none"
    answer = sasl_authenticate_handler.handle(ctx, token)
    assert (answer.error_code, answer.session_lifetime) == (0, _lifetime(LONGEST_MS))
    assert calls == [auth]
    calls.clear()

    def unbuildable(*_: Any, **fields: Any) -> Any:
        raise OverflowError("the answer cannot be encoded")

    connection.authenticator = auth = _authenticator(reauth_ms=LIFETIME_MS)
    assert auth.handshake("PLAIN", 1).name == "none"
    monkeypatch.setattr(sasl_authenticate_handler, "make", unbuildable)
    with pytest.raises(OverflowError):
        sasl_authenticate_handler.handle(ctx, token)
    assert calls == [] and auth.state is SaslState.FAILED


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
        auth.authenticate(b"n,,n=a,r=x", MS)
    assert auth.state is SaslState.FAILED


def test_a_deleted_scram_user_fails_reauthentication() -> None:
    users = {"bob": "bob-pw"}
    auth = _authenticator(users=users)

    def scram(now_ns: int) -> None:
        assert auth.handshake("SCRAM-SHA-256", 1).name == "none"
        client = ScramClient(MECHANISMS["SCRAM-SHA-256"], "bob", "bob-pw")
        first = auth.authenticate(client.first_message(), now_ns)
        client.verify_server_final(auth.authenticate(client.final_message(first), now_ns))

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


def test_a_malformed_scram_message_is_answered_as_invalid_credentials() -> None:
    """Kafka tells a SCRAM client only that its credentials failed, never why (a reason may
    hint whether the user exists); the reason stays with the broker, as the cause."""
    auth = _authenticator(users={"bob": "bob-pw"})
    assert auth.handshake("SCRAM-SHA-256", 1).name == "none"
    client = ScramClient(MECHANISMS["SCRAM-SHA-256"], "bob", "bob-pw")
    first = auth.authenticate(client.first_message(), 0)
    final = client.final_message(first).replace(b"r=", b"r=x", 1)  # another nonce
    with pytest.raises(AuthenticationFailed) as failed:
        auth.authenticate(final, 0)
    assert str(failed.value) == (
        "Authentication failed during authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-256"
    )
    assert "nonce does not match" in str(failed.value.__cause__)
    assert auth.state is SaslState.FAILED


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

    def conf(
        self,
        user: str,
        password: str,
        mechanism: str = "SCRAM-SHA-256",
        listener: str = "SASL_PLAINTEXT",
    ) -> dict[str, Any]:
        return {
            "bootstrap.servers": f"127.0.0.1:{self.ports[listener]}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
        }

    def metric(self, name: str, **labels: str) -> float:
        return scrape(self.metrics_port, name, **labels)

    def reauthentications(self, result: str, listener: str = "SASL_PLAINTEXT") -> float:
        return self.metric(
            "kafka_server_socket_server_reauthentications_total",
            listener=listener,
            result=result,
        )

    def expired_killed(self, listener: str = "SASL_PLAINTEXT") -> float:
        return self.metric(
            "kafka_server_socket_server_expired_connections_killed_total",
            listener=listener,
        )

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.proc.bootstrap})


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReauthBroker]:
    root = tmp_path_factory.mktemp("reauth")
    proc = BrokerProcess(root / "broker")
    ports = {"PLAINTEXT": proc.port}
    lifetimes = {"SASL_PLAINTEXT": LIFETIME_MS, "NOREAUTH": 0, "SLOW": SLOW_MS}
    lifetimes |= {"LONG": LONG_MS, "BRIEF": BRIEF_MS}
    ports |= {name: free_port() for name in lifetimes}
    metrics_port = free_port()
    proc.settings = {
        "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "listener.security.protocol.map": ",".join(
            f"{name}:{'PLAINTEXT' if name == 'PLAINTEXT' else 'SASL_PLAINTEXT'}" for name in ports
        ),
        "connections.max.reauth.ms": str(LIFETIME_MS),
        **{
            f"listener.name.{name.lower()}.connections.max.reauth.ms": str(ms)
            for name, ms in lifetimes.items()
        },
        "listener.name.sasl_plaintext.scram-sha-512.connections.max.reauth.ms": str(
            SHA512_LIFETIME_MS
        ),
        # Kafka's longest, on a mechanism of its own.
        "listener.name.long.scram-sha-512.connections.max.reauth.ms": str(LONGEST_MS),
        **{
            f"listener.name.{name.lower()}.plain.sasl.jaas.config": PLAIN_JAAS for name in lifetimes
        },
        "connection.failed.authentication.delay.ms": str(FAILED_LOGIN_DELAY_MS),
        "artesian.metrics.port": str(metrics_port),
    }
    proc.start()
    try:
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        for user, password in SCRAM_USERS.items():
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
                upsert_scram_user(admin, user, password, mechanism)
        yield ReauthBroker(proc, ports, metrics_port)
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


def _scram(conn: WireConn, user: str, mechanism: str = "SCRAM-SHA-256", password: str = "") -> Any:
    """Handshake and SCRAM exchange (a login or a re-authentication); the last answer."""
    assert sasl_handshake(conn, mechanism).error_code == 0
    client = ScramClient(MECHANISMS[mechanism], user, password or SCRAM_USERS[user])
    first = sasl_authenticate(conn, client.first_message())
    if first.error_code != 0:  # an unknown user fails at the first message
        return first
    final = sasl_authenticate(conn, client.final_message(first.auth_bytes))
    if final.error_code == 0:
        client.verify_server_final(final.auth_bytes)
    return final


def _plain(conn: WireConn, user: str, password: str) -> Any:
    assert sasl_handshake(conn, "PLAIN").error_code == 0
    return sasl_authenticate(conn, plain_client_token(user, password))


def _works(conn: WireConn) -> bool:
    return len(conn.request(3, 12, metadata_request()).brokers) == 1


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
        assert sasl_handshake(conn, "PLAIN").error_code == 0
        token = plain_client_token("alice", "alice-secret")
        answer = conn.request(36, 1, SaslAuthenticateV1(auth_bytes=token))
        assert (answer.error_code, answer.session_lifetime) == (0, _lifetime(LIFETIME_MS))
    with WireConn(broker.ports["NOREAUTH"]) as conn:
        final = _scram(conn, "bob")
        assert (final.error_code, final.session_lifetime) == (0, _lifetime(0))
        # Off: no re-authentication; a handshake is answered as after any login, and kept.
        assert sasl_handshake(conn, "SCRAM-SHA-256").error_code == 34  # ILLEGAL_SASL_STATE
        assert _works(conn)
    with WireConn(broker.ports["LONG"]) as conn:
        # The longest lifetime the configuration takes is answered (and re-authenticated).
        for _ in range(2):
            final = _scram(conn, "bob", "SCRAM-SHA-512")
            assert (final.error_code, final.session_lifetime) == (0, _lifetime(LONGEST_MS))
        assert _works(conn)


def test_reauthenticating_keeps_the_connection_and_its_requests(broker: ReauthBroker) -> None:
    with WireConn(broker.proc.port) as admin:
        create_topic(admin, "reauth-in-flight")
    successes = broker.reauthentications("success", "SLOW")
    lifetime = SLOW_MS / 1000
    with WireConn(broker.ports["SLOW"]) as conn:
        assert _scram(conn, "bob").session_lifetime == _lifetime(SLOW_MS)
        logged_in = time.monotonic()  # the first session ends a lifetime after, at the latest
        time.sleep(3)
        # A long-poll Fetch in flight, the re-authentication's handshake pipelined behind it:
        # the fetch is answered first, after its wait, then the handshake.
        fetch = _long_poll_fetch(wait_ms=300)
        began = time.monotonic()  # the second session ends a lifetime after, at the earliest
        conn.send(
            request_frame(1, 12, 101, fetch)
            + request_frame(17, 1, 102, SaslHandshakeRequest(mechanism="SCRAM-SHA-256"))
        )
        corr, fetched = parse_response(1, 12, conn.recv_frame())
        assert (corr, fetched.error_code) == (101, 0)
        assert time.monotonic() - began >= 0.25
        corr, shook = parse_response(17, 1, conn.recv_frame())
        assert (corr, shook.error_code) == (102, 0)
        client = ScramClient(MECHANISMS["SCRAM-SHA-256"], "bob", "bob-secret")
        first = sasl_authenticate(conn, client.first_message())
        # The last token and a Metadata behind it: both answered, in order.
        conn.send(
            request_frame(
                36,
                2,
                201,
                SaslAuthenticateRequest(auth_bytes=client.final_message(first.auth_bytes)),
            )
            + request_frame(3, 12, 202, metadata_request())
        )
        corr, final = parse_response(36, 2, conn.recv_frame())
        assert (corr, final.error_code, final.session_lifetime) == (201, 0, _lifetime(SLOW_MS))
        client.verify_server_final(final.auth_bytes)
        assert parse_response(3, 12, conn.recv_frame())[0] == 202
        reauthenticated = time.monotonic()
        # Past the first session's end, well within the second's: still served.
        _sleep_until(logged_in + lifetime + 1.0)
        assert time.monotonic() < began + lifetime - 0.5, "the test stalled for seconds"
        assert _works(conn)
        # The second session ends too.
        _sleep_until(reauthenticated + lifetime + 0.3)
        conn.send(request_frame(3, 12, 301, metadata_request()))
        conn.expect_closed()
    assert broker.reauthentications("success", "SLOW") == successes + 1


def test_a_large_request_pipelined_behind_the_last_token_is_answered(
    broker: ReauthBroker,
) -> None:
    """A re-authentication's tokens are limited to sasl.server.max.receive.size one by one,
    not by lowering the frame limit: a Produce larger than that, sent right behind the last
    token (read in the same breath), is answered."""
    topic = "reauth-large-produce"
    with WireConn(broker.proc.port) as admin:
        create_topic(admin, topic)
    batch = bytes(make_batch(n=1, value_size=700_000))
    produce = request_frame(0, 9, 202, sample_request(0, 9, topic, acks=1, records=batch))
    assert len(produce) > 524_288  # sasl.server.max.receive.size
    successes = broker.reauthentications("success", "SLOW")
    with WireConn(broker.ports["SLOW"]) as conn:
        assert _scram(conn, "bob").error_code == 0
        assert sasl_handshake(conn, "SCRAM-SHA-256").error_code == 0
        client = ScramClient(MECHANISMS["SCRAM-SHA-256"], "bob", "bob-secret")
        first = sasl_authenticate(conn, client.first_message())
        last = SaslAuthenticateRequest(auth_bytes=client.final_message(first.auth_bytes))
        conn.send(request_frame(36, 2, 201, last) + produce)
        corr, final = parse_response(36, 2, conn.recv_frame())
        assert (corr, final.error_code) == (201, 0)
        corr, produced = parse_response(0, 9, conn.recv_frame(timeout=30))
        partition = produced.responses[0].partition_responses[0]
        assert (corr, partition.error_code, partition.base_offset) == (202, 0, 0)
        assert _works(conn)
    assert broker.reauthentications("success", "SLOW") == successes + 1


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


def _closed_after_the_failed_login_delay(conn: WireConn, since: float) -> None:
    """The connection closes, with nothing more said, and not before the failed-login delay
    (counted from ``since``, a moment before the failing frame was sent)."""
    conn.expect_closed()
    # uvloop's timers tick in whole milliseconds off a cached loop time: one may fire up to a
    # millisecond before the exact delay has passed.
    assert time.monotonic() - since >= FAILED_LOGIN_DELAY_MS / 1000 - 0.002


def test_reauthentication_must_keep_the_principal_and_the_mechanism(
    broker: ReauthBroker,
) -> None:
    mark = broker.proc.log_mark()
    failures = broker.reauthentications("failure")
    with WireConn(broker.port) as conn:
        _scram(conn, "bob")
        sent = time.monotonic()
        final = _scram(conn, "dave")
        assert (final.error_code, final.error_message) == (
            58,  # SASL_AUTHENTICATION_FAILED
            "Cannot change principals during re-authentication from User.bob: User.dave",
        )
        _closed_after_the_failed_login_delay(conn, sent)
    with WireConn(broker.port) as conn:
        assert _plain(conn, "alice", "alice-secret").error_code == 0
        answer = _plain(conn, "carol", "carol-secret")
        assert (answer.error_code, answer.error_message) == (
            58,
            "Cannot change principals during re-authentication from User.alice: User.carol",
        )
        conn.expect_closed()
    with WireConn(broker.port) as conn:
        # SaslHandshake v0: another user's bare token is not answered (v0 cannot say why).
        assert _plain(conn, "alice", "alice-secret").error_code == 0
        assert sasl_handshake(conn, "PLAIN", version=0).error_code == 0
        token = plain_client_token("carol", "carol-secret")
        sent = time.monotonic()
        conn.send(struct.pack(">i", len(token)) + token)
        _closed_after_the_failed_login_delay(conn, sent)
    with WireConn(broker.port) as conn:
        _scram(conn, "bob")
        # Another enabled mechanism: the handshake is answered, the next token is not.
        shook = sasl_handshake(conn, "SCRAM-SHA-512")
        assert (shook.error_code, shook.mechanisms) == (
            0,
            ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"),
        )
        client = ScramClient(MECHANISMS["SCRAM-SHA-512"], "bob", "bob-secret")
        sent = time.monotonic()
        conn.send(
            request_frame(36, 2, 9, SaslAuthenticateRequest(auth_bytes=client.first_message()))
        )
        _closed_after_the_failed_login_delay(conn, sent)
    assert broker.reauthentications("failure") == failures + 4
    log = broker.proc.log_tail(200, since=mark)
    assert "(User:bob) on listener SASL_PLAINTEXT: Cannot change principals" in log
    changed = "(User:alice) on listener SASL_PLAINTEXT: Cannot change principals during "
    assert log.count(changed + "re-authentication from User.alice: User.carol") == 2
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
        assert sasl_handshake(v0, "PLAIN").error_code == 0
        token = plain_client_token("alice", "alice-secret")
        assert v0.request(36, 0, SaslAuthenticateV0(auth_bytes=token)).error_code == 0
        # SaslHandshake v0's bare tokens: likewise.
        assert sasl_handshake(bare, "PLAIN", version=0).error_code == 0
        bare.send(struct.pack(">i", len(token)) + token)
        assert bare.recv_frame() == b""
        assert _scram(late, "dave").error_code == 0
        assert _scram(forever, "bob").error_code == 0
        for conn in (v2, v0, bare, late, forever):
            assert _works(conn)
        time.sleep(LIFETIME_MS / 1000 + 0.3)
        for conn in (v2, v0, bare):
            conn.send(request_frame(3, 12, 77, metadata_request()))
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


def test_a_handshake_within_a_second_of_the_last_reauthentication_closes_an_expired_session(
    broker: ReauthBroker,
) -> None:
    """Kafka's one-second limit holds after expiry too: such a SaslHandshake begins no
    re-authentication, so it is a request on an expired session, and closes the connection."""
    killed = broker.expired_killed("BRIEF")
    for _attempt in range(5):
        with WireConn(broker.ports["BRIEF"]) as conn:
            assert _scram(conn, "bob").session_lifetime == _lifetime(BRIEF_MS)
            began = time.monotonic()  # before the broker starts the re-authentication
            assert _scram(conn, "bob").error_code == 0
            # Past the new session's end (it began before this), within the second.
            time.sleep(BRIEF_MS / 1000 + 0.15)
            conn.send(request_frame(17, 1, 99, SaslHandshakeRequest(mechanism="SCRAM-SHA-256")))
            try:
                frame = conn.recv_frame()
            except Closed:
                break
            # Answered: a re-authentication began. Right only if the broker saw a second go
            # by since the last began, which it cannot have unless this test stalled.
            assert time.monotonic() - began >= 1.0, parse_response(17, 1, frame)
    else:
        pytest.fail("stalled past a second five times")
    assert broker.expired_killed("BRIEF") == killed + 1


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
    upsert_scram_user(admin, "erin", "erin-secret")
    upsert_scram_user(admin, "fred", "fred-old")
    failures = broker.reauthentications("failure", "LONG")
    # Sessions of 30 s: the change takes effect at the re-authentication, not at expiry.
    with WireConn(broker.ports["LONG"]) as erin, WireConn(broker.ports["LONG"]) as fred:
        assert _scram(erin, "erin", password="erin-secret").error_code == 0
        assert _scram(fred, "fred", password="fred-old").error_code == 0
        deletion = UserScramCredentialDeletion("erin", ScramMechanism.SCRAM_SHA_256)
        for future in admin.alter_user_scram_credentials([deletion]).values():
            assert future.result() is None
        upsert_scram_user(admin, "fred", "fred-new")
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
    assert broker.reauthentications("failure", "LONG") == failures + 2
    with WireConn(broker.port) as fred:
        assert _scram(fred, "fred", password="fred-new").error_code == 0
        assert _scram(fred, "fred", password="fred-new").error_code == 0
        assert _works(fred)


def test_a_request_behind_a_failing_last_token_gets_no_answer(broker: ReauthBroker) -> None:
    """The failed re-authentication is answered, and nothing after it: a Metadata pipelined
    behind the last token waits out the failed-login delay unanswered, then the close."""
    failures = broker.reauthentications("failure")
    with WireConn(broker.port) as conn:
        assert _scram(conn, "bob").error_code == 0
        assert sasl_handshake(conn, "SCRAM-SHA-256").error_code == 0
        client = ScramClient(MECHANISMS["SCRAM-SHA-256"], "bob", "not-bobs")
        first = sasl_authenticate(conn, client.first_message())
        assert first.error_code == 0
        last = SaslAuthenticateRequest(auth_bytes=client.final_message(first.auth_bytes))
        sent = time.monotonic()
        conn.send(request_frame(36, 2, 201, last) + request_frame(3, 12, 202, metadata_request()))
        corr, final = parse_response(36, 2, conn.recv_frame())
        assert (corr, final.error_code) == (201, 58)
        _closed_after_the_failed_login_delay(conn, sent)
    assert broker.reauthentications("failure") == failures + 1


def test_sasl_misuse_after_login_never_hurts_the_broker(broker: ReauthBroker) -> None:
    port = broker.port
    mark = broker.proc.log_mark()
    failures = broker.reauthentications("failure")
    with WireConn(port) as conn:
        _scram(conn, "bob")
        # SaslAuthenticate without a handshake: answered ILLEGAL_SASL_STATE, connection kept.
        answer = sasl_authenticate(conn, b"n,,n=bob,r=abc")
        assert answer.error_code == 34
        assert _works(conn)
        # A re-authentication with an unknown mechanism: refused, then closed.
        shook = sasl_handshake(conn, "GSSAPI")
        assert shook.error_code == 33  # UNSUPPORTED_SASL_MECHANISM
        conn.expect_closed()
    # Mid re-authentication another request, ApiVersions too (only before a first login):
    # answered ILLEGAL_SASL_STATE, a failed re-authentication as in Kafka, closed after the
    # failed-login delay.
    versions = ApiVersionsRequest(client_software_name="t", client_software_version="1")
    for api_key, version, request in (
        (16, 4, ListGroupsRequest(states_filter=())),
        (18, 3, versions),
    ):
        with WireConn(port) as conn:
            _scram(conn, "bob")
            sasl_handshake(conn, "SCRAM-SHA-256")
            sent = time.monotonic()
            assert conn.request(api_key, version, request).error_code == 34
            _closed_after_the_failed_login_delay(conn, sent)
    with WireConn(port) as conn:
        _scram(conn, "bob")
        sasl_handshake(conn, "SCRAM-SHA-256")
        assert sasl_authenticate(conn, b"\xff\x00not scram").error_code == 58
        conn.expect_closed()
    with WireConn(port) as conn:
        _scram(conn, "bob")
        sasl_handshake(conn, "SCRAM-SHA-256")
        # Larger than a SASL token may be, mid re-authentication: failed, not answered.
        sent = time.monotonic()
        conn.send(struct.pack(">i", 600_000) + b"\x00" * 600_000)
        _closed_after_the_failed_login_delay(conn, sent)
    assert broker.reauthentications("failure") == failures + 5
    log = broker.proc.log_tail(200, since=mark)
    assert (
        "(User:bob) on listener SASL_PLAINTEXT: Unexpected Kafka request of type LIST_GROUPS "
        "during SASL authentication"
    ) in log
    assert "a frame of 600000 bytes, larger than sasl.server.max.receive.size=524288" in log
    for _attempt in range(5):
        with WireConn(port) as conn:
            assert _plain(conn, "alice", "alice-secret").error_code == 0
            began = time.monotonic()  # before the broker starts the re-authentication
            assert _plain(conn, "alice", "alice-secret").error_code == 0
            reauthenticated = time.monotonic()
            # A second re-authentication within a second: not one (Kafka's limit); kept.
            shook = sasl_handshake(conn, "PLAIN")
            if shook.error_code == 0 and time.monotonic() - began >= 1.0:
                continue  # the test stalled: the broker rightly took it for one
            assert shook.error_code == 34
            assert _works(conn)
            # A second after: re-authenticating with SaslHandshake v0's bare tokens.
            _sleep_until(reauthenticated + 1.05)
            assert sasl_handshake(conn, "PLAIN", version=0).error_code == 0
            token = plain_client_token("alice", "alice-secret")
            conn.send(struct.pack(">i", len(token)) + token)
            assert conn.recv_frame() == b""
            assert _works(conn)
            break
    else:
        pytest.fail("stalled past a second five times")
    with WireConn(port) as conn, pytest.raises(Closed):
        # Out of order on a fresh connection, too.
        conn.send(request_frame(36, 2, 1, SaslAuthenticateRequest(auth_bytes=b"x")))
        conn.recv_frame()
    assert broker.proc.alive()
    with WireConn(port) as conn:
        assert _scram(conn, "dave").error_code == 0
        assert _works(conn)


def test_artesians_own_connections_reauthenticate(broker: ReauthBroker) -> None:
    """LeaderConnection (replica fetchers, marker writers) and the CLI's WireClient (whose
    --wait polls as long as a move takes) re-authenticate on the same connection, so neither
    is cut off at a session's end. Two lifetimes each, side by side."""
    listener = "SLOW"
    port = broker.ports[listener]
    successes = broker.reauthentications("success", listener)
    killed = broker.expired_killed(listener)
    login = ("SCRAM-SHA-256", "bob", "bob-secret")
    span = 2 * SLOW_MS / 1000

    def wire_client_requests() -> int:
        with WireClient(f"127.0.0.1:{port}", 10.0, login) as client:
            sock = client._sock
            count = 0
            started = time.monotonic()
            while time.monotonic() - started < span:
                assert len(client.request(3, 12, **_metadata_fields()).brokers) == 1
                assert client._sock is sock  # never reconnected
                count += 1
                time.sleep(0.25)
            return count

    async def leader_connection_requests() -> int:
        connection = LeaderConnection(
            "127.0.0.1", port, b"reauth-test", 10.0, ClientSecurity(sasl=login)
        )
        try:
            await connection.request(3, 12, **_metadata_fields())
            writer = connection._writer
            count = 1
            started = time.monotonic()
            while time.monotonic() - started < span:
                await asyncio.sleep(0.25)
                answer = await connection.request(3, 12, **_metadata_fields())
                assert len(answer.brokers) == 1
                assert connection._writer is writer  # never reconnected
                count += 1
            return count
        finally:
            connection.close()

    async def both() -> list[int]:
        return list(
            await asyncio.gather(
                asyncio.to_thread(wire_client_requests), leader_connection_requests()
            )
        )

    assert min(asyncio.run(both())) > 20
    # Each at least once (at 85-95% of a session), and no session left to expire.
    assert broker.reauthentications("success", listener) >= successes + 2
    assert broker.expired_killed(listener) == killed


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
    upsert_scram_user(broker.admin(), "gwen", "gwen-secret")
    topic = "reauth-librdkafka"
    listener = "SLOW"
    conf = broker.conf("gwen", "gwen-secret", listener=listener)
    successes = broker.reauthentications("success", listener)
    killed = broker.expired_killed(listener)
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
        # Over two lifetimes: a record every 250 ms, read back as it goes.
        while time.monotonic() - started < 2 * SLOW_MS / 1000:
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
    assert broker.reauthentications("success", listener) >= successes + 2
    assert broker.expired_killed(listener) == killed


def test_a_deleted_users_librdkafka_client_is_cut_off(broker: ReauthBroker) -> None:
    upsert_scram_user(broker.admin(), "hana", "hana-secret")
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
    while time.monotonic() - deleted_at < 4 * LIFETIME_MS / 1000 and cut_off_at is None:
        producer.poll(0.1)
        if any(e.code() == KafkaError._AUTHENTICATION for e in client_errors):
            cut_off_at = time.monotonic()
    assert cut_off_at is not None, client_errors
    # Within about one lifetime: the re-authentication due at 85-95% of it fails. (Two,
    # for a loaded machine; a client never asked again would not be cut off at all.)
    assert cut_off_at - deleted_at < 2 * LIFETIME_MS / 1000
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
