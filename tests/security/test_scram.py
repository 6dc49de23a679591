"""SCRAM-SHA-256/512 (RFC 5802, RFC 7677) as Kafka speaks it: vectors, exchanges, bad input."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from artesian.security import SaslServer
from artesian.security.sasl import AuthenticationFailed
from artesian.security.scram import (
    MAX_ITERATIONS,
    MECHANISMS,
    MIN_ITERATIONS,
    ScramClient,
    ScramCredential,
    ScramMechanism,
    ScramServer,
    credential_from_salted_password,
    mechanism_by_type,
    new_credential,
    salted_password,
)

SHA256 = MECHANISMS["SCRAM-SHA-256"]
SHA512 = MECHANISMS["SCRAM-SHA-512"]
BOTH = pytest.mark.parametrize("mech", [SHA256, SHA512], ids=lambda m: m.name)

# RFC 7677 section 3.
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

NONCE = "clientnonce"
SNONCE = "servernonce"
COMBINED = NONCE + SNONCE


def invalid_credentials(mech: ScramMechanism) -> str:
    return (
        "Authentication failed during authentication due to invalid credentials with SASL"
        f" mechanism {mech.name}"
    )


def rfc_server() -> ScramServer:
    credential = new_credential(SHA256, "pencil", 4096, RFC_SALT)
    return ScramServer(SHA256, {"user": credential}.get, nonce=RFC_SERVER_NONCE)


def server_for(mech: ScramMechanism, users: dict[str, str], nonce: str | None = SNONCE):
    credentials = {name: new_credential(mech, pw) for name, pw in users.items()}
    asked: list[str] = []

    def lookup(name: str) -> ScramCredential | None:
        asked.append(name)
        return credentials.get(name)

    return ScramServer(mech, lookup, nonce=nonce), asked


def exchange(server: ScramServer, client: ScramClient) -> bytes:
    server_first = server.step(client.first_message())
    server_final = server.step(client.final_message(server_first))
    client.verify_server_final(server_final)
    return server_final


def hi_per_rfc(mech: ScramMechanism, password: bytes, salt: bytes, i: int) -> bytes:
    """RFC 5802's Hi() written out literally, independent of hashlib.pbkdf2_hmac."""
    u = hmac.new(password, salt + b"\x00\x00\x00\x01", mech.hash_name).digest()
    result = u
    for _ in range(i - 1):
        u = hmac.new(password, u, mech.hash_name).digest()
        result = bytes(a ^ b for a, b in zip(result, u, strict=True))
    return result


# --- mechanisms and credentials ------------------------------------------------------------


def test_mechanisms_and_kafka_type_ids() -> None:
    assert sorted(MECHANISMS) == ["SCRAM-SHA-256", "SCRAM-SHA-512"]
    assert (SHA256.name, SHA256.type_id, SHA256.hash_name) == ("SCRAM-SHA-256", 1, "sha256")
    assert (SHA512.name, SHA512.type_id, SHA512.hash_name) == ("SCRAM-SHA-512", 2, "sha512")
    assert mechanism_by_type(1) is SHA256
    assert mechanism_by_type(2) is SHA512
    assert mechanism_by_type(0) is None
    assert mechanism_by_type(3) is None
    assert (MIN_ITERATIONS, MAX_ITERATIONS) == (4096, 16384)


@BOTH
def test_salted_password_is_rfc_hi(mech: ScramMechanism) -> None:
    salt = b"\x01\x02salt"
    expected = hi_per_rfc(mech, "pässword".encode(), salt, 17)
    assert salted_password(mech, "pässword", salt, 17) == expected
    assert len(expected) == hashlib.new(mech.hash_name).digest_size


@BOTH
def test_credential_keys_follow_rfc_5802(mech: ScramMechanism) -> None:
    salted = hi_per_rfc(mech, b"pw", b"salt", 4096)
    client_key = hmac.new(salted, b"Client Key", mech.hash_name).digest()
    credential = new_credential(mech, "pw", 4096, b"salt")
    assert credential == ScramCredential(
        salt=b"salt",
        stored_key=hashlib.new(mech.hash_name, client_key).digest(),
        server_key=hmac.new(salted, b"Server Key", mech.hash_name).digest(),
        iterations=4096,
    )


