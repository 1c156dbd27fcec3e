"""Where memkern keeps its files, and how it checks them.

Everything memkern writes outside a store the user named lives under one directory,
``$MEMKERN_HOME`` or ``~/.memkern``: the default SQLite store, the assembled local model,
and the activation and parametric files of stores that are not a local file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 8 << 20


def memkern_home() -> Path:
    """``$MEMKERN_HOME``, or ``~/.memkern``."""
    home = os.environ.get("MEMKERN_HOME")
    return Path(home) if home else Path.home() / ".memkern"


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks (model parts and KV states are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
