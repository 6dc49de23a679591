"""``ssl.principal.mapping.rules``: a TLS client certificate's subject DN to a principal's
name, as Kafka's SslPrincipalMapper does it (sans-I/O).

Rules are tried in order; the first that applies names the principal. ``DEFAULT`` keeps the
DN as it is (RFC 2253, ``CN=alice,OU=eng,O=Example``); ``RULE:pattern/replacement/`` applies
when the pattern matches the whole DN, and makes the name by replacing with Java's syntax
(``$1`` for a group, ``\\x`` for a literal x), lower-cased with a trailing ``L`` or
upper-cased with ``U``. A ``/`` inside a pattern or replacement is written ``\\/``. Patterns
are Python regular expressions, which read the patterns Kafka's documentation shows the same
way Java does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NoMatchingRule", "SslPrincipalMapper"]

# Kafka's rule grammar: DEFAULT, RULE:pattern/replacement/[LU], or (empty) anything else.
_RULE = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(,\s*|$)")
_PARSER = re.compile(_RULE)


class NoMatchingRule(ValueError):
    """No rule applies to a DN (or a rule's replacement cannot be made): the connection
    has no principal."""


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str = ""
    case: str = ""  # "L", "U" or ""

    def apply(self, dn: str) -> str | None:
        if self.pattern is None:
            return dn
        if self.pattern.fullmatch(dn) is None:
            return None
        # Java's replaceAll: every match, the empty one at the end included.
        name = self.pattern.sub(lambda m: _java_replacement(self.replacement, m), dn)
        if self.case == "L":
            return name.lower()
        if self.case == "U":
            return name.upper()
        return name

    def __str__(self) -> str:
        if self.pattern is None:
            return "DEFAULT"
        return (
            f"RULE:{self.pattern.pattern}/{self.replacement}{'/' + self.case if self.case else ''}"
        )


class SslPrincipalMapper:
    __slots__ = ("_rules",)

    def __init__(self, rules: list[_Rule]) -> None:
        self._rules = rules

    @classmethod
    def from_rules(cls, text: str | None) -> SslPrincipalMapper:
        """Parses the setting; ValueError names a rule that is not one."""
        rules = []
        # None (not set) is DEFAULT; an empty setting is no rule at all, as in Kafka, so
        # every certificate is refused.
        text = "DEFAULT" if text is None else text
        for rule in (m.group(1) for m in _SPLITTER.finditer(text.strip())):
            match = _PARSER.match(rule)
            if match is None:
                raise ValueError(f"Invalid rule: {rule}")
            if match.end() != len(rule):
                raise ValueError(
                    f"Invalid rule: `{rule}`, unmatched substring: `{rule[match.end() :]}`"
                )
            if match.group(1) is not None:
                rules.append(_Rule(None))
            elif match.group(2) is not None:
                try:
                    # ASCII: Java's \w, \d, \s and (?i) are, where Python's are Unicode.
                    pattern = re.compile(match.group(2), re.ASCII)
                except re.error as e:
                    raise ValueError(f"Invalid rule: `{rule}`: {e}") from None
                rules.append(_Rule(pattern, match.group(3), match.group(4)))
        return cls(rules)

    def name(self, dn: str) -> str:
        """The principal's name for ``dn``; NoMatchingRule when no rule applies."""
        for rule in self._rules:
            name = rule.apply(dn)
            if name is not None:
                return name
        raise NoMatchingRule(f"No rules apply to {dn}, rules [{', '.join(map(str, self._rules))}]")


def _java_replacement(replacement: str, match: re.Match[str]) -> str:
    """Java's Matcher.appendReplacement, after Kafka's escaping of references to groups the
    pattern does not have (those stay literal)."""
    groups = match.re.groups
    out: list[str] = []
    i = 0
    while i < len(replacement):
        ch = replacement[i]
        if ch == "\\":
            if i + 1 == len(replacement):
                raise NoMatchingRule(f"replacement {replacement!r} ends with a lone backslash")
            out.append(replacement[i + 1])
            i += 2
        elif ch == "$":
            # Java refuses a $ that names no group (${name} needs Java's named groups).
            if i + 1 == len(replacement) or not replacement[i + 1].isdigit():
                raise NoMatchingRule(f"replacement {replacement!r} has a $ that names no group")
            first = int(replacement[i + 1])
            if first > groups:
                if groups == 0:
                    raise NoMatchingRule(f"replacement {replacement!r} names group {first}")
                out.append("$")  # Kafka escapes it: a literal $
                i += 1
                continue
            number, i = first, i + 2
            while (
                i < len(replacement)
                and replacement[i].isdigit()
                and number * 10 + int(replacement[i]) <= groups
            ):
                number = number * 10 + int(replacement[i])
                i += 1
            out.append(match.group(number) or "")
        else:
            out.append(ch)
            i += 1
    return "".join(out)
