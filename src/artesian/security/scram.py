"""SASL/SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them.

Kafka-specific points:
- No channel binding: the GS2 flag must be ``n`` or ``y``; ``p=`` is refused.
- No SASLprep: names and passwords are used as their UTF-8 bytes, as Kafka does.
- Client-first may carry Kafka's extensions after the nonce; ``tokenauth=true`` logs in
  with a delegation token (security/delegation_token.py): the user name is the token id,
  the session ends when the token expires, and the principal is the token's owner.
- An unknown user fails on the first message (Kafka does the same), with the message a bad
  proof gets, so the client is told nothing more.
- Credentials are stored as Kafka stores them (salt, StoredKey, ServerKey, iterations);
  limiting iterations to [MIN_ITERATIONS, MAX_ITERATIONS] is for whoever creates them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, auto
from types import MappingProxyType
from typing import TYPE_CHECKING

from artesian.security.sasl import AuthenticationFailed, InvalidCredentials

if TYPE_CHECKING:
    from artesian.security.delegation_token import TokenLogin

__all__ = [
    "MAX_ITERATIONS",
    "MECHANISMS",
    "MIN_ITERATIONS",
    "SCRAM_SHA_256",
    "SCRAM_SHA_512",
    "InvalidCredentials",
    "ScramClient",
    "ScramCredential",
    "ScramMechanism",
    "ScramServer",
    "credential_from_salted_password",
    "mechanism_by_type",
    "new_credential",
    "salted_password",
]


@dataclass(slots=True, frozen=True)
class ScramMechanism:
    """A SCRAM variant: its SASL name, Kafka's wire id for it, and its hashlib name."""

    name: str
    type_id: int
    hash_name: str


# Kafka's ScramMechanism ids (DescribeUserScramCredentials / AlterUserScramCredentials).
SCRAM_SHA_256 = ScramMechanism("SCRAM-SHA-256", 1, "sha256")
SCRAM_SHA_512 = ScramMechanism("SCRAM-SHA-512", 2, "sha512")

MECHANISMS: Mapping[str, ScramMechanism] = MappingProxyType(
    {m.name: m for m in (SCRAM_SHA_256, SCRAM_SHA_512)}
)
_BY_TYPE: Mapping[int, ScramMechanism] = MappingProxyType(
    {m.type_id: m for m in MECHANISMS.values()}
)

# Kafka's bounds for a credential's iteration count (both mechanisms).
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384

_SALT_BYTES = 32


def mechanism_by_type(type_id: int) -> ScramMechanism | None:
    """The mechanism with Kafka's wire id ``type_id``, or None for an unknown id."""
    return _BY_TYPE.get(type_id)


@dataclass(slots=True, frozen=True)
class ScramCredential:
    """What the server keeps for a user: enough to verify a proof, not to recover a password."""

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


def _hmac(mechanism: ScramMechanism, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, mechanism.hash_name).digest()


def _hash(mechanism: ScramMechanism, data: bytes) -> bytes:
    return hashlib.new(mechanism.hash_name, data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def salted_password(
    mechanism: ScramMechanism, password: str, salt: bytes, iterations: int
) -> bytes:
    """RFC 5802's Hi(password, salt, i): PBKDF2-HMAC with one hash-sized block."""
    return hashlib.pbkdf2_hmac(mechanism.hash_name, password.encode("utf-8"), salt, iterations)


def credential_from_salted_password(
    mechanism: ScramMechanism, salt: bytes, salted: bytes, iterations: int
) -> ScramCredential:
    """The stored credential for an already salted password (AlterUserScramCredentials sends one)."""
    client_key = _hmac(mechanism, salted, b"Client Key")
    return ScramCredential(
        salt=salt,
        stored_key=_hash(mechanism, client_key),
        server_key=_hmac(mechanism, salted, b"Server Key"),
        iterations=iterations,
    )


def new_credential(
    mechanism: ScramMechanism,
    password: str,
    iterations: int = MIN_ITERATIONS,
    salt: bytes | None = None,
) -> ScramCredential:
    """A stored credential for ``password``; a fresh random 32-byte salt unless one is given."""
    if salt is None:
        salt = secrets.token_bytes(_SALT_BYTES)
    salted = salted_password(mechanism, password, salt, iterations)
    return credential_from_salted_password(mechanism, salt, salted, iterations)


# --- message syntax (RFC 5802 section 7) -----------------------------------------------------


def _decode(token: bytes, what: str) -> str:
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationFailed(f"Invalid SCRAM {what}: not valid UTF-8") from None


def _attribute(part: str, name: str, what: str) -> str:
    """The value of ``name=value``; fails when the attribute is missing or out of order."""
    if not part.startswith(name + "="):
        raise AuthenticationFailed(f"Invalid SCRAM {what}: expected attribute '{name}='")
    return part[len(name) + 1 :]


def _unescape_saslname(value: str, what: str) -> str:
    """saslname -> name: ``=2C`` is ',' and ``=3D`` is '='; any other '=' is malformed."""
    if not value:
        raise AuthenticationFailed(f"Invalid SCRAM {what}: empty user name")
    if "\0" in value:
        raise AuthenticationFailed(f"Invalid SCRAM {what}: NUL in user name")
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "=":
            escape = value[i + 1 : i + 3]
            if escape == "2C":
                out.append(",")
            elif escape == "3D":
                out.append("=")
            else:
                raise AuthenticationFailed(f"Invalid SCRAM {what}: bad '=' escape in user name")
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _escape_saslname(name: str) -> str:
    # '=' first, so the '=' of a '=2C' just written is not escaped again.
    return name.replace("=", "=3D").replace(",", "=2C")


def _valid_nonce(nonce: str) -> bool:
    # printable = %x21-2B / %x2D-7E: visible ASCII except ','.
    return bool(nonce) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)