@BOTH
def test_upsertion_from_salted_password_matches_new_credential(mech: ScramMechanism) -> None:
    # AlterUserScramCredentials carries (salt, salted password, iterations), not the password.
    salt = b"0123456789abcdef"
    salted = salted_password(mech, "alice-secret", salt, 8192)
    upserted = credential_from_salted_password(mech, salt, salted, 8192)
    assert upserted == new_credential(mech, "alice-secret", 8192, salt)
    assert upserted != new_credential(mech, "alice-secret", 8191, salt)


def test_new_credential_defaults_random_32_byte_salt() -> None:
    first = new_credential(SHA256, "pw")
    second = new_credential(SHA256, "pw")
    assert first.iterations == MIN_ITERATIONS
    assert len(first.salt) == 32
    assert first.salt != second.salt
    assert first.stored_key != second.stored_key


# --- RFC 7677 vector -------------------------------------------------------------------------


def test_rfc_7677_vector_server() -> None:
    server = rfc_server()
    assert server.step(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert not server.complete
    assert server.username is None
    assert server.step(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.complete
    assert server.username == "user"


def test_rfc_7677_vector_client() -> None:
    client = ScramClient(SHA256, "user", "pencil", nonce=RFC_CLIENT_NONCE)
    assert client.first_message() == RFC_CLIENT_FIRST
    assert client.final_message(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify_server_final(RFC_SERVER_FINAL)


# --- full exchanges ----------------------------------------------------------------------------


@BOTH
def test_client_server_exchange(mech: ScramMechanism) -> None:
    server, asked = server_for(mech, {"alice": "alice-secret"}, nonce=None)
    assert isinstance(server, SaslServer)
    assert server.mechanism == mech.name
    client = ScramClient(mech, "alice", "alice-secret")
    server_first = server.step(client.first_message())
    assert not server.complete
    assert server.username is None
    server_final = server.step(client.final_message(server_first))
    client.verify_server_final(server_final)
    assert server.complete
    assert server.username == "alice"
    assert asked == ["alice"]
    signature = base64.b64decode(server_final.removeprefix(b"v="), validate=True)
    assert len(signature) == hashlib.new(mech.hash_name).digest_size


def test_generated_server_nonce_extends_client_nonce_and_differs() -> None:
    nonces = []
    for _ in range(2):
        server, _ = server_for(SHA256, {"alice": "pw"}, nonce=None)
        reply = server.step(b"n,,n=alice,r=abc").decode()
        nonce = reply.split(",")[0].removeprefix("r=")
        assert nonce.startswith("abc")
        assert len(nonce) > len("abc") + 16
        assert all(0x21 <= ord(c) <= 0x7E for c in nonce)
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


@BOTH
def test_wrong_password_fails_with_kafka_message(mech: ScramMechanism) -> None:
    server, _ = server_for(mech, {"alice": "alice-secret"})
    client = ScramClient(mech, "alice", "wrong")
    server_first = server.step(client.first_message())
    with pytest.raises(AuthenticationFailed) as failure:
        server.step(client.final_message(server_first))
    assert str(failure.value) == invalid_credentials(mech)
    assert not server.complete
    assert server.username is None


@BOTH
def test_unknown_user_fails_on_first_message(mech: ScramMechanism) -> None:
    server, asked = server_for(mech, {"alice": "alice-secret"})
    client = ScramClient(mech, "mallory", "alice-secret")
    with pytest.raises(AuthenticationFailed) as failure:
        server.step(client.first_message())
    assert str(failure.value) == invalid_credentials(mech)
    assert asked == ["mallory"]


def test_credential_of_other_mechanism_fails() -> None:
    credential = new_credential(SHA512, "pw")
    server = ScramServer(SHA256, {"alice": credential}.get, nonce=SNONCE)
    client = ScramClient(SHA256, "alice", "pw")
    server_first = server.step(client.first_message())
    with pytest.raises(AuthenticationFailed, match="invalid credentials"):
        server.step(client.final_message(server_first))


def test_escaped_and_non_ascii_names_round_trip() -> None:
    server, asked = server_for(SHA256, {"a,b=c": "pässwörd"})
    client = ScramClient(SHA256, "a,b=c", "pässwörd", nonce=NONCE)
    assert client.first_message() == b"n,,n=a=2Cb=3Dc,r=clientnonce"
    exchange(server, client)
    assert asked == ["a,b=c"]
    assert server.username == "a,b=c"

    server, _ = server_for(SHA256, {"jürgen": "pw"})
    exchange(server, ScramClient(SHA256, "jürgen", "pw"))
    assert server.username == "jürgen"


def test_iterations_are_not_checked_by_the_server() -> None:
    credential = new_credential(SHA256, "pw", iterations=2)
    server = ScramServer(SHA256, {"alice": credential}.get, nonce=SNONCE)
    assert server.step(b"n,,n=alice,r=abc") == (
        b"r=abc" + SNONCE.encode() + b",s=" + base64.b64encode(credential.salt) + b",i=2"
    )


# --- server: client-first ---------------------------------------------------------------------


def manual_final(
    mech: ScramMechanism, password: str, server_first: bytes, gs2: bytes
) -> tuple[bytes, bytes, bytes, bytes]:
    """Client-final parts computed here (not by ScramClient), for GS2 headers it never sends.

    Returns (client-final-without-proof, SaltedPassword, StoredKey, ClientKey).
    """
    fields = dict(part.split("=", 1) for part in server_first.decode().split(","))
    salted = hi_per_rfc(mech, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", mech.hash_name).digest()
    stored_key = hashlib.new(mech.hash_name, client_key).digest()
    without_proof = b"c=" + base64.b64encode(gs2) + b",r=" + fields["r"].encode()
    return without_proof, salted, stored_key, client_key


@pytest.mark.parametrize(
    ("client_first", "gs2", "username"),
    [
        (b"n,,n=alice,r=abc", b"n,,", "alice"),
        (b"y,,n=alice,r=abc", b"y,,", "alice"),
        (b"n,a=alice,n=alice,r=abc", b"n,a=alice,", "alice"),
        (b"n,a=a=2Cb,n=a=2Cb,r=abc", b"n,a=a=2Cb,", "a,b"),
        (b"n,,n=alice,r=abc,tokenauth=false", b"n,,", "alice"),
        (b"n,,n=alice,r=abc,foo=bar=baz,x=", b"n,,", "alice"),
    ],
)
def test_accepted_client_first_variants(client_first: bytes, gs2: bytes, username: str) -> None:
    mech = SHA256
    server, asked = server_for(mech, {username: "pw"})
    server_first = server.step(client_first)
    assert asked == [username]
    assert server_first.startswith(b"r=abc" + SNONCE.encode() + b",s=")
    # Finish the exchange: the AuthMessage must use the bare message exactly as sent.
    bare = client_first.split(b",", 2)[2]
    without_proof, salted, stored_key, client_key = manual_final(mech, "pw", server_first, gs2)
    auth_message = bare + b"," + server_first + b"," + without_proof
    signature = hmac.new(stored_key, auth_message, mech.hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_final = server.step(without_proof + b",p=" + base64.b64encode(proof))
    server_key = hmac.new(salted, b"Server Key", mech.hash_name).digest()
    expected = hmac.new(server_key, auth_message, mech.hash_name).digest()
    assert server_final == b"v=" + base64.b64encode(expected)
    assert server.username == username


@pytest.mark.parametrize(
    ("client_first", "message"),
    [
        (b"", "missing GS2 header"),
        (b"n,,n=alice,r=ab\xffc", "not valid UTF-8"),
        (b"n=alice,r=abc", "missing GS2 header"),
        (b"p=tls-unique,,n=alice,r=abc", "channel binding is not supported"),
        (b"x,,n=alice,r=abc", "bad GS2 channel binding flag"),
        (b"n,n=alice,r=abc", "expected attribute 'a='"),
        (b"n,a=,n=alice,r=abc", "empty user name"),
        (b"n,a=bob,n=alice,r=abc", "authorization id that is different from username"),
        (b"n,,r=abc,n=alice", "expected attribute 'n='"),
        (b"n,,n=alice", "expected 'n=' and 'r='"),
        (b"n,,n=alice,x=abc", "expected attribute 'r='"),
        (b"n,,n=alice,r=", "bad nonce"),
        (b"n,,n=alice,r=a\x01c", "bad nonce"),
        (b"n,,n=,r=abc", "empty user name"),
        (b"n,,n=al\x00ice,r=abc", "NUL in user name"),
        (b"n,,n=a=2Db,r=abc", "bad '=' escape"),
        (b"n,,n=a=2cb,r=abc", "bad '=' escape"),
        (b"n,,n=alice=,r=abc", "bad '=' escape"),
        (b"n,,n=alice=3,r=abc", "bad '=' escape"),
        (b"n,,m=ext,n=alice,r=abc", "mandatory extensions are not supported"),
        (b"n,,n=alice,r=abc,", "malformed extension"),
        (b"n,,n=alice,r=abc,noequals", "malformed extension"),
        (b"n,,n=alice,r=abc,a=1,a=2", "repeated extension"),
    ],
)
def test_malformed_client_first_fails(client_first: bytes, message: str) -> None:
    server, asked = server_for(SHA256, {"alice": "pw", "bob": "pw"})
    with pytest.raises(AuthenticationFailed, match=message):
        server.step(client_first)
    assert asked == []  # rejected before any credential was looked up
    assert not server.complete
    # A failed exchange stays failed, even for a well-formed retry.
    with pytest.raises(AuthenticationFailed, match="already failed"):
        server.step(b"n,,n=alice,r=abc")


def test_a_token_login_looks_up_the_token_and_logs_in_as_its_owner() -> None:
    from artesian.security.delegation_token import TokenLogin

    token_credential = new_credential(SHA256, "the token's hmac")
    tokens = {"tok1": TokenLogin(token_credential, "User:alice", 1_900_000_000_000)}
    asked: list[str] = []

    def token_lookup(token_id: str) -> TokenLogin | None:
        asked.append(token_id)
        return tokens.get(token_id)

    server = ScramServer(SHA256, lambda _: None, nonce=SNONCE, token_lookup=token_lookup)
    exchange(server, ScramClient(SHA256, "tok1", "the token's hmac", token=True))
    assert asked == ["tok1"]
    assert (server.username, server.token_owner) == ("tok1", "User:alice")
    assert server.credential_expiry_ms == 1_900_000_000_000  # the session ends with the token

    # A password login keeps no owner and no expiry.
    password_server, _ = server_for(SHA256, {"alice": "pw"})
    exchange(password_server, ScramClient(SHA256, "alice", "pw"))
    assert (password_server.token_owner, password_server.credential_expiry_ms) == (None, None)


@pytest.mark.parametrize("flag", [b"true", b"TRUE"])
def test_a_token_login_without_tokens_is_a_bad_credential(flag: bytes) -> None:
    # Without a token lookup, or one that knows no such token, the user lookup is not asked.
    server, asked = server_for(SHA256, {"alice": "pw"})
    with pytest.raises(AuthenticationFailed, match="invalid credentials"):
        server.step(b"n,,n=alice,r=abc,tokenauth=" + flag)
    assert asked == []
    server = ScramServer(SHA256, lambda _: None, nonce=SNONCE, token_lookup=lambda _: None)
    with pytest.raises(AuthenticationFailed, match="invalid credentials"):
        server.step(b"n,,n=unknown-token,r=abc,tokenauth=true")


# --- server: client-final ---------------------------------------------------------------------


def after_first(password: str = "pw") -> tuple[ScramServer, bytes]:
    """A server past step 1 and the correct client-final for it."""
    server, _ = server_for(SHA256, {"alice": "pw"})
    client = ScramClient(SHA256, "alice", password, nonce=NONCE)
    return server, client.final_message(server.step(client.first_message()))


def test_client_final_fixture_is_valid() -> None:
    server, final = after_first()
    assert final.startswith(b"c=biws,r=" + COMBINED.encode() + b",p=")
    server.step(final)
    assert server.complete


def replace_proof(final: bytes, proof: bytes) -> bytes:
    return final.rpartition(b",p=")[0] + b",p=" + proof


def flip_first_proof_byte(final: bytes) -> bytes:
    proof = bytearray(base64.b64decode(final.rpartition(b",p=")[2]))
    proof[0] ^= 1
    return replace_proof(final, base64.b64encode(bytes(proof)))


FINAL_CASES = [
    (lambda f: f + b"\xff", "not valid UTF-8"),
    (lambda f: f.rpartition(b",p=")[0], "expected attribute 'p=' last"),
    (lambda f: f + b",x=y", "expected attribute 'p=' last"),
    (lambda f: b"", "expected attribute 'p=' last"),
    (lambda f: replace_proof(f, b"not*base64"), "'p' is not valid base64"),
    (lambda f: replace_proof(f, b"YWJj="), "'p' is not valid base64"),
    (lambda f: replace_proof(f, b"YR=="), "'p' is not valid base64"),
    (lambda f: replace_proof(f, b"\xc3\xa9"), "'p' is not valid base64"),
    (lambda f: f.replace(b"c=biws", b"c=eSws"), "channel binding does not match"),
    (lambda f: f.replace(b"c=biws", b"c="), "channel binding does not match"),
    (lambda f: f.replace(b"c=biws", b"c=b!ws"), "'c' is not valid base64"),
    (lambda f: f.replace(b"c=biws,", b""), "expected 'c=' and 'r='"),
    (lambda f: f.replace(b"c=biws,r=", b"x=biws,r="), "expected attribute 'c='"),
    (
        lambda f: f.replace(
            b"c=biws,r=" + COMBINED.encode(), b"r=" + COMBINED.encode() + b",c=biws"
        ),
        "expected attribute 'c='",
    ),
    (lambda f: f.replace(COMBINED.encode(), COMBINED.encode() + b"x"), "nonce does not match"),
    (lambda f: f.replace(COMBINED.encode(), NONCE.encode()), "nonce does not match"),
    (lambda f: f.replace(b",p=", b",bad,p="), "malformed extension"),
    (lambda f: replace_proof(f, base64.b64encode(b"x" * 10)), "invalid credentials"),
    (flip_first_proof_byte, "invalid credentials"),
]


@pytest.mark.parametrize(("mangle", "message"), FINAL_CASES)
def test_malformed_client_final_fails(mangle, message: str) -> None:
    server, final = after_first()
    with pytest.raises(AuthenticationFailed, match=message):
        server.step(mangle(final))
    assert not server.complete
    assert server.username is None
    with pytest.raises(AuthenticationFailed, match="already failed"):
        server.step(final)


def test_extensions_in_client_final_are_signed_and_accepted() -> None:
    # Built by hand: ScramClient never sends extensions.
    mech = SHA256
    server, _ = server_for(mech, {"alice": "pw"})
    server_first = server.step(b"n,,n=alice,r=abc")
    without_proof, salted, stored_key, client_key = manual_final(mech, "pw", server_first, b"n,,")
    without_proof += b",ext=1"
    auth_message = b"n=alice,r=abc," + server_first + b"," + without_proof
    signature = hmac.new(stored_key, auth_message, mech.hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_final = server.step(without_proof + b",p=" + base64.b64encode(proof))
    server_key = hmac.new(salted, b"Server Key", mech.hash_name).digest()
    expected = hmac.new(server_key, auth_message, mech.hash_name).digest()
    assert server_final == b"v=" + base64.b64encode(expected)
    assert server.complete


def test_third_message_fails_and_server_stays_complete() -> None:
    server, final = after_first()
    server.step(final)
    with pytest.raises(AuthenticationFailed, match="already complete"):
        server.step(final)
    with pytest.raises(AuthenticationFailed, match="already complete"):
        server.step(b"")
    assert server.complete
    assert server.username == "alice"


def test_server_rejects_bad_nonce_argument() -> None:
    with pytest.raises(ValueError, match="nonce"):
        ScramServer(SHA256, {}.get, nonce="a,b")
    with pytest.raises(ValueError, match="nonce"):
        ScramServer(SHA256, {}.get, nonce="")


# --- client ------------------------------------------------------------------------------------


def client_and_server_first(**users: str) -> tuple[ScramClient, bytes, ScramServer]:
    server, _ = server_for(SHA256, users or {"alice": "pw"})
    client = ScramClient(SHA256, "alice", "pw", nonce=NONCE)
    return client, server.step(client.first_message()), server


@BOTH
def test_tampered_server_final_fails_in_client(mech: ScramMechanism) -> None:
    server, _ = server_for(mech, {"alice": "pw"})
    client = ScramClient(mech, "alice", "pw")
    server_final = server.step(client.final_message(server.step(client.first_message())))
    signature = bytearray(base64.b64decode(server_final[2:]))
    signature[-1] ^= 0x80
    tampered = b"v=" + base64.b64encode(bytes(signature))
    with pytest.raises(AuthenticationFailed, match="server signature does not verify"):
        client.verify_server_final(tampered)
    client.verify_server_final(server_final)


def test_server_final_of_another_exchange_fails_in_client() -> None:
    # A replayed signature is bound to the other exchange's nonces, so it cannot verify.
    server, _ = server_for(SHA256, {"alice": "pw"})
    first_client = ScramClient(SHA256, "alice", "pw", nonce="first")
    replayed = exchange(server, first_client)
    server, _ = server_for(SHA256, {"alice": "pw"})
    second_client = ScramClient(SHA256, "alice", "pw", nonce="second")
    server.step(second_client.final_message(server.step(second_client.first_message())))
    with pytest.raises(AuthenticationFailed, match="server signature does not verify"):
        second_client.verify_server_final(replayed)


@pytest.mark.parametrize(
    ("server_final", "message"),
    [
        (b"e=invalid-proof", "server error invalid-proof"),
        (b"x=abc", "expected attribute 'v='"),
        (b"", "expected attribute 'v='"),
        (b"v=***", "'v' is not valid base64"),
        (b"v=\xff", "not valid UTF-8"),
        (b"v=", "server signature does not verify"),
    ],
)
def test_bad_server_final_fails_in_client(server_final: bytes, message: str) -> None:
    client, server_first, _ = client_and_server_first()
    client.final_message(server_first)
    with pytest.raises(AuthenticationFailed, match=message):
        client.verify_server_final(server_final)


def test_verify_before_final_is_a_usage_error() -> None:
    client = ScramClient(SHA256, "alice", "pw")
    with pytest.raises(RuntimeError):
        client.verify_server_final(b"v=AAAA")


@pytest.mark.parametrize(
    ("server_first", "message"),
    [
        (b"e=unknown-user", "server error unknown-user"),
        (b"r=clientnonceX,s=c2FsdA==", "expected 'r=', 's=' and 'i='"),
        (b"m=x,r=clientnonceX,s=c2FsdA==,i=4096", "mandatory extensions"),
        (b"s=c2FsdA==,r=clientnonceX,i=4096", "expected attribute 'r='"),
        (b"r=otherX,s=c2FsdA==,i=4096", "bad server nonce"),
        (b"r=clientnonce,s=c2FsdA==,i=4096", "bad server nonce"),
        (b"r=clientnonceX,s=c2Fsd,i=4096", "'s' is not valid base64"),
        (b"r=clientnonceX,s=,i=4096", "empty salt"),
        (b"r=clientnonceX,s=c2FsdA==,i=-4096", "bad iteration count"),
        (b"r=clientnonceX,s=c2FsdA==,i=4096x", "bad iteration count"),
        (b"r=clientnonceX,s=c2FsdA==,i=4095", "below the minimum 4096"),
        (b"r=clientnonceX,s=c2FsdA==,i=4096,\xff", "not valid UTF-8"),
    ],
)
def test_bad_server_first_fails_in_client(server_first: bytes, message: str) -> None:
    client = ScramClient(SHA256, "alice", "pw", nonce=NONCE)
    with pytest.raises(AuthenticationFailed, match=message):
        client.final_message(server_first)


def test_client_accepts_minimum_iterations_and_server_extensions() -> None:
    client = ScramClient(SHA256, "alice", "pw", nonce=NONCE)
    final = client.final_message(b"r=clientnonceX,s=c2FsdA==,i=4096,ext=1")
    assert final.startswith(b"c=biws,r=clientnonceX,p=")


def test_client_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="nonce"):
        ScramClient(SHA256, "alice", "pw", nonce="a b")
    with pytest.raises(ValueError, match="user name"):
        ScramClient(SHA256, "", "pw")


def test_librdkafka_before_2_6_1_sends_its_nonce_twice_and_is_accepted() -> None:
    # librdkafka < 2.6.1 builds client-final's r= as client nonce + the server's r=, which
    # already starts with the client nonce (confluentinc/librdkafka#4895).
    mech = MECHANISMS["SCRAM-SHA-256"]
    credential = new_credential(mech, "pw", 4096, b"salt")
    server = ScramServer(mech, lambda user: credential if user == "u" else None, nonce="SRV")
    server_first = server.step(b"n,,n=u,r=CLI").decode()
    assert server_first.startswith("r=CLISRV,")
    salted = salted_password(mech, "pw", b"salt", 4096)
    without_proof = "c=biws,r=CLI" + "CLISRV"
    auth_message = f"n=u,r=CLI,{server_first},{without_proof}".encode()
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    signature = hmac.new(stored_key, auth_message, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    final = server.step(f"{without_proof},p={proof.decode()}".encode())
    assert final.startswith(b"v=") and server.complete
    # Any other nonce still fails.
    other = ScramServer(mech, lambda user: credential, nonce="SRV")
    other.step(b"n,,n=u,r=CLI")
    with pytest.raises(AuthenticationFailed, match="nonce does not match"):
        other.step(f"c=biws,r=XXCLISRV,p={proof.decode()}".encode())


def test_a_client_refuses_a_server_asking_for_too_many_iterations() -> None:
    # PBKDF2 runs on the broker's event loop: a hostile peer must not stall it.
    client = ScramClient(SHA256, "u", "pw", nonce="CLI")
    client.first_message()
    with pytest.raises(AuthenticationFailed, match="more than 16384"):
        client.final_message(b"r=CLISRV,s=c2FsdA==,i=1000000000")
