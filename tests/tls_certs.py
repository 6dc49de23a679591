"""A throwaway certificate authority for TLS tests: a CA, a server certificate for
127.0.0.1/localhost, a client certificate, and one whose subject is empty (its holder named
in a URI SAN, as a SPIFFE X.509-SVID), as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate
    server: Path  # server certificate chain and key, in one PEM file
    client_cert: Path
    client_key: Path
    nameless_cert: Path  # empty subject, a spiffe:// URI SAN
    nameless_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NZ"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Artesian tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certificates(directory: Path) -> Certificates:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Artesian test CA"))
        .issuer_name(_name("Artesian test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(cn: str, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn) if cn else x509.Name([]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        elif not cn:  # RFC 5280: with an empty subject the SAN is critical
            uri = x509.UniformResourceIdentifier("spiffe://artesian.test/reporting")
            builder = builder.add_extension(x509.SubjectAlternativeName([uri]), critical=True)
        return builder.sign(ca_key, hashes.SHA256()), key

    directory.mkdir(parents=True, exist_ok=True)
    server_cert, server_key = issue("localhost", server=True)
    client_cert, client_key = issue("alice", server=False)
    nameless_cert, nameless_key = issue("", server=False)
    pem = serialization.Encoding.PEM
    paths = Certificates(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "client.pem",
        directory / "client.key",
        directory / "nameless.pem",
        directory / "nameless.key",
    )
    paths.ca.write_bytes(ca.public_bytes(pem))
    paths.server.write_bytes(server_cert.public_bytes(pem) + _key_pem(server_key))
    paths.client_cert.write_bytes(client_cert.public_bytes(pem))
    paths.client_key.write_bytes(_key_pem(client_key))
    paths.nameless_cert.write_bytes(nameless_cert.public_bytes(pem))
    paths.nameless_key.write_bytes(_key_pem(nameless_key))
    return paths
