"""Errors of the protocol layer, in a module of their own so that code which only reports
them (the CLI's private-API client) need not import the schema codec and kio."""

from __future__ import annotations


class DecodeError(ValueError):
    """The bytes do not form a valid message of the expected schema."""
