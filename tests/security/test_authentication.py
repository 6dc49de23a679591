"""SSL and SASL listeners, driven by real clients: confluent-kafka (librdkafka), kafka-python
and aiokafka log in with PLAIN and SCRAM, over plain TCP and TLS, against one broker with
four listeners. Raw frames check the error codes and the closing of connections."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramMechanism,
    UserScramCredentialDeletion,
)
from kio.schema.alter_user_scram_credentials.v0 import request as alter_scram
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.describe_user_scram_credentials.v0 import request as describe_scram
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest

from artesian.security.plain import plain_client_token
from artesian.security.scram import MECHANISMS, ScramClient, salted_password
from tests.broker_process import BrokerProcess, free_port
from tests.cli_run import artesian as _cli
from tests.kafka_wire import (
    WireConn,
    metadata_request,
    request_frame,
    sasl_authenticate,
    sasl_handshake,
)
from tests.security.broker_pairs import (
    create_once_all_are_known,
    replicated_through_a_leader_kill,
    start_pair,
    wait_for_both,
)
from tests.security.scram_users import upsert_scram_user
from tests.tls_certs import Certificates, make_certificates

PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'user_alice="alice-secret" user_carol="carol;secret";'
)
SCRAM_USERS = {"bob": "bob-secret", "dave": "dave secret"}


class SecuredBroker:
    def __init__(self, proc: BrokerProcess, ports: dict[str, int], certs: Certificates) -> None:
        self.proc = proc
        self.ports = ports
        self.certs = certs

    def bootstrap(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def scram_x_args(self, user: str, password: str) -> list[str]:
        """librdkafka's -X settings (kcat's, the CLI's) for ``user`` on SASL_SSL."""
        conf = {
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(self.certs.ca),
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": password,
        }
        return [
            "-b",
            self.bootstrap("SASL_SSL"),
            *(a for k, v in conf.items() for a in ("-X", f"{k}={v}")),
        ]

    def client_conf(self, listener: str, mechanism: str = "", user: str = "") -> dict[str, str]:
        conf = {"bootstrap.servers": self.bootstrap(listener), "security.protocol": listener}
        if listener in ("SSL", "SASL_SSL"):
            conf["ssl.ca.location"] = str(self.certs.ca)
        if mechanism:
            password = SCRAM_USERS.get(user) or {"alice": "alice-secret"}[user]
            conf |= {"sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
        return conf


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    root = tmp_path_factory.mktemp("secured")
    certs = make_certificates(root / "certs")
    proc = BrokerProcess(root / "broker")
    ports = {
        "PLAINTEXT": proc.port,
        "SASL_PLAINTEXT": free_port(),
        "SSL": free_port(),
        "SASL_SSL": free_port(),
        "MTLS": free_port(),
    }
    proc.settings = {
        "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,"
        "SSL:SSL,SASL_SSL:SASL_SSL,MTLS:SSL",
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.location": str(certs.ca),
        "ssl.keystore.location": str(certs.server),
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
    }
    proc.start()
    try:
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        for user, password in SCRAM_USERS.items():
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
                upsert_scram_user(admin, user, password, mechanism)
        yield SecuredBroker(proc, ports, certs)
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


def _round_trip(conf: dict[str, str], topic: str, count: int = 5) -> list[tuple[int, bytes]]:
    """Produce ``count`` records with acks=all, then read them back from the start."""
    producer = Producer({**conf, "acks": "all"})
    delivered: list[tuple[int, bytes]] = []
    for i in range(count):
        producer.produce(
            topic,
            f"{topic}-{i}".encode(),
            on_delivery=lambda err, msg: (
                delivered.append((msg.offset(), msg.value())) if err is None else None
            ),
        )
    assert producer.flush(20) == 0
    consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 20
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.offset(), msg.value()))
    finally:
        consumer.close()
    assert delivered == got
    return got


def _expected(topic: str, count: int = 5) -> list[tuple[int, bytes]]:
    return [(i, f"{topic}-{i}".encode()) for i in range(count)]


