"""SASL/PLAIN (RFC 4616) with Kafka's checks, and Kafka's sasl.jaas.config syntax."""

from __future__ import annotations

import pytest

from artesian.security import SaslServer
from artesian.security.jaas import JaasConfig, parse_jaas_config, plain_users
from artesian.security.plain import PlainServer, plain_client_token
from artesian.security.sasl import AuthenticationFailed

USERS = {"alice": "alice-secret", "bob": "bob-secret", "jürgen": "pässwörd"}
INVALID = "Authentication failed: Invalid username or password"
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"

# --- PLAIN -------------------------------------------------------------------------------------


def test_plain_client_token() -> None:
    assert plain_client_token("alice", "alice-secret") == b"\x00alice\x00alice-secret"
    assert plain_client_token("jürgen", "pässwörd") == "\0jürgen\0pässwörd".encode()


@pytest.mark.parametrize(
    ("token", "username"),
    [
        (b"\x00alice\x00alice-secret", "alice"),
        (b"alice\x00alice\x00alice-secret", "alice"),
        ("\0jürgen\0pässwörd".encode(), "jürgen"),
    ],
)
def test_plain_success(token: bytes, username: str) -> None:
    server = PlainServer(USERS)
    assert isinstance(server, SaslServer)
    assert server.mechanism == "PLAIN"
    assert not server.complete
    assert server.username is None
    assert server.step(token) == b""
    assert server.complete
    assert server.username == username


def test_plain_client_token_authenticates() -> None:
    server = PlainServer(USERS)
    assert server.step(plain_client_token("bob", "bob-secret")) == b""
    assert server.username == "bob"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (b"\x00alice\x00wrong", INVALID),
        (b"\x00alice\x00alice-secretX", INVALID),
        (b"\x00alice\x00bob-secret", INVALID),
        (b"\x00mallory\x00alice-secret", INVALID),
        (b"\x00Alice\x00alice-secret", INVALID),
        (
            b"bob\x00alice\x00alice-secret",
            "Authentication failed: Client requested an authorization id that is different from"
            " username",
        ),
        (b"", "Invalid SASL/PLAIN response: expected 3 tokens, got 1"),
        (
            b"alice\x00alice-secret",
            "Invalid SASL/PLAIN response: expected 3 tokens, got 2",
        ),
        (
            b"\x00\x00alice\x00alice-secret",
            "Invalid SASL/PLAIN response: expected 3 tokens, got 4",
        ),
        (b"\x00\x00alice-secret", "Authentication failed: username not specified"),
        (b"\x00alice\x00", "Authentication failed: password not specified"),
        (b"\x00alice\x00alice-\xffsecret", "Invalid SASL/PLAIN response: not valid UTF-8"),
    ],
)
def test_plain_failures(token: bytes, message: str) -> None:
    server = PlainServer(USERS)
    with pytest.raises(AuthenticationFailed) as failure:
        server.step(token)
    assert str(failure.value) == message
    assert not server.complete
    assert server.username is None
    # One attempt per exchange: a correct token afterwards still fails.
    with pytest.raises(AuthenticationFailed, match="already failed"):
        server.step(b"\x00alice\x00alice-secret")
    assert not server.complete


def test_plain_second_step_after_success_fails() -> None:
    server = PlainServer(USERS)
    server.step(b"\x00alice\x00alice-secret")
    with pytest.raises(AuthenticationFailed, match="already complete"):
        server.step(b"\x00bob\x00bob-secret")
    assert server.username == "alice"


# --- JAAS ------------------------------------------------------------------------------------


def test_jaas_kafka_plain_example() -> None:
    config = parse_jaas_config(
        f'{PLAIN_MODULE} required username="admin" password="admin-secret"'
        ' user_admin="admin-secret" user_alice="alice;secret";'
    )
    assert config == JaasConfig(
        login_module=PLAIN_MODULE,
        control_flag="required",
        options={
            "username": "admin",
            "password": "admin-secret",
            "user_admin": "admin-secret",
            "user_alice": "alice;secret",
        },
    )
    assert list(config.options) == ["username", "password", "user_admin", "user_alice"]
    assert plain_users(config) == {"admin": "admin-secret", "alice": "alice;secret"}