def _b64decode(value: str, field: str, what: str) -> bytes:
    invalid = AuthenticationFailed(f"Invalid SCRAM {what}: '{field}' is not valid base64")
    try:
        encoded = value.encode("ascii")
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise invalid from None
    # Only the canonical form: the decoder alone lets excess padding and stray bits through.
    if base64.b64encode(decoded) != encoded:
        raise invalid
    return decoded


def _extensions(parts: list[str], what: str) -> dict[str, str]:
    """Trailing ``key=value`` attributes (Kafka names them with several letters)."""
    found: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.isascii() or not key.isalpha():
            raise AuthenticationFailed(f"Invalid SCRAM {what}: malformed extension")
        if key in found:
            raise AuthenticationFailed(f"Invalid SCRAM {what}: repeated extension '{key}'")
        found[key] = value
    return found


# --- server ------------------------------------------------------------------------------------


class _State(Enum):
    FIRST = auto()
    FINAL = auto()
    COMPLETE = auto()
    FAILED = auto()


class ScramServer:
    """Server side of one SCRAM exchange: client-first -> server-first, client-final -> server-final."""

    __slots__ = (
        "_auth_prefix",
        "_credential",
        "_gs2_header",
        "_lookup",
        "_nonce",
        "_scram",
        "_server_nonce",
        "_state",
        "_token",
        "_token_lookup",
        "_username",
        "mechanism",
    )

    def __init__(
        self,
        mechanism: ScramMechanism,
        lookup: Callable[[str], ScramCredential | None],
        nonce: str | None = None,
        token_lookup: Callable[[str], TokenLogin | None] | None = None,
    ) -> None:
        """``lookup`` finds a user's credential; ``token_lookup`` a delegation token's by
        its id (None: tokens are refused)."""
        if nonce is None:
            nonce = secrets.token_urlsafe(24)
        elif not _valid_nonce(nonce):
            raise ValueError("a SCRAM nonce must be non-empty visible ASCII without ','")
        self.mechanism: str = mechanism.name
        self._scram = mechanism
        self._lookup = lookup
        self._token_lookup = token_lookup
        self._token: TokenLogin | None = None
        self._server_nonce = nonce
        self._state = _State.FIRST
        self._username: str | None = None
        self._credential: ScramCredential | None = None
        self._gs2_header = ""
        self._nonce = ""  # client nonce + server nonce
        self._auth_prefix = ""  # client-first-bare "," server-first

    @property
    def complete(self) -> bool:
        return self._state is _State.COMPLETE

    @property
    def credential_expiry_ms(self) -> int | None:
        # A password does not expire; a delegation token does.
        return self._token.expiry_ms if self._token is not None else None

    @property
    def token_owner(self) -> str | None:
        """With a delegation token, the principal it logs in as (its owner), once complete."""
        done = self._state is _State.COMPLETE
        return self._token.owner if done and self._token is not None else None

    @property
    def username(self) -> str | None:
        return self._username if self._state is _State.COMPLETE else None

    def step(self, token: bytes) -> bytes:
        state = self._state
        if state is _State.COMPLETE:
            raise AuthenticationFailed("Invalid SCRAM message: the exchange is already complete")
        if state is _State.FAILED:
            raise AuthenticationFailed("Invalid SCRAM message: the exchange has already failed")
        # Fail closed: the state stays FAILED unless the step below returns normally.
        self._state = _State.FAILED
        if state is _State.FIRST:
            reply = self._client_first(token)
            self._state = _State.FINAL
        else:
            reply = self._client_final(token)
            self._state = _State.COMPLETE
        return reply

    def _invalid_credentials(self) -> InvalidCredentials:
        return InvalidCredentials(self._scram.name)

    def _client_first(self, token: bytes) -> bytes:
        what = "client first message"
        text = _decode(token, what)
        # gs2-header = gs2-cbind-flag "," [authzid] ","
        fields = text.split(",", 2)
        if len(fields) != 3:
            raise AuthenticationFailed(f"Invalid SCRAM {what}: missing GS2 header")
        flag, authz_field, bare = fields
        if flag.startswith("p="):
            raise AuthenticationFailed(f"Invalid SCRAM {what}: channel binding is not supported")
        if flag not in ("n", "y"):
            raise AuthenticationFailed(f"Invalid SCRAM {what}: bad GS2 channel binding flag")
        authzid = ""
        if authz_field:
            authzid = _unescape_saslname(_attribute(authz_field, "a", what), what)

        parts = bare.split(",")
        if parts[0].startswith("m="):
            raise AuthenticationFailed(
                f"Invalid SCRAM {what}: mandatory extensions are not supported"
            )
        if len(parts) < 2:
            raise AuthenticationFailed(f"Invalid SCRAM {what}: expected 'n=' and 'r='")
        username = _unescape_saslname(_attribute(parts[0], "n", what), what)
        client_nonce = _attribute(parts[1], "r", what)
        if not _valid_nonce(client_nonce):
            raise AuthenticationFailed(f"Invalid SCRAM {what}: bad nonce")
        extensions = _extensions(parts[2:], what)
        if authzid and authzid != username:
            raise AuthenticationFailed(
                "Authentication failed: Client requested an authorization id that is different"
                " from username"
            )

        credential: ScramCredential | None
        if extensions.get("tokenauth", "").lower() == "true":
            login = self._token_lookup(username) if self._token_lookup is not None else None
            self._token = login
            credential = login.credential if login is not None else None
        else:
            credential = self._lookup(username)
        if credential is None:
            raise self._invalid_credentials()

        self._username = username
        self._credential = credential
        self._gs2_header = f"{flag},{authz_field},"
        self._nonce = client_nonce + self._server_nonce
        server_first = f"r={self._nonce},s={_b64(credential.salt)},i={credential.iterations}"
        self._auth_prefix = f"{bare},{server_first}"
        return server_first.encode("ascii")

    def _client_final(self, token: bytes) -> bytes:
        what = "client final message"
        text = _decode(token, what)
        # The proof is last and everything before it is signed, so split it off first.
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep or "," in proof_b64:
            raise AuthenticationFailed(f"Invalid SCRAM {what}: expected attribute 'p=' last")
        parts = without_proof.split(",")
        if len(parts) < 2:
            raise AuthenticationFailed(f"Invalid SCRAM {what}: expected 'c=' and 'r='")
        binding = _b64decode(_attribute(parts[0], "c", what), "c", what)
        nonce = _attribute(parts[1], "r", what)
        _extensions(parts[2:], what)
        if binding != self._gs2_header.encode("utf-8"):
            raise AuthenticationFailed(f"Invalid SCRAM {what}: channel binding does not match")
        # librdkafka before 2.6.1 (still in Debian's and Ubuntu's kcat) sends its own nonce
        # twice: accepted, as Kafka 3.8.1 to 3.9 accept it. The server nonce, fresh for this
        # exchange, must be there whole either way.
        legacy = self._nonce[: len(self._nonce) - len(self._server_nonce)] + self._nonce
        if nonce != self._nonce and nonce != legacy:
            raise AuthenticationFailed(f"Invalid SCRAM {what}: nonce does not match")
        proof = _b64decode(proof_b64, "p", what)

        credential = self._credential
        assert credential is not None  # set by the first step
        mech = self._scram
        auth_message = f"{self._auth_prefix},{without_proof}".encode()
        client_signature = _hmac(mech, credential.stored_key, auth_message)
        if len(proof) != len(client_signature):
            raise self._invalid_credentials()
        client_key = _xor(proof, client_signature)
        if not hmac.compare_digest(_hash(mech, client_key), credential.stored_key):
            raise self._invalid_credentials()
        server_signature = _hmac(mech, credential.server_key, auth_message)
        return f"v={_b64(server_signature)}".encode("ascii")


