"""Key and trust stores in Java's formats (JKS, PKCS12), made by the JDK's keytool and by
openssl, read as Kafka's brokers read them: a broker serves TLS from them, asks client
certificates against them, and the CLI logs in with a PKCS12 key store as librdkafka does."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from artesian.cli.common import CliError
from artesian.cli.wire import security_from
from artesian.security.key_store import KeyStoreError, read_key_store, read_trust_store
from tests.broker_process import BrokerProcess, free_port
from tests.cli_run import artesian as _cli
from tests.clients.test_other_clients import require
from tests.tls_certs import Certificates, make_certificates


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout


@dataclass(frozen=True)
class Chain:
    """root -> int1 -> int2 -> leaves, made here (PEM files)."""

    root: Path
    intermediates: Path  # int2 then int1
    leaf: Path  # a server certificate for 127.0.0.1 (openssl's PKCS12 takes it)
    leaf_key: Path
    int2_key: ec.EllipticCurvePrivateKey
    int2: x509.Certificate


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: x509.Name,
    public: ec.EllipticCurvePublicKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _make_chain(d: Path) -> Chain:
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    root = _issue(_name("chain root"), keys[0].public_key(), None, keys[0], ca=True)
    int1 = _issue(_name("chain int1"), keys[1].public_key(), root, keys[0], ca=True)
    int2 = _issue(_name("chain int2"), keys[2].public_key(), int1, keys[1], ca=True)
    leaf = _issue(_name("localhost"), keys[3].public_key(), int2, keys[2], ca=False)
    chain = Chain(d / "root.pem", d / "intermediates.pem", d / "leaf.pem", d / "leaf.key",
                  keys[2], int2)  # fmt: skip
    d.mkdir(parents=True, exist_ok=True)
    chain.root.write_bytes(_pem(root))
    chain.intermediates.write_bytes(_pem(int2, int1))
    chain.leaf.write_bytes(_pem(leaf))
    chain.leaf_key.write_bytes(
        keys[3].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain


@dataclass(frozen=True)
class Stores:
    certs: Certificates  # the test CA, its server certificate and a client's
    chain: Chain
    jks: Path  # keytool: a self-signed EC key, store password != key password
    jks_cert: Path  # its certificate, exported by keytool (PEM)
    p12: Path  # keytool: a self-signed RSA key
    p12_cert: Path
    chain_jks: Path  # keytool: a key whose chain (leaf, int2, int1, root) came as a CA's reply
    chain_p12: Path  # openssl: the chain's leaf and key, its CAs given in no order
    client_p12: Path  # openssl: the test CA's client key
    trust_jks: Path  # keytool: the test CA as a trusted certificate
    trust_p12: Path
    jceks: Path
    two_keys: Path  # keytool: JKS with the private keys "first" and "second"
    unicode_jks: Path  # keytool: JKS whose store password is UNICODE_PW
    mixed_p12: Path  # keytool: PKCS12 with a key (self-signed) and the test CA as trusted


STORE_PW, KEY_PW, TRUST_PW, P12_PW = "store-secret", "key-secret", "trust-secret", "p12-secret"
UNICODE_PW = "pässwörd-ü-日本-😀"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    require(shutil.which("keytool") is not None, "keytool")
    require(shutil.which("openssl") is not None, "openssl")
    d = tmp_path_factory.mktemp("stores")
    certs = make_certificates(d / "certs")
    chain = _make_chain(d / "chain")
    san = ["-ext", "SAN=dns:localhost,ip:127.0.0.1", "-validity", "2"]
    s = Stores(
        certs,
        chain,
        *(d / n for n in ("broker.jks", "broker-jks.pem", "broker.p12", "broker-p12.pem")),
        *(d / n for n in ("chain.jks", "chain.p12", "client.p12", "trust.jks", "trust.p12")),
        *(d / n for n in ("broker.jceks", "two-keys.jks", "unicode.jks", "mixed.p12")),
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
    for alias in ("first", "second"):
        _run(*keytool, "-genkeypair", "-alias", alias, "-keyalg", "EC", "-dname", f"CN={alias}",
             "-keystore", str(s.two_keys), "-storetype", "JKS", "-storepass", STORE_PW)  # fmt: skip
    _run(*keytool, "-genkeypair", "-alias", "u", "-keyalg", "EC", "-dname", "CN=u",
         "-keystore", str(s.unicode_jks), "-storetype", "JKS", "-storepass", UNICODE_PW)  # fmt: skip
    _run(*keytool, "-genkeypair", "-alias", "own", "-keyalg", "EC", "-dname", "CN=own",
         "-keystore", str(s.mixed_p12), "-storetype", "PKCS12", "-storepass", P12_PW)  # fmt: skip
    _run(*keytool, "-importcert", "-alias", "test-ca", "-file", str(certs.ca),
         "-keystore", str(s.mixed_p12), "-storetype", "PKCS12", "-storepass", P12_PW)  # fmt: skip
    # A key signed by int2, its chain imported as a CA's reply: keytool orders it.
    _run(*keytool, "-genkeypair", "-alias", "broker", "-keyalg", "EC", "-dname", "CN=localhost",
         "-keystore", str(s.chain_jks), "-storetype", "JKS", "-storepass", STORE_PW)  # fmt: skip
    csr_path = d / "broker.csr"
    _run(*keytool, "-certreq", "-alias", "broker", "-keystore", str(s.chain_jks),
         "-storepass", STORE_PW, "-file", str(csr_path))  # fmt: skip
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    signed = _issue(csr.subject, csr.public_key(), chain.int2, chain.int2_key, ca=False)  # type: ignore[arg-type]
    reply = d / "reply.pem"
    reply.write_bytes(_pem(signed) + chain.intermediates.read_bytes())
    _run(*keytool, "-importcert", "-alias", "root", "-file", str(chain.root),
         "-keystore", str(s.chain_jks), "-storepass", STORE_PW)  # fmt: skip
    _run(*keytool, "-importcert", "-alias", "broker", "-file", str(reply),
         "-keystore", str(s.chain_jks), "-storepass", STORE_PW)  # fmt: skip
    # openssl with the CAs in no particular order: root, int1, int2.
    shuffled = d / "shuffled.pem"
    ints = x509.load_pem_x509_certificates(chain.intermediates.read_bytes())
    shuffled.write_bytes(chain.root.read_bytes() + _pem(ints[1], ints[0]))
    _run("openssl", "pkcs12", "-export", "-in", str(chain.leaf), "-inkey", str(chain.leaf_key),
         "-certfile", str(shuffled), "-out", str(s.chain_p12), "-passout", f"pass:{P12_PW}")  # fmt: skip
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
    assert material is not None and material.others == ()
    [cert] = _certs(material.chain_pem)
    assert cert == x509.load_pem_x509_certificate(stores.jks_cert.read_bytes())
    assert _public(material.key_pem) == _public_of(cert)  # the key recovered is the cert's
    # JKS and PKCS12 read each other's files under either declared type, in any case.
    for declared in ("PKCS12", "pkcs12", "jks"):
        again = read_key_store(jks, declared, STORE_PW, KEY_PW, path="b.jks")
        assert again is not None and again.chain_pem == material.chain_pem
    p12 = read_key_store(stores.p12.read_bytes(), "JKS", P12_PW, None, path="b.p12")
    assert p12 is not None
    [p12_cert] = _certs(p12.chain_pem)
    assert p12_cert == x509.load_pem_x509_certificate(stores.p12_cert.read_bytes())
    assert _public(p12.key_pem) == _public_of(p12_cert)

    # Chains come back leaf first: keytool's, and openssl's whose CAs were given unordered.
    root = x509.load_pem_x509_certificate(stores.chain.root.read_bytes())
    int2, int1 = _certs(stores.chain.intermediates.read_bytes())
    leaf = x509.load_pem_x509_certificate(stores.chain.leaf.read_bytes())
    from_p12 = read_key_store(stores.chain_p12.read_bytes(), "PKCS12", P12_PW, None, path="c")
    assert from_p12 is not None and _certs(from_p12.chain_pem) == [leaf, int2, int1, root]
    from_jks = read_key_store(stores.chain_jks.read_bytes(), None, STORE_PW, None, path="c")
    assert from_jks is not None
    jks_leaf, *cas = _certs(from_jks.chain_pem)
    assert cas == [int2, int1] and jks_leaf.issuer == int2.subject  # as keytool -list shows
    assert _public(from_jks.key_pem) == _public_of(jks_leaf)

    # Passwords are Java's chars: non-ASCII, astral, and a properties file's \u escapes
    # of an astral character (two lone surrogates) all open the store keytool made.
    code_units = struct.unpack(f">{len(UNICODE_PW.encode('utf-16-be')) // 2}H",
                               UNICODE_PW.encode("utf-16-be"))  # fmt: skip
    for password in (UNICODE_PW, "".join(map(chr, code_units))):
        assert read_key_store(stores.unicode_jks.read_bytes(), None, password, None, path="u")

    # A store with two keys serves one and names the other.
    two = read_key_store(stores.two_keys.read_bytes(), None, STORE_PW, None, path="two")
    assert two is not None and len(two.others) == 1
    [served] = _certs(two.chain_pem)
    served_cn = served.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert {served_cn, *two.others} == {"first", "second"}

    # A PEM key store is left to ssl, which reads the file itself.
    assert read_key_store(stores.certs.server.read_bytes(), None, None, None, path="s") is None

    # Trust stores: the CA, with or without the password for JKS (no integrity check then).
    ca = x509.load_pem_x509_certificate(stores.certs.ca.read_bytes())
    for data, pw in (
        (stores.trust_jks.read_bytes(), TRUST_PW),
        (stores.trust_jks.read_bytes(), None),
        (stores.trust_p12.read_bytes(), TRUST_PW),
    ):
        trusted = read_trust_store(data, None, pw, path="t")
        assert trusted is not None and _certs(trusted) == [ca]
    # A key entry lends its own certificate only, as Java's trust managers take it: not
    # the CAs of its chain, in JKS and PKCS12 alike.
    trusted = read_trust_store(jks, "JKS", STORE_PW, path="b.jks")
    assert trusted is not None and _certs(trusted) == [cert]
    trusted = read_trust_store(stores.chain_p12.read_bytes(), None, P12_PW, path="c.p12")
    assert trusted is not None and _certs(trusted) == [leaf]
    # Beside a key, a PKCS12 store's trusted entries count (a key store used as the trust
    # store too): keytool's, named by their alias.
    trusted = read_trust_store(stores.mixed_p12.read_bytes(), None, P12_PW, path="m.p12")
    assert trusted is not None
    assert sorted(c.subject.rfc4514_string() for c in _certs(trusted)) == [
        "CN=Artesian test CA,O=Artesian tests,C=NZ",
        "CN=own",
    ]
    trusted = read_trust_store(stores.chain_jks.read_bytes(), None, STORE_PW, path="c.jks")
    assert trusted is not None and set(_certs(trusted)) == {jks_leaf, root}  # root: its entry


@pytest.mark.parametrize(
    ("name", "declared", "store_pw", "key_pw", "message"),
    [
        ("jks", None, STORE_PW, None, "cannot recover the key 'broker' in s: wrong ssl.key.password"),
        ("jks", None, STORE_PW, "nope", "wrong ssl.key.password"),
        ("jks", None, "nope", KEY_PW, "cannot read the JKS store s: it was tampered with, or the"),
        ("jks", None, None, KEY_PW, "s is a JKS key store but ssl.keystore.password is not set"),
        ("jks", "PEM", STORE_PW, KEY_PW, "s is not a PEM store (it reads as JKS)"),
        ("p12", "PEM", P12_PW, None, "s is not a PEM store (it reads as PKCS12)"),
        ("p12", "PKCS12", "nope", None, "cannot read the PKCS12 key store s: wrong ssl.keystore"),
        ("jceks", None, STORE_PW, None, "keytool -importkeystore -srckeystore s -destkeystore"),
        ("trust_jks", None, TRUST_PW, None, "s holds no private key entry"),
        ("unicode_jks", None, "pässwörd", None, "it was tampered with, or the password is wrong"),
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


def _with_digest(body: bytes, password: str) -> bytes:
    """A JKS body sealed with a valid integrity digest, as keytool seals one."""
    return body + hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + body).digest()


def test_damaged_stores_are_refused_not_crashed_on(stores: Stores) -> None:
    jks = stores.jks.read_bytes()
    for cut in range(0, len(jks), 5):
        with pytest.raises(KeyStoreError):
            read_key_store(jks[:cut] or b"\xfe\xed\xfe\xed", None, STORE_PW, KEY_PW, path="s")
    # With the password, a flipped bit anywhere fails the integrity digest.
    for at in range(8, len(jks), 11):
        flipped = bytearray(jks)
        flipped[at] ^= 0x01
        with pytest.raises(KeyStoreError):
            read_key_store(bytes(flipped), None, STORE_PW, KEY_PW, path="s")
    # Without one nothing checks the whole: each field is parsed, and a damaged one is a
    # KeyStoreError (or, in a date or a certificate's signature, goes unnoticed), never
    # another exception.
    for at in range(8, len(jks), 3):
        flipped = bytearray(jks)
        flipped[at] ^= 0x80
        try:
            read_trust_store(bytes(flipped), None, None, path="s")
        except KeyStoreError:
            pass
    # A damaged key under a valid digest (the store's password kept, the key's not) fails
    # the key's own check. The key's DER starts after magic, version, count, tag, alias
    # ("broker"), date and its length: 12 + 4 + 8 + 8 + 4 bytes.
    body = bytearray(jks[:-20])
    body[36 + 40] ^= 0x01
    with pytest.raises(KeyStoreError) as damaged:
        read_key_store(_with_digest(bytes(body), STORE_PW), None, STORE_PW, KEY_PW, path="s")
    assert "cannot recover the key 'broker'" in str(damaged.value)
    body = bytearray(jks[:-20])
    body[36] = 0x31  # not the SEQUENCE an EncryptedPrivateKeyInfo is
    with pytest.raises(KeyStoreError) as malformed:
        read_key_store(_with_digest(bytes(body), STORE_PW), None, STORE_PW, KEY_PW, path="s")
    assert "the key 'broker' in s is damaged" in str(malformed.value)

    with pytest.raises(KeyStoreError) as no_pw:
        read_trust_store(stores.trust_p12.read_bytes(), None, None, path="t.p12")
    assert "set ssl.truststore.password" in str(no_pw.value)
    with pytest.raises(KeyStoreError) as wrong:
        read_trust_store(stores.trust_jks.read_bytes(), None, "nope", path="t.jks")
    assert "tampered with, or the password is wrong" in str(wrong.value)
    der = x509.load_pem_x509_certificate(stores.certs.ca.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    with pytest.raises(KeyStoreError) as not_a_store:
        read_trust_store(der, None, None, path="ca.der")
    assert "is a certificate in DER, not a store" in str(not_a_store.value)


@pytest.fixture(scope="module")
def broker(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("broker"))
    ports = {"SSL": free_port(), "MTLS": free_port(), "P12": free_port()}
    proc.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{proc.port},"
        + ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,P12:SSL",
        # As a Kafka server.properties has it: no type, Kafka's default (JKS) applies.
        "ssl.keystore.location": str(stores.jks),
        "ssl.keystore.password": STORE_PW,
        "ssl.key.password": KEY_PW,
        # keytool's chain: clients trusting only its root need the intermediates sent.
        "listener.name.mtls.ssl.keystore.location": str(stores.chain_jks),
        "listener.name.mtls.ssl.keystore.type": "jks",
        "listener.name.mtls.ssl.key.password": STORE_PW,
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.location": str(stores.trust_jks),
        "listener.name.mtls.ssl.truststore.type": "JKS",
        "listener.name.p12.ssl.keystore.location": str(stores.chain_p12),
        "listener.name.p12.ssl.keystore.type": "PKCS12",
        "listener.name.p12.ssl.keystore.password": P12_PW,
        "listener.name.p12.ssl.key.password": P12_PW,
    }
    proc.start()
    proc.ports = ports  # type: ignore[attr-defined]
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
    over_p12 = {
        "bootstrap.servers": f"127.0.0.1:{ports['P12']}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(stores.chain.root),
    }
    assert _round_trip(over_p12, "over-p12") == [(i, f"over-p12-{i}".encode()) for i in range(3)]
    # The client's certificate is checked against the JKS trust store's CA.
    mutual = {
        "bootstrap.servers": f"127.0.0.1:{ports['MTLS']}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(stores.chain.root),
        "ssl.keystore.location": str(stores.client_p12),  # librdkafka reads PKCS12 itself
        "ssl.keystore.password": P12_PW,
    }
    assert _round_trip(mutual, "mutual") == [(i, f"mutual-{i}".encode()) for i in range(3)]


def _answers(port: int, certificate: Certificates, ca: Path) -> bool:
    """Whether the broker answers an ApiVersions v0 sent with this client certificate."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(certificate.client_cert), str(certificate.client_key))
    request = struct.pack(">hhih", 18, 0, 1, -1)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(struct.pack(">i", len(request)) + request)
            return len(tls.recv(4)) == 4
    except (ssl.SSLError, ConnectionError):
        return False


