"""Key and trust stores as Kafka reads them (``ssl.keystore.*``, ``ssl.truststore.*``):
PEM, PKCS12 and Java's JKS, turned into the PEM that Python's ssl module loads.

Every reader takes the store's bytes; ``load_cert_chain`` hands the PEM to an SSLContext.
PKCS12 is cryptography's; JKS has no
well-kept Python reader, so its format (a stable, documented Sun format: big-endian
entries, a SHA-1 integrity digest and the "KeyProtector" XOR cipher for private keys) is
read here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import ssl
import struct
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

PEM = "PEM"
PKCS12 = "PKCS12"
JKS = "JKS"
STORE_TYPES = (JKS, PKCS12, PEM)

_JKS_MAGIC = 0xFEEDFEED
_JCEKS_MAGIC = 0xCECECECE
_JKS_PRIVATE_KEY, _JKS_TRUSTED_CERT = 1, 2
# Sun's KeyProtector algorithm (the OID JKS stores with each private key).
_SUN_KEY_PROTECTOR = bytes.fromhex("2b060104012a02110101")  # 1.3.6.1.4.1.42.2.17.1.1
_CONVERT = (
    "convert it with keytool -importkeystore -srckeystore {path} -destkeystore "
    "store.p12 -deststoretype PKCS12"
)


class KeyStoreError(ValueError):
    """A store that cannot be read: its message says why and what to do."""


@dataclass(frozen=True)
class KeyMaterial:
    """A certificate chain (leaf first) and its unencrypted private key, in PEM; ``others``
    names the private key entries a JKS store holds besides the one taken."""

    chain_pem: bytes
    key_pem: bytes
    others: tuple[str, ...] = ()


def load_cert_chain(
    context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes, password: str | None = None
) -> None:
    """Load a chain and key given in memory. ssl reads them from a file only, so they go
    through one that only its owner may read (mkstemp's) and that lives for the load alone,
    with the key encrypted under a one-time passphrase: a crash in between leaves nothing
    usable on disk."""
    try:
        key = serialization.load_pem_private_key(key_pem, _utf8(password) if password else None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyStoreError(f"cannot read the private key: {e}") from e
    once = secrets.token_hex(32)
    sealed = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(once.encode()),
    )
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(chain_pem.rstrip(b"\n") + b"\n" + sealed)
        context.load_cert_chain(path, password=once)
    finally:
        os.unlink(path)


def load_key_store_file(
    context: ssl.SSLContext,
    location: str,
    declared: str | None,
    store_password: str | None,
    key_password: str | None,
) -> tuple[str, ...]:
    """Load the chain and key of the key store at ``location`` (JKS, PKCS12 or PEM, see
    read_key_store) into ``context``; returns the private keys it holds besides that one."""
    with open(location, "rb") as f:
        material = read_key_store(f.read(), declared, store_password, key_password, path=location)
    if material is None:  # PEM: ssl reads the file itself
        password = key_password or store_password
        context.load_cert_chain(location, password=normal_password(password) if password else None)
        return ()
    load_cert_chain(context, material.chain_pem, material.key_pem)
    return material.others


def store_format(data: bytes) -> str:
    """The format a store's bytes are in, by their first bytes."""
    if data[:4] == struct.pack(">I", _JKS_MAGIC):
        return JKS
    if data[:4] == struct.pack(">I", _JCEKS_MAGIC):
        return "JCEKS"
    if data[:1] == b"\x30":  # a DER SEQUENCE: PKCS12's PFX
        return PKCS12
    return PEM


def read_key_store(
    data: bytes,
    declared: str | None,
    store_password: str | None,
    key_password: str | None,
    *,
    path: str,
) -> KeyMaterial | None:
    """The chain and key of a JKS or PKCS12 key store, or None for a PEM one (which ssl
    reads as it is). ``declared`` is ``ssl.keystore.type`` when set: JKS and PKCS12 read
    each other's files, as Java's keystore.type.compat has it; None reads whatever the file
    is. A PKCS12 store has one password, as keytool makes them: ``key_password`` is for JKS
    entries."""
    found = _checked_format(data, declared, path)
    if found == PEM:
        return None
    if store_password is None:
        raise KeyStoreError(
            f"{path} is a {found} key store but ssl.keystore.password is not set: give the "
            "store's password"
        )
    # As Java's key managers do, a key without a password of its own has the store's.
    key_pw = store_password if key_password is None else key_password
    if found == PKCS12:
        return _pkcs12_key(data, store_password, path)
    keys = [e for e in _read_jks(data, store_password, path) if e.protected_key is not None]
    if not keys:
        raise KeyStoreError(f"{path} holds no private key entry (only trusted certificates)")
    entry = keys[0]
    assert entry.protected_key is not None
    key = _jks_recover_key(entry.protected_key, key_pw, entry.alias, path)
    return KeyMaterial(
        b"".join(_cert_pem(c) for c in entry.chain),
        _pkcs8_pem(key, entry.alias, path),
        tuple(e.alias for e in keys[1:]),
    )


def read_trust_store(
    data: bytes, declared: str | None, password: str | None, *, path: str
) -> bytes | None:
    """The certificates of a JKS or PKCS12 trust store as PEM, or None for a PEM one. As in
    Java, a trust store without a password is read without checking its integrity."""
    found = _checked_format(data, declared, path)
    if found == PEM:
        return None
    if found == PKCS12:
        try:
            store = pkcs12.load_pkcs12(data, _utf8(password) if password is not None else None)
        except (ValueError, UnsupportedAlgorithm) as e:
            if _is_der_certificate(data):
                raise KeyStoreError(
                    f"{path} is a certificate in DER, not a store: convert it to PEM with "
                    f"openssl x509 -inform DER -in {path} -out ca.pem"
                ) from e
            hint = "set ssl.truststore.password" if password is None else "check it"
            raise KeyStoreError(
                f"cannot read the PKCS12 trust store {path}: wrong password or damaged ({hint})"
            ) from e
        certs = [
            c.certificate
            for c in store.additional_certs
            # Beside a key, trusted entries are the named ones (keytool's aliases): the
            # unnamed rest is the key's chain, whose CAs Java does not trust.
            if store.cert is None or c.friendly_name is not None
        ]
        if store.cert is not None:
            # A key entry lends its own certificate only, as Java's trust managers take it.
            certs.insert(0, store.cert.certificate)
    else:
        entries = _read_jks(data, password, path)
        certs = [c for e in entries for c in (e.chain if e.protected_key is None else e.chain[:1])]
    if not certs:
        raise KeyStoreError(f"{path} holds no certificate to trust")
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _checked_format(data: bytes, declared: str | None, path: str) -> str:
    found = store_format(data)
    if found == "JCEKS":
        raise KeyStoreError(f"{path} is a JCEKS store, which is not read: {_convert(path)}")
    declared = declared.upper() if declared is not None else None
    if declared is None or declared == found or {declared, found} == {JKS, PKCS12}:
        return found
    raise KeyStoreError(f"{path} is not a {declared} store (it reads as {found}): set its type")


def _convert(path: str) -> str:
    return _CONVERT.format(path=path)


def normal_password(password: str) -> str:
    """A password with a properties file's escaped surrogate pairs joined into characters."""
    return _utf8(password).decode()


def _utf8(password: str) -> bytes:
    """A password as PKCS12 takes it; a surrogate pair from a properties file's ``\\u``
    escapes becomes its character."""
    try:
        return password.encode("utf-16", "surrogatepass").decode("utf-16").encode()
    except UnicodeError as e:
        raise KeyStoreError(f"the password is not valid text: {e}") from e


def _is_der_certificate(data: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return False
    return True


def _pkcs12_key(data: bytes, password: str, path: str) -> KeyMaterial:
    try:
        store = pkcs12.load_pkcs12(data, _utf8(password))
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyStoreError(
            f"cannot read the PKCS12 key store {path}: wrong ssl.keystore.password, or the file "
            "is damaged"
        ) from e
    if store.key is None or store.cert is None:
        raise KeyStoreError(f"{path} holds no private key with its certificate")
    chain = _ordered_chain(store.cert.certificate, [c.certificate for c in store.additional_certs])
    key = store.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return KeyMaterial(b"".join(_cert_pem(c) for c in chain), key)


def _ordered_chain(
    leaf: x509.Certificate, others: list[x509.Certificate]
) -> list[x509.Certificate]:
    """Leaf first, then each issuer found among the others (PKCS12 keeps no order)."""
    chain, pool = [leaf], list(others)
    while pool:
        issuer = next((c for c in pool if c.subject == chain[-1].issuer), None)
        if issuer is None or issuer.subject == chain[-1].subject:
            break
        chain.append(issuer)
        pool.remove(issuer)
    return chain


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pkcs8_pem(der: bytes, alias: str, path: str) -> bytes:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyStoreError(f"the key {alias!r} in {path} cannot be read: {e}") from e
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# --- JKS ---


@dataclass(frozen=True)
class _JksEntry:
    alias: str
    protected_key: bytes | None  # EncryptedPrivateKeyInfo DER; None for a trusted certificate
    chain: list[x509.Certificate]


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise KeyStoreError(f"{self.path} is not a valid JKS store: it ends too early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def utf(self) -> str:
        (length,) = struct.unpack(">H", self.take(2))
        # Java's modified UTF-8 differs from UTF-8 only for NUL and astral characters.
        return self.take(length).decode("utf-8", "replace")

    def cert(self, version: int) -> x509.Certificate:
        kind = self.utf() if version == 2 else "X.509"
        der = self.take(self.u32())
        if kind != "X.509":
            raise KeyStoreError(f"{self.path} holds a {kind} certificate, not X.509")
        try:
            return x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise KeyStoreError(f"{self.path} holds a certificate that cannot be read") from e


def _jks_password(password: str) -> bytes:
    # Java hashes a password's chars as two big-endian bytes each (lone surrogates too).
    return password.encode("utf-16-be", "surrogatepass")


def _read_jks(data: bytes, password: str | None, path: str) -> list[_JksEntry]:
    r = _Reader(data, path)
    r.u32()  # magic, checked by store_format
    version = r.u32()
    if version not in (1, 2):
        raise KeyStoreError(f"{path} is JKS version {version}, which is not read")
    entries = []
    for _ in range(r.u32()):
        tag, alias = r.u32(), r.utf()
        r.take(8)  # creation date
        if tag == _JKS_PRIVATE_KEY:
            protected = r.take(r.u32())
            chain = [r.cert(version) for _ in range(r.u32())]
            entries.append(_JksEntry(alias, protected, chain))
        elif tag == _JKS_TRUSTED_CERT:
            entries.append(_JksEntry(alias, None, [r.cert(version)]))
        else:
            raise KeyStoreError(f"{path} has an entry of unknown kind {tag} ({alias!r})")
    if password is not None:  # as Java: without one, the digest is not even read
        body, digest = data[: r.pos], r.take(20)
        expected = hashlib.sha1(_jks_password(password) + b"Mighty Aphrodite" + body).digest()
        if not hmac.compare_digest(expected, digest):
            raise KeyStoreError(
                f"cannot read the JKS store {path}: it was tampered with, or the password is wrong"
            )
    return entries


def _jks_recover_key(protected: bytes, password: str, alias: str, path: str) -> bytes:
    """The PKCS8 key Sun's KeyProtector hid: salt, XOR-ed key, SHA-1 check."""
    algorithm, encrypted = _encrypted_private_key_info(protected, alias, path)
    if algorithm != _SUN_KEY_PROTECTOR:
        raise KeyStoreError(f"the key {alias!r} in {path} is protected in a way not read here")
    if len(encrypted) < 41:
        raise KeyStoreError(f"the key {alias!r} in {path} is damaged")
    salt, hidden, check = encrypted[:20], encrypted[20:-20], encrypted[-20:]
    pw = _jks_password(password)
    stream, block = bytearray(), salt
    while len(stream) < len(hidden):
        block = hashlib.sha1(pw + block).digest()
        stream += block
    plain = bytes(a ^ b for a, b in zip(hidden, stream, strict=False))
    if not hmac.compare_digest(hashlib.sha1(pw + plain).digest(), check):
        raise KeyStoreError(
            f"cannot recover the key {alias!r} in {path}: wrong ssl.key.password (or, when it "
            "is not set, ssl.keystore.password)"
        )
    return plain


def _encrypted_private_key_info(der: bytes, alias: str, path: str) -> tuple[bytes, bytes]:
    """(algorithm OID's content, encrypted bytes) of an EncryptedPrivateKeyInfo."""
    try:
        outer, _ = _der(der, 0, 0x30)
        algorithm_id, rest = _der(outer, 0, 0x30)
        oid, _ = _der(algorithm_id, 0, 0x06)
        data, _ = _der(outer, rest, 0x04)
    except (IndexError, ValueError) as e:
        raise KeyStoreError(f"the key {alias!r} in {path} is damaged") from e
    return oid, data


def _der(buf: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    """The content of the DER element of ``tag`` at ``pos``, and the position after it."""
    if buf[pos] != tag:
        raise ValueError(f"expected DER tag {tag:#x}")
    length, pos = buf[pos + 1], pos + 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4:
            raise ValueError("bad DER length")
        length, pos = int.from_bytes(buf[pos : pos + n], "big"), pos + n
    if pos + length > len(buf):
        raise ValueError("DER element runs past its end")
    return buf[pos : pos + length], pos + length
