"""A secret kept in a file readable by its owner only, made on first use."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class EmptySecretFile(ValueError):
    pass


def read_or_create_secret(path: Path) -> str:
    """The secret in ``path``, made (256 random bits) if the file is missing. Made whole in a
    temporary file and linked into place, so that a racing process and a crash never leave an
    empty or partial one; a file others may read is narrowed to its owner."""
    try:
        return read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another made it first: theirs is the one
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return read_secret(path)


def read_secret(path: Path) -> str:
    secret = path.read_text().strip()
    if not secret:
        raise EmptySecretFile(f"{path} is empty")
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return secret