def test_jaas_escapes_inside_quotes() -> None:
    config = parse_jaas_config(r'M required a="say \"hi\"" b="C:\\dir\\" c="" d="x=y ; z";')
    assert dict(config.options) == {"a": 'say "hi"', "b": "C:\\dir\\", "c": "", "d": "x=y ; z"}


def test_jaas_bare_tokens_whitespace_and_flag_case() -> None:
    text = (
        "\n  org.apache.kafka.common.security.scram.ScramLoginModule\tREQUIRED\n"
        "    username = alice\n    password=alice-secret_1.$x\r\n    tokenauth =true ;  \n"
    )
    config = parse_jaas_config(text)
    assert config.login_module == "org.apache.kafka.common.security.scram.ScramLoginModule"
    assert config.control_flag == "required"
    assert dict(config.options) == {
        "username": "alice",
        "password": "alice-secret_1.$x",
        "tokenauth": "true",
    }
    assert plain_users(config) == {}


@pytest.mark.parametrize("flag", ["required", "Requisite", "SUFFICIENT", "optional"])
def test_jaas_control_flags(flag: str) -> None:
    config = parse_jaas_config(f"M {flag};")
    assert config == JaasConfig("M", flag.lower(), {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a login module class name at line 1, column 1, found end of input"),
        ("   \n ", "expected a login module class name at line 2, column 2, found end of input"),
        (";", "expected a login module class name at line 1, column 1, found ';'"),
        (
            '"M" required;',
            "expected a login module class name at line 1, column 1, found a quoted string",
        ),
        (
            "M;",
            "expected a control flag (required, requisite, sufficient, optional) at line 1, column 2, found ';'",
        ),
        (
            "M mandatory;",
            "expected a control flag (required, requisite, sufficient, optional) at line 1, column 3, found 'mandatory'",
        ),
        (
            "M required",
            "expected an option name or ';' ending the entry at line 1, column 11, found end of input",
        ),
        (
            'M required a="b"',
            "expected an option name or ';' ending the entry at line 1, column 17, found end of input",
        ),
        ("M required\n  a;", "expected '=' after option 'a' at line 2, column 4, found ';'"),
        ("M required a b;", "expected '=' after option 'a' at line 1, column 14, found 'b'"),
        ("M required a=;", "expected a value for option 'a' at line 1, column 14, found ';'"),
        ("M required a==b;", "expected a value for option 'a' at line 1, column 14, found '='"),
        ("M required =b;", "expected an option name at line 1, column 12, found '='"),
        (
            'M required "a"=b;',
            "expected an option name at line 1, column 12, found a quoted string",
        ),
        ('M required a="b;', "unterminated quoted string starting at line 1, column 14"),
        ('M required a="b\\";', "unterminated quoted string starting at line 1, column 14"),
        (
            'M required a="b\\n";',
            'unsupported escape at line 1, column 16; only \\" and \\\\ are allowed inside quotes',
        ),
        ("M required a=1 a=2;", "option 'a' given twice (again at line 1, column 16)"),
        (
            "M required a=1;\nN optional;",
            "only one login module entry is supported, found more at line 2, column 1",
        ),
        (
            "M required a=1;;",
            "only one login module entry is supported, found more at line 1, column 16",
        ),
    ],
)
def test_jaas_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as failure:
        parse_jaas_config(text)
    assert str(failure.value) == f"Invalid JAAS config: {message}"


def test_plain_users_rejects_nameless_user_option() -> None:
    config = parse_jaas_config('M required user_="x";')
    with pytest.raises(ValueError, match="names no user"):
        plain_users(config)


def test_jaas_users_drive_plain_server() -> None:
    config = parse_jaas_config(f'{PLAIN_MODULE} required user_alice="alice;secret" user_bob=b;')
    server = PlainServer(plain_users(config))
    assert server.step(b"\x00alice\x00alice;secret") == b""
    assert server.username == "alice"