# --- client ------------------------------------------------------------------------------------


class ScramClient:
    """Client side of one SCRAM exchange (no authzid, no channel binding, like Kafka's)."""

    __slots__ = ("_bare", "_expected_signature", "_nonce", "_password", "_scram")

    _GS2_HEADER = "n,,"

    def __init__(
        self,
        mechanism: ScramMechanism,
        username: str,
        password: str,
        nonce: str | None = None,
        token: bool = False,
    ) -> None:
        """``token``: log in with a delegation token (its id and HMAC as user and password)."""
        if nonce is None:
            nonce = secrets.token_urlsafe(24)
        elif not _valid_nonce(nonce):
            raise ValueError("a SCRAM nonce must be non-empty visible ASCII without ','")
        if not username:
            raise ValueError("a SCRAM user name must not be empty")
        self._scram = mechanism
        self._password = password
        self._nonce = nonce
        self._bare = f"n={_escape_saslname(username)},r={nonce}"
        if token:
            self._bare += ",tokenauth=true"
        self._expected_signature: bytes | None = None

    def first_message(self) -> bytes:
        return f"{self._GS2_HEADER}{self._bare}".encode()

    def final_message(self, server_first: bytes) -> bytes:
        """The client-final message; fails if the server's reply is malformed or unsafe."""
        what = "server first message"
        text = _decode(server_first, what)
        if text.startswith("e="):
            raise AuthenticationFailed(f"Authentication failed: server error {text[2:]}")
        parts = text.split(",")
        if parts[0].startswith("m="):
            raise AuthenticationFailed(
                f"Invalid SCRAM {what}: mandatory extensions are not supported"
            )
        if len(parts) < 3:
            raise AuthenticationFailed(f"Invalid SCRAM {what}: expected 'r=', 's=' and 'i='")
        nonce = _attribute(parts[0], "r", what)
        salt = _b64decode(_attribute(parts[1], "s", what), "s", what)
        iterations_text = _attribute(parts[2], "i", what)
        _extensions(parts[3:], what)
        if not (
            nonce.startswith(self._nonce) and len(nonce) > len(self._nonce) and _valid_nonce(nonce)
        ):
            raise AuthenticationFailed(f"Invalid SCRAM {what}: bad server nonce")
        if not salt:
            raise AuthenticationFailed(f"Invalid SCRAM {what}: empty salt")
        if not (iterations_text.isascii() and iterations_text.isdigit()):
            raise AuthenticationFailed(f"Invalid SCRAM {what}: bad iteration count")
        iterations = int(iterations_text)
        # Like Kafka's client: a server may not weaken the password hashing below the minimum.
        if iterations > MAX_ITERATIONS:
            # PBKDF2 runs on the caller's thread: a hostile server could stall it for long.
            raise AuthenticationFailed(
                f"Invalid SCRAM {what}: {iterations} iterations is more than {MAX_ITERATIONS}"
            )
        if iterations < MIN_ITERATIONS:
            raise AuthenticationFailed(
                f"Invalid SCRAM {what}: {iterations} iterations is below the minimum"
                f" {MIN_ITERATIONS}"
            )

        mech = self._scram
        salted = salted_password(mech, self._password, salt, iterations)
        client_key = _hmac(mech, salted, b"Client Key")
        stored_key = _hash(mech, client_key)
        without_proof = f"c={_b64(self._GS2_HEADER.encode('ascii'))},r={nonce}"
        auth_message = f"{self._bare},{text},{without_proof}".encode()
        proof = _xor(client_key, _hmac(mech, stored_key, auth_message))
        server_key = _hmac(mech, salted, b"Server Key")
        self._expected_signature = _hmac(mech, server_key, auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def verify_server_final(self, server_final: bytes) -> None:
        """Checks the server knew the credential; raises AuthenticationFailed if not."""
        expected = self._expected_signature
        if expected is None:
            raise RuntimeError("verify_server_final called before final_message")
        what = "server final message"
        text = _decode(server_final, what)
        if text.startswith("e="):
            raise AuthenticationFailed(
                f"Authentication failed: server error {text.split(',')[0][2:]}"
            )
        parts = text.split(",")
        signature = _b64decode(_attribute(parts[0], "v", what), "v", what)
        _extensions(parts[1:], what)
        if not hmac.compare_digest(signature, expected):
            raise AuthenticationFailed(f"Invalid SCRAM {what}: server signature does not verify")


if TYPE_CHECKING:
    from artesian.security.sasl import SaslServer

    def _conforms(server: ScramServer) -> SaslServer:  # mypy checks the Protocol here
        return server
