"""Regular expressions that clients send (consumer group subscriptions, client metrics
matches), compiled with RE2 as Kafka compiles them with RE2/J: matching is linear in the
text, so no pattern a client sends can stall the event loop (Python's own engine backtracks:
`(a+)+b` against 24 a's took half a second, doubling with each more a)."""

from __future__ import annotations

import functools

import re2

__all__ = ["compile_regex", "regex_error_reason"]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a client's bad regex is its answer, not a broker log line


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> re2._Regexp:
    """``pattern`` compiled in RE2's syntax; raises re2.error."""
    return re2.compile(pattern, _RE2_OPTIONS)


def regex_error_reason(e: Exception) -> str:
    """What an re2.error says, as text (RE2 gives it as bytes)."""
    reason = e.args[0] if e.args else e
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
