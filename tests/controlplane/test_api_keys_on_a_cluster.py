"""API keys end to end: a cell whose clusters take clients on SASL_SSL only, a key for the
whole cluster and one for a prefix, used by real clients (librdkafka, kafka-python) with
SCRAM, then one revoked; the control plane, the data plane and the cluster each their own
processes, as in test_control_plane.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from artesian.cli.wire import WireClient
from tests.consuming import read_range
from tests.controlplane.platform import Platform
from tests.tls_certs import Certificates, make_certificates

pytestmark = pytest.mark.slow

SESSION_MS = 3000  # the client listener's connections.max.reauth.ms


@pytest.fixture
def secured_platform(tmp_path: Path) -> Iterator[tuple[Platform, Certificates]]:
    certs = make_certificates(tmp_path / "certs")
    listener = tmp_path / "client-listener.properties"
    listener.write_text(f"ssl.keystore.location={certs.server}\n")
    p = Platform(tmp_path)
    try:
        p.start_control_plane()
        p.start_data_plane(
            *("--client-protocol", "SASL_SSL", "--client-config", str(listener)),
            *("--connections-max-reauth-ms", str(SESSION_MS)),
        )
        yield p, certs
    finally:
        p.close()


def _login(certs: Certificates, key: str, secret: str, mechanism: str) -> dict[str, Any]:
    return {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(certs.ca),
        "sasl.mechanism": mechanism,
        "sasl.username": key,
        "sasl.password": secret,
    }


def _produce(bootstrap: str, conf: dict[str, Any], topic: str, values: list[bytes]) -> list[Any]:
    """Each record's delivery error (None when it was written)."""
    errors: list[Any] = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 15000, **conf}
    )
    for v in values:
        producer.produce(topic, v, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    return errors


def _login_error(bootstrap: str, conf: dict[str, Any], timeout: float = 20) -> KafkaError | None:
    """The first error librdkafka reports for a client with ``conf``, None if none came."""
    seen: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "error_cb": seen.append, **conf})
    deadline = time.monotonic() + timeout
    while not seen and time.monotonic() < deadline:
        producer.poll(0.2)
    return seen[0] if seen else None


def _no_metadata(bootstrap: str, conf: dict[str, Any]) -> None:
    """A client with ``conf`` cannot even list the cluster's topics."""
    with pytest.raises(KafkaException) as refused:
        AdminClient({"bootstrap.servers": bootstrap, **conf}).list_topics(timeout=8)
    assert refused.value.args[0].code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT)


