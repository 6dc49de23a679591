"""Kafka's ``sasl.jaas.config`` value: one JAAS login module entry, parsed without Java.

Syntax: ``<LoginModule> <flag> [key=value ...];`` where a value is a bare token or a
double-quoted string (``\\"`` and ``\\\\`` escapes inside), with any whitespace between
tokens. As in Kafka, the flag is case-insensitive and only one entry is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, auto
from types import MappingProxyType

__all__ = ["CONTROL_FLAGS", "JaasConfig", "parse_jaas_config", "plain_users"]

CONTROL_FLAGS = ("required", "requisite", "sufficient", "optional")

# PlainLoginModule's convention for the broker's user table: user_<name>="<password>".
_USER_PREFIX = "user_"


@dataclass(slots=True, frozen=True)
class JaasConfig:
    """One login module entry; ``control_flag`` is lower-case, ``options`` keep their order."""

    login_module: str
    control_flag: str
    options: Mapping[str, str]


class _Kind(Enum):
    WORD = auto()
    QUOTED = auto()
    EQUALS = auto()
    SEMICOLON = auto()
    END = auto()


@dataclass(slots=True, frozen=True)
class _Token:
    kind: _Kind
    text: str
    offset: int


_SPECIAL = '=;"'


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _describe(token: _Token) -> str:
    if token.kind is _Kind.END:
        return "end of input"
    if token.kind is _Kind.QUOTED:
        return "a quoted string"
    return repr(token.text)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "=":
            tokens.append(_Token(_Kind.EQUALS, ch, i))
            i += 1
        elif ch == ";":
            tokens.append(_Token(_Kind.SEMICOLON, ch, i))
            i += 1
        elif ch == '"':
            start = i
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise ValueError(
                        f"Invalid JAAS config: unterminated quoted string starting at"
                        f" {_where(text, start)}"
                    )
                ch = text[i]
                if ch == '"':
                    i += 1
                    break
                if ch == "\\":
                    escaped = text[i + 1 : i + 2]
                    if escaped not in ('"', "\\"):
                        raise ValueError(
                            f"Invalid JAAS config: unsupported escape at {_where(text, i)};"
                            f' only \\" and \\\\ are allowed inside quotes'
                        )
                    chars.append(escaped)
                    i += 2
                else:
                    chars.append(ch)
                    i += 1
            tokens.append(_Token(_Kind.QUOTED, "".join(chars), start))
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            tokens.append(_Token(_Kind.WORD, text[start:i], start))
    tokens.append(_Token(_Kind.END, "", n))
    return tokens


def parse_jaas_config(text: str) -> JaasConfig:
    """Parses a ``sasl.jaas.config`` value; ValueError says what was expected and where."""
    tokens = _tokens(text)
    pos = 0

    def expected(what: str, token: _Token) -> ValueError:
        return ValueError(
            f"Invalid JAAS config: expected {what} at {_where(text, token.offset)},"
            f" found {_describe(token)}"
        )

    module = tokens[pos]
    if module.kind is not _Kind.WORD:
        raise expected("a login module class name", module)
    pos += 1

    flag = tokens[pos]
    if flag.kind is not _Kind.WORD:
        raise expected(f"a control flag ({', '.join(CONTROL_FLAGS)})", flag)
    control_flag = flag.text.lower()
    if control_flag not in CONTROL_FLAGS:
        raise expected(f"a control flag ({', '.join(CONTROL_FLAGS)})", flag)
    pos += 1

    options: dict[str, str] = {}
    while tokens[pos].kind is not _Kind.SEMICOLON:
        key = tokens[pos]
        if key.kind is not _Kind.WORD:
            if key.kind is _Kind.END:
                raise expected("an option name or ';' ending the entry", key)
            raise expected("an option name", key)
        equals = tokens[pos + 1]
        if equals.kind is not _Kind.EQUALS:
            raise expected(f"'=' after option {key.text!r}", equals)
        value = tokens[pos + 2]
        if value.kind not in (_Kind.WORD, _Kind.QUOTED):
            raise expected(f"a value for option {key.text!r}", value)
        if key.text in options:
            raise ValueError(
                f"Invalid JAAS config: option {key.text!r} given twice (again at"
                f" {_where(text, key.offset)})"
            )
        options[key.text] = value.text
        pos += 3
    pos += 1

    rest = tokens[pos]
    if rest.kind is not _Kind.END:
        raise ValueError(
            f"Invalid JAAS config: only one login module entry is supported, found more at"
            f" {_where(text, rest.offset)}"
        )
    return JaasConfig(module.text, control_flag, MappingProxyType(options))


def plain_users(config: JaasConfig) -> dict[str, str]:
    """The username -> password table from the ``user_<name>`` options (PLAIN's convention)."""
    users: dict[str, str] = {}
    for key, value in config.options.items():
        if key.startswith(_USER_PREFIX):
            name = key[len(_USER_PREFIX) :]
            if not name:
                raise ValueError(f"Invalid JAAS config: option {key!r} names no user")
            users[name] = value
    return users
