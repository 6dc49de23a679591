"""Key and trust stores in Java's formats (JKS, PKCS12), made by the JDK's keytool and by
openssl, read as Kafka's brokers read them: a broker serves TLS from them, asks client
certificates against them, and the CLI logs in with a PKCS12 key store as librdkafka does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from artesian.cli.common import CliError
from artesian.cli.wire import security_from
from artesian.security.key_store import KeyStoreError, read_key_store, read_trust_store
from tests.broker_process import BrokerProcess, free_port
from tests.tls_certs import Certificates, make_certificates


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: .ci/run should have installed it")
        pytest.skip(f"{tool} is not installed")


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout


@dataclass(frozen=True)
class Stores:
    certs: Certificates  # the test CA, its server certificate and a client's
    jks: Path  # keytool: a self-signed EC key, store password != key password
    jks_cert: Path  # its certificate, exported by keytool (PEM)
    p12: Path  # keytool: a self-signed RSA key
    p12_cert: Path
    chain_p12: Path  # openssl: the CA-signed server key, with the CA
    client_p12: Path  # openssl: the CA-signed client key
    trust_jks: Path  # keytool: the test CA as a trusted certificate
    trust_p12: Path
    jceks: Path


STORE_PW, KEY_PW, TRUST_PW, P12_PW = "store-secret", "key-secret", "trust-secret", "p12-secret"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    _require("keytool")
    _require("openssl")
    d = tmp_path_factory.mktemp("stores")
    certs = make_certificates(d / "certs")
    san = ["-ext", "SAN=dns:localhost,ip:127.0.0.1", "-validity", "2"]
    s = Stores(
        certs,
        *(d / n for n in ("broker.jks", "broker-jks.pem", "broker.p12", "broker-p12.pem")),
        *(d / n for n in ("chain.p12", "client.p12", "trust.jks", "trust.p12", "broker.jceks")),
    )
    keytool = ["keytool", "-noprompt"]
    _run(*keytool, "-genkeypair", "-alias", "broker", "-keyalg", "EC", "-groupname", "secp256r1",
         "-dname", "CN=localhost,O=keytool JKS", *san, "-keystore", str(s.jks),
         "-storetype", "JKS", "-storepass", STORE_PW, "-keypass", KEY_PW)  # fmt: skip
    _run(*keytool, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
         "-dname", "CN=localhost,O=keytool PKCS12", *san, "-keystore", str(s.p12),
         "-storetype", "PKCS12", "-storepass", P12_PW)  # fmt: skip
    for store, cert, pw in ((s.jks, s.jks_cert, STORE_PW), (s.p12, s.p12_cert, P12_PW)):
        _run(*keytool, "-exportcert", "-rfc", "-alias", "broker", "-keystore", str(store),
             "-storepass", pw, "-file", str(cert))  # fmt: skip
    for store, kind in ((s.trust_jks, "JKS"), (s.trust_p12, "PKCS12")):
        _run(*keytool, "-importcert", "-alias", "test-ca", "-file", str(certs.ca),
             "-keystore", str(store), "-storetype", kind, "-storepass", TRUST_PW)  # fmt: skip
    _run(*keytool, "-genkeypair", "-alias", "old", "-keyalg", "EC", "-dname", "CN=old",
         "-keystore", str(s.jceks), "-storetype", "JCEKS", "-storepass", STORE_PW)  # fmt: skip
    _run("openssl", "pkcs12", "-export", "-in", str(certs.server), "-certfile", str(certs.ca),
         "-out", str(s.chain_p12), "-passout", f"pass:{P12_PW}")  # fmt: skip
    _run("openssl", "pkcs12", "-export", "-in", str(certs.client_cert), "-inkey",
         str(certs.client_key), "-out", str(s.client_p12), "-passout", f"pass:{P12_PW}")  # fmt: skip
    return s


def _certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _public(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _public_of(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_keytool_and_openssl_stores_read_as_java_reads_them(stores: Stores) -> None:
    jks = stores.jks.read_bytes()
    material = read_key_store(jks, None, STORE_PW, KEY_PW, path="b.jks")
    assert material is not None
    [cert] = _certs(material.chain_pem)
    assert cert == x509.load_pem_x509_certificate(stores.jks_cert.read_bytes())
    assert _public(material.key_pem) == _public_of(cert)  # the key recovered is the cert's

    # A PKCS12 file under Kafka's default type, JKS, is read as Java reads it.
    p12 = read_key_store(stores.p12.read_bytes(), "JKS", P12_PW, None, path="b.p12")
    assert p12 is not None
    [p12_cert] = _certs(p12.chain_pem)
    assert p12_cert == x509.load_pem_x509_certificate(stores.p12_cert.read_bytes())
    assert _public(p12.key_pem) == _public_of(p12_cert)

    # openssl's PKCS12 keeps no order: the chain comes back leaf first.
    chain = read_key_store(stores.chain_p12.read_bytes(), "PKCS12", P12_PW, None, path="c.p12")
    assert chain is not None
    ca = x509.load_pem_x509_certificate(stores.certs.ca.read_bytes())
    leaf = x509.load_pem_x509_certificate(stores.certs.server.read_bytes())
    assert _certs(chain.chain_pem) == [leaf, ca]

    # A PEM key store is left to ssl, which reads the file itself.
    assert read_key_store(stores.certs.server.read_bytes(), None, None, None, path="s") is None

    # Trust stores: the CA, with or without the password for JKS (no integrity check then).
    for data, pw in (
        (stores.trust_jks.read_bytes(), TRUST_PW),
        (stores.trust_jks.read_bytes(), None),
        (stores.trust_p12.read_bytes(), TRUST_PW),
    ):
        trusted = read_trust_store(data, None, pw, path="t")
        assert trusted is not None and _certs(trusted) == [ca]
    # A key store trusts the certificate of its key, as Java's trust managers do.
    trusted = read_trust_store(jks, "JKS", STORE_PW, path="b.jks")
    assert trusted is not None and _certs(trusted) == [cert]


@pytest.mark.parametrize(
    ("name", "declared", "store_pw", "key_pw", "message"),
    [
        ("jks", None, STORE_PW, None, "cannot recover the key 'broker' in s: wrong ssl.key.password"),
        ("jks", None, STORE_PW, "nope", "wrong ssl.key.password"),
        ("jks", None, "nope", KEY_PW, "cannot read the JKS store s: it was tampered with, or the"),
        ("jks", None, None, KEY_PW, "s is a JKS key store but ssl.keystore.password is not set"),
        ("jks", "PKCS12", STORE_PW, KEY_PW, "s is not a PKCS12 store (it reads as JKS)"),
        ("p12", "PEM", P12_PW, None, "s is not a PEM store (it reads as PKCS12)"),
        ("p12", "PKCS12", "nope", None, "cannot read the PKCS12 key store s: wrong ssl.keystore"),
        ("jceks", None, STORE_PW, None, "keytool -importkeystore -srckeystore s -destkeystore"),
        ("trust_jks", None, TRUST_PW, None, "s holds no private key entry"),
    ],
)  # fmt: skip
def test_key_stores_that_cannot_be_read_say_why(
    stores: Stores,
    name: str,
    declared: str | None,
    store_pw: str | None,
    key_pw: str | None,
    message: str,
) -> None:
    data = getattr(stores, name).read_bytes()
    with pytest.raises(KeyStoreError) as refused:
        read_key_store(data, declared, store_pw, key_pw, path="s")
    assert message in str(refused.value)


def test_damaged_stores_are_refused_not_crashed_on(stores: Stores) -> None:
    jks = stores.jks.read_bytes()
    for cut in range(0, len(jks), 5):
        with pytest.raises(KeyStoreError):
            read_key_store(jks[:cut] or b"\xfe\xed\xfe\xed", None, STORE_PW, KEY_PW, path="s")
    # A flipped bit anywhere fails the integrity digest, the key's check or a certificate.
    for at in range(8, len(jks), 11):
        flipped = bytearray(jks)
        flipped[at] ^= 0x01
        with pytest.raises(KeyStoreError):
            read_key_store(bytes(flipped), None, STORE_PW, KEY_PW, path="s")
    with pytest.raises(KeyStoreError) as no_pw:
        read_trust_store(stores.trust_p12.read_bytes(), None, None, path="t.p12")
    assert "set ssl.truststore.password" in str(no_pw.value)
    with pytest.raises(KeyStoreError) as wrong:
        read_trust_store(stores.trust_jks.read_bytes(), None, "nope", path="t.jks")
    assert "tampered with, or the password is wrong" in str(wrong.value)


@pytest.fixture(scope="module")
def broker(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("broker"))
    ssl_port, mtls_port = free_port(), free_port()
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},SSL://127.0.0.1:{ssl_port},"
        f"MTLS://127.0.0.1:{mtls_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
        # As a Kafka server.properties has it: no type, Kafka's default (JKS) applies.
        "ssl.keystore.location": str(stores.jks),
        "ssl.keystore.password": STORE_PW,
        "ssl.key.password": KEY_PW,
        "listener.name.mtls.ssl.keystore.location": str(stores.chain_p12),
        "listener.name.mtls.ssl.keystore.type": "PKCS12",
        "listener.name.mtls.ssl.keystore.password": P12_PW,
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.location": str(stores.trust_jks),
        "listener.name.mtls.ssl.truststore.type": "JKS",
    }
    proc.start()
    proc.ports = {"SSL": ssl_port, "MTLS": mtls_port}  # type: ignore[attr-defined]
    yield proc
    assert proc.stop() == 0, proc.log_tail()


def _round_trip(conf: dict[str, str], topic: str) -> list[tuple[int, bytes]]:
    producer = Producer({**conf, "acks": "all"})
    for i in range(3):
        producer.produce(topic, f"{topic}-{i}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[tuple[int, bytes]] = []
    try:
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got.append((msg.offset(), msg.value()))
            if len(got) == 3:
                break
    finally:
        consumer.close()
    return got


def test_a_broker_serves_tls_from_java_key_stores(stores: Stores, broker: BrokerProcess) -> None:
    ports = broker.ports  # type: ignore[attr-defined]
    over_jks = {
        "bootstrap.servers": f"127.0.0.1:{ports['SSL']}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(stores.jks_cert),  # trusts the keytool certificate alone
    }
    assert _round_trip(over_jks, "over-jks") == [(i, f"over-jks-{i}".encode()) for i in range(3)]
    # The client's certificate is checked against the JKS trust store's CA.
    mutual = {
        "bootstrap.servers": f"127.0.0.1:{ports['MTLS']}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(stores.certs.ca),
        "ssl.keystore.location": str(stores.client_p12),  # librdkafka reads PKCS12 itself
        "ssl.keystore.password": P12_PW,
    }
    assert _round_trip(mutual, "mutual") == [(i, f"mutual-{i}".encode()) for i in range(3)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artesian.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_logs_in_with_a_pkcs12_key_store(
    stores: Stores, broker: BrokerProcess, tmp_path: Path
) -> None:
    config = tmp_path / "client.properties"
    bootstrap = f"127.0.0.1:{broker.ports['MTLS']}"  # type: ignore[attr-defined]
    args = ["-b", bootstrap, "--command-config", str(config)]
    config.write_text(
        "security.protocol=SSL\n"
        f"ssl.ca.location={stores.certs.ca}\n"
        f"ssl.keystore.location={stores.client_p12}\nssl.keystore.password={P12_PW}\n"
    )
    listed = _cli("quotas", "list", "--json", *args)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    config.write_text(
        "security.protocol=SSL\n"
        f"ssl.ca.location={stores.certs.ca}\n"
        f"ssl.keystore.location={stores.client_p12}\nssl.keystore.password=wrong\n"
    )
    wrong = _cli("quotas", "list", *args)
    assert wrong.returncode == 1, wrong.stderr
    assert "wrong ssl.keystore.password" in wrong.stderr and "Traceback" not in wrong.stderr
    config.write_text(
        f"security.protocol=SSL\nssl.ca.location={stores.certs.ca}\n"
    )  # no certificate: the listener requires one
    refused = _cli("quotas", "list", *args)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr


def test_inline_pem_on_the_cli(stores: Stores) -> None:
    """librdkafka's ssl.ca.pem, ssl.certificate.pem and ssl.key.pem."""
    tls, _, _ = security_from(
        {
            "security.protocol": "SSL",
            "ssl.ca.pem": stores.certs.ca.read_text(),
            "ssl.certificate.pem": stores.certs.client_cert.read_text(),
            "ssl.key.pem": stores.certs.client_key.read_text(),
        }
    )
    assert tls is not None
    [ca] = tls.get_ca_certs()
    assert ("commonName", "Artesian test CA") in [a for rdn in ca["subject"] for a in rdn]
    with pytest.raises(CliError):
        security_from(
            {
                "security.protocol": "SSL",
                "ssl.certificate.pem": stores.certs.client_cert.read_text(),
                "ssl.key.pem": "not a key",
            }
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ssl.keystore.password": "wrong"}, "it was tampered with, or the password is wrong"),
        ({"ssl.keystore.password": STORE_PW}, "wrong ssl.key.password"),
        ({"ssl.keystore.type": "PKCS12", "ssl.keystore.password": STORE_PW}, "not a PKCS12 store"),
        (
            {"ssl.keystore.password": STORE_PW, "ssl.key.password": KEY_PW,
             "ssl.client.auth": "required", "ssl.truststore.location": "{trust_p12}"},
            "set ssl.truststore.password",
        ),
    ],
)  # fmt: skip
def test_key_stores_that_cannot_be_read_stop_the_start(
    stores: Stores, tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    proc = BrokerProcess(tmp_path / "broker")
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},SSL://127.0.0.1:{free_port()}",
        "ssl.keystore.location": str(stores.jks),
        **{k: v.format(trust_p12=stores.trust_p12) for k, v in settings.items()},
    }
    with pytest.raises(RuntimeError) as failure:
        proc.start(timeout=20)
    assert "cannot start the broker" in str(failure.value)
    assert message in str(failure.value)