@pytest.mark.parametrize(
    ("listener", "mechanism", "user"),
    [
        ("SASL_PLAINTEXT", "PLAIN", "alice"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512", "dave"),
        ("SASL_SSL", "SCRAM-SHA-512", "bob"),
        ("SASL_SSL", "PLAIN", "alice"),
        ("SSL", "", ""),
    ],
)
def test_librdkafka_logs_in_and_round_trips(
    secured: SecuredBroker, listener: str, mechanism: str, user: str
) -> None:
    topic = f"rt-{listener}-{mechanism or 'none'}".lower()
    assert _round_trip(secured.client_conf(listener, mechanism, user), topic) == _expected(topic)


def test_metadata_gives_the_addresses_of_the_clients_listener(secured: SecuredBroker) -> None:
    for listener in ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"):
        mechanism, user = ("SCRAM-SHA-256", "bob") if "SASL" in listener else ("", "")
        admin = AdminClient(secured.client_conf(listener, mechanism, user))
        brokers = admin.list_topics(timeout=10).brokers
        assert {(b.host, b.port) for b in brokers.values()} == {
            ("127.0.0.1", secured.ports[listener])
        }


def test_a_listener_that_requires_client_certificates(secured: SecuredBroker) -> None:
    conf = {
        "bootstrap.servers": secured.bootstrap("MTLS"),
        "security.protocol": "SSL",
        "ssl.ca.location": str(secured.certs.ca),
    }
    errors: list[Any] = []
    refused = AdminClient({**conf, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        refused.list_topics(timeout=3)
    refused.poll(1)
    assert errors, "a client without a certificate got in"
    with_certificate = {
        **conf,
        "ssl.certificate.location": str(secured.certs.client_cert),
        "ssl.key.location": str(secured.certs.client_key),
    }
    assert _round_trip(with_certificate, "mtls") == _expected("mtls")


def test_kafka_python_and_aiokafka_log_in_with_scram_over_tls(secured: SecuredBroker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaConsumer, KafkaProducer

    tls = ssl.create_default_context(cafile=str(secured.certs.ca))
    common = {
        "bootstrap_servers": secured.bootstrap("SASL_SSL"),
        "security_protocol": "SASL_SSL",
        "ssl_context": tls,
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "dave",
        "sasl_plain_password": "dave secret",
    }
    producer = KafkaProducer(acks="all", **common)
    offsets = [producer.send("kp-scram", f"k{i}".encode()).get(10).offset for i in range(3)]
    producer.close()
    assert offsets == [0, 1, 2]
    consumer = KafkaConsumer(
        "kp-scram", auto_offset_reset="earliest", consumer_timeout_ms=5000, **common
    )
    assert [(m.offset, m.value) for m in consumer] == [(0, b"k0"), (1, b"k1"), (2, b"k2")]
    consumer.close()

    async def aiokafka_round_trip() -> list[tuple[int, bytes]]:
        aio = {**common, "sasl_mechanism": "SCRAM-SHA-512"}
        producer = AIOKafkaProducer(acks="all", **aio)
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait("aio-scram", f"a{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("aio-scram", auto_offset_reset="earliest", **aio)
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=10_000, max_records=3)
            return [(m.offset, m.value) for msgs in batches.values() for m in msgs]
        finally:
            await consumer.stop()

    assert asyncio.run(aiokafka_round_trip()) == [(0, b"a0"), (1, b"a1"), (2, b"a2")]


def test_a_wrong_password_is_refused_and_others_carry_on(secured: SecuredBroker) -> None:
    errors: list[Any] = []
    conf = secured.client_conf("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob")
    conf["sasl.password"] = "not-bobs"
    admin = AdminClient({**conf, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    admin.poll(1)  # serves error_cb
    assert errors and errors[0].code() == -169  # librdkafka's _AUTHENTICATION
    assert "invalid credentials with SASL mechanism SCRAM-SHA-256" in errors[0].str()
    topic = "after-a-failed-login"
    assert _round_trip(secured.client_conf("SASL_PLAINTEXT", "PLAIN", "alice"), topic) == (
        _expected(topic)
    )
    assert "authentication failed for 127.0.0.1:" in secured.proc.log_tail(400)


# --- raw frames ---------------------------------------------------------------------------


def test_logging_in_is_not_charged_to_a_request_quota(secured: SecuredBroker) -> None:
    """With request_percentage on every user, logins go unthrottled (ApiVersions, the
    handshake and the token come before any quota, as in Kafka: charged, they would all be
    ANONYMOUS's, so logins would throttle each other); once logged in, alice is charged."""
    from tests.security.test_client_quotas import _alter as _alter_quota

    every_user = {"user": None}
    with WireConn(secured.ports["PLAINTEXT"], timeout=15) as admin:
        assert _alter_quota(admin, every_user, {"request_percentage": 0.01}) == (0, None)
        try:
            versions = ApiVersionsRequest(client_software_name="t", client_software_version="1")
            for _ in range(3):
                with WireConn(secured.ports["SASL_PLAINTEXT"], timeout=15) as conn:
                    answer = conn.request(18, 3, versions)
                    assert answer.throttle_time.total_seconds() == 0
                    sasl_handshake(conn, "PLAIN")
                    login = sasl_authenticate(conn, plain_client_token("alice", "alice-secret"))
                    assert int(login.error_code) == 0
            throttled = []
            with WireConn(secured.ports["SASL_PLAINTEXT"], timeout=15) as conn:
                sasl_handshake(conn, "PLAIN")
                sasl_authenticate(conn, plain_client_token("alice", "alice-secret"))
                everything = MetadataRequest(
                    topics=None,
                    allow_auto_topic_creation=False,
                    include_topic_authorized_operations=False,
                )
                for _ in range(2):
                    answer = conn.request(3, 12, everything)
                    throttled.append(answer.throttle_time.total_seconds())
            assert all(0 < t <= 1 for t in throttled), throttled
        finally:
            assert _alter_quota(admin, every_user, {"request_percentage": None})[0] == 0


def test_plain_failure_codes_and_the_connection_closes(secured: SecuredBroker) -> None:
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        handshake = sasl_handshake(conn, "PLAIN")
        assert (handshake.error_code, handshake.mechanisms) == (
            0,
            ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"),
        )
        answer = sasl_authenticate(conn, plain_client_token("alice", "wrong"))
        assert answer.error_code == 58  # SASL_AUTHENTICATION_FAILED
        assert answer.error_message == "Authentication failed: Invalid username or password"
        conn.expect_closed()
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        sasl_handshake(conn, "PLAIN")
        answer = sasl_authenticate(conn, plain_client_token("carol", "carol;secret"))
        assert (answer.error_code, answer.error_message) == (0, None)
        metadata = conn.request(3, 12, metadata_request())
        assert [b.port for b in metadata.brokers] == [secured.ports["SASL_PLAINTEXT"]]
        # Logged in: a second login is a protocol error, answered, the connection kept.
        assert sasl_handshake(conn, "PLAIN").error_code == 34  # ILLEGAL_SASL_STATE


def test_the_sasl_exchange_keeps_kafkas_order(secured: SecuredBroker) -> None:
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        sasl_handshake(conn, "PLAIN")
        # Mid-exchange, another request is answered ILLEGAL_SASL_STATE, then the connection
        # closes.
        listed = conn.request(16, 4, ListGroupsRequest(states_filter=()))
        assert (listed.error_code, listed.groups) == (34, ())
        conn.expect_closed()
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        conn.request(
            18, 3, ApiVersionsRequest(client_software_name="t", client_software_version="1")
        )
        conn.send(
            request_frame(
                18, 3, 2, ApiVersionsRequest(client_software_name="t", client_software_version="1")
            )
        )
        conn.expect_closed()  # ApiVersions once only, as in Kafka


def test_scram_exchange_on_the_wire(secured: SecuredBroker) -> None:
    mechanism = MECHANISMS["SCRAM-SHA-512"]
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        assert sasl_handshake(conn, "SCRAM-SHA-512").error_code == 0
        client = ScramClient(mechanism, "bob", "bob-secret")
        first = sasl_authenticate(conn, client.first_message())
        assert first.error_code == 0
        final = sasl_authenticate(conn, client.final_message(first.auth_bytes))
        assert final.error_code == 0
        client.verify_server_final(final.auth_bytes)
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        sasl_handshake(conn, "SCRAM-SHA-512")
        garbage = sasl_authenticate(conn, b"\xff\x00not scram")
        assert garbage.error_code == 58
        conn.expect_closed()


def test_unsupported_mechanism_lists_the_enabled_ones_then_closes(secured: SecuredBroker) -> None:
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        answer = sasl_handshake(conn, "GSSAPI")
        assert answer.error_code == 33  # UNSUPPORTED_SASL_MECHANISM
        assert answer.mechanisms == ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
        conn.expect_closed()


def test_requests_before_authentication_close_the_connection(secured: SecuredBroker) -> None:
    mark = secured.proc.log_mark()
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        conn.send(request_frame(3, 12, 1, metadata_request()))
        conn.expect_closed()
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        # SaslAuthenticate before SaslHandshake: out of order.
        conn.send(request_frame(36, 2, 1, SaslAuthenticateRequest(auth_bytes=b"x")))
        conn.expect_closed()
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        # A frame far larger than any SASL token, before authentication.
        conn.send(struct.pack(">i", 10_000_000) + b"\x00" * 64)
        conn.expect_closed()
    log = secured.proc.log_tail(400, since=mark)
    assert "metadata before SASL authentication completed" in log
    assert "sasl_authenticate before SASL authentication completed" in log
    assert "a frame of 10000000 bytes, larger than sasl.server.max.receive.size=524288" in log
    # Others carry on.
    topic = "after-bad-frames"
    assert _round_trip(secured.client_conf("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob"), topic) == (
        _expected(topic)
    )


def test_handshake_v0_sends_bare_tokens(secured: SecuredBroker) -> None:
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        assert sasl_handshake(conn, "PLAIN", version=0).error_code == 0
        token = plain_client_token("alice", "alice-secret")
        conn.send(struct.pack(">i", len(token)) + token)
        assert conn.recv_frame() == b""  # PLAIN's empty answer, size-prefixed
        metadata = conn.request(3, 12, metadata_request())
        assert [b.port for b in metadata.brokers] == [secured.ports["SASL_PLAINTEXT"]]
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        sasl_handshake(conn, "PLAIN", version=0)
        token = plain_client_token("alice", "nope")
        conn.send(struct.pack(">i", len(token)) + token)
        conn.expect_closed()


def test_sasl_on_a_plaintext_listener_is_an_illegal_state(secured: SecuredBroker) -> None:
    with WireConn(secured.ports["PLAINTEXT"]) as conn:
        assert sasl_handshake(conn, "PLAIN").error_code == 34
        answer = sasl_authenticate(conn, b"\x00alice\x00alice-secret")
        assert answer.error_code == 34
        # Still open and usable.
        metadata = conn.request(3, 12, metadata_request())
        assert [b.port for b in metadata.brokers] == [secured.ports["PLAINTEXT"]]


def test_a_plaintext_client_on_a_tls_listener_does_not_hurt_it(secured: SecuredBroker) -> None:
    frame = request_frame(3, 12, 1, metadata_request())
    with socket.create_connection(("127.0.0.1", secured.ports["SSL"]), timeout=5) as sock:
        sock.sendall(frame)
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b""
    assert data == b"" or data[0] == 0x15  # nothing, or a TLS alert: never Kafka in the clear
    topic = "tls-after-plaintext-junk"
    assert _round_trip(secured.client_conf("SSL"), topic) == _expected(topic)


# --- SCRAM credentials: KIP-554 -----------------------------------------------------------


def _alter(
    conn: WireConn, deletions: list[tuple[str, int]], upsertions: list[tuple[str, int, int]]
) -> dict[str, tuple[int, str | None]]:
    mod = alter_scram
    salt = b"salty"
    answer = conn.request(
        51,
        0,
        mod.AlterUserScramCredentialsRequest(
            deletions=tuple(mod.ScramCredentialDeletion(name=n, mechanism=m) for n, m in deletions),
            upsertions=tuple(
                mod.ScramCredentialUpsertion(
                    name=n,
                    mechanism=m,
                    iterations=i,
                    salt=salt,
                    salted_password=salted_password(MECHANISMS["SCRAM-SHA-256"], "pw", salt, 4096),
                )
                for n, m, i in upsertions
            ),
        ),
    )
    return {r.user: (r.error_code, r.error_message) for r in answer.results}


def test_scram_credential_admin_error_codes(secured: SecuredBroker) -> None:
    with WireConn(secured.proc.port) as conn:
        results = _alter(
            conn,
            deletions=[("nobody", 1), ("twice", 1)],
            upsertions=[
                ("", 1, 4096),
                ("few", 1, 4095),
                ("many", 1, 16385),
                ("mech", 3, 4096),
                ("twice", 1, 4096),
                ("erin", 1, 4096),
            ],
        )
        assert results == {
            "nobody": (91, "Attempt to delete a user credential that does not exist"),
            "twice": (91, "Attempt to delete a user credential that does not exist"),
            "": (93, "Username must not be empty"),
            "few": (93, "Too few iterations"),
            "many": (93, "Too many iterations"),
            "mech": (33, "Unknown SCRAM mechanism"),
            "erin": (0, None),
        }
        assert _alter(conn, [], [("frank", 1, 4096), ("frank", 2, 4096)]) == {
            "frank": (92, "A user credential cannot be altered twice in the same request")
        }
        # A deletion and an upsertion of one user: both refused.
        assert _alter(conn, [], [("gus", 1, 4096)]) == {"gus": (0, None)}
        assert _alter(conn, [("gus", 1)], [("gus", 2, 4096)]) == {
            "gus": (92, "A user credential cannot be altered twice in the same request")
        }
        describe = conn.request(
            50,
            0,
            describe_scram.DescribeUserScramCredentialsRequest(
                users=(
                    describe_scram.UserName(name="erin"),
                    describe_scram.UserName(name="frank"),
                )
            ),
        )
        assert [
            (r.user, r.error_code, [(c.mechanism, c.iterations) for c in r.credential_infos])
            for r in describe.results
        ] == [
            ("erin", 0, [(1, 4096)]),
            ("frank", 91, []),
        ]
    # The stored keys come from the client's salted password: erin logs in with "pw".
    with WireConn(secured.ports["SASL_PLAINTEXT"]) as conn:
        assert sasl_handshake(conn, "SCRAM-SHA-256").error_code == 0
        client = ScramClient(MECHANISMS["SCRAM-SHA-256"], "erin", "pw")
        first = sasl_authenticate(conn, client.first_message())
        final = sasl_authenticate(conn, client.final_message(first.auth_bytes))
        assert (first.error_code, final.error_code) == (0, 0)
        client.verify_server_final(final.auth_bytes)
    with WireConn(secured.proc.port) as conn:
        assert _alter(conn, [("erin", 1), ("gus", 1)], []) == {"erin": (0, None), "gus": (0, None)}


def test_credentials_survive_a_restart_and_a_deleted_one_stops_working(
    tmp_path: Path,
) -> None:
    proc = BrokerProcess(tmp_path / "broker")
    sasl_port = free_port()
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
    }
    proc.start()
    try:
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        upsert_scram_user(admin, "gina", "gina-secret", ScramMechanism.SCRAM_SHA_256)
        proc.stop()
        proc.start()
        conf = {
            "bootstrap.servers": f"127.0.0.1:{sasl_port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "gina",
            "sasl.password": "gina-secret",
        }
        assert _round_trip(conf, "restarted") == _expected("restarted")
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        futures = admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion("gina", ScramMechanism.SCRAM_SHA_256)]
        )
        assert [f.result() for f in futures.values()] == [None]
        errors: list[Any] = []
        refused = AdminClient({**conf, "error_cb": errors.append})
        with pytest.raises(KafkaException):
            refused.list_topics(timeout=3)
        refused.poll(1)
        assert errors and errors[0].code() == -169
    finally:
        assert proc.stop() == 0, proc.log_tail()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"listeners": "SASL_SSL://127.0.0.1:{p}"}, "there is no listener named PLAINTEXT"),
        (
            {"listeners": "PLAINTEXT://127.0.0.1:{p},SSL://127.0.0.1:{q}"},
            "set ssl.keystore.location",
        ),
        ({"listeners": "FOO://127.0.0.1:{p}"}, "no security protocol for listener FOO"),
        (
            {
                "listeners": "PLAINTEXT://127.0.0.1:{p},SASL_PLAINTEXT://127.0.0.1:{q}",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config": "Broken required user_x=",
            },
            "listener.name.sasl_plaintext.plain.sasl.jaas.config",
        ),
    ],
)
def test_listener_settings_that_cannot_work_stop_the_start(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    proc = BrokerProcess(tmp_path / "broker")
    q = free_port()
    proc.settings = {k: v.format(p=proc.port, q=q) for k, v in settings.items()}
    with pytest.raises(RuntimeError) as failure:
        proc.start(timeout=20)
    assert "cannot start the broker" in str(failure.value)
    assert message in str(failure.value)


def test_users_cli_sets_lists_and_deletes_scram_credentials(secured: SecuredBroker) -> None:
    plain = ["-b", secured.bootstrap("PLAINTEXT")]
    made = _cli("users", "set", "hank", "--password", "hank pw", "-m", "SCRAM-SHA-256", *plain)
    assert made.returncode == 0, made.stderr
    # Listed through the SASL_SSL listener, logged in as hank with what was just set.
    as_hank = secured.scram_x_args("hank", "hank pw")
    listed = _cli("users", "list", "--json", *as_hank)
    assert listed.returncode == 0, listed.stderr
    rows = {(r["user"], r["mechanism"]): r["iterations"] for r in json.loads(listed.stdout)}
    assert rows[("hank", "SCRAM-SHA-256")] == 8192
    assert rows[("bob", "SCRAM-SHA-512")] == 8192
    bad = _cli("users", "set", "ivy", "--password", "x", "--iterations", "100", *plain)
    assert bad.returncode != 0
    assert "Too few iterations" in bad.stderr
    gone = _cli("users", "delete", "hank", "-m", "SCRAM-SHA-256", *plain)
    assert gone.returncode == 0, gone.stderr
    listed = _cli("users", "list", "--json", *plain)
    assert ("hank", "SCRAM-SHA-256") not in {
        (r["user"], r["mechanism"]) for r in json.loads(listed.stdout)
    }
    again = _cli("users", "delete", "hank", "-m", "SCRAM-SHA-256", *plain)
    assert again.returncode != 0
    assert "does not exist" in again.stderr
    # A password piped in is read once; an empty user name is refused, not a traceback.
    piped = _cli("users", "set", "iris", "-m", "SCRAM-SHA-256", *plain, stdin="iris piped\n")
    assert piped.returncode == 0, piped.stderr
    as_iris = _cli("users", "list", "--json", *secured.scram_x_args("iris", "iris piped"))
    assert as_iris.returncode == 0, as_iris.stderr
    empty = _cli("users", "set", "", "--password", "x", *plain)
    assert empty.returncode == 2 and "the user name is empty" in empty.stderr
    assert "Traceback" not in empty.stderr


def test_the_commands_speaking_the_protocol_themselves_log_in_too(
    secured: SecuredBroker, tmp_path: Path
) -> None:
    """`artesian quotas`, `transactions`, `rebalance` and `topic reassignments` send their
    requests without librdkafka: they take TLS and the SASL login from the same properties
    as the other commands."""
    config = tmp_path / "client.properties"
    config.write_text(
        "security.protocol=SASL_SSL\n"
        f"ssl.ca.location={secured.certs.ca}\n"
        "sasl.mechanism=SCRAM-SHA-512\nsasl.username=bob\nsasl.password=bob-secret\n"
    )
    tls = ["-b", secured.bootstrap("SASL_SSL"), "--command-config", str(config)]
    made = _cli("quotas", "set", "--client-id", "cli-tls", "--producer-byte-rate", "2048", *tls)
    assert made.returncode == 0, made.stderr
    listed = _cli("quotas", "list", "--json", *tls)
    assert listed.returncode == 0, listed.stderr
    assert {
        "user": "",
        "client_id": "cli-tls",
        "ip": "",
        "key": "producer_byte_rate",
        "value": 2048,
    } in (json.loads(listed.stdout))
    balancer = _cli("rebalance", "status", "--json", *tls)
    assert balancer.returncode == 0 and "state" in json.loads(balancer.stdout), balancer.stderr
    moves = _cli("topic", "reassignments", "--json", *tls)
    assert moves.returncode == 0 and json.loads(moves.stdout) == [], moves.stderr
    txns = _cli("transactions", "list", "--json", *tls)
    assert txns.returncode == 0 and isinstance(json.loads(txns.stdout), list), txns.stderr
    no_login = _cli("transactions", "list", "-b", secured.bootstrap("SASL_PLAINTEXT"))
    # The broker closes a connection that does not log in: reported, not a traceback.
    assert no_login.returncode == 1 and "Traceback" not in no_login.stderr, no_login.stderr
    assert "error:" in no_login.stderr
    assert _cli("quotas", "remove", "--client-id", "cli-tls", *tls).returncode == 0

    # A wrong password, a wrong CA and an unknown mechanism each say what went wrong.
    config.write_text(
        "security.protocol=SASL_SSL\n"
        f"ssl.ca.location={secured.certs.ca}\n"
        "sasl.mechanism=SCRAM-SHA-512\nsasl.username=bob\nsasl.password=wrong\n"
    )
    wrong = _cli("quotas", "list", *tls)
    assert wrong.returncode == 1 and "SASL login" in wrong.stderr, wrong.stderr
    assert "invalid credentials" in wrong.stderr
    config.write_text("security.protocol=SSL\n")  # the system's CAs do not know ours
    untrusted = _cli(
        "quotas", "list", "-b", secured.bootstrap("SSL"), "--command-config", str(config)
    )
    assert untrusted.returncode == 1 and "TLS with" in untrusted.stderr, untrusted.stderr
    config.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n")
    kerberos = _cli(
        "quotas", "list", "-b", secured.bootstrap("SASL_PLAINTEXT"), "--command-config", str(config)
    )
    assert kerberos.returncode == 1 and "sasl.mechanism GSSAPI is not" in kerberos.stderr


def test_brokers_without_the_clients_listener_are_left_out(tmp_path: Path) -> None:
    from confluent_kafka.admin import NewTopic

    from tests.replication.cluster import FAST

    store = f"sqlite:///{tmp_path}/metadata.db"
    first = BrokerProcess(
        tmp_path / "a", {"node.id": "1", "artesian.metadata.store.url": store, **FAST}
    )
    sasl_port = free_port()
    first.settings |= {
        "listeners": f"PLAINTEXT://127.0.0.1:{first.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
    }
    second = BrokerProcess(
        tmp_path / "b", {"node.id": "2", "artesian.metadata.store.url": store, **FAST}
    )
    first.start()
    second.start()
    try:
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        wait_for_both(admin)  # broker 1 knows broker 2
        (created,) = admin.create_topics(
            [
                NewTopic(
                    "split", num_partitions=2, replication_factor=-1, replica_assignment=[[1], [2]]
                )
            ]
        ).values()
        created.result(20)
        with WireConn(sasl_port) as conn:
            sasl_handshake(conn, "PLAIN")
            assert (
                sasl_authenticate(conn, plain_client_token("alice", "alice-secret")).error_code == 0
            )
            request = MetadataRequest(
                topics=(MetadataRequestTopic(name="split", topic_id=None),),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
            deadline = time.monotonic() + 10
            while True:
                metadata = conn.request(3, 12, request)
                partitions = sorted(
                    (p.partition_index, p.leader_id, p.error_code)
                    for p in metadata.topics[0].partitions
                )
                if len(partitions) == 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert [(b.node_id, b.port) for b in metadata.brokers] == [(1, sasl_port)]
        # Partition 1's leader has no SASL_PLAINTEXT listener: none for this client, and
        # LISTENER_NOT_FOUND (Metadata v6+), as Kafka answers.
        assert partitions == [(0, 1, 0), (1, -1, 72)]
    finally:
        second.stop()
        first.stop()


def test_kafkajs_and_kcat_log_in_with_scram_over_tls(secured: SecuredBroker) -> None:
    from tests.clients.round_trips import kafkajs_round_trip, kcat_round_trip

    kcat_round_trip(secured.scram_x_args("bob", "bob-secret"), "kcat-tls", 20)
    security = {
        "sasl": {"mechanism": "scram-sha-512", "username": "dave", "password": "dave secret"},
        "caFile": str(secured.certs.ca),
    }
    kafkajs_round_trip(secured.bootstrap("SASL_SSL"), "js-tls", 12, security)


def test_brokers_replicate_over_a_sasl_ssl_inter_broker_listener(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="broker" password="broker-secret" '
        'user_broker="broker-secret" user_alice="alice-secret";'
    )
    brokers = start_pair(
        tmp_path,
        lambda proc: {
            "listeners": f"SASL_SSL://127.0.0.1:{proc.port}",
            "inter.broker.listener.name": "SASL_SSL",
            "ssl.keystore.location": str(certs.server),
            "ssl.truststore.location": str(certs.ca),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
        },
    )
    try:
        conf = {
            "bootstrap.servers": ",".join(b.bootstrap for b in brokers),
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(certs.ca),
            "sasl.mechanism": "PLAIN",
            "sasl.username": "alice",
            "sasl.password": "alice-secret",
        }
        replicated_through_a_leader_kill(brokers, conf, "secure-replicated", _round_trip)
    finally:
        for proc in brokers:
            if proc.alive():
                proc.stop()


def test_brokers_mid_way_through_switching_their_inter_broker_listener(tmp_path: Path) -> None:
    """Kafka's way to move replication onto SASL_SSL: every broker has both listeners, then
    inter.broker.listener.name changes one broker at a time. Mid-way, each broker must dial
    the others on its own inter-broker listener, not on theirs."""
    from confluent_kafka.admin import NewTopic

    from tests.replication.cluster import FAST

    certs = make_certificates(tmp_path / "certs")
    store = f"sqlite:///{tmp_path}/metadata.db"
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="broker" password="broker-secret" user_broker="broker-secret";'
    )
    brokers = []
    for node, inter in ((1, "INTERNAL"), (2, "SASL_SSL")):
        proc = BrokerProcess(tmp_path / f"b{node}")
        proc.settings = {
            "node.id": str(node),
            "artesian.metadata.store.url": store,
            **FAST,
            "listeners": f"INTERNAL://127.0.0.1:{proc.port},SASL_SSL://127.0.0.1:{free_port()}",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": inter,
            "ssl.keystore.location": str(certs.server),
            "ssl.truststore.location": str(certs.ca),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
        }
        brokers.append(proc.start())
    try:
        conf = {"bootstrap.servers": ",".join(b.bootstrap for b in brokers)}
        admin = AdminClient(conf)
        wait_for_both(admin)
        # Each broker leads one partition and follows the other's.
        topic = NewTopic(
            "mid-roll", num_partitions=2, replication_factor=-1, replica_assignment=[[1, 2], [2, 1]]
        )
        create_once_all_are_known(admin, topic)
        producer = Producer({**conf, "acks": "all"})
        for partition in (0, 1):
            for i in range(5):
                producer.produce("mid-roll", f"p{partition}-{i}".encode(), partition=partition)
        assert producer.flush(20) == 0
        deadline = time.monotonic() + 20
        while True:
            partitions = admin.list_topics("mid-roll", timeout=5).topics["mid-roll"].partitions
            isrs = {p: sorted(partitions[p].isrs) for p in (0, 1)}
            if isrs == {0: [1, 2], 1: [1, 2]} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert isrs == {0: [1, 2], 1: [1, 2]}
        for node in (1, 2):
            assert "inter-broker" not in brokers[node - 1].log_tail(200).lower(), brokers[
                node - 1
            ].log_tail(40)
    finally:
        for proc in brokers:
            proc.stop()


def test_the_cli_says_a_login_was_refused_and_takes_kafkas_jaas_config(
    secured: SecuredBroker,
) -> None:
    """A refused login is reported as such (not as an unreachable broker); a Java client's
    sasl.jaas.config works as librdkafka's sasl.username and sasl.password; the benchmark
    takes the same settings."""
    sasl = ["-b", secured.bootstrap("SASL_PLAINTEXT"), "-X", "security.protocol=SASL_PLAINTEXT"]
    wrong = _cli(
        "topic", "list", *sasl, "-X", "sasl.mechanism=SCRAM-SHA-256",
        "-X", "sasl.username=bob", "-X", "sasl.password=wrong", "--request-timeout", "5",
    )  # fmt: skip
    assert wrong.returncode == 1, wrong.stderr
    assert "refused the login" in wrong.stderr and "invalid credentials" in wrong.stderr
    assert "is a broker running" not in wrong.stderr and "Traceback" not in wrong.stderr
    for command in (["consume", "bench-sasl", "-t", "5"], ["produce", "bench-sasl"]):
        refused = _cli(
            *command, *sasl, "-X", "sasl.mechanism=SCRAM-SHA-256", "-X", "sasl.username=bob",
            "-X", "sasl.password=wrong", "--request-timeout", "5", stdin="x\n",
        )  # fmt: skip
        assert refused.returncode == 1, refused.stderr
        assert "refused the login" in refused.stderr, refused.stderr
    oauth = _cli("topic", "list", *sasl, "-X", "sasl.jaas.config=org.apache.kafka.common."
                 'security.oauthbearer.OAuthBearerLoginModule required password="hidden";')  # fmt: skip
    assert oauth.returncode == 1 and "OAuthBearerLoginModule is not read here" in oauth.stderr
    assert "hidden" not in oauth.stderr
    jaas = (
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="bob" password="bob-secret";'
    )
    listed = _cli("topic", "list", *sasl, "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", jaas)
    assert listed.returncode == 0, listed.stderr
    login = [*sasl, "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", jaas]
    produced = _cli(
        "bench", "produce", "-n", "20", "-s", "10", "--topic", "bench-sasl", "--json", *login
    )
    assert produced.returncode == 0, produced.stderr
    assert json.loads(produced.stdout.splitlines()[-1])["records"] == 20
    consumed = _cli("bench", "consume", "-n", "10", "--topic", "bench-sasl", "--json", *login)
    assert consumed.returncode == 0, consumed.stderr
    assert json.loads(consumed.stdout.splitlines()[-1])["records"] == 10  # no more than asked
    assert _cli("bench", "produce", "-s", "0", *login).returncode == 2


def test_the_cli_refuses_to_delete_an_internal_topic() -> None:
    refused = _cli("topic", "delete", "__consumer_offsets", "-b", "127.0.0.1:1")
    assert refused.returncode == 1
    assert "is a kafka internal topic and is not allowed to be marked for deletion" in (
        refused.stderr
    )