def test_api_keys_let_clients_in_to_their_resources_only_and_revoking_one_locks_it_out(
    secured_platform: tuple[Platform, Certificates],
) -> None:
    platform, certs = secured_platform
    api = platform.api
    # Two brokers, replicating over their INTERNAL listener (SASL PLAIN, the operator's user)
    # with Kafka's authorizer on.
    cluster_id = api.post(
        "/v1/clusters",
        json={
            "name": "payments",
            "brokers": 2,
            "config": {"default.replication.factor": "2", "min.insync.replicas": "2"},
        },
    ).json()["id"]
    platform.until(lambda: platform.ready(cluster_id, 1, 2), 90, "payments on 2 brokers")

    r = api.post(f"/v1/clusters/{cluster_id}/api-keys", json={"description": "admin"})
    assert r.status_code == 201, r.text
    admin = r.json()
    assert (admin["generation"], admin["resource_prefix"], admin["description"]) == (
        2,
        None,
        "admin",
    )
    team = api.post(
        f"/v1/clusters/{cluster_id}/api-keys", json={"resource_prefix": "team-a."}
    ).json()
    doc = platform.until(lambda: platform.ready(cluster_id, 3, 2), 60, "the API keys applied")
    bootstrap = doc["status"]["bootstrap"]
    # The client listener, 2000 ports above the internal one the operator uses.
    assert int(bootstrap.rsplit(":", 1)[1]) >= 2000
    # Secrets were in the POST answers only; no view shows them or their verifiers.
    for view in (api.get(f"/v1/clusters/{cluster_id}").text, api.get("/v1/clusters").text):
        assert admin["secret"] not in view and team["secret"] not in view and "salt" not in view
    listed = api.get(f"/v1/clusters/{cluster_id}/api-keys").json()["api_keys"]
    assert [(k["key"], k["resource_prefix"]) for k in listed] == [
        (admin["key"], None),
        (team["key"], "team-a."),
    ]

    as_admin = _login(certs, admin["key"], admin["secret"], "SCRAM-SHA-512")
    as_team = _login(certs, team["key"], team["secret"], "SCRAM-SHA-256")
    values = [f"payment-{n}".encode() for n in range(10)]
    assert _produce(bootstrap, as_admin, "team-a.payments", values) == [None] * 10
    assert _produce(bootstrap, as_admin, "ledger", [b"l0"]) == [None]
    # The team's key reads its prefix back exactly, in a group under its prefix...
    got = read_range(bootstrap, "team-a.payments", 0, 10, **{"group.id": "team-a.app"}, **as_team)
    assert got == list(enumerate(values))
    assert _produce(bootstrap, as_team, "team-a.payments", [b"t10"]) == [None]
    # ...and may not write outside it.
    refused = _produce(bootstrap, as_team, "ledger", [b"x"])
    assert [e.code() for e in refused] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert read_range(bootstrap, "ledger", 0, 1, **as_admin) == [(0, b"l0")]

    # A wrong secret, and no login at all, get nowhere.
    wrong = _login_error(bootstrap, _login(certs, admin["key"], "not-it", "SCRAM-SHA-512"))
    assert wrong is not None and wrong.code() == KafkaError._AUTHENTICATION, wrong
    # TLS is fine, then the broker closes on the first request that is not a login.
    _no_metadata(bootstrap, {"security.protocol": "SSL", "ssl.ca.location": str(certs.ca)})
    # The INTERNAL listener (2000 ports below) lets in neither anonymous clients nor keys.
    internal = ",".join(
        f"127.0.0.1:{int(hp.rsplit(':', 1)[1]) - 2000}" for hp in bootstrap.split(",")
    )
    _no_metadata(internal, {})
    # ...while the operator's user, with the cluster's password, gets in.
    password = (platform.cells / cluster_id / "internal.secret").read_text()
    with WireClient(internal, 10, ("PLAIN", "artesian-internal", password)) as operator:
        brokers = operator.request(
            3,
            12,
            topics=(),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        ).brokers
    assert sorted(int(b.node_id) for b in brokers) == [1, 2]
    as_admin_inside = {**as_admin, "security.protocol": "SASL_PLAINTEXT"}
    del as_admin_inside["ssl.ca.location"]
    keyed = _login_error(internal, as_admin_inside)
    assert keyed is not None and keyed.code() == KafkaError._AUTHENTICATION, keyed
    # A key cannot make users (a super user's name among them) or ACLs.
    admin_client = AdminClient({"bootstrap.servers": bootstrap, **as_admin})
    upsert = UserScramCredentialUpsertion(
        "artesian-internal", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw"
    )
    (future,) = admin_client.alter_user_scram_credentials([upsert]).values()
    with pytest.raises(KafkaException) as refused_upsert:
        future.result(30)
    assert refused_upsert.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED

    # A client that logged in with the admin key before it is revoked, and stays connected.
    seen: list[KafkaError] = []
    connected = Producer(
        {"bootstrap.servers": bootstrap, "error_cb": seen.append, "acks": "all", **as_admin}
    )
    delivered: list[Any] = []
    connected.produce("ledger", b"l1", on_delivery=lambda err, msg: delivered.append(err))
    assert connected.flush(30) == 0 and delivered == [None]

    # Revoked: the admin key's new logins fail once the cluster reports the generation.
    r = api.delete(f"/v1/clusters/{cluster_id}/api-keys/{admin['key']}")
    assert r.status_code == 200 and r.json()["generation"] == 4
    platform.until(lambda: platform.ready(cluster_id, 4, 2), 60, "the revocation applied")
    revoked = _login_error(bootstrap, as_admin)
    assert revoked is not None and revoked.code() == KafkaError._AUTHENTICATION, revoked
    # ...and its open connection fails its next re-authentication (KIP-368) within a session.
    deadline = time.monotonic() + SESSION_MS / 1000 + 10
    while not any(e.code() == KafkaError._AUTHENTICATION for e in seen):
        assert time.monotonic() < deadline, f"still logged in after revocation: {seen}"
        connected.poll(0.2)
    try:
        connected.produce("ledger", b"l2", on_delivery=lambda err, msg: delivered.append(err))
        connected.flush(10)
    except KafkaException as e:
        # A connection to another broker may still be in its session, without the key's
        # ACLs (they went with it): librdkafka refuses the topic at once.
        assert e.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, e
    # Not written: the operator's own user sees l0 and l1 only.
    as_operator = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "artesian-internal",
        "sasl.password": password,
    }
    assert read_range(internal, "ledger", 0, 2, **as_operator) == [(0, b"l0"), (1, b"l1")]
    watcher = Consumer({"bootstrap.servers": internal, "group.id": "watch", **as_operator})
    try:
        assert watcher.get_watermark_offsets(TopicPartition("ledger", 0), timeout=10) == (0, 2)
    finally:
        watcher.close()
    got = read_range(bootstrap, "team-a.payments", 0, 11, **{"group.id": "team-a.app"}, **as_team)
    assert got == [*enumerate(values), (10, b"t10")]
    assert api.delete(f"/v1/clusters/{cluster_id}/api-keys/{admin['key']}").status_code == 404


def test_the_api_keys_command_creates_lists_and_deletes(
    secured_platform: tuple[Platform, Certificates],
) -> None:
    platform, certs = secured_platform
    cluster_id = platform.api.post("/v1/clusters", json={"name": "c"}).json()["id"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "artesian.cli.main", "api-keys", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=platform.cli_env(),
        )

    made = cli("create", cluster_id, "--resource-prefix", "app.", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["resource_prefix"] == "app." and len(key["secret"]) >= 43
    shown = cli("create", cluster_id)
    assert shown.returncode == 0 and "cannot be shown again" in shown.stdout
    listed = cli("list", cluster_id)
    assert listed.returncode == 0 and key["key"] in listed.stdout and "app." in listed.stdout
    assert key["secret"] not in listed.stdout

    doc = platform.until(lambda: platform.ready(cluster_id, 3, 1), 90, "c with its keys")
    conf = _login(certs, key["key"], key["secret"], "SCRAM-SHA-512")
    assert _produce(doc["status"]["bootstrap"], conf, "app.events", [b"e0"]) == [None]

    assert cli("delete", cluster_id, key["key"]).returncode == 0
    gone = cli("delete", cluster_id, key["key"])
    assert gone.returncode == 1 and "404" in gone.stderr
    bad = cli("create", cluster_id, "--resource-prefix", "a/b")
    assert bad.returncode == 1 and "422" in bad.stderr and "resource_prefix" in bad.stderr
    assert cli("list", "lkc-nosuch").returncode == 1