def test_a_client_certificate_from_another_ca_is_refused(
    stores: Stores, broker: BrokerProcess, tmp_path: Path
) -> None:
    port = broker.ports["MTLS"]  # type: ignore[attr-defined]
    assert _answers(port, stores.certs, stores.chain.root)
    # Signed by a CA the JKS trust store does not hold: and the chain's own CAs, which
    # the listener's key store carries, are not trusted either.
    stranger = make_certificates(tmp_path / "stranger")
    assert not _answers(port, stranger, stores.chain.root)
    assert broker.alive()


def test_the_cli_logs_in_with_a_pkcs12_key_store(
    stores: Stores, broker: BrokerProcess, tmp_path: Path
) -> None:
    config = tmp_path / "client.properties"
    bootstrap = f"127.0.0.1:{broker.ports['MTLS']}"  # type: ignore[attr-defined]
    args = ["-b", bootstrap, "--command-config", str(config)]
    config.write_text(
        "security.protocol=SSL\n"
        f"ssl.ca.location={stores.chain.root}\n"
        f"ssl.keystore.location={stores.client_p12}\nssl.keystore.password={P12_PW}\n"
    )
    listed = _cli("quotas", "list", "--json", *args)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    config.write_text(
        "security.protocol=SSL\n"
        f"ssl.ca.location={stores.chain.root}\n"
        f"ssl.keystore.location={stores.client_p12}\nssl.keystore.password=wrong\n"
    )
    wrong = _cli("quotas", "list", *args)
    assert wrong.returncode == 1, wrong.stderr
    assert "wrong ssl.keystore.password" in wrong.stderr and "Traceback" not in wrong.stderr
    config.write_text(
        f"security.protocol=SSL\nssl.ca.location={stores.chain.root}\n"
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
        ({"ssl.keystore.type": "pem", "ssl.keystore.password": STORE_PW}, "not a PEM store"),
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
